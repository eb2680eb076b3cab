"""The SN loss of one anchor, as :func:`snlib.losses.support_neighbors` computes it: its k-NN, S+ and S-, the
threshold, the terms, the gradients (autograd on the loss itself, never a re-implementation) and 2-D layouts.

    toy_batch() -> (features, labels)                  a seeded 2-D batch of P identities x K images
    anchor_view(f, y, anchor, k, alpha, lam, squeeze)   one anchor: k-NN, S+, S-, threshold, furthest positive, terms
    sn_gradients(f, y, anchor=None, ...)                dL/df of one anchor's loss (or of the batch loss)
    radial_velocity(f, grads, anchor)                   dD_ij/dt under gradient descent (pulled in < 0 < pushed out)
    squeeze_pairs(view) / squeeze_readings(...)         what each squeeze reading pulls and pushes, its value
    project_2d(f) / anchor_layout(f, view)              PCA plane; the anchor-centred layout with the true distances
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..losses import SQUEEZE_READINGS, SupportNeighborLoss, support_neighbors


def toy_batch(num_ids: int = 6, per_id: int = 4, radius: float = 0.6, spread: float = 0.2, seed: int = 0,
              lone: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D P x K toy batch (float64): identity centres evenly on a circle of ``radius``, images Gaussian
    around them with standard deviation ``spread``; labels 0..num_ids-1, ``per_id`` each. Distances are of the
    paper's scale (most in [0, 1.5]) so alpha = 50 acts as in training. ``lone``: one more image, of identity
    ``num_ids`` seen once, near the centre of the circle (it has no positive, so it adds no loss)."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(num_ids) / num_ids
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(num_ids), per_id)
    points = centres[labels] + spread * rng.standard_normal((len(labels), 2))
    if lone:
        points = np.concatenate([points, spread * rng.standard_normal((1, 2))])
        labels = np.append(labels, num_ids)
    return torch.from_numpy(points), torch.from_numpy(labels)


@dataclass(frozen=True)
class AnchorView:
    """The support-neighbour sets and SN terms of one anchor (indices into the batch, sorted by distance).

    ``positive`` is S+ (with the fallback positive when the k-NN held none: ``fallback`` is then True),
    ``negative`` S-; ``furthest_positive`` the anchor's furthest same-identity sample in the batch (lowest index
    among ties, as the loss);
    ``total = separation + lam * squeeze``; ``distances`` the anchor's row of D (the anchor itself 0).
    """
    anchor: int
    label: int
    k: int
    alpha: float
    lam: float
    squeeze_reading: str
    distances: np.ndarray
    threshold: float
    neighbors: np.ndarray
    positive: np.ndarray
    negative: np.ndarray
    fallback: bool
    furthest_positive: int
    separation: float
    squeeze: float

    @property
    def total(self) -> float:
        return self.separation + self.lam * self.squeeze

    @property
    def zoom_offset(self) -> float:
        """0.9 x the distance of the nearest neighbour: subtracted from every radius by :func:`anchor_layout`
        (and from the threshold circle by :func:`draw_anchor`), it magnifies the differences between
        distances that concentrate in high dimension (unit features of a trained net are all ~1.2-1.4 apart)."""
        return 0.9 * float(self.distances[self.neighbors[0]]) if len(self.neighbors) else 0.0

    def terms(self) -> dict[str, float]:
        """The anchor's loss terms and set sizes (what the notebooks tabulate)."""
        return {"|S+|": len(self.positive), "|S-|": len(self.negative), "threshold t_i": self.threshold,
                "L_sep": self.separation, "L_sqz": self.squeeze, "lambda * L_sqz": self.lam * self.squeeze,
                "L_sep + lambda * L_sqz": self.total}


def _by_distance(mask_row: torch.Tensor, distances: np.ndarray) -> np.ndarray:
    index = mask_row.nonzero().flatten().cpu().numpy()
    return index[np.argsort(distances[index], kind="stable")]


def anchor_view(features, labels, anchor: int, k: int = 10, alpha: float = 50.0, lam: float = 0.1,
                squeeze: str = "released", normalize: bool = True) -> AnchorView:
    """The sets and terms of ``anchor`` exactly as :func:`snlib.losses.support_neighbors` computes them."""
    features, labels = torch.as_tensor(features), torch.as_tensor(labels)
    if not 0 <= anchor < len(labels):
        raise ValueError(f"anchor {anchor} is not a row of the batch (0..{len(labels) - 1})")
    with torch.no_grad():
        sets = support_neighbors(features, labels, k=k, alpha=alpha, squeeze=squeeze, normalize=normalize)
    if not sets.has_positive[anchor]:
        raise ValueError(f"anchor {anchor} (identity {int(labels[anchor])}) has no other image of its identity in "
                         "the batch, so it has no positive and no SN loss; pick another anchor")
    row = sets.distances[anchor].double().cpu().numpy()
    row[anchor] = 0.0
    same = sets.same_identity[anchor].nonzero().flatten().cpu().numpy()
    return AnchorView(
        anchor=anchor, label=int(labels[anchor]), k=k, alpha=float(alpha), lam=float(lam), squeeze_reading=squeeze,
        distances=row, threshold=float(sets.threshold[anchor]),
        neighbors=_by_distance(sets.neighbors[anchor], row), positive=_by_distance(sets.positive[anchor], row),
        negative=_by_distance(sets.negative[anchor], row), fallback=not bool(sets.knn_has_positive[anchor]),
        furthest_positive=int(same[np.argmax(row[same])]),   # first among ties
        separation=float(sets.separation[anchor]), squeeze=float(sets.squeeze[anchor]),
    )


