"""Held-out identities: the validation split of a training set, and nested shares of the training identities.

Hyper-parameters are chosen on the validation split only (the test split gives the final numbers). The split
depends on the data set alone, never on a run's seed: the same identities are held out for every run.

* ``validation_split(dataset)``: ``validation_ids(C)`` of the C training identities, drawn by a fixed generator
  (``VALIDATION_SEED``) from the sorted identities, become the validation query / gallery: for each held-out
  identity seen by at least two cameras, one image per camera (a fixed draw) is a query, every other image a
  gallery image; an identity seen by one camera only goes to the gallery (it cannot be a query under the
  Market-1501 protocol, which ignores the gallery images of the query's own identity and camera). The other
  identities are the training set. Scored with the Market-1501 protocol like the test split.
* ``train_share(dataset, fraction)``: the first ``round(fraction * C)`` identities of a fixed permutation of the
  training identities (at least 2): nested, a quarter lies inside the half.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict

import numpy as np

from .base import ReIDDataset, Sample

#: The generator of the held-out identities (fixed: the split belongs to the data set, not to a run).
VALIDATION_SEED = 2018
#: At most this many validation identities, and at most ``VALIDATION_SHARE`` of the training identities
#: (the synthetic set: 30 of 150; Market-1501-sized sets: 100).
VALIDATION_IDS = 100
VALIDATION_SHARE = 0.2
#: The generator of the nested training shares.
SHARE_SEED = 0


def validation_ids(num_train_ids: int) -> int:
    """How many of ``num_train_ids`` training identities the validation split holds out."""
    return min(VALIDATION_IDS, int(VALIDATION_SHARE * num_train_ids))


def validation_split(dataset: ReIDDataset) -> ReIDDataset:
    """``dataset`` with its training identities split (module docstring): ``train`` the rest, ``query`` /
    ``gallery`` the held-out identities; ``info["split"] = "val"``."""
    pids = sorted({s.pid for s in dataset.train})
    count = validation_ids(len(pids))
    if count < 1:
        raise ValueError(f"{dataset.name}: {len(pids)} training identities are too few to hold any out for "
                         f"validation (it takes {VALIDATION_SHARE:.0%} of them)")
    rng = np.random.default_rng(VALIDATION_SEED)
    held = {int(p) for p in rng.choice(pids, size=count, replace=False)}
    by_group: dict[tuple[int, int], list[Sample]] = defaultdict(list)
    for sample in dataset.train:
        if sample.pid in held:
            by_group[sample.pid, sample.camid].append(sample)
    query, gallery = [], []
    cameras = defaultdict(int)
    for pid, _ in by_group:
        cameras[pid] += 1
    for (pid, camid), samples in sorted(by_group.items()):
        if cameras[pid] < 2:
            gallery.extend(samples)
            continue
        samples = sorted(samples, key=lambda s: s.path)   # the draw does not depend on the listing order
        pick = int(rng.integers(len(samples)))
        query.append(samples[pick])
        gallery.extend(s for i, s in enumerate(samples) if i != pick)
    train = [s for s in dataset.train if s.pid not in held]
    return dataclasses.replace(dataset, train=train, query=query, gallery=gallery, multi_query=None,
                               extra_gallery=None, junk_pids=(), distractor_pids=(),
                               info={**dataset.info, "split": "val", "validation_ids": count})


def train_share(dataset: ReIDDataset, fraction: float) -> ReIDDataset:
    """``dataset`` training on the nested ``fraction`` of its training identities (module docstring)."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1]")
    if fraction == 1:
        return dataset
    pids = sorted({s.pid for s in dataset.train})
    order = np.random.default_rng(SHARE_SEED).permutation(pids)
    kept = {int(p) for p in order[:max(2, round(fraction * len(pids)))]}
    return dataclasses.replace(dataset, train=[s for s in dataset.train if s.pid in kept],
                               info={**dataset.info, "train_fraction": fraction})
