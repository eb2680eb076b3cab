"""Circle loss (Sun et al., CVPR 2020), pytorch-metric-learning's."""
from __future__ import annotations

from .pml_base import PMLLoss, check_positive, pml_modules
from .registry import register_loss


@register_loss({"circle": {}})
class CircleLoss(PMLLoss):
    """Circle loss with pair-wise labels (Sun et al., CVPR 2020), PML's ``CircleLoss``. On the cosine similarities
    of the batch (the features L2-normalised), per anchor over its positives s_p and negatives s_n::

        softplus( logsumexp_n gamma a_n (s_n - m)  +  logsumexp_p -gamma a_p (s_p - 1 + m) ),
        a_p = relu(1 + m - s_p),  a_n = relu(s_n + m)   (weights, no gradient)

    averaged over the anchors that have both. ``m = 0.25, gamma = 128``: the paper's values for person re-ID (PML's
    docstring quotes them: 0.25 / 256 for faces, 0.4 / 80, PML's defaults, for fine-grained retrieval)."""

    def __init__(self, m: float = 0.25, gamma: float = 128.0) -> None:
        check_positive(m=m, gamma=gamma)
        losses, _ = pml_modules()
        super().__init__(losses.CircleLoss(m=float(m), gamma=float(gamma)))
        self.m, self.gamma = float(m), float(gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"