def pick_anchor(features, labels, k: int = 10, want: str | tuple[str, ...] = "mixed", normalize: bool = True) -> int:
    """An anchor whose k-NN shows the case ``want``: ``"mixed"`` (positives and negatives in the k-NN and a
    positive outside it, the typical case mid-training), ``"fallback"`` (no positive in the k-NN) or
    ``"hardest"`` (any anchor with a positive); among those, the one with the largest separation term (lowest
    index on ties). A tuple of cases is tried in order. Raises ``LookupError`` when no case is present."""
    with torch.no_grad():
        sets = support_neighbors(torch.as_tensor(features), torch.as_tensor(labels), k=k, normalize=normalize)
    knn_pos = (sets.neighbors & sets.same_identity).sum(dim=1)
    knn_neg = (sets.neighbors & sets.other_identity).sum(dim=1)
    outside = (sets.same_identity & ~sets.neighbors).any(dim=1)
    cases = {"mixed": (knn_pos > 0) & (knn_neg > 0) & outside, "fallback": sets.has_positive & (knn_pos == 0),
             "hardest": sets.has_positive}
    wanted = (want,) if isinstance(want, str) else tuple(want)
    for case in wanted:
        if case not in cases:
            raise ValueError(f"want={case!r}; choose among {sorted(cases)}")
        if cases[case].any():
            score = sets.separation.double().masked_fill(~cases[case], -math.inf)
            return int(torch.argmax(score))   # first maximum
    raise LookupError(f"no anchor of this batch is a {' or '.join(map(repr, wanted))} case at k={k}")


def sn_gradients(features, labels, anchor: int | None = None, k: int = 10, alpha: float = 50.0,
                 lam: float = 0.1, squeeze: str = "released", normalize: bool = True, part: str = "loss") -> np.ndarray:
    """dL/df (N, D) by autograd. With ``anchor``: L = L_sep(anchor) + lam * L_sqz(anchor) (``part="loss"``), or
    only L_sep (``"separation"``) or only lam * L_sqz (``"squeeze"``); the two parts add up to the whole.
    Without ``anchor``: the batch loss :class:`~snlib.losses.SupportNeighborLoss` (the mean over anchors).
    Gradient descent moves each point along the negative of its row."""
    x = torch.as_tensor(features).detach().clone().requires_grad_(True)
    labels = torch.as_tensor(labels)
    if part not in ("loss", "separation", "squeeze"):
        raise ValueError(f"part={part!r}; choose 'loss', 'separation' or 'squeeze'")
    if anchor is None:
        if part != "loss":
            raise ValueError("part applies to one anchor's loss: pass anchor")
        loss = SupportNeighborLoss(k=k, alpha=alpha, lam=lam, squeeze=squeeze, normalize=normalize)(x, labels)
    else:
        sets = support_neighbors(x, labels, k=k, alpha=alpha, squeeze=squeeze, normalize=normalize)
        if not sets.has_positive[anchor]:
            raise ValueError(f"anchor {anchor} has no positive in the batch: its loss is undefined")
        pieces = {"separation": sets.separation[anchor], "squeeze": lam * sets.squeeze[anchor]}
        loss = pieces[part] if part in pieces else sum(pieces.values())
        if not loss.requires_grad:   # the "none" squeeze is a constant 0
            return np.zeros(tuple(x.shape))
    (grad,) = torch.autograd.grad(loss, x)
    return grad.double().numpy()


def radial_velocity(features, grads, anchor: int, normalize: bool = True) -> np.ndarray:
    """d D_{anchor,j} / dt for every j when all features move along ``-grads`` (gradient descent): negative
    when j is pulled towards the anchor, positive when pushed away. Exact (a Jacobian-vector product through
    the normalisation), so it holds in the full feature space whatever 2-D layout draws it."""
    x = torch.as_tensor(features).double()
    direction = -torch.as_tensor(grads).double()

    def row(f):
        f = F.normalize(f, dim=1) if normalize else f
        return (f - f[anchor]).pow(2).sum(dim=1).clamp(min=1e-24).sqrt()

    _, velocity = torch.autograd.functional.jvp(row, (x,), (direction,))
    velocity[anchor] = 0.0
    return velocity.numpy()


