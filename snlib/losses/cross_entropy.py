"""Softmax cross-entropy on classifier logits, with label smoothing (Szegedy et al. 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import LoggedLoss, check_batch, check_class_labels, check_number, full_precision
from .registry import register_loss


@register_loss({"ce": {}}, config_fields={"label_smoothing": "label_smoothing"})
class CrossEntropyLoss(LoggedLoss):
    """Softmax cross-entropy on classifier logits, with optional label smoothing (Szegedy et al. 2016):
    the target is ``(1 - eps) * onehot(y) + eps / C``. ``forward(logits, labels)``, labels 0..C-1.
    ``last``: ``loss``, ``accuracy`` (top-1 share of the batch)."""

    takes_logits = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        check_number("label_smoothing", label_smoothing, 0.0, strict=False)
        if label_smoothing >= 1.0:
            raise ValueError(f"label_smoothing must be < 1; got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    @full_precision
    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits, labels = check_batch(logits, labels, what="logits")
        check_class_labels(labels, logits.shape[1], f"CrossEntropyLoss (logits of {logits.shape[1]} classes)")
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            self._record(loss=loss, accuracy=(logits.argmax(dim=1) == labels).float().mean())
        return loss
