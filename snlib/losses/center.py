"""Center loss (Wen et al. 2016) with learnable class centres."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LoggedLoss, check_batch, check_class_labels, check_dimensions, full_precision
from .registry import register_loss


@register_loss({"center": {}})
class CenterLoss(LoggedLoss):
    """Center loss (Wen et al. 2016): ``L = 1/2 mean_i |f_i - c_{y_i}|^2`` with learnable centres ``c``.

    ``centers`` is an ``nn.Parameter`` (num_classes, feat_dim), initialised N(0, 1); optimise it with the model
    (``CombinedLoss.parameters()`` includes it). Labels must be class indices 0..num_classes-1.
    ``last``: ``loss``, ``center_dist`` (mean |f_i - c_{y_i}|).
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        check_dimensions("CenterLoss", num_classes, feat_dim)
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"

    @full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = check_batch(features, labels)
        if features.shape[1] != self.feat_dim:
            raise ValueError(f"CenterLoss was built for feat_dim={self.feat_dim} but features have "
                             f"{features.shape[1]} dimensions")
        check_class_labels(labels, self.num_classes, "CenterLoss")
        sq_dist = (features - self.centers[labels].to(features.dtype)).pow(2).sum(dim=1)
        loss = 0.5 * sq_dist.mean()
        with torch.no_grad():
            self._record(loss=loss, center_dist=sq_dist.sqrt().mean())
        return loss
