"""What the notebooks share, one module per concern:

    plans           each notebook's experiment as data (seeds, variants, grids, sizes per preset) and ``setup``
    study           ``Study``: runs through the run cache, test features, the evaluation variants of the tables
    views           train subsets and distractor sets of a data set
    tables          summaries: mean and spread, the Table 1 layout, paired differences, convergence, drops
    figures         result figures of the long tables, embeddings and hit matrices
    style           readable loss / metric names and the colours of the sets
    geometry        one anchor of the SN loss: sets, terms, gradients, 2-D layouts; the toy batch
    anchor_figures  drawing an anchor and its pull / push
    pools           test-set pools, P x K test batches, the network before and after SN training
    composition     |S+|, |S-| and "no positive in the k-NN" on test batches and over training
    embeddings      t-SNE and cluster quality (Figure 6)
    ranking         ranked lists and the queries Figure 5 shows
    images          figures of person images (synthetic data only)
    explorer        the ipywidgets support-neighbour explorer
"""
from .plans import setup
from .study import Study, find_datasets, open_study, query_gallery

__all__ = ["Study", "find_datasets", "open_study", "query_gallery", "setup"]
