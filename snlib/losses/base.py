"""What every loss of snlib shares: float32 with autocast off, checked inputs, the Euclidean distance matrix of a
batch (:func:`euclidean_distance_matrix`, its convention in its docstring) and its identity masks, and
:class:`LoggedLoss` (``last``: the parts of the last batch as floats). Internal to ``snlib.losses``, which exports
:func:`euclidean_distance_matrix`.
"""
from __future__ import annotations

import contextlib
import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Squared distances are clamped to this before the square root (finite gradients at distance 0).
_SQ_DIST_EPS = 1e-12
#: Pairs whose squared distance is below this share of |f_i|^2 + |f_j|^2 are recomputed from the difference.
_REFINE_BELOW = 1e-3


def autocast_off(x):
    """Context that disables autocast on ``x``'s device (the losses compute in float32)."""
    device_type = x.device.type if isinstance(x, Tensor) else "cpu"
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def full_precision(forward):
    """Run ``forward(self, x, ...)`` with autocast disabled on ``x``'s device."""
    @functools.wraps(forward)
    def wrapper(self, x, *args, **kwargs):
        with autocast_off(x):
            return forward(self, x, *args, **kwargs)
    return wrapper


def check_batch(x, labels, what: str = "features") -> tuple[Tensor, Tensor]:
    """Validate a (N, D) float batch and its N integer labels; return them as float32 (or float64) and int64.

    Raises a ``TypeError`` / ``ValueError`` naming what is wrong and how to fix it.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor of shape (batch, dim); got {type(x).__name__}")
    if x.dim() != 2:
        hint = " (pool the feature map to a vector per image first)" if x.dim() == 4 else ""
        raise ValueError(f"{what} must be a 2-D tensor (batch, dim); got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{what} must be a floating-point tensor; got {x.dtype}")
    labels = torch.as_tensor(labels, device=x.device)
    if labels.dim() != 1:
        raise ValueError(f"labels must be a 1-D tensor with one identity per row of {what}; "
                         f"got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be integer identity ids (torch.long); got {labels.dtype}")
    if labels.numel() != x.shape[0]:
        raise ValueError(f"{what} has {x.shape[0]} rows but labels has {labels.numel()} entries: "
                         "pass exactly one label per row")
    if x.shape[0] == 0:
        raise ValueError(f"empty batch: {what} has no rows")
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).any(dim=1).nonzero().flatten()
        raise ValueError(f"{what} contain NaN or inf in {bad.numel()} of {x.shape[0]} rows "
                         f"(first: {bad[:5].tolist()}): the model diverged or an input is corrupt; "
                         "check the data and lower the learning rate")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return x.to(dtype), labels.long()


def check_number(name: str, value, low: float, strict: bool, what: str = "") -> None:
    """Raise a ValueError unless ``value`` is a finite real number ``> low`` (strict) or ``>= low``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name}{what} must be a finite number {bound}; got {value!r}")


def check_class_labels(labels: Tensor, num_classes: int, what: str) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} needs class indices in [0, {num_classes}); got labels in "
                         f"[{labels.min().item()}, {labels.max().item()}]: relabel the training identities "
                         "0..C-1 (snlib.data does) and set num_classes to C")


def check_dimensions(what: str, num_classes, feat_dim) -> None:
    """Raise a ValueError unless ``num_classes`` and ``feat_dim`` are positive integers (a loss with class weights)."""
    for name, value in (("num_classes", num_classes), ("feat_dim", feat_dim)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} needs a positive integer {name}; got {value!r}")


def euclidean_distance_matrix(features: Tensor, normalize: bool = False) -> Tensor:
    """(N, N) Euclidean distances, optionally of the L2-normalised features; differentiable.

    ``D_ij = sqrt(max(s_ij, 1e-12))`` with ``s_ij = |f_i|^2 + |f_j|^2 - 2 f_i.f_j`` (one matrix product). That
    identity loses precision when f_i and f_j are close (relative error ~ eps * (|f_i|^2 + |f_j|^2) / s_ij), so
    the pairs with ``s_ij < 1e-3 (|f_i|^2 + |f_j|^2)`` (D < 0.045 for unit features: near-duplicates, such as an
    image sampled twice in a batch) are recomputed from the differences (``torch.cdist`` without the matrix
    product, over the m samples involved: O(m^2 dim) more work). Entries are at least 1e-6 (the clamp; the
    diagonal too), where the gradient is zero.
    """
    if normalize:
        features = F.normalize(features, dim=1)
    sq_norms = features.pow(2).sum(dim=1)
    scale = sq_norms[:, None] + sq_norms[None, :]
    sq_dist = torch.addmm(scale, features, features.T, alpha=-2.0)
    sq_dist.fill_diagonal_(0.0)
    dist = sq_dist.clamp(min=_SQ_DIST_EPS).sqrt()
    close = sq_dist.detach() < _REFINE_BELOW * scale
    close.fill_diagonal_(False)
    if close.any():
        involved = close.any(dim=1).nonzero().flatten()
        position = torch.full((len(features),), -1, dtype=torch.long, device=features.device)
        position[involved] = torch.arange(len(involved), device=features.device)
        exact = torch.cdist(features[involved], features[involved], compute_mode="donot_use_mm_for_euclid_dist")
        rows, cols = close.nonzero(as_tuple=True)
        dist = dist.index_put((rows, cols), exact[position[rows], position[cols]].clamp(min=_SQ_DIST_EPS ** 0.5))
    return dist


def distances_and_masks(features: Tensor, labels: Tensor, normalize: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Distance matrix, same-identity mask (diagonal excluded) and different-identity mask of a batch."""
    return (euclidean_distance_matrix(features, normalize=normalize), *identity_masks(labels))


def identity_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean (N, N) masks: same identity (diagonal excluded) and different identity."""
    same = labels[:, None] == labels[None, :]
    diff = ~same
    same.fill_diagonal_(False)
    return same, diff


def zero_loss(x: Tensor) -> Tensor:
    """A zero that stays connected to ``x`` (``backward()`` works and gives zero gradients)."""
    return x.sum() * 0.0


def masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (NaN when the mask is empty)."""
    return (values * mask).sum() / mask.sum()


class LoggedLoss(nn.Module):
    """Base class: ``last`` holds the parts of the last batch as floats; ``takes_logits``: called on classifier
    logits (not features) inside a :class:`CombinedLoss`."""

    takes_logits = False

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, float] = {}

    def _record(self, **parts: Tensor | float) -> None:
        """Store the parts as floats, with a single device-to-host transfer for the tensor ones."""
        tensors = {name: v for name, v in parts.items() if isinstance(v, Tensor)}
        dtype = torch.float32 if any(v.device.type == "mps" for v in tensors.values()) else torch.float64
        values = torch.stack([v.detach().reshape(()).to(dtype) for v in tensors.values()]).tolist() if tensors else []
        from_device = dict(zip(tensors, values))
        self.last = {name: from_device[name] if name in from_device else float(v) for name, v in parts.items()}
