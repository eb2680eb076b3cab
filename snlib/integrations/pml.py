"""The SN loss as a pytorch-metric-learning (PML) loss (``pip install 'snlib[pml]'``).

``SupportNeighborLoss(k=10, alpha=50, lam=0.1, squeeze="released")`` is a PML ``BaseMetricLossFunction``:
``loss(embeddings, labels, indices_tuple=None, ref_emb=None, ref_labels=None)``, with PML's ``distance``,
``reducer`` and ``embedding_regularizer`` options. The support neighbours of anchor i are drawn from its
*candidates* C_i among the reference samples (the batch unless ``ref_emb`` is given):

- nothing given: every other sample of the batch (j != i); the loss then equals
  :class:`snlib.losses.SupportNeighborLoss` (the tests check values and gradients in float64);
- ``ref_emb`` / ``ref_labels`` (a memory bank, e.g. :class:`CrossBatchMemory`): every reference sample;
- ``indices_tuple`` (a miner's pairs ``(a1, p, a2, n)`` or triplets ``(a, p, n)``): only the reference samples
  it pairs with i. This is how PML's ``CrossBatchMemory`` leaves out an anchor's own copy in the memory, and how a
  miner restricts the neighbours to the pairs it mined. Identity comes from the labels, not from which half of
  the tuple a pair is in; an anchor the tuple does not name has no candidate and does not count.

Within C_i (paper's rule, docs/paper.md): ``t_i`` = the (k+1)-th smallest ``D_ij`` over C_i (+inf when
``|C_i| <= k``); support set ``{j in C_i : D_ij < t_i}``; S+ = its same-label members, or the nearest same-label
candidate when there is none; S- = the others. Per anchor ``L_sep(i) + lam * L_sqz(i)`` with
``L_sep(i) = -log(sum_{S+} exp(-alpha D_ij) / sum_{S+ u S-} exp(-alpha D_ij))`` and ``L_sqz`` by ``squeeze`` as in
:class:`snlib.losses.SupportNeighborLoss` ("paper": the furthest same-label candidate; "pair": the distance
between two reference samples, which carries no gradient when the reference is a detached memory bank). Anchors
without a same-label candidate do not count; the reducer (default: the mean) reduces the others.

The distance must be a distance, not a similarity (default ``LpDistance()``: Euclidean distance of the
L2-normalised embeddings, as snlib). Work is done in float32 (float64 for float64 embeddings), autocast off.
"""
from __future__ import annotations

import math

import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu
from torch import Tensor

from ..losses import SQUEEZE_READINGS
from ..losses.base import autocast_off
from ..losses.support_neighbor import check_sn_options, check_sn_weight

__all__ = ["SupportNeighborLoss", "CrossBatchMemory", "candidate_mask"]


def candidate_mask(labels: Tensor, ref_labels: Tensor, indices_tuple=None, ref_is_batch: bool = False) -> Tensor:
    """(N, M) bool: the reference samples each anchor may draw its support neighbours from (module docstring).

    Without ``indices_tuple``: every pair, less the diagonal when the reference is the batch itself; with one:
    exactly the (anchor, reference) pairs it names, as pairs (``lmu.convert_to_pairs``).
    """
    n, m = len(labels), len(ref_labels)
    if indices_tuple is None:
        mask = torch.ones(n, m, dtype=torch.bool, device=labels.device)
        if ref_is_batch:
            mask.fill_diagonal_(False)
        return mask
    if len(indices_tuple) not in (3, 4):
        raise ValueError("indices_tuple must be a miner's pairs (a1, p, a2, n) or triplets (a, p, n); "
                         f"got a tuple of {len(indices_tuple)}")
    a1, p, a2, neg = lmu.convert_to_pairs(indices_tuple, labels, ref_labels)
    mask = torch.zeros(n, m, dtype=torch.bool, device=labels.device)
    mask[a1.long(), p.long()] = True
    mask[a2.long(), neg.long()] = True
    return mask