def squeeze_pairs(view: AnchorView) -> list[tuple[int, int, int]]:
    """The distances D_ab in the anchor's squeeze term as ``(a, b, sign)``: +1 the term grows with the distance
    (gradient descent pulls a and b together), -1 it shrinks with it (pushes them apart). a is the anchor except
    for ``"pair"``, whose term is D_nf (nearest support positive n, furthest positive f)."""
    anchor, nearest, spread_end = view.anchor, int(view.positive[0]), int(view.positive[-1])
    furthest = view.furthest_positive
    return {
        "released": [(anchor, nearest, +1)],
        "neighbors": ([(anchor, nearest, +1)] if len(view.positive) == 1
                      else [(anchor, spread_end, +1), (anchor, nearest, -1)]),
        "paper": [(anchor, furthest, +1), (anchor, nearest, -1)] if furthest != nearest else [],
        "none": [],
        "pair": [(nearest, furthest, +1)] if furthest != nearest else [],
    }[view.squeeze_reading]


def squeeze_readings(features, labels, anchor: int, k: int = 10, alpha: float = 50.0, lam: float = 0.1,
                     normalize: bool = True) -> pd.DataFrame:
    """One row per squeeze reading (docs/paper.md) for ``anchor``: what its squeeze term measures, its value and the
    anchor's loss. "pulls in" / "pushes out": the samples moved towards / away from the anchor, or ``"n-f"`` for
    two samples moved towards each other (``"pair"``)."""
    rows = []
    for reading in SQUEEZE_READINGS:
        view = anchor_view(features, labels, anchor, k, alpha, lam, reading, normalize)
        moved = [(str(b) if a == anchor else f"{a}-{b}", sign) for a, b, sign in squeeze_pairs(view)]
        pulls = [name for name, sign in moved if sign > 0]
        pushes = [name for name, sign in moved if sign < 0]
        rows.append({"reading": reading, "L_sep": view.separation, "L_sqz": view.squeeze,
                     "lambda * L_sqz": lam * view.squeeze, "anchor loss": view.total,
                     "pulls in": ", ".join(pulls) or "-", "pushes out": ", ".join(pushes) or "-"})
    return pd.DataFrame(rows)


def project_2d(features, dims: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """PCA: (coordinates (N, dims), components (dims, D)); each component's largest loading made positive so
    the picture does not flip between runs."""
    x = np.asarray(torch.as_tensor(features).double())
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:dims] * np.sign(vt[np.arange(dims), np.abs(vt[:dims]).argmax(axis=1)])[:, None]
    return centred @ components.T, components


def anchor_layout(features, view: AnchorView, normalize: bool = True, offset: float = 0.0) -> np.ndarray:
    """2-D positions that keep the anchor's true distances: point j at radius D_{anchor,j} - ``offset`` (full
    space) from the anchor at the origin, in the direction j takes in the batch's PCA plane. The order of the
    distances, the threshold circle (radius t_i - offset) and the k-NN are then exact; the distances between two
    other points are not. ``offset`` below the nearest distance (e.g. ``view.zoom_offset``) magnifies."""
    x = torch.as_tensor(features).double()
    x = F.normalize(x, dim=1) if normalize else x
    xy, _ = project_2d(x)
    delta = xy - xy[view.anchor]
    length = np.linalg.norm(delta, axis=1, keepdims=True)
    direction = np.where(length > 0, delta / np.where(length > 0, length, 1), np.array([1.0, 0.0]))
    radius = np.where(np.arange(len(xy)) == view.anchor, 0.0, view.distances - offset)
    return direction * radius[:, None]


def describe_view(view: AnchorView, labels) -> str:
    """The anchor, its k-NN with their distances and identities, S+, S-, the furthest positive and the terms."""
    labels = torch.as_tensor(labels)
    return (f"anchor {view.anchor} (identity {view.label}); its {view.k} nearest neighbours: {view.neighbors.tolist()}\n"
            f"their distances: {view.distances[view.neighbors].round(4).tolist()}  identities: "
            f"{labels[view.neighbors].tolist()}\n"
            f"S+ = {view.positive.tolist()}   S- = {view.negative.tolist()}   furthest positive: "
            f"{view.furthest_positive}\n" + pd.Series(view.terms()).round(4).to_string())


def describe_fallback(view: AnchorView) -> str:
    """An anchor with no positive in its k-NN: its k-NN, the fallback S+ and the terms."""
    return (f"anchor {view.anchor} (identity {view.label}): k-NN {view.neighbors.tolist()} all of other identities;"
            f" fallback S+ = {view.positive.tolist()}\n" + pd.Series(view.terms()).round(4).to_string())


def describe_gradient_parts(features, labels, anchor: int, **options) -> str:
    """The largest gradient on one point of the separation part and of the squeeze part of ``anchor``'s loss."""
    return "\n".join(f"largest gradient of the {part} part on one point: "
                     f"{np.linalg.norm(sn_gradients(features, labels, anchor, part=part, **options), axis=1).max():.4f}"
                     for part in ("separation", "squeeze"))


def pick_view(features, labels, want: str | tuple[str, ...] = "mixed", k: int = 10, alpha: float = 50.0,
              lam: float = 0.1, squeeze: str = "released", normalize: bool = True) -> AnchorView:
    """:func:`anchor_view` of the anchor :func:`pick_anchor` picks for the case ``want``."""
    anchor = pick_anchor(features, labels, k=k, want=want, normalize=normalize)
    return anchor_view(features, labels, anchor, k, alpha, lam, squeeze, normalize)
