"""The Support Neighbor (SN) loss (Li et al., ACM MM 2018, docs/paper.md): the support-neighbour sets of a batch
(:func:`support_neighbors`), the vectorised loss (:class:`SupportNeighborLoss`) and its slow oracle, a plain loop
over anchors (:func:`support_neighbor_loss_reference`, what the tests and the benchmark compare against)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .base import (LoggedLoss, autocast_off, check_batch, check_number, distances_and_masks, full_precision,
                   masked_mean, zero_loss)
from .registry import register_loss

#: The squeeze-term readings of docs/paper.md ("released" produced the published numbers).
SQUEEZE_READINGS = ("paper", "neighbors", "released", "none", "pair")


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


def check_sn_options(k, alpha, squeeze) -> None:
    """``k`` a positive integer, ``alpha`` > 0, ``squeeze`` one of :data:`SQUEEZE_READINGS` (a ``ValueError`` else)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer (number of support neighbours); got {k!r}")
    check_number("alpha", alpha, 0.0, strict=True, what=" (softmax scale, paper: 50)")
    if squeeze not in SQUEEZE_READINGS:
        raise ValueError(f"squeeze must be one of {SQUEEZE_READINGS} (see docs/paper.md); got {squeeze!r}")


def check_sn_weight(lam) -> None:
    """``lam``, the weight of the squeeze term: a finite number >= 0 (a ``ValueError`` else)."""
    check_number("lam", lam, 0.0, strict=False, what=" (weight of the squeeze term, paper: 0.1)")


def _sn_sets(features: Tensor, labels: Tensor, k: int, alpha: float, squeeze: str, normalize: bool) -> SupportSets:
    """Vectorised support sets and per-anchor terms for already validated float inputs."""
    n = features.shape[0]
    dist, same, diff = distances_and_masks(features, labels, normalize)
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
    check_sn_options(k, alpha, squeeze)
    with autocast_off(features):
        features, labels = check_batch(features, labels)
        return _sn_sets(features, labels, k, float(alpha), squeeze, normalize)


@register_loss({"sn": {"squeeze": "released"}, "sn-released": {"squeeze": "released"},
                "sn-paper": {"squeeze": "paper"}, "sn-neighbors": {"squeeze": "neighbors"},
                "sn-none": {"squeeze": "none"}, "sep": {"squeeze": "none"},
                "sn-pair": {"squeeze": "pair"}, "pair": {"squeeze": "pair"}},
               config_fields={"sn_k": "k", "sn_alpha": "alpha", "sn_lambda": "lam"})
class SupportNeighborLoss(LoggedLoss):
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
        check_sn_options(k, alpha, squeeze)
        check_sn_weight(lam)
        self.k, self.alpha, self.lam, self.squeeze, self.normalize = k, float(alpha), float(lam), squeeze, normalize

    def extra_repr(self) -> str:
        return (f"k={self.k}, alpha={self.alpha}, lam={self.lam}, squeeze={self.squeeze!r}, "
                f"normalize={self.normalize}")

    @full_precision
    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        features, labels = check_batch(features, labels)
        sets = _sn_sets(features, labels, self.k, self.alpha, self.squeeze, self.normalize)
        anchors = sets.has_positive
        if anchors.any():
            separation = sets.separation[anchors].mean()
            squeeze = sets.squeeze[anchors].mean()
            loss = separation + self.lam * squeeze
        else:
            loss = zero_loss(features)
            separation = squeeze = loss.detach()
        with torch.no_grad():
            self._record(
                loss=loss, separation=separation, squeeze=squeeze,
                pos_dist=masked_mean(sets.distances, sets.same_identity),
                neg_dist=masked_mean(sets.distances, sets.other_identity),
                knn_without_positive=masked_mean((~sets.knn_has_positive).float(), anchors),
                no_positive=(~anchors).float().mean(),
                support_pos=masked_mean((sets.neighbors & sets.same_identity).sum(dim=1).float(), anchors),
                support_neg=masked_mean((sets.neighbors & sets.other_identity).sum(dim=1).float(), anchors),
                anchors=anchors.sum(),
            )
        return loss


def support_neighbor_loss_reference(features: Tensor, labels: Tensor, k: int = 10, alpha: float = 50.0,
                                    lam: float = 0.1, squeeze: str = "released", normalize: bool = True) -> Tensor:
    """Slow oracle of :class:`SupportNeighborLoss`: a plain loop over anchors with a sort per anchor, written
    straight from docs/paper.md (no masks, no logsumexp). Used by the tests (in float64) and the benchmark; do not
    train with it. Same conventions as the vectorised loss (strict threshold, fallback, anchors skipped)."""
    check_sn_options(k, alpha, squeeze)
    check_sn_weight(lam)
    features, labels = check_batch(features, labels)
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
        return zero_loss(features)
    return torch.stack(terms).mean()
