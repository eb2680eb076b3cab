"""Losses: the Support Neighbor (SN) loss, the baselines the paper compares against, and the losses that came
after it (pytorch-metric-learning's, built only when used: the ``pml`` extra).

Every loss is an ``nn.Module`` called as ``loss_fn(features, labels)`` (``CrossEntropyLoss`` takes classifier
logits instead of features) and returns a scalar float32 tensor (float64 for float64 inputs). The work is done in
float32 with autocast disabled, whatever the input precision, and on the inputs' device. After each call
``loss_fn.last`` holds the parts of the last batch as plain floats, for logging.

Distances are Euclidean (not squared), from one matrix product with near-duplicate pairs recomputed exactly
(``euclidean_distance_matrix``); the square root is taken of ``max(D^2, 1e-12)``, so gradients stay finite when two
features coincide (as in torchreid and fast-reid). The later losses (circle, multi-similarity, supervised
contrastive, ArcFace, CosFace) are PML's own loss objects, called on the features; they rank by cosine similarity.

``build_loss("sn+0.5*ce", num_classes=...)`` combines weighted terms by name into a :class:`CombinedLoss`; the
names are registered with the class (``@register_loss``), together with the ``TrainConfig`` fields each term
takes, so that ``loss_from_config(config, ...)`` builds a run's loss. Adding a loss: its class and one
``@register_loss``.
"""
from __future__ import annotations

# one module per loss; importing them registers their names, in this order (``LOSS_NAMES``)
from .base import euclidean_distance_matrix
from .registry import LOSSES, LossTerm, register_loss
from .support_neighbor import (SQUEEZE_READINGS, SupportNeighborLoss, SupportSets, support_neighbor_loss_reference,
                               support_neighbors)
from .triplet import TripletLoss
from .contrastive import ContrastiveLoss
from .center import CenterLoss
from .cross_entropy import CrossEntropyLoss
from .circle import CircleLoss
from .multi_similarity import MultiSimilarityLoss
from .supcon import SupConLoss
from .arcface import ArcFaceLoss
from .cosface import CosFaceLoss
from .combined import CombinedLoss, build_loss, config_options, loss_arguments, loss_from_config

#: Term names accepted by ``build_loss`` (those of snlib; a loss registered later is accepted too).
LOSS_NAMES = tuple(LOSSES)

__all__ = [
    "SQUEEZE_READINGS", "LOSS_NAMES", "SupportSets", "support_neighbors", "SupportNeighborLoss", "TripletLoss",
    "ContrastiveLoss", "CenterLoss", "CrossEntropyLoss", "CircleLoss", "MultiSimilarityLoss", "SupConLoss",
    "ArcFaceLoss", "CosFaceLoss", "CombinedLoss", "build_loss", "LOSSES", "LossTerm",
    "register_loss", "config_options", "loss_arguments", "loss_from_config", "euclidean_distance_matrix",
    "support_neighbor_loss_reference",
]
