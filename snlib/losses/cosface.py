"""CosFace (Wang et al., CVPR 2018), pytorch-metric-learning's, with its class weights."""
from __future__ import annotations

from .base import check_dimensions
from .pml_base import PMLLoss, check_positive, pml_modules
from .registry import register_loss


@register_loss({"cosface": {}})
class CosFaceLoss(PMLLoss):
    """CosFace (Wang et al., CVPR 2018), PML's ``CosFaceLoss``: as :class:`ArcFaceLoss` with the margin subtracted
    from the target's cosine: ``logit_y = scale (cos(theta_y) - cos_margin)``, ``logit_j = scale cos(theta_j)``.
    ``cos_margin = 0.35``, ``scale = 64``: the paper's."""

    def __init__(self, num_classes: int, feat_dim: int, cos_margin: float = 0.35, scale: float = 64.0) -> None:
        check_dimensions("CosFaceLoss", num_classes, feat_dim)
        check_positive(cos_margin=cos_margin, scale=scale)
        losses, _ = pml_modules()
        super().__init__(losses.CosFaceLoss(num_classes, feat_dim, margin=float(cos_margin), scale=float(scale)),
                         num_classes=num_classes, feat_dim=feat_dim)
        self.cos_margin, self.scale = float(cos_margin), float(scale)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, cos_margin={self.cos_margin}, "
                f"scale={self.scale}")
