"""Collapse, made visible: the batch geometry every training iteration logs, and the rule that reads a collapse
from a run's history.

A metric loss *collapses* when the network maps every image to nearly the same point: the loss then sits at its
trivial value (hard-margin triplet: the margin; soft margin: ln 2) and the test ranks at chance. The engine logs,
per iteration, on the features the loss sees (before a BNNeck; through an embedding head if any), for every loss:

* ``feature_norm``: ``mean_i |f_i|``;
* ``pair_dist``: ``mean_{i != j} D_ij``, Euclidean (the batch's spread);
* ``hard_gap``: ``mean_i (min_{y_j != y_i} D_ij - max_{y_j = y_i, j != i} D_ij)`` over the anchors with a positive
  and a negative: the batch-hard margin, hardest negative minus hardest positive (> 0: every anchor's hardest
  negative lies beyond its hardest positive).

Triplet terms log their own parts too (``snlib.losses.TripletLoss``): ``<term>/hardest_pos_dist``,
``<term>/hardest_neg_dist`` and ``<term>/active`` (share of anchors whose triplet is violated). Run records keep
all of these in their thinned history (:func:`is_diagnostic`).

**The rule** (:func:`collapse_evidence`): over the last :data:`TAIL_SHARE` of the logged iterations,

1. *no separation*: ``mean(hard_gap) / mean(pair_dist) <= GAP_TOLERANCE``; the hardest negative is, on the
   batch's own scale, no farther than the hardest positive (a ratio, so a loss that rescales its features,
   such as SN on L2-normalised ones, is judged alike);
2. *merged*: ``mean(pair_dist) <= SHRINK_RATIO * pair_dist`` of the first logged iteration: the batch's spread
   has fallen by three orders of magnitude, so the features have run together into one point (most often the
   origin), not merely shrunk in scale.

A run is collapsed when both hold. The spread carries the rule; the gap keeps it from flagging a loss whose spread
falls while it still separates the identities. Neither sign alone is a collapse, and a falling scale is not
either: before convergence the batch-hard gap sits near or below 0 in healthy runs (the farthest of K-1 positives
lies beyond the nearest of the other identities' images), and weight decay or a loss on normalised features may
shrink the raw features tenfold while the test ranks well. Both thresholds are in units of the batch's own
distances, so they do not depend on the backbone's feature scale.

Measured on the protocol-version-2 run records of 2026-12-06 (``results/runs/cpu``: cuhk03p1 validation identities at
2,000 iterations, EfficientNet-Lite0 on a trunk frozen before ``blocks.6`` at 128x64; the synthetic set at 600): the 8
runs whose features went to zero (the two batch-hard triplets at their highest rates; on cuhk03p1 they score exactly
what a constant embedding scores, validation rank-1 1.0 / mAP 2.5) kept at most 1.4e-4 of their starting spread; every
other run kept at least 1.1e-2 (the 0.3-margin triplet at 1e-3, validation rank-1 7.5), among them runs at their
recipe's best rate (SN at 1e-2 on cuhk03p1: 0.15 of its spread, gap ratio 0.03, validation rank-1 33).
``SHRINK_RATIO`` lies between the two groups, about tenfold from each. (The limit was 0.25 until these records showed
that it flagged such healthy runs; no record changed, the tables are rebuilt from them.) This rule adds to the
protocol's other one, a run that ends below the untrained network (``snlib.study.protocol.collapsed``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .losses import euclidean_distance_matrix

#: History columns the engine adds every iteration (module docstring).
GEOMETRY_COLUMNS = ("feature_norm", "pair_dist", "hard_gap")
#: Parts of a triplet term's ``last`` that show a collapse (history columns ``<term>/<part>``).
TRIPLET_PARTS = ("hardest_pos_dist", "hardest_neg_dist", "active")
#: The last share of the logged iterations the rule reads (after the schedule's decay has started at 76/150, so
#: the state the run ends in, not its warm-up or its transient).
TAIL_SHARE = 0.2
#: Largest ``mean(hard_gap) / mean(pair_dist)`` over the tail that counts as "no separation": 5 % of the batch's
#: mean distance, a margin for noise around 0. A network that shrinks its features while separating them keeps
#: its hardest negatives beyond its hardest positives; a collapsed one keeps the gap at or below 0 (what is left
#: of its differences is not identity).
GAP_TOLERANCE = 0.05
#: Largest ratio of the tail's mean ``pair_dist`` to the first logged one that counts as "merged": the spread
#: fell a thousandfold (measured: collapsed runs at most 1.4e-4, every other run at least 1.1e-2; module docstring).
SHRINK_RATIO = 1e-3


@torch.no_grad()
def batch_geometry(features: Tensor, labels: Tensor) -> dict[str, float]:
    """``feature_norm``, ``pair_dist`` and ``hard_gap`` of one batch (module docstring) as floats; NaN where
    undefined (``pair_dist`` of a single image; ``hard_gap`` when no anchor has both a positive and a negative)."""
    features = features.detach().float()
    labels = torch.as_tensor(labels, device=features.device)
    n = features.shape[0]
    dist = euclidean_distance_matrix(features)
    same = labels[:, None] == labels[None, :]
    other = torch.eye(n, dtype=torch.bool, device=features.device).logical_not_()
    positive = same & other
    rows = positive.any(dim=1) & (~same).any(dim=1)
    hardest_pos = dist.masked_fill(~positive, -math.inf).max(dim=1).values
    hardest_neg = dist.masked_fill(same, math.inf).min(dim=1).values
    nan = torch.tensor(math.nan, device=features.device)
    values = torch.stack([features.norm(dim=1).mean(),
                          dist[other].mean() if n > 1 else nan,
                          (hardest_neg - hardest_pos)[rows].mean() if rows.any() else nan])
    return dict(zip(GEOMETRY_COLUMNS, values.cpu().double().tolist()))


def is_diagnostic(column: str) -> bool:
    """A history column that shows a collapse: the engine's geometry or a triplet term's part."""
    term, slash, part = column.rpartition("/")
    return column in GEOMETRY_COLUMNS or bool(slash and term and part in TRIPLET_PARTS)


def collapse_evidence(history: list[dict], tail_share: float = TAIL_SHARE) -> dict | None:
    """What the rule reads from ``history`` (rows with ``iteration``, ``pair_dist``, ``hard_gap``; a record's
    thinned history or a run's full one): ``gap_ratio`` (tail mean ``hard_gap`` / tail mean ``pair_dist``),
    ``shrink`` (tail mean ``pair_dist`` / the first logged one), ``tail_from`` (first iteration of the tail) and
    ``collapsed`` (module docstring). None when the history holds no diagnostics (records written before them)."""
    rows = [r for r in history if _finite(r.get("pair_dist")) and _finite(r.get("hard_gap"))]
    if not rows:
        return None
    last = rows[-1]["iteration"]
    tail = [r for r in rows if r["iteration"] > (1 - tail_share) * last] or rows[-1:]
    spread = sum(r["pair_dist"] for r in tail) / len(tail)
    gap = sum(r["hard_gap"] for r in tail) / len(tail)
    start = rows[0]["pair_dist"]
    gap_ratio = gap / spread if spread > 0 else 0.0        # every feature equal: no separation
    shrink = spread / start if start > 0 else math.inf     # a start without spread cannot shrink
    return {"gap_ratio": gap_ratio, "shrink": shrink, "tail_from": tail[0]["iteration"],
            "collapsed": gap_ratio <= GAP_TOLERANCE and shrink <= SHRINK_RATIO}


def history_collapsed(history: list[dict]) -> bool:
    """The rule on a history (:func:`collapse_evidence`); False when the history holds no diagnostics."""
    evidence = collapse_evidence(history)
    return bool(evidence and evidence["collapsed"])


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
