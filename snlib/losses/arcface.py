"""ArcFace (Deng et al., CVPR 2019), pytorch-metric-learning's, with its class weights."""
from __future__ import annotations

import math

from .base import check_dimensions
from .pml_base import PMLLoss, check_positive, pml_modules
from .registry import register_loss


@register_loss({"arcface": {}})
class ArcFaceLoss(PMLLoss):
    """ArcFace (Deng et al., CVPR 2019), PML's ``ArcFaceLoss``: softmax cross-entropy over ``num_classes`` learned
    class weights W (``pml.W``, feat_dim x num_classes, a parameter of this module) with the cosines of the
    L2-normalised features and weights as logits, the target's angle widened by ``arc_margin`` (radians)::

        logit_j = scale cos(theta_j)  (j != y),   logit_y = scale cos(theta_y + arc_margin)

    (``scale (cos(theta_y) - m sin(m))`` where theta_y + m > pi, PML's monotonic continuation). ``arc_margin = 0.5``
    (28.6 degrees), ``scale = 64``: the paper's. Labels are class indices 0..num_classes-1. (The margin is not
    called ``margin``: the triplet's ``triplet_margin`` reaches every term's ``margin``.)"""

    def __init__(self, num_classes: int, feat_dim: int, arc_margin: float = 0.5, scale: float = 64.0) -> None:
        check_dimensions("ArcFaceLoss", num_classes, feat_dim)
        check_positive(arc_margin=arc_margin, scale=scale)
        losses, _ = pml_modules()   # PML's margin is in degrees
        super().__init__(losses.ArcFaceLoss(num_classes, feat_dim, margin=math.degrees(arc_margin),
                                            scale=float(scale)), num_classes=num_classes, feat_dim=feat_dim)
        self.arc_margin, self.scale = float(arc_margin), float(scale)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, arc_margin={self.arc_margin}, "
                f"scale={self.scale}")
