"""The composition of the support sets (|S+|, |S-|, "no positive in the k-NN"), read from
:class:`~snlib.losses.SupportNeighborLoss` ``.last``: on random P x K test batches and over training."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..losses import SupportNeighborLoss
from ..data import sample_pk_batch
from ..presets import TrainConfig

#: The support-set composition the SN loss logs (``SupportNeighborLoss.last``) and the figures plot.
COMPOSITION = ("knn_without_positive", "support_pos", "support_neg")


def support_composition(features, pids, k: int = 10, p: int = 16, batch_k: int = 4, num_batches: int = 20,
                        seed: int = 0) -> dict[str, float]:
    """Mean composition of the support sets over ``num_batches`` random P x K batches of ``features``: the
    share of anchors whose k-NN holds no positive, and the mean number of positives / negatives in the k-NN
    (read from :class:`~snlib.losses.SupportNeighborLoss` ``.last``, as the training history is)."""
    loss = SupportNeighborLoss(k=k)
    features = torch.as_tensor(features)
    parts = []
    for b in range(num_batches):
        index = sample_pk_batch(pids, p, batch_k, seed=seed * 100_003 + b)
        loss(features[torch.as_tensor(index)], torch.as_tensor(np.asarray(pids)[index]))
        parts.append({key: loss.last[key] for key in COMPOSITION})
    return pd.DataFrame(parts).mean().to_dict()


def composition_history(history: pd.DataFrame) -> pd.DataFrame:
    """The support-set composition logged at every training iteration (``<term>/knn_without_positive``,
    ``/support_pos``, ``/support_neg`` of the run's SN term) as columns ``iteration``, ``epoch`` and those three
    names. Raises ``ValueError`` when the run's loss has no SN term."""
    found = {}
    for key in COMPOSITION:
        columns = [c for c in history.columns if c == key or c.endswith(f"/{key}")]
        if not columns:
            raise ValueError(f"the history has no {key!r} column (columns: {list(history.columns)}): only runs "
                             "whose loss has an SN term log the support-set composition")
        found[key] = history[columns[0]]
    return pd.DataFrame({"iteration": history["iteration"], "epoch": history["epoch"], **found})


def pool_composition(study, networks: dict, config: TrainConfig, num_batches: int) -> pd.DataFrame:
    """:func:`support_composition` of each network's test pool (``networks``: name -> run) with ``config``'s
    k, P and K: one row per network (the index), one column per :data:`COMPOSITION` entry."""
    rows = {}
    for name, run in networks.items():
        pool = study.pool(run)
        rows[name] = support_composition(pool.features, pool.pids, k=config.sn_k, p=config.p, batch_k=config.k,
                                         num_batches=num_batches)
    return pd.DataFrame(rows).T
