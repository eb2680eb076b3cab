"""A colour-histogram retrieval baseline: what a data set gives away without learning.

Features: a joint colour histogram (``bins`` per channel, RGB or HSV) of each of ``stripes`` horizontal
stripes, L1-normalised, square-rooted (so Euclidean distance is the Hellinger distance) and concatenated.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from .base import ReIDDataset, Sample, read_image


def color_histogram_features(samples: Sequence[Sample], bins: int = 8, stripes: int = 1, space: str = "rgb",
                             height: int = 128, width: int = 64) -> np.ndarray:
    """``(len(samples), stripes * bins**3)`` float32 features, unit L2 norm."""
    if space not in ("rgb", "hsv"):
        raise ValueError(f"space={space!r}; choose 'rgb' or 'hsv'")
    features = np.zeros((len(samples), stripes, bins ** 3), dtype=np.float32)
    for i, sample in enumerate(tqdm(samples, desc="colour histograms", unit="img", leave=False)):
        image = read_image(sample.path).resize((width, height))
        codes = np.asarray(image.convert("HSV") if space == "hsv" else image, dtype=np.int64) * bins // 256
        flat = (codes[..., 0] * bins + codes[..., 1]) * bins + codes[..., 2]
        for s, rows in enumerate(np.array_split(flat, stripes, axis=0)):
            features[i, s] = np.bincount(rows.ravel(), minlength=bins ** 3)
    features /= features.sum(axis=2, keepdims=True)
    return np.sqrt(features).reshape(len(samples), -1) / np.sqrt(stripes)


def color_histogram_baseline(dataset: ReIDDataset, bins: int = 8, stripes: int = 1, space: str = "rgb"):
    """Rank the gallery by colour-histogram distance; returns :class:`snlib.evaluation.RankResult`."""
    from ..evaluation import evaluate_features

    qf, gf = (color_histogram_features(samples, bins, stripes, space) for samples in (dataset.query, dataset.gallery))
    ids = [np.array([getattr(s, key) for s in samples]) for key in ("pid", "camid")
           for samples in (dataset.query, dataset.gallery)]
    q_pids, g_pids, q_camids, g_camids = ids
    return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, normalize=False)
