"""Batch-hard triplet loss (Hermans et al. 2017), hinge or soft margin."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LoggedLoss, check_batch, check_number, distances_and_masks, full_precision, zero_loss
from .registry import register_loss


@register_loss({"triplet": {"soft": False}, "triplet-soft": {"soft": True}},
               config_fields={"triplet_margin": "margin"})
class TripletLoss(LoggedLoss):
    """Batch-hard triplet loss (Hermans et al. 2017, "In defense of the triplet loss").

    For each anchor: hardest positive ``dp = max_{y_j = y_i, j != i} D_ij``, hardest negative
    ``dn = min_{y_j != y_i} D_ij``; loss ``relu(dp - dn + margin)``, or ``softplus(dp - dn)`` with ``soft=True``
    (soft margin: ``margin`` is not used). Mean over the anchors that have both a positive and a negative (zero,
    connected to ``features``, when none has). Euclidean distances of the raw features (``normalize=False``, as
    TriNet) or of L2-normalised ones. ``last``: ``loss``, ``hardest_pos_dist``, ``hardest_neg_dist``, ``active``
    (share of counted anchors with a non-zero hinge), ``anchors``.
    """

    def __init__(self, margin: float = 0.3, soft: bool = False, normalize: bool = False) -> None:
        super().__init__()
        check_number("margin", margin, 0.0, strict=False)
        self.margin, self.soft, self.normalize = float(margin), bool(soft), normalize

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft={self.soft}, normalize={self.normalize}"

    @full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = check_batch(features, labels)
        dist, same, diff = distances_and_masks(features, labels, self.normalize)
        rows = (same.any(dim=1) & diff.any(dim=1)).nonzero().flatten()
        if rows.numel() == 0:
            loss = zero_loss(features)
            self._record(loss=loss, hardest_pos_dist=math.nan, hardest_neg_dist=math.nan, active=0.0, anchors=0)
            return loss
        d = dist[rows]
        hardest_pos = d.masked_fill(~same[rows], -math.inf).max(dim=1).values
        hardest_neg = d.masked_fill(~diff[rows], math.inf).min(dim=1).values
        gap = hardest_pos - hardest_neg
        per_anchor = F.softplus(gap) if self.soft else F.relu(gap + self.margin)
        loss = per_anchor.mean()
        with torch.no_grad():
            active = (gap > 0 if self.soft else gap + self.margin > 0).float().mean()
            self._record(loss=loss, hardest_pos_dist=hardest_pos.mean(), hardest_neg_dist=hardest_neg.mean(),
                         active=active, anchors=rows.numel())
        return loss
