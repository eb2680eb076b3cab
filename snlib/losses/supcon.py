"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), pytorch-metric-learning's."""
from __future__ import annotations

from .pml_base import PMLLoss, check_positive, pml_modules
from .registry import register_loss


@register_loss({"supcon": {}})
class SupConLoss(PMLLoss):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020; their L_out), PML's ``SupConLoss``. Cosine
    similarities S (the features L2-normalised); per anchor i with positives P(i)::

        -1/|P(i)| sum_{p in P(i)} log( exp(S_ip / t) / sum_{a != i} exp(S_ia / t) )

    averaged over the anchors that have a positive. ``temperature`` t = 0.1 (the paper's; PML's default)."""

    def __init__(self, temperature: float = 0.1) -> None:
        check_positive(temperature=temperature)
        losses, _ = pml_modules()
        super().__init__(losses.SupConLoss(temperature=float(temperature)))
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"
