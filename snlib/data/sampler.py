"""P x K identity sampling (Hermans et al. 2017), the batches the SN loss and the triplet loss need."""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class PKSampler(torch.utils.data.Sampler[int]):
    """Indices for batches of ``p`` identities x ``k`` images, one pass over the identities per epoch.

    Each epoch shuffles the identities (seeded by ``seed`` and the epoch set with :meth:`set_epoch`) and
    cuts them into ``len(identities) // p`` batches (the paper's epoch: 751 // 32 = 23 iterations on
    Market-1501; the remaining identities wait for another epoch's shuffle). An identity contributes
    ``k`` distinct images, or ``k`` images drawn with replacement when it has fewer than ``k``.

    Consecutive runs of ``p * k`` indices form a batch, grouped by identity; use a ``DataLoader`` with
    ``batch_size = p * k // world_size`` and ``drop_last=True``. Distributed: every rank draws the same
    epoch plan and yields its ``p // world_size`` identities of each batch, so the ranks' shares are
    disjoint, cover the batch, and equal the single-process batch.
    """

    def __init__(self, pids: Sequence[int], p: int = 32, k: int = 4, seed: int = 0, rank: int = 0,
                 world_size: int = 1):
        if p < 1 or k < 1:
            raise ValueError(f"p and k must be >= 1, got p={p}, k={k}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside 0..world_size-1 (world_size={world_size})")
        if p % world_size:
            raise ValueError(f"p={p} identities per batch cannot be split over world_size={world_size} ranks")
        self.identities, self.labels = np.unique(np.asarray(pids, dtype=np.int64), return_inverse=True)
        if len(self.identities) < p:
            raise ValueError(f"{len(self.identities)} identities cannot fill a batch of p={p} identities")
        self.counts = np.bincount(self.labels)
        self.starts = np.cumsum(self.counts) - self.counts
        self.p, self.k, self.seed, self.rank, self.world_size = p, k, seed, rank, world_size
        self.epoch = 0

    @property
    def num_batches(self) -> int:
        return len(self.identities) // self.p

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_plan(self) -> np.ndarray:
        """``(num_batches, p, k)`` dataset indices of this epoch, identical on every rank."""
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.identities))[: self.num_batches * self.p]
        # dataset indices grouped by identity, in a random order within each identity
        grouped = np.lexsort((rng.random(len(self.labels)), self.labels))
        counts = self.counts[order, None]
        offsets = np.where(counts >= self.k, np.arange(self.k), rng.integers(0, counts, (len(order), self.k)))
        return grouped[self.starts[order, None] + offsets].reshape(self.num_batches, self.p, self.k)

    def __iter__(self) -> Iterator[int]:
        share = self.p // self.world_size
        mine = self.epoch_plan()[:, self.rank * share:(self.rank + 1) * share]
        return iter(mine.reshape(-1).tolist())

    def __len__(self) -> int:
        return self.num_batches * self.p // self.world_size * self.k


def sample_pk_batch(pids, p: int, k: int, seed: int = 0) -> np.ndarray:
    """Indices of a P x K batch: ``p`` random identities among those with at least two images (all of them if
    fewer), ``min(k, available)`` of each identity's images without replacement (no duplicate points),
    grouped by identity.

    The one batch of an analysis (the figures' test batches), not :class:`PKSampler`'s training epochs: that
    one repeats the images of an identity with fewer than ``k`` (a copy of the anchor at distance 0 would be its
    nearest positive) and needs ``p`` identities; a test batch takes what the test set has."""
    pids = np.asarray(pids)
    rng = np.random.default_rng(seed)
    ids, counts = np.unique(pids, return_counts=True)
    eligible = ids[counts >= 2]
    if len(eligible) < 2:
        raise ValueError("a batch needs at least two identities with two images each")
    chosen = rng.choice(eligible, size=min(p, len(eligible)), replace=False)
    parts = []
    for pid in chosen:
        members = np.flatnonzero(pids == pid)
        parts.append(np.sort(rng.choice(members, size=min(k, len(members)), replace=False)))
    return np.concatenate(parts)
