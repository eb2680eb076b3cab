"""Losses: the Support Neighbor (SN) loss, the baselines the paper compares against, and the losses that came
after it (pytorch-metric-learning's, built only when used: the ``pml`` extra).

Every loss is an ``nn.Module`` called as ``loss_fn(features, labels)`` (``CrossEntropyLoss`` takes classifier
logits instead of features) and returns a scalar float32 tensor (float64 for float64 inputs). The work is done in
float32 with autocast disabled, whatever the input precision, and on the inputs' device. After each call
``loss_fn.last`` holds the parts of the last batch as plain floats, for logging.

Distances are Euclidean (not squared), from one matrix product with near-duplicate pairs recomputed exactly
(``euclidean_distance_matrix``); the square root is taken of ``max(D^2, 1e-12)``, so gradients stay finite when two
features coincide (as in torchreid and fast-reid). The later losses (circle, multi-similarity, supervised
contrastive, ArcFace, CosFace) are PML's own loss objects, called on the features; they rank by cosine similarity.

``build_loss("sn+0.5*ce", num_classes=...)`` combines weighted terms by name into a :class:`CombinedLoss`; the
names are registered with the class (``@register_loss``), together with the ``TrainConfig`` fields each term
takes, so that ``loss_from_config(config, ...)`` builds a run's loss. Adding a loss: its class and one
``@register_loss``.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import math
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import did_you_mean

__all__ = [
    "SQUEEZE_READINGS", "LOSS_NAMES", "SupportSets", "support_neighbors", "SupportNeighborLoss", "TripletLoss",
    "ContrastiveLoss", "CenterLoss", "CrossEntropyLoss", "CircleLoss", "MultiSimilarityLoss", "SupConLoss",
    "ArcFaceLoss", "CosFaceLoss", "CombinedLoss", "build_loss", "LOSSES", "LossTerm",
    "register_loss", "config_options", "loss_from_config", "euclidean_distance_matrix",
    "support_neighbor_loss_reference",
]

#: The squeeze-term readings of docs/paper.md ("released" produced the published numbers).
SQUEEZE_READINGS = ("paper", "neighbors", "released", "none", "pair")

#: Squared distances are clamped to this before the square root (finite gradients at distance 0).
_SQ_DIST_EPS = 1e-12
#: Pairs whose squared distance is below this share of |f_i|^2 + |f_j|^2 are recomputed from the difference.
_REFINE_BELOW = 1e-3


# --------------------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------------------

def _autocast_off(x):
    """Context that disables autocast on ``x``'s device (the losses compute in float32)."""
    device_type = x.device.type if isinstance(x, Tensor) else "cpu"
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _full_precision(forward):
    """Run ``forward(self, x, ...)`` with autocast disabled on ``x``'s device."""
    @functools.wraps(forward)
    def wrapper(self, x, *args, **kwargs):
        with _autocast_off(x):
            return forward(self, x, *args, **kwargs)
    return wrapper


def _check_batch(x, labels, what: str = "features") -> tuple[Tensor, Tensor]:
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


def _check_number(name: str, value, low: float, strict: bool, what: str = "") -> None:
    """Raise a ValueError unless ``value`` is a finite real number ``> low`` (strict) or ``>= low``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name}{what} must be a finite number {bound}; got {value!r}")


def _check_class_labels(labels: Tensor, num_classes: int, what: str) -> None:
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{what} needs class indices in [0, {num_classes}); got labels in "
                         f"[{labels.min().item()}, {labels.max().item()}]: relabel the training identities "
                         "0..C-1 (snlib.data does) and set num_classes to C")


def _check_dimensions(what: str, num_classes, feat_dim) -> None:
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


def _distances_and_masks(features: Tensor, labels: Tensor, normalize: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Distance matrix, same-identity mask (diagonal excluded) and different-identity mask of a batch."""
    return (euclidean_distance_matrix(features, normalize=normalize), *_identity_masks(labels))


def _identity_masks(labels: Tensor) -> tuple[Tensor, Tensor]:
    """Boolean (N, N) masks: same identity (diagonal excluded) and different identity."""
    same = labels[:, None] == labels[None, :]
    diff = ~same
    same.fill_diagonal_(False)
    return same, diff


