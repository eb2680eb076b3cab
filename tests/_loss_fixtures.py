"""Random batches shared by the loss tests."""
import math

import numpy as np
import torch


def clustered_batch(seed: int, num_ids: int, dim: int, max_images: int = 8, spread: float | None = None,
                    dtype=torch.float64):
    """A shuffled batch of ``num_ids`` identities with 1..max_images images each, arbitrary (negative, large,
    non-contiguous) labels, features = identity centre + noise of a random spread (from tight to mixed)."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, max_images + 1, size=num_ids)
    ids = rng.choice(100_000, size=num_ids, replace=False) - 50_000
    labels = np.repeat(ids, counts)
    centres = rng.standard_normal((num_ids, dim))
    spread = rng.choice([0.05, 0.3, 1.0, 3.0]) if spread is None else spread
    features = np.repeat(centres, counts, axis=0) + spread * rng.standard_normal((len(labels), dim))
    order = rng.permutation(len(labels))
    return torch.tensor(features[order] / math.sqrt(dim), dtype=dtype), torch.tensor(labels[order])