class SupportNeighborLoss(pml_losses.BaseMetricLossFunction):
    """The Support Neighbor loss as a PML loss: see the module docstring for candidates, sets and reduction.

    ``k``, ``alpha``, ``lam``, ``squeeze``: as :class:`snlib.losses.SupportNeighborLoss` (paper: 10, 50, 0.1; the
    released squeeze). PML keyword arguments (``distance``, ``reducer``, ``embedding_regularizer``, ...) pass on.
    """

    def __init__(self, k: int = 10, alpha: float = 50.0, lam: float = 0.1, squeeze: str = "released", **kwargs):
        super().__init__(**kwargs)
        check_sn_options(k, alpha, squeeze)
        check_sn_weight(lam)
        if self.distance.is_inverted:
            raise ValueError(f"the SN loss needs a distance (smaller = closer); {type(self.distance).__name__} is a "
                             "similarity: use LpDistance (the default)")
        self.k, self.alpha, self.lam, self.squeeze = k, float(alpha), float(lam), squeeze
        self.add_to_recordable_attributes(list_of_names=["k", "alpha", "lam"], is_stat=False)

    def get_default_distance(self):
        return LpDistance(normalize_embeddings=True, p=2, power=1)

    def compute_loss(self, embeddings, labels, indices_tuple, ref_emb, ref_labels):
        c_f.labels_required(labels)
        if ref_labels is None:
            raise ValueError("ref_emb needs ref_labels: the loss tells positives from negatives by label")
        dtype = torch.float64 if embeddings.dtype == torch.float64 else torch.float32
        with autocast_off(embeddings):
            ref_is_batch = ref_emb is embeddings
            emb = embeddings.to(dtype)
            ref = emb if ref_is_batch else ref_emb.to(dtype)
            candidates = candidate_mask(labels, ref_labels, indices_tuple, ref_is_batch)
            losses, anchors = self._per_anchor(emb, ref, labels, ref_labels, candidates)
        if anchors.numel() == 0:
            return self.zero_losses()
        return {"loss": {"losses": losses, "indices": anchors, "reduction_type": "element"}}

    def _per_anchor(self, emb, ref, labels, ref_labels, candidates) -> tuple[Tensor, Tensor]:
        """Per-anchor SN losses and the indices of the anchors that have a same-label candidate."""
        dist = self.distance(emb, ref)
        same = (labels[:, None] == ref_labels[None, :]) & candidates
        ranked = dist.detach().masked_fill(~candidates, math.inf)
        if ranked.shape[1] > self.k:
            threshold = ranked.kthvalue(self.k + 1, dim=1).values  # +inf where |C_i| <= k
        else:
            threshold = torch.full_like(ranked[:, 0], math.inf)
        neighbors = candidates & (ranked < threshold[:, None])
        anchors = same.any(dim=1).nonzero().flatten()
        d, same, neighbors, ranked = dist[anchors], same[anchors], neighbors[anchors], ranked[anchors]
        positive = neighbors & same
        nearest_same = ranked.masked_fill(~same, math.inf).argmin(dim=1)
        fallback = torch.zeros_like(same).scatter_(1, nearest_same[:, None], ~positive.any(dim=1, keepdim=True))
        positive = positive | fallback
        members = positive | (neighbors & ~same)
        logits = -self.alpha * d
        separation = (logits.masked_fill(~members, -math.inf).logsumexp(dim=1)
                      - logits.masked_fill(~positive, -math.inf).logsumexp(dim=1))
        return separation + self.lam * self._squeeze_term(d, ref, positive, same), anchors

    def _squeeze_term(self, d: Tensor, ref: Tensor, positive: Tensor, same: Tensor) -> Tensor:
        """L_sqz per anchor (rows of ``d``) for the reading ``self.squeeze`` (``SQUEEZE_READINGS``)."""
        nearest = d.masked_fill(~positive, math.inf).min(dim=1).values
        if self.squeeze == "released":
            return nearest
        if self.squeeze == "neighbors":
            spread = d.masked_fill(~positive, -math.inf).max(dim=1).values - nearest
            return torch.where(positive.sum(dim=1) == 1, nearest, spread)
        if self.squeeze == "paper":
            return d.masked_fill(~same, -math.inf).max(dim=1).values - nearest
        if self.squeeze == "pair":
            n_idx = d.detach().masked_fill(~positive, math.inf).argmin(dim=1)
            f_idx = d.detach().masked_fill(~same, -math.inf).argmax(dim=1)
            between = self.distance(ref[n_idx], ref[f_idx]).diagonal()  # the distance's normalising and power
            return torch.where(n_idx == f_idx, 0.0, between)
        assert self.squeeze in SQUEEZE_READINGS
        return torch.zeros_like(nearest)


class CrossBatchMemory(pml_losses.CrossBatchMemory):
    """PML's ``CrossBatchMemory`` (a memory bank of past embeddings as the reference set) that also accepts
    :class:`SupportNeighborLoss`: PML checks the wrapped loss against a fixed list of class names."""

    @staticmethod
    def supported_losses():
        return [*pml_losses.CrossBatchMemory.supported_losses(), SupportNeighborLoss.__name__]