def _zero_loss(x: Tensor) -> Tensor:
    """A zero that stays connected to ``x`` (``backward()`` works and gives zero gradients)."""
    return x.sum() * 0.0


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask`` (NaN when the mask is empty)."""
    return (values * mask).sum() / mask.sum()


class _LoggedLoss(nn.Module):
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


# --------------------------------------------------------------------------------------------------------------
# Registry: loss terms by name
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LossTerm:
    """A loss term known by name: its class, the constructor arguments the name fixes (``"sn-paper"``:
    ``squeeze="paper"``) and the ``TrainConfig`` fields it takes (``field -> constructor argument``)."""
    cls: type[nn.Module]
    fixed: dict
    config_fields: dict


#: Term name -> :class:`LossTerm`, in registration order (``@register_loss``).
LOSSES: dict[str, LossTerm] = {}


def register_loss(names: dict[str, dict], config_fields: dict[str, str] | None = None):
    """Class decorator: register a loss under each of ``names`` (``name -> arguments the name fixes``);
    ``config_fields`` maps the ``TrainConfig`` fields it takes to its constructor arguments (``sn_k -> k``).
    A class whose constructor takes ``num_classes`` and ``feat_dim`` receives them from ``build_loss``; one with
    ``takes_logits = True`` is called on the classifier logits instead of the features."""
    def register(cls):
        for name, fixed in names.items():
            if name in LOSSES:
                raise ValueError(f"loss name {name!r} is registered twice ({LOSSES[name].cls.__name__}, "
                                 f"{cls.__name__})")
            LOSSES[name] = LossTerm(cls, dict(fixed), dict(config_fields or {}))
        return cls
    return register


# --------------------------------------------------------------------------------------------------------------
# Support Neighbor loss
# --------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SupportSets:
    """The support-neighbour sets of a batch and the per-anchor SN terms (what ``support_neighbors`` returns).

    All (N, N) masks exclude the diagonal. Per-anchor terms are NaN for anchors without a positive (they do not
    count in the loss). ``distances``, ``separation`` and ``squeeze`` are differentiable.
    """
    distances: Tensor         # (N, N) D_ij, Euclidean, of the (normalised) features
    threshold: Tensor         # (N,)  t_i: (k+1)-th smallest D_ij over j != i; +inf when k >= N-1
    neighbors: Tensor         # (N, N) bool: the support neighbour set {j != i : D_ij < t_i}
    positive: Tensor          # (N, N) bool: S+_i, the same-identity neighbours, or the nearest positive (fallback)
    negative: Tensor          # (N, N) bool: S-_i, the other-identity neighbours (may be empty)
    same_identity: Tensor     # (N, N) bool: y_j == y_i, j != i
    other_identity: Tensor    # (N, N) bool: y_j != y_i
    has_positive: Tensor      # (N,) bool: the anchor's identity has another image in the batch
    knn_has_positive: Tensor  # (N,) bool: the k-NN held a positive (no fallback)
    separation: Tensor        # (N,) L_sep(i) = -log(sum_{S+} exp(-alpha D) / sum_{S+ u S-} exp(-alpha D))
    squeeze: Tensor           # (N,) L_sqz(i) of the chosen reading (0 for "none")


def _check_sn_options(k, alpha, squeeze) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (number of support neighbours); got {k!r}")
    _check_number("alpha", alpha, 0.0, strict=True, what=" (softmax scale, paper: 50)")
    if squeeze not in SQUEEZE_READINGS:
        raise ValueError(f"squeeze must be one of {SQUEEZE_READINGS} (see docs/paper.md); got {squeeze!r}")


def _sn_sets(features: Tensor, labels: Tensor, k: int, alpha: float, squeeze: str, normalize: bool) -> SupportSets:
    """Vectorised support sets and per-anchor terms for already validated float inputs."""
    n = features.shape[0]
    dist, same, diff = _distances_and_masks(features, labels, normalize)
    eye = torch.eye(n, dtype=torch.bool, device=dist.device)
    candidates = dist.detach().masked_fill(eye, math.inf)
    if k < n - 1:
        threshold = candidates.kthvalue(k + 1, dim=1).values
    else:
        threshold = torch.full((n,), math.inf, dtype=dist.dtype, device=dist.device)
    neighbors = candidates < threshold[:, None]

    has_positive = same.any(dim=1)
    knn_positive = neighbors & same
    knn_has_positive = knn_positive.any(dim=1)
    nearest_positive = candidates.masked_fill(~same, math.inf).argmin(dim=1)   # first index among ties
    needs_fallback = has_positive & ~knn_has_positive
    fallback = torch.zeros_like(same).scatter_(1, nearest_positive[:, None], needs_fallback[:, None])
    positive = knn_positive | fallback
    negative = neighbors & diff & has_positive[:, None]

    # Per-anchor terms on the anchors that have a positive (the others stay NaN).
    rows = has_positive.nonzero().flatten()
    if rows.numel() == n:
        d, pos, neg, same_rows = dist, positive, negative, same
    else:
        d, pos, neg, same_rows = dist[rows], positive[rows], negative[rows], same[rows]
    logits = -alpha * d
    separation_rows = (logits.masked_fill(~(pos | neg), -math.inf).logsumexp(dim=1)
                       - logits.masked_fill(~pos, -math.inf).logsumexp(dim=1))
    nearest = d.masked_fill(~pos, math.inf).min(dim=1).values
    if squeeze == "released":
        squeeze_rows = nearest
    elif squeeze == "neighbors":
        spread = d.masked_fill(~pos, -math.inf).max(dim=1).values - nearest
        squeeze_rows = torch.where(pos.sum(dim=1) == 1, nearest, spread)
    elif squeeze == "paper":
        squeeze_rows = d.masked_fill(~same_rows, -math.inf).max(dim=1).values - nearest
    elif squeeze == "pair":
        # D_nf between the nearest support positive n and the furthest positive f (first index among ties);
        # where n = f the entry is the clamped diagonal (1e-6, zero gradient), replaced by an exact 0.
        n_idx = d.detach().masked_fill(~pos, math.inf).argmin(dim=1)
        f_idx = d.detach().masked_fill(~same_rows, -math.inf).argmax(dim=1)
        squeeze_rows = torch.where(n_idx == f_idx, 0.0, dist[n_idx, f_idx])
    else:
        squeeze_rows = torch.zeros_like(nearest)
    undefined = dist.new_full((n,), math.nan)
    return SupportSets(
        distances=dist, threshold=threshold, neighbors=neighbors, positive=positive, negative=negative,
        same_identity=same, other_identity=diff, has_positive=has_positive, knn_has_positive=knn_has_positive,
        separation=undefined.index_copy(0, rows, separation_rows),
        squeeze=undefined.index_copy(0, rows, squeeze_rows),
    )


def support_neighbors(features: Tensor, labels: Tensor, k: int = 10, alpha: float = 50.0,
                      squeeze: str = "released", normalize: bool = True) -> SupportSets:
    """Support-neighbour sets S+ / S- of every anchor of a batch and the per-anchor SN terms (docs/paper.md).

    For anchor i: ``t_i`` = the (k+1)-th smallest ``D_ij`` over ``j != i``; neighbours = ``{j != i : D_ij < t_i}``;
    S+ = neighbours of the anchor's identity, or, if there is none, the nearest same-identity sample (lowest batch
    index among equal distances); S- = the other neighbours. See :class:`SupportNeighborLoss` for the conventions
    (ties, k >= N-1, anchors without a positive). Computed in float32 (float64 for float64 input).
    """
    _check_sn_options(k, alpha, squeeze)
    with _autocast_off(features):
        features, labels = _check_batch(features, labels)
        return _sn_sets(features, labels, k, float(alpha), squeeze, normalize)


@register_loss({"sn": {"squeeze": "released"}, "sn-released": {"squeeze": "released"},
                "sn-paper": {"squeeze": "paper"}, "sn-neighbors": {"squeeze": "neighbors"},
                "sn-none": {"squeeze": "none"}, "sep": {"squeeze": "none"},
                "sn-pair": {"squeeze": "pair"}, "pair": {"squeeze": "pair"}},
               config_fields={"sn_k": "k", "sn_alpha": "alpha", "sn_lambda": "lam"})
class SupportNeighborLoss(_LoggedLoss):
    """Support Neighbor loss (Li et al., ACM MM 2018), as defined in docs/paper.md.

    ``L = mean_i [L_sep(i) + lam * L_sqz(i)]`` over the anchors that have a positive, with
    ``L_sep(i) = -log(sum_{j in S+} exp(-alpha D_ij) / sum_{j in S+ u S-} exp(-alpha D_ij))`` (logsumexp) and
    ``L_sqz(i)`` by ``squeeze``:

    - ``"paper"``:     max_{p: y_p = y_i, p != i} D_ip - min_{S+} D_ij   (furthest positive - nearest support positive)
    - ``"neighbors"``: max_{S+} D_ij - min_{S+} D_ij, or min_{S+} D_ij when |S+| = 1
    - ``"released"``:  min_{S+} D_ij   (what the released code optimised)
    - ``"none"``:      0   (separation term alone)
    - ``"pair"``:      D_nf, n = argmin_{S+} D_ij, f = argmax_{p: y_p = y_i, p != i} D_ip (first index among ties);
      0 when n = f   (the abstract read literally: pulls the nearest support positive and the furthest positive
      together)

    Conventions (all vectorised; ``support_neighbors`` returns the sets):

    - Support set: ``{j != i : D_ij < t_i}``, ``t_i`` the (k+1)-th smallest distance to the other samples. This is
      the paper's strict rule: when distances tie across the k-th / (k+1)-th place, all the tied samples are left
      out together, so the set has fewer than k members (it is exactly k without such a tie). The rule depends on
      distances only, so the loss does not depend on the order of the batch.
    - ``k >= N - 1``: every other sample of the batch is a support neighbour (``t_i = +inf``).
    - S+ empty in the k-NN: S+ = {the nearest same-identity sample}; among equal distances the lowest batch index
      (this changes which sample receives the gradient, never the value).
    - S- empty (e.g. a batch of one identity): ``L_sep(i) = 0``.
    - An anchor whose identity has no other image in the batch has no positive and is left out of the mean.
      If no anchor has a positive the loss is a zero still connected to ``features`` and ``last["anchors"]`` is 0.
    - Labels are arbitrary integers (only equality matters).

    ``last`` (floats): ``loss``, ``separation`` and ``squeeze`` (means over the contributing anchors, the squeeze
    before the factor lam), ``pos_dist`` / ``neg_dist`` (mean D over all same / different identity pairs; NaN
    when there is none), ``knn_without_positive`` (share of contributing anchors whose k-NN held no positive),
    ``no_positive`` (share of all anchors without a positive), ``support_pos`` / ``support_neg`` (mean number of
    same / other identity samples among the k-NN, before the fallback), ``anchors`` (number contributing).
    With no contributing anchor: ``loss`` = ``separation`` = ``squeeze`` = 0, ``anchors`` = 0 and the means over
    anchors are NaN.
    """

    def __init__(self, k: int = 10, alpha: float = 50.0, lam: float = 0.1, squeeze: str = "released",
                 normalize: bool = True) -> None:
        super().__init__()
        _check_sn_options(k, alpha, squeeze)
        _check_number("lam", lam, 0.0, strict=False, what=" (weight of the squeeze term, paper: 0.1)")
        self.k, self.alpha, self.lam, self.squeeze, self.normalize = k, float(alpha), float(lam), squeeze, normalize

    def extra_repr(self) -> str:
        return (f"k={self.k}, alpha={self.alpha}, lam={self.lam}, squeeze={self.squeeze!r}, "
                f"normalize={self.normalize}")

    @_full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = _check_batch(features, labels)
        sets = _sn_sets(features, labels, self.k, self.alpha, self.squeeze, self.normalize)
        anchors = sets.has_positive
        if anchors.any():
            separation = sets.separation[anchors].mean()
            squeeze = sets.squeeze[anchors].mean()
            loss = separation + self.lam * squeeze
        else:
            loss = _zero_loss(features)
            separation = squeeze = loss.detach()
        with torch.no_grad():
            self._record(
                loss=loss, separation=separation, squeeze=squeeze,
                pos_dist=_masked_mean(sets.distances, sets.same_identity),
                neg_dist=_masked_mean(sets.distances, sets.other_identity),
                knn_without_positive=_masked_mean((~sets.knn_has_positive).float(), anchors),
                no_positive=(~anchors).float().mean(),
                support_pos=_masked_mean((sets.neighbors & sets.same_identity).sum(dim=1).float(), anchors),
                support_neg=_masked_mean((sets.neighbors & sets.other_identity).sum(dim=1).float(), anchors),
                anchors=anchors.sum(),
            )
        return loss


def support_neighbor_loss_reference(features: Tensor, labels: Tensor, k: int = 10, alpha: float = 50.0,
                                    lam: float = 0.1, squeeze: str = "released", normalize: bool = True) -> Tensor:
    """Slow oracle of :class:`SupportNeighborLoss`: a plain loop over anchors with a sort per anchor, written
    straight from docs/paper.md (no masks, no logsumexp). Used by the tests (in float64) and the benchmark; do not
    train with it. Same conventions as the vectorised loss (strict threshold, fallback, anchors skipped)."""
    _check_sn_options(k, alpha, squeeze)
    features, labels = _check_batch(features, labels)
    if normalize:
        features = features / features.norm(dim=1, keepdim=True)
    dist = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")
    ids = labels.tolist()
    n = len(ids)
    terms = []
    for i in range(n):
        row = dist[i]
        values = row.tolist()
        others = [j for j in range(n) if j != i]
        same = [j for j in others if ids[j] == ids[i]]
        if not same:
            continue
        ranked = sorted(others, key=lambda j: values[j])
        if k >= n - 1:
            support = others
        else:
            threshold = values[ranked[k]]
            support = [j for j in others if values[j] < threshold]
        pos = [j for j in support if ids[j] == ids[i]]
        neg = [j for j in support if ids[j] != ids[i]]
        if not pos:
            pos = [min(same, key=lambda j: values[j])]
        d_pos = row[pos]
        separation = -torch.log(torch.exp(-alpha * d_pos).sum() / torch.exp(-alpha * row[pos + neg]).sum())
        if squeeze == "released":
            sqz = d_pos.min()
        elif squeeze == "neighbors":
            sqz = d_pos.min() if len(pos) == 1 else d_pos.max() - d_pos.min()
        elif squeeze == "paper":
            sqz = row[same].max() - d_pos.min()
        elif squeeze == "pair":
            nearest, furthest = min(pos, key=lambda j: values[j]), max(same, key=lambda j: values[j])
            sqz = (torch.zeros((), dtype=row.dtype) if nearest == furthest
                   else (features[nearest] - features[furthest]).norm())
        else:
            sqz = torch.zeros((), dtype=row.dtype)
        terms.append(separation + lam * sqz)
    if not terms:
        return _zero_loss(features)
    return torch.stack(terms).mean()


# --------------------------------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------------------------------

@register_loss({"triplet": {"soft": False}, "triplet-soft": {"soft": True}},
               config_fields={"triplet_margin": "margin"})
class TripletLoss(_LoggedLoss):
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
        _check_number("margin", margin, 0.0, strict=False)
        self.margin, self.soft, self.normalize = float(margin), bool(soft), normalize

    def extra_repr(self) -> str:
        return f"margin={self.margin}, soft={self.soft}, normalize={self.normalize}"

    @_full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = _check_batch(features, labels)
        dist, same, diff = _distances_and_masks(features, labels, self.normalize)
        rows = (same.any(dim=1) & diff.any(dim=1)).nonzero().flatten()
        if rows.numel() == 0:
            loss = _zero_loss(features)
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


@register_loss({"contrastive": {}})
class ContrastiveLoss(_LoggedLoss):
    """Contrastive (verification) loss over all pairs of the batch (Hadsell, Chopra, LeCun 2006).

    ``L = 1/2 mean_{pos pairs} D_ij^2 + 1/2 mean_{neg pairs} relu(margin - D_ij)^2``: positives are pulled to
    distance 0, negatives pushed beyond ``margin``. The two means are taken separately so that the few positive
    pairs of a P x K batch are not swamped by the negatives; a mean over no pair counts 0. Distances of
    L2-normalised features by default (D in [0, 2]). ``last``: ``loss``, ``pos_term``, ``neg_term``, ``pos_dist``,
    ``neg_dist``, ``active_neg`` (share of negative pairs inside the margin).
    """

    def __init__(self, margin: float = 1.0, normalize: bool = True) -> None:
        super().__init__()
        _check_number("margin", margin, 0.0, strict=True)
        self.margin, self.normalize = float(margin), normalize

    def extra_repr(self) -> str:
        return f"margin={self.margin}, normalize={self.normalize}"

    @_full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = _check_batch(features, labels)
        dist, same, diff = _distances_and_masks(features, labels, self.normalize)
        pos_term = 0.5 * (dist.pow(2) * same).sum() / same.sum().clamp(min=1)
        hinge = F.relu(self.margin - dist)
        neg_term = 0.5 * (hinge.pow(2) * diff).sum() / diff.sum().clamp(min=1)
        loss = pos_term + neg_term
        with torch.no_grad():
            self._record(loss=loss, pos_term=pos_term, neg_term=neg_term, pos_dist=_masked_mean(dist, same),
                         neg_dist=_masked_mean(dist, diff), active_neg=_masked_mean((hinge > 0).float(), diff))
        return loss


@register_loss({"center": {}})
class CenterLoss(_LoggedLoss):
    """Center loss (Wen et al. 2016): ``L = 1/2 mean_i |f_i - c_{y_i}|^2`` with learnable centres ``c``.

    ``centers`` is an ``nn.Parameter`` (num_classes, feat_dim), initialised N(0, 1); optimise it with the model
    (``CombinedLoss.parameters()`` includes it). Labels must be class indices 0..num_classes-1.
    ``last``: ``loss``, ``center_dist`` (mean |f_i - c_{y_i}|).
    """

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        _check_dimensions("CenterLoss", num_classes, feat_dim)
        self.num_classes, self.feat_dim = num_classes, feat_dim
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, feat_dim={self.feat_dim}"

    @_full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = _check_batch(features, labels)
        if features.shape[1] != self.feat_dim:
            raise ValueError(f"CenterLoss was built for feat_dim={self.feat_dim} but features have "
                             f"{features.shape[1]} dimensions")
        _check_class_labels(labels, self.num_classes, "CenterLoss")
        sq_dist = (features - self.centers[labels].to(features.dtype)).pow(2).sum(dim=1)
        loss = 0.5 * sq_dist.mean()
        with torch.no_grad():
            self._record(loss=loss, center_dist=sq_dist.sqrt().mean())
        return loss


@register_loss({"ce": {}}, config_fields={"label_smoothing": "label_smoothing"})
class CrossEntropyLoss(_LoggedLoss):
    """Softmax cross-entropy on classifier logits, with optional label smoothing (Szegedy et al. 2016):
    the target is ``(1 - eps) * onehot(y) + eps / C``. ``forward(logits, labels)``, labels 0..C-1.
    ``last``: ``loss``, ``accuracy`` (top-1 share of the batch)."""

    takes_logits = True

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        _check_number("label_smoothing", label_smoothing, 0.0, strict=False)
        if label_smoothing >= 1.0:
            raise ValueError(f"label_smoothing must be < 1; got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"

    @_full_precision
    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        logits, labels = _check_batch(logits, labels, what="logits")
        _check_class_labels(labels, logits.shape[1], f"CrossEntropyLoss (logits of {logits.shape[1]} classes)")
        loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            self._record(loss=loss, accuracy=(logits.argmax(dim=1) == labels).float().mean())
        return loss


# --------------------------------------------------------------------------------------------------------------
# The losses that came after SN, from pytorch-metric-learning (the ``pml`` extra)
# --------------------------------------------------------------------------------------------------------------

def _pml():
    """pytorch-metric-learning's ``losses`` and ``miners`` modules, imported when a loss of this section is built."""
    try:
        from pytorch_metric_learning import losses, miners
    except ImportError:  # pragma: no cover - the test environment has the extra
        raise ImportError("the losses circle, ms, supcon, arcface and cosface are pytorch-metric-learning's: "
                          "pip install 'snlib[pml]'") from None
    return losses, miners


