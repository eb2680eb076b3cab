"""Contrastive loss over all pairs of a batch (Hadsell, Chopra, LeCun 2006)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LoggedLoss, check_batch, check_number, distances_and_masks, full_precision, masked_mean
from .registry import register_loss


@register_loss({"contrastive": {}})
class ContrastiveLoss(LoggedLoss):
    """Contrastive (verification) loss over all pairs of the batch (Hadsell, Chopra, LeCun 2006).

    ``L = 1/2 mean_{pos pairs} D_ij^2 + 1/2 mean_{neg pairs} relu(margin - D_ij)^2``: positives are pulled to
    distance 0, negatives pushed beyond ``margin``. The two means are taken separately so that the few positive
    pairs of a P x K batch are not swamped by the negatives; a mean over no pair counts 0. Distances of
    L2-normalised features by default (D in [0, 2]). ``last``: ``loss``, ``pos_term``, ``neg_term``, ``pos_dist``,
    ``neg_dist``, ``active_neg`` (share of negative pairs inside the margin).
    """

    def __init__(self, margin: float = 1.0, normalize: bool = True) -> None:
        super().__init__()
        check_number("margin", margin, 0.0, strict=True)
        self.margin, self.normalize = float(margin), normalize

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}"

    @full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = check_batch(features, labels)
        dist, same, diff = distances_and_masks(features, labels, self.normalize)
        pos_term = 0.5 * (dist.pow(2) * same).sum() / same.sum().clamp(min=1)
        hinge = F.relu(self.margin - dist)
        neg_term = 0.5 * (hinge.pow(2) * diff).sum() / diff.sum().clamp(min=1)
        loss = pos_term + neg_term
        with torch.no_grad():
            self._record(loss=loss, pos_term=pos_term, neg_term=neg_term, pos_dist=masked_mean(dist, same),
                         neg_dist=masked_mean(dist, diff), active_neg=masked_mean((hinge > 0).float(), diff))
        return loss
