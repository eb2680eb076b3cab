"""Test-set pools and batches: the query + gallery images that have an identity, with one network's features,
P x K batches of them, and the SN run beside the same network at epoch 0 on one such batch (notebooks 07, 08, 11).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data import ReIDDataset, Sample, sample_pk_batch
from ..runs import RunResult
from .geometry import AnchorView, anchor_view
from .features import query_gallery

#: The two networks of :func:`before_after`.
BEFORE, AFTER = "epoch 0 (untrained)", "after SN training"


@dataclass
class Pool:
    """Test images with an identity (query + gallery, junk and distractors left out), and their features."""
    features: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    samples: list[Sample]

    def subset(self, index) -> "Pool":
        index = np.asarray(index)
        return Pool(self.features[torch.as_tensor(index)], self.pids[index], self.camids[index],
                    [self.samples[i] for i in index])


def identity_pool(features: dict, data: ReIDDataset) -> Pool:
    """Query + gallery of ``Study.features(run)`` (same order as ``data.query`` / ``data.gallery``) without the
    junk and distractor images, which have no identity to cluster or to find."""
    qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(features)
    samples = list(data.query) + list(data.gallery)
    if len(samples) != len(qf) + len(gf):
        raise ValueError(f"{len(qf)} + {len(gf)} features for {len(samples)} test images: the features belong to "
                         "another version of the data set; delete the run's features_*.pt to extract them again")
    pids, camids = np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids])
    keep = ~np.isin(pids, list(data.junk_pids) + list(data.distractor_pids))
    return Pool(torch.cat([qf, gf]), pids, camids, samples).subset(np.flatnonzero(keep))


@dataclass
class BeforeAfter:
    """A network before (``start``, epoch 0) and after SN training (``run``): their test pools (same images,
    :data:`BEFORE` first) and one P x K batch of the pool (``batch``: indices into it)."""
    run: RunResult
    start: RunResult
    pools: dict[str, Pool]
    batch: np.ndarray

    @property
    def sn(self) -> dict[str, float]:
        """The run's SN parameters as :func:`~snlib.study.geometry.anchor_view` takes them (k, alpha, lam)."""
        config = self.run.config
        return {"k": config.sn_k, "alpha": config.sn_alpha, "lam": config.sn_lambda}

    @property
    def batches(self) -> dict[str, Pool]:
        return {name: pool.subset(self.batch) for name, pool in self.pools.items()}

    def first_anchors(self, count: int) -> np.ndarray:
        """The first image of each of the batch's first ``count`` identities (positions in the batch)."""
        return np.sort(np.unique(self.pools[BEFORE].pids[self.batch], return_index=True)[1])[:count]

    def views(self, anchors) -> dict[str, list[AnchorView]]:
        """Per network, the :class:`~snlib.study.geometry.AnchorView` of each of ``anchors`` in the batch."""
        return {name: [anchor_view(b.features, b.pids, a, **self.sn) for a in anchors]
                for name, b in self.batches.items()}


def before_after(study, loss: str = "sn", batch_seed: int = 0) -> BeforeAfter:
    """``study``'s run of ``loss`` (seed 0, shared with notebook 01) and the same network at epoch 0, on a P x K
    test batch (the run's P and K; :func:`sample_pk_batch` with ``batch_seed``)."""
    run, start = study.run(loss), study.initial_run(loss)
    pools = {BEFORE: study.pool(start), AFTER: study.pool(run)}
    batch = sample_pk_batch(pools[AFTER].pids, run.config.p, run.config.k, seed=batch_seed)
    return BeforeAfter(run=run, start=start, pools=pools, batch=batch)