class _PMLLoss(_LoggedLoss):
    """A pytorch-metric-learning loss ``pml`` (and a miner, or None) called on a batch of features:
    ``pml(features, labels, miner(features, labels))``, in float32 (float64 for float64 features) with autocast off.
    Its own parameters (the class weights of the margin softmaxes) are this module's: ``parameters()`` yields them,
    so the engine's optimiser trains them with the model. ``last``: ``loss``; with a miner also ``mined_pos`` and
    ``mined_neg``, the pairs it kept."""

    def __init__(self, pml, miner=None, num_classes: int | None = None, feat_dim: int | None = None) -> None:
        super().__init__()
        self.pml, self.miner = pml, miner
        self.num_classes, self.feat_dim = num_classes, feat_dim

    @_full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = _check_batch(features, labels)
        if self.num_classes is not None:
            if features.shape[1] != self.feat_dim:
                raise ValueError(f"{type(self).__name__} was built for feat_dim={self.feat_dim} but features have "
                                 f"{features.shape[1]} dimensions")
            _check_class_labels(labels, self.num_classes, type(self).__name__)
        pairs = self.miner(features, labels) if self.miner is not None else None
        loss = self.pml(features, labels, pairs)
        with torch.no_grad():
            mined = {} if pairs is None else {"mined_pos": len(pairs[0]), "mined_neg": len(pairs[2])}
            self._record(loss=loss, **mined)
        return loss


