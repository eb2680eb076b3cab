"""Embeddings (the paper's Figure 6): a seeded t-SNE of the test features and how well identities cluster."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from .geometry import project_2d


def tsne_2d(features, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000, pca_dims: int = 50) -> np.ndarray:
    """Barnes-Hut t-SNE (scikit-learn, PCA initialisation, fixed ``random_state``) of the features, after a PCA
    to ``pca_dims`` dimensions (the usual speed-up; the neighbourhoods t-SNE keeps are barely changed); the
    perplexity is lowered to (N - 1) / 3 for small sets."""
    from sklearn.manifold import TSNE
    x = np.asarray(torch.as_tensor(features).double())
    if x.shape[1] > pca_dims:
        x, _ = project_2d(x, dims=min(pca_dims, len(x)))
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                method="barnes_hut", max_iter=max_iter).fit_transform(x.astype(np.float32))


def cluster_quality(features, labels) -> dict[str, float]:
    """How well identities cluster in the full feature space (Euclidean, the features as given):
    ``silhouette`` (scikit-learn, in [-1, 1], higher is tighter and better separated) and ``nn_same_identity``
    (share of images, among those whose identity has another image, whose nearest other image shares it)."""
    from sklearn.metrics import silhouette_score
    x = torch.as_tensor(features).double()
    labels = np.asarray(labels)
    dist = torch.cdist(x, x).fill_diagonal_(math.inf).numpy()
    nearest = dist.argmin(axis=1)
    ids, counts = np.unique(labels, return_counts=True)
    counted = np.isin(labels, ids[counts >= 2])
    return {"silhouette": float(silhouette_score(x.numpy(), labels)),
            "nn_same_identity": float((labels[nearest] == labels)[counted].mean())}


def cluster_table(study, runs: dict, pools: dict) -> pd.DataFrame:
    """One row per network (``runs`` and their test ``pools``, by name): ``network``, :func:`cluster_quality`
    of its pool and its test metrics (single query, standard AP)."""
    return pd.DataFrame([{"network": name, **cluster_quality(pools[name].features, pools[name].pids),
                          **study.evaluate(run).as_dict()} for name, run in runs.items()])
