"""How the tables and figures name and colour things: readable loss and metric names, the colours of the sets.

Colours: positives (same identity as the anchor / correct match) green, negatives red, the fallback positive
(nearest positive outside the k-NN) orange, the anchor / query blue. Captions also carry "+" / "-" so the
figures do not rely on colour alone.
"""
from __future__ import annotations

#: Human-readable names of the loss specs the notebooks compare.
LOSS_LABELS = {
    "sn": "SN loss (released squeeze)",
    "sn-paper": "SN loss (paper squeeze)",
    "sn-neighbors": "SN loss (neighbours squeeze)",
    "pair": "SN loss (pair squeeze)",
    "sep": "separation term only",
    "sn+ce": "SN + softmax",
    "triplet": "batch-hard triplet, soft margin (TriNet)",
    "triplet-0.3": "batch-hard triplet, margin 0.3",
    "bot": "Bag of Tricks (triplet + softmax, BNNeck)",
    "triplet+ce": "triplet + softmax",
    "contrastive": "contrastive (verification)",
    "ce": "softmax, label smoothing, BNNeck",
    "circle": "Circle loss (pair-wise)",
    "ms": "multi-similarity (with its miner)",
    "supcon": "supervised contrastive",
    "arcface": "ArcFace",
    "cosface": "CosFace",
}

#: Axis labels of the metric columns (percent).
METRIC_LABELS = {"rank1": "rank-1 (%)", "rank5": "rank-5 (%)", "rank10": "rank-10 (%)", "mAP": "mAP (%)",
                 "mINP": "mINP (%)", "train_loss": "training loss", "train_loss_rel": "training loss / epoch 1"}

POSITIVE, NEGATIVE, FALLBACK, ANCHOR = "#1a9850", "#d73027", "#f28e2b", "#2c7bb6"


def loss_label(value):
    """The readable name of a loss spec (``LOSS_LABELS``); any other value unchanged."""
    return LOSS_LABELS.get(value, value)


def metric_label(metric: str) -> str:
    """The axis label of a metric column (``METRIC_LABELS``), else the column name."""
    return METRIC_LABELS.get(metric, metric)