def _check_positive(**values) -> None:
    """Raise a ValueError unless every value is a finite number > 0 (named by its keyword)."""
    for name, value in values.items():
        _check_number(name, value, 0.0, strict=True)


@register_loss({"circle": {}})
class CircleLoss(_PMLLoss):
    """Circle loss with pair-wise labels (Sun et al., CVPR 2020), PML's ``CircleLoss``. On the cosine similarities
    of the batch (the features L2-normalised), per anchor over its positives s_p and negatives s_n::

        softplus( logsumexp_n gamma a_n (s_n - m)  +  logsumexp_p -gamma a_p (s_p - 1 + m) ),
        a_p = relu(1 + m - s_p),  a_n = relu(s_n + m)   (weights, no gradient)

    averaged over the anchors that have both. ``m = 0.25, gamma = 128``: the paper's values for person re-ID (PML's
    docstring quotes them: 0.25 / 256 for faces, 0.4 / 80, PML's defaults, for fine-grained retrieval)."""

    def __init__(self, m: float = 0.25, gamma: float = 128.0) -> None:
        _check_positive(m=m, gamma=gamma)
        losses, _ = _pml()
        super().__init__(losses.CircleLoss(m=float(m), gamma=float(gamma)))
        self.m, self.gamma = float(m), float(gamma)

    def extra_repr(self) -> str:
        return f"m={self.m}, gamma={self.gamma}"


