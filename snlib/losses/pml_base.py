"""The losses after SN are pytorch-metric-learning's own objects (the ``pml`` extra), imported when one is built:
:class:`PMLLoss` calls one (and its miner) on a batch of features under snlib's conventions (checked inputs,
float32 with autocast off, ``last``)."""
from __future__ import annotations

import torch
from torch import Tensor

from .base import LoggedLoss, check_batch, check_class_labels, check_number, full_precision


def pml_modules():
    """pytorch-metric-learning's ``losses`` and ``miners`` modules, imported when one of these losses is built."""
    try:
        from pytorch_metric_learning import losses, miners
    except ImportError:  # pragma: no cover - the test environment has the extra
        raise ImportError("the losses circle, ms, supcon, arcface and cosface are pytorch-metric-learning's: "
                          "pip install 'snlib[pml]'") from None
    return losses, miners


class PMLLoss(LoggedLoss):
    """A pytorch-metric-learning loss ``pml`` (and a miner, or None) called on a batch of features:
    ``pml(features, labels, miner(features, labels))``, in float32 (float64 for float64 features) with autocast off.
    Its own parameters (the class weights of the margin softmaxes) are this module's: ``parameters()`` yields them,
    so the engine's optimiser trains them with the model. ``last``: ``loss``; with a miner also ``mined_pos`` and
    ``mined_neg``, the pairs it kept."""

    def __init__(self, pml, miner=None, num_classes: int | None = None, feat_dim: int | None = None) -> None:
        super().__init__()
        self.pml, self.miner = pml, miner
        self.num_classes, self.feat_dim = num_classes, feat_dim

    @full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = check_batch(features, labels)
        if self.num_classes is not None:
            if features.shape[1] != self.feat_dim:
                raise ValueError(f"{type(self).__name__} was built for feat_dim={self.feat_dim} but features have "
                                 f"{features.shape[1]} dimensions")
            check_class_labels(labels, self.num_classes, type(self).__name__)
        pairs = self.miner(features, labels) if self.miner is not None else None
        loss = self.pml(features, labels, pairs)
        with torch.no_grad():
            mined = {} if pairs is None else {"mined_pos": len(pairs[0]), "mined_neg": len(pairs[2])}
            self._record(loss=loss, **mined)
        return loss


def check_positive(**values) -> None:
    """Raise a ValueError unless every value is a finite number > 0 (named by its keyword)."""
    for name, value in values.items():
        check_number(name, value, 0.0, strict=True)
