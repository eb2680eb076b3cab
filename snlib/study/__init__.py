"""What the notebooks share, one module per concern:

    plans           each notebook's experiment as data (seeds, variants, grids, sizes per preset) and ``setup``,
                    the one call that settles a notebook's study (protocol, selected rates, overrides)
    study           ``Study``: runs through the run cache and the records, test features, the evaluation variants
    recorded        a study's runs as records (``results/runs/<preset>/``) with per-query results per variant
    protocol        the fair-comparison protocol: settling a study, rate selection, final / long / convergence runs
    claims          claims from records: paired intervals and verdicts, ``claims.csv`` / ``claims.md``
    findings        a study's regime and verdicts in a few lines (``findings.md``, README's first section)
    later           the losses after SN under the same protocol: their rates, runs and claims (notebook 13)
    pilot           the budget chosen by convergence: the pilot's plateau rule
    features        the test-feature dicts of a study (query / gallery), image digests
    views           distractor sets and the gallery sizes of Figure 4
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

``setup``, ``Study``, ``open_study``, ``find_datasets`` and ``query_gallery`` are imported on first use, so that
importing one light module (``snlib.study.geometry`` for ``snlib.demo``) does not pull in the whole study stack.
"""
from __future__ import annotations

__all__ = ["Study", "find_datasets", "open_study", "query_gallery", "setup"]


def __getattr__(name: str):
    """The public names above, each imported from its module when first asked for."""
    if name == "setup":
        from .plans import setup
        return setup
    if name in ("Study", "open_study", "find_datasets"):
        from . import study
        return getattr(study, name)
    if name == "query_gallery":
        from .features import query_gallery
        return query_gallery
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