@register_loss({"ms": {}})
class MultiSimilarityLoss(_PMLLoss):
    """Multi-similarity loss with its pair mining (Wang et al., CVPR 2019), PML's ``MultiSimilarityLoss`` on the
    pairs of PML's ``MultiSimilarityMiner``. Cosine similarities S (the features L2-normalised); the miner keeps the
    positives with ``S_ip - epsilon < max_n S_in`` and the negatives with ``S_in + epsilon > min_p S_ip``; per
    anchor, over the kept pairs::

        1/alpha log(1 + sum_p exp(-alpha (S_ip - base))) + 1/beta log(1 + sum_n exp(beta (S_in - base)))

    averaged over all anchors (one without kept pairs counts 0). ``scale_pos`` (alpha) = 2, ``scale_neg`` (beta)
    = 50, ``base`` (lambda) = 0.5, ``epsilon`` = 0.1: PML's defaults; the authors' code (research-ms-loss) has
    alpha 2, lambda 0.5, epsilon 0.1 and beta 40 in its default configuration, 50 in PML's."""

    def __init__(self, scale_pos: float = 2.0, scale_neg: float = 50.0, base: float = 0.5,
                 epsilon: float = 0.1) -> None:
        _check_positive(scale_pos=scale_pos, scale_neg=scale_neg)
        _check_number("epsilon", epsilon, 0.0, strict=False)
        _check_number("base", base, -1.0, strict=False, what=" (a cosine similarity)")
        losses, miners = _pml()
        super().__init__(losses.MultiSimilarityLoss(alpha=float(scale_pos), beta=float(scale_neg), base=float(base)),
                         miners.MultiSimilarityMiner(epsilon=float(epsilon)))
        self.scale_pos, self.scale_neg, self.base, self.epsilon = (float(v) for v in (scale_pos, scale_neg, base,
                                                                                      epsilon))

    def extra_repr(self) -> str:
        return f"scale_pos={self.scale_pos}, scale_neg={self.scale_neg}, base={self.base}, epsilon={self.epsilon}"


@register_loss({"supcon": {}})
class SupConLoss(_PMLLoss):
    """Supervised contrastive loss (Khosla et al., NeurIPS 2020; their L_out), PML's ``SupConLoss``. Cosine
    similarities S (the features L2-normalised); per anchor i with positives P(i)::

        -1/|P(i)| sum_{p in P(i)} log( exp(S_ip / t) / sum_{a != i} exp(S_ia / t) )

    averaged over the anchors that have a positive. ``temperature`` t = 0.1 (the paper's; PML's default)."""

    def __init__(self, temperature: float = 0.1) -> None:
        _check_positive(temperature=temperature)
        losses, _ = _pml()
        super().__init__(losses.SupConLoss(temperature=float(temperature)))
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


@register_loss({"arcface": {}})
class ArcFaceLoss(_PMLLoss):
    """ArcFace (Deng et al., CVPR 2019), PML's ``ArcFaceLoss``: softmax cross-entropy over ``num_classes`` learned
    class weights W (``pml.W``, feat_dim x num_classes, a parameter of this module) with the cosines of the
    L2-normalised features and weights as logits, the target's angle widened by ``arc_margin`` (radians)::

        logit_j = scale cos(theta_j)  (j != y),   logit_y = scale cos(theta_y + arc_margin)

    (``scale (cos(theta_y) - m sin(m))`` where theta_y + m > pi, PML's monotonic continuation). ``arc_margin = 0.5``
    (28.6 degrees), ``scale = 64``: the paper's. Labels are class indices 0..num_classes-1. (The margin is not
    called ``margin``: the triplet's ``triplet_margin`` reaches every term's ``margin``.)"""

    def __init__(self, num_classes: int, feat_dim: int, arc_margin: float = 0.5, scale: float = 64.0) -> None:
        _check_dimensions("ArcFaceLoss", num_classes, feat_dim)
        _check_positive(arc_margin=arc_margin, scale=scale)
        losses, _ = _pml()   # PML's margin is in degrees
        super().__init__(losses.ArcFaceLoss(num_classes, feat_dim, margin=math.degrees(arc_margin),
                                            scale=float(scale)), num_classes=num_classes, feat_dim=feat_dim)
        self.arc_margin, self.scale = float(arc_margin), float(scale)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, arc_margin={self.arc_margin}, "
                f"scale={self.scale}")


@register_loss({"cosface": {}})
class CosFaceLoss(_PMLLoss):
    """CosFace (Wang et al., CVPR 2018), PML's ``CosFaceLoss``: as :class:`ArcFaceLoss` with the margin subtracted
    from the target's cosine: ``logit_y = scale (cos(theta_y) - cos_margin)``, ``logit_j = scale cos(theta_j)``.
    ``cos_margin = 0.35``, ``scale = 64``: the paper's."""

    def __init__(self, num_classes: int, feat_dim: int, cos_margin: float = 0.35, scale: float = 64.0) -> None:
        _check_dimensions("CosFaceLoss", num_classes, feat_dim)
        _check_positive(cos_margin=cos_margin, scale=scale)
        losses, _ = _pml()
        super().__init__(losses.CosFaceLoss(num_classes, feat_dim, margin=float(cos_margin), scale=float(scale)),
                         num_classes=num_classes, feat_dim=feat_dim)
        self.cos_margin, self.scale = float(cos_margin), float(scale)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, feat_dim={self.feat_dim}, cos_margin={self.cos_margin}, "
                f"scale={self.scale}")


# --------------------------------------------------------------------------------------------------------------
# Combining terms by name
# --------------------------------------------------------------------------------------------------------------

#: Term names accepted by ``build_loss``.
LOSS_NAMES = tuple(LOSSES)

_TERM_PATTERN = re.compile(r"^(?:(?P<weight>[^*]+)\*)?(?P<name>[a-z-]+)$")


class CombinedLoss(nn.Module):
    """Weighted sum of named loss terms: ``forward(features, labels, logits=None)``.

    ``terms`` maps a name to ``(weight, module)``; a term with ``takes_logits`` (``"ce"``) receives ``logits``,
    the others ``features``. ``last`` holds each term's value under its name, each term's own parts as ``"name/part"``
    and the weighted total as ``"loss"``. ``needs_logits`` tells whether the model needs a classifier.
    """

    def __init__(self, terms: dict[str, tuple[float, nn.Module]], spec: str | None = None) -> None:
        super().__init__()
        if not terms:
            raise ValueError("CombinedLoss needs at least one term")
        self.terms = nn.ModuleDict({name: module for name, (_, module) in terms.items()})
        self.weights = {name: float(weight) for name, (weight, _) in terms.items()}
        self.spec = spec or "+".join(f"{w:g}*{n}" for n, w in self.weights.items())
        self.last: dict[str, float] = {}

    @property
    def needs_logits(self) -> bool:
        return any(getattr(m, "takes_logits", False) for m in self.terms.values())

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"

    def forward(self, features: Tensor, labels: Tensor, logits: Tensor | None = None) -> Tensor:
        total, last = None, {}
        for name, module in self.terms.items():
            if getattr(module, "takes_logits", False):
                if logits is None:
                    raise ValueError(f"the loss {self.spec!r} has a cross-entropy term: build the model with a "
                                     "classifier (num_classes) and pass its logits")
                value = module(logits, labels)
            else:
                value = module(features, labels)
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
            last[name] = module.last["loss"]
            last.update({f"{name}/{part}": v for part, v in module.last.items() if part != "loss"})
        self.last = {"loss": float(total.detach()), **last}
        return total


def _parse_spec(spec: str) -> list[tuple[str, float]]:
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"loss spec must be a non-empty string like 'sn' or 'triplet+0.5*ce'; got {spec!r}")
    terms = []
    for raw in spec.replace(" ", "").lower().split("+"):
        match = _TERM_PATTERN.match(raw)
        if not raw or match is None:
            raise ValueError(f"bad term {raw!r} in loss spec {spec!r}: write terms as 'name' or 'weight*name' "
                             "joined by '+'")
        name, weight_text = match["name"], match["weight"]
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r} in {spec!r}{did_you_mean(name, LOSS_NAMES)}; known: "
                             f"{', '.join(LOSS_NAMES)}")
        try:
            weight = 1.0 if weight_text is None else float(weight_text)
        except ValueError:
            raise ValueError(f"bad weight {weight_text!r} for {name!r} in loss spec {spec!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise ValueError(f"weight of {name!r} in {spec!r} must be finite and > 0; got {weight_text}")
        if name in dict(terms):
            raise ValueError(f"loss {name!r} appears twice in {spec!r}: give it one weight")
        terms.append((name, weight))
    return terms


def loss_arguments(spec: str, num_classes: int | None = None, feat_dim: int | None = None,
                   **options) -> dict[str, tuple[float, type, dict]]:
    """``{term name: (weight, class, constructor arguments)}`` of a loss spec (:func:`build_loss`), every name and
    option checked, nothing built: what ``TrainConfig`` validation calls (``snlib.presets``). Without
    ``num_classes`` / ``feat_dim`` a term that needs them (``center``) is checked with placeholders."""
    parsed = _parse_spec(spec)
    used = set()
    terms = {}
    for name, weight in parsed:
        cls, fixed = LOSSES[name].cls, LOSSES[name].fixed
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
        kwargs = {key: value for key, value in options.items() if key in accepted}
        for key, value in fixed.items():
            if key in kwargs and kwargs[key] != value:
                raise ValueError(f"option {key}={kwargs[key]!r} contradicts the loss name {name!r} "
                                 f"({key}={value!r}); pick the term by name instead")
        kwargs.update(fixed)
        if {"num_classes", "feat_dim"} <= accepted:
            kwargs.update(num_classes=num_classes, feat_dim=feat_dim)
        used.update(kwargs)
        terms[name] = (weight, cls, kwargs)
    unused = set(options) - used
    if unused:
        raise ValueError(f"option(s) {sorted(unused)} are taken by no term of {spec!r}")
    return terms


def build_loss(spec: str, num_classes: int | None = None, feat_dim: int | None = None,
               **options) -> CombinedLoss:
    """Build a :class:`CombinedLoss` from a spec such as ``"sn"``, ``"sn+ce"``, ``"triplet+0.5*ce"``.

    Terms are joined by ``+``, each optionally weighted ``"w*name"``; names: ``sn`` (released squeeze),
    ``sn-paper``, ``sn-neighbors``, ``sn-released``, ``sn-pair`` / ``pair``, ``sn-none`` / ``sep`` (no squeeze),
    ``triplet``, ``triplet-soft``, ``contrastive``, ``center`` (needs num_classes and feat_dim), ``ce``; the
    later losses of pytorch-metric-learning (the ``pml`` extra): ``circle``, ``ms``, ``supcon``, ``arcface`` and
    ``cosface`` (these two need num_classes and feat_dim).
    ``options`` go to every term whose constructor takes them (``k``, ``alpha``, ``lam``, ``normalize``,
    ``margin``, ``label_smoothing``, ``gamma``, ``scale``, ...); an option no term takes, or one that contradicts a
    term's name, is an error.
    """
    terms = {}
    for name, (weight, cls, kwargs) in loss_arguments(spec, num_classes, feat_dim, **options).items():
        if "num_classes" in kwargs and (num_classes is None or feat_dim is None):
            raise ValueError(f"the {name!r} term of {spec!r} needs num_classes and feat_dim")
        terms[name] = (weight, cls(**kwargs))
    return CombinedLoss(terms, spec=spec)


def config_options(spec: str, config) -> dict:
    """The ``build_loss`` options of ``spec`` from a ``TrainConfig``: ``config.loss_options``, overridden by the
    fields each term of ``spec`` registered (``sn_k -> k``, ``triplet_margin -> margin``, ...)."""
    options = dict(config.loss_options)
    for name, _ in _parse_spec(spec):
        options.update({arg: getattr(config, field) for field, arg in LOSSES[name].config_fields.items()})
    return options


def loss_from_config(config, num_classes: int, feat_dim: int) -> CombinedLoss:
    """The loss of a training run: ``build_loss(config.loss, ...)`` with :func:`config_options`."""
    return build_loss(config.loss, num_classes=num_classes, feat_dim=feat_dim, **config_options(config.loss, config))
