"""Seeing the SN loss: support-neighbour sets in 2-D, gradients, image grids, t-SNE, ranked lists, an explorer.

What the visualisation notebooks (07-11) share. The numbers come from :func:`snlib.losses.support_neighbors`
(the sets and per-anchor terms the loss optimises) and autograd on the loss itself, never from a re-implementation.

    toy_batch() -> (features, labels)                  a seeded 2-D batch of P identities x K images
    anchor_view(f, y, anchor, k, alpha, lam, squeeze)   one anchor: k-NN, S+, S-, threshold, furthest positive, terms
    sn_gradients(f, y, anchor=None, ...)                dL/df of one anchor's loss (or of the batch loss)
    radial_velocity(f, grads, anchor)                   dD_ij/dt under gradient descent (pulled in < 0 < pushed out)
    squeeze_pairs(view) / squeeze_readings(...)         what each squeeze reading pulls and pushes, its value
    test_pool(features, data) / sample_pk_batch(...)    the test images that have an identity, P x K batches of them
    initial_run(study)                                  the run at epoch 0 (the preset's model, untrained)
    support_composition(...) / composition_history(...) |S+|, |S-| and "no positive in the k-NN", test and training
    tsne_2d(...) / cluster_quality(...)                 Figure 6 and the numbers that go with it
    ranked_lists(...) / choose_queries(...)             Figure 5
    SupportNeighborExplorer                             the ipywidgets explorer (state() is plain data, render() draws)

Colours: positives (same identity as the anchor / correct match) green, negatives red, the fallback positive
(nearest positive outside the k-NN) orange, the anchor / query blue. Captions also carry "+" / "-" so the
figures do not rely on colour alone.

Person images are drawn only for the synthetic data set (:func:`images_allowed`): the real re-ID data sets are
for research use and their images must not appear in published figures.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import engine, settings
from .data import ReIDDataset, Sample, images_allowed, read_image  # images_allowed: the data-set spec's
from .evaluation import JUNK_PID, pairwise_distance
from .losses import SQUEEZE_READINGS, SupportNeighborLoss, support_neighbors
from .models import build_model, model_checkpoint
from .presets import config_hash

__all__ = [
    "POSITIVE", "NEGATIVE", "FALLBACK", "ANCHOR", "COMPOSITION", "images_allowed", "toy_batch", "AnchorView",
    "anchor_view", "pick_anchor", "sn_gradients", "radial_velocity", "squeeze_pairs", "squeeze_readings", "project_2d",
    "anchor_layout", "Pool", "test_pool", "sample_pk_batch", "initial_run", "support_composition",
    "composition_history", "tsne_2d", "cluster_quality", "RankedLists", "ranked_lists", "choose_queries",
    "load_images", "identity_thumbnails", "draw_anchor", "draw_radial", "plot_image_rows", "support_rows",
    "ranked_rows", "plot_hit_matrix", "plot_embedding", "plot_composition", "SupportNeighborExplorer",
]

POSITIVE, NEGATIVE, FALLBACK, ANCHOR = "#1a9850", "#d73027", "#f28e2b", "#2c7bb6"
#: The support-set composition the SN loss logs (``SupportNeighborLoss.last``) and the figures plot.
COMPOSITION = ("knn_without_positive", "support_pos", "support_neg")


# ----------------------------------------------------------------------------------------------- one anchor

def toy_batch(num_ids: int = 6, per_id: int = 4, radius: float = 0.6, spread: float = 0.2,
              seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A 2-D P x K toy batch (float64): identity centres evenly on a circle of ``radius``, images Gaussian
    around them with standard deviation ``spread``; labels 0..num_ids-1, ``per_id`` each. Distances are of the
    paper's scale (most in [0, 1.5]) so alpha = 50 acts as in training."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(num_ids) / num_ids
    centres = radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    labels = np.repeat(np.arange(num_ids), per_id)
    points = centres[labels] + spread * rng.standard_normal((len(labels), 2))
    return torch.from_numpy(points), torch.from_numpy(labels)


@dataclass(frozen=True)
class AnchorView:
    """The support-neighbour sets and SN terms of one anchor (indices into the batch, sorted by distance).

    ``positive`` is S+ (with the fallback positive when the k-NN held none: ``fallback`` is then True),
    ``negative`` S-; ``furthest_positive`` the anchor's furthest same-identity sample in the batch;
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
    same = sets.same_identity[anchor]
    return AnchorView(
        anchor=anchor, label=int(labels[anchor]), k=k, alpha=float(alpha), lam=float(lam), squeeze_reading=squeeze,
        distances=row, threshold=float(sets.threshold[anchor]),
        neighbors=_by_distance(sets.neighbors[anchor], row), positive=_by_distance(sets.positive[anchor], row),
        negative=_by_distance(sets.negative[anchor], row), fallback=not bool(sets.knn_has_positive[anchor]),
        furthest_positive=int(_by_distance(same, row)[-1]),
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


def squeeze_pairs(view: AnchorView) -> list[tuple[int, int]]:
    """The distances D_{anchor,j} in the anchor's squeeze term as ``(j, sign)``: +1 the term grows with the
    distance (gradient descent pulls j in), -1 it shrinks with it (j is pushed out)."""
    nearest, spread_end = int(view.positive[0]), int(view.positive[-1])
    return {
        "released": [(nearest, +1)],
        "neighbors": [(nearest, +1)] if len(view.positive) == 1 else [(spread_end, +1), (nearest, -1)],
        "paper": [(view.furthest_positive, +1), (nearest, -1)] if view.furthest_positive != nearest else [],
        "none": [],
    }[view.squeeze_reading]


def squeeze_readings(features, labels, anchor: int, k: int = 10, alpha: float = 50.0, lam: float = 0.1,
                     normalize: bool = True) -> pd.DataFrame:
    """One row per squeeze reading (docs/paper.md) for ``anchor``: what its squeeze term measures, its value and the
    anchor's loss."""
    rows = []
    for reading in SQUEEZE_READINGS:
        view = anchor_view(features, labels, anchor, k, alpha, lam, reading, normalize)
        pulls = [j for j, sign in squeeze_pairs(view) if sign > 0]
        pushes = [j for j, sign in squeeze_pairs(view) if sign < 0]
        rows.append({"reading": reading, "L_sep": view.separation, "L_sqz": view.squeeze,
                     "lambda * L_sqz": lam * view.squeeze, "anchor loss": view.total,
                     "pulls in": ", ".join(map(str, pulls)) or "-", "pushes out": ", ".join(map(str, pushes)) or "-"})
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


# ------------------------------------------------------------------------------------------- test-set data

@dataclass
class Pool:
    """Test images with an identity (query + gallery, junk and distractors left out), and their features."""
    features: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    samples: list[Sample]

    def subset(self, index) -> "Pool":
        index = np.asarray(index)
        return Pool(self.features[torch.as_tensor(index)], self.pids[index], self.camids[index],
                    [self.samples[i] for i in index])


def test_pool(features: dict, data: ReIDDataset) -> Pool:
    """Query + gallery of ``Study.features(run)`` (same order as ``data.query`` / ``data.gallery``) without the
    junk and distractor images, which have no identity to cluster or to find."""
    qf, q_pids, q_camids = features["query"]
    gf, g_pids, g_camids = features["gallery"]
    samples = list(data.query) + list(data.gallery)
    if len(samples) != len(qf) + len(gf):
        raise ValueError(f"{len(qf)} + {len(gf)} features for {len(samples)} test images: the features belong to "
                         "another version of the data set; delete the run's features.pt to extract them again")
    pids, camids = np.concatenate([q_pids, g_pids]), np.concatenate([q_camids, g_camids])
    keep = ~np.isin(pids, list(data.junk_pids) + list(data.distractor_pids))
    return Pool(torch.cat([qf, gf]), pids, camids, samples).subset(np.flatnonzero(keep))


def sample_pk_batch(pids, p: int, k: int, seed: int = 0) -> np.ndarray:
    """Indices of a P x K batch: ``p`` random identities among those with at least two images (all of them if
    fewer), ``min(k, available)`` of each identity's images without replacement (no duplicate points),
    grouped by identity."""
    pids = np.asarray(pids)
    rng = np.random.default_rng(seed)
    ids, counts = np.unique(pids, return_counts=True)
    eligible = ids[counts >= 2]
    if len(eligible) < 2:
        raise ValueError("a batch needs at least two identities with two images each")
    chosen = rng.choice(eligible, size=min(p, len(eligible)), replace=False)
    parts = []
    for pid in chosen:
        members = np.flatnonzero(pids == pid)
        parts.append(np.sort(rng.choice(members, size=min(k, len(members)), replace=False)))
    return np.concatenate(parts)


def initial_run(study, loss: str = "sn", seed: int = 0, **overrides) -> engine.RunResult:
    """The run at epoch 0: the preset's model as training starts it (ImageNet weights where the preset is
    pretrained, else the random initialisation of ``seed``), stored as a finished run under
    ``<cache>/epoch0-<config hash>/`` so that ``study.features`` and ``study.evaluate`` work on it."""
    config = study.config(loss, seed, **overrides)
    run_dir = settings.cache_root() / f"epoch0-{config_hash(config)}"
    if not (run_dir / engine.MODEL).is_file():
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model = build_model(config.model, pretrained=config.pretrained, last_stride=config.last_stride,
                                bnneck=config.bnneck, weights_path=config.weights_path)
        engine.atomic_save(model_checkpoint(model), run_dir / engine.MODEL)
    return engine.RunResult(config=config, run_dir=run_dir, history=[], evaluations=[], metrics={},
                            wall_time_s=0.0, from_cache=True, extra={"epoch": 0})


# ---------------------------------------------------------------------------------- composition of S+ / S-

def support_composition(features, pids, k: int = 10, p: int = 16, batch_k: int = 4, num_batches: int = 20,
                        seed: int = 0) -> dict[str, float]:
    """Mean composition of the support sets over ``num_batches`` random P x K batches of ``features``: the
    share of anchors whose k-NN holds no positive, and the mean number of positives / negatives in the k-NN
    (read from :class:`~snlib.losses.SupportNeighborLoss` ``.last``, as the training history is)."""
    loss = SupportNeighborLoss(k=k)
    features = torch.as_tensor(features)
    parts = []
    for b in range(num_batches):
        index = sample_pk_batch(pids, p, batch_k, seed=seed * 100_003 + b)
        loss(features[torch.as_tensor(index)], torch.as_tensor(np.asarray(pids)[index]))
        parts.append({key: loss.last[key] for key in COMPOSITION})
    return pd.DataFrame(parts).mean().to_dict()


def composition_history(history: pd.DataFrame) -> pd.DataFrame:
    """The support-set composition logged at every training iteration (``<term>/knn_without_positive``,
    ``/support_pos``, ``/support_neg`` of the run's SN term) as columns ``iteration``, ``epoch`` and those three
    names. Raises ``ValueError`` when the run's loss has no SN term."""
    found = {}
    for key in COMPOSITION:
        columns = [c for c in history.columns if c == key or c.endswith(f"/{key}")]
        if not columns:
            raise ValueError(f"the history has no {key!r} column (columns: {list(history.columns)}): only runs "
                             "whose loss has an SN term log the support-set composition")
        found[key] = history[columns[0]]
    return pd.DataFrame({"iteration": history["iteration"], "epoch": history["epoch"], **found})


# ------------------------------------------------------------------------------------------------ embeddings

def tsne_2d(features, seed: int = 0, perplexity: float = 30.0, max_iter: int = 1000, pca_dims: int = 50) -> np.ndarray:
    """Barnes-Hut t-SNE (scikit-learn, PCA initialisation, fixed ``random_state``) of the features, after a PCA
    to ``pca_dims`` dimensions (the usual speed-up; the neighbourhoods t-SNE keeps are barely changed); the
    perplexity is lowered to (N - 1) / 3 for small sets."""
    from sklearn.manifold import TSNE
    x = np.asarray(torch.as_tensor(features).double())
    if x.shape[1] > pca_dims:
        x, _ = project_2d(x, dims=min(pca_dims, len(x)))
    perplexity = min(perplexity, max(1.0, (len(x) - 1) / 3))
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                method="barnes_hut", max_iter=max_iter).fit_transform(x.astype(np.float32))


def cluster_quality(features, labels) -> dict[str, float]:
    """How well identities cluster in the full feature space (Euclidean, the features as given):
    ``silhouette`` (scikit-learn, in [-1, 1], higher is tighter and better separated) and ``nn_same_identity``
    (share of images, among those whose identity has another image, whose nearest other image shares it)."""
    from sklearn.metrics import silhouette_score
    x = torch.as_tensor(features).double()
    labels = np.asarray(labels)
    dist = torch.cdist(x, x).fill_diagonal_(math.inf).numpy()
    nearest = dist.argmin(axis=1)
    ids, counts = np.unique(labels, return_counts=True)
    counted = np.isin(labels, ids[counts >= 2])
    return {"silhouette": float(silhouette_score(x.numpy(), labels)),
            "nn_same_identity": float((labels[nearest] == labels)[counted].mean())}


# ----------------------------------------------------------------------------------------------- ranked lists

@dataclass(frozen=True)
class RankedLists:
    """Top-``topk`` gallery indices per query after the Market-1501 removals, their distances and hits."""
    index: np.ndarray      # (nq, topk) gallery indices, nearest first
    distance: np.ndarray   # (nq, topk)
    correct: np.ndarray    # (nq, topk) bool: same identity as the query


def ranked_lists(qf, gf, q_pids, g_pids, q_camids, g_camids, topk: int = 10,
                 junk_pids=(JUNK_PID,)) -> RankedLists:
    """Each query's top-``topk`` gallery images by Euclidean distance of the features as given, with the
    Market-1501 protocol of :func:`snlib.evaluation.evaluate_rank`: same identity + same camera and junk
    removed, ties broken by gallery index. A query with fewer than ``topk`` candidates has its list padded with
    index -1."""
    dist = pairwise_distance(qf, gf).astype(np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    removed = (g_pids[None, :] == q_pids[:, None]) & (g_camids[None, :] == q_camids[:, None])
    removed |= np.isin(g_pids, list(junk_pids))[None, :]
    dist[removed] = np.inf
    order = np.argsort(dist, axis=1, kind="stable")[:, :topk]
    distance = np.take_along_axis(dist, order, axis=1)
    index = np.where(np.isfinite(distance), order, -1)
    correct = (g_pids[order] == q_pids[:, None]) & (index >= 0)
    return RankedLists(index=index, distance=distance, correct=correct)


def choose_queries(correct: np.ndarray, ap: np.ndarray, num_success: int = 3, num_failure: int = 3) -> pd.DataFrame:
    """Queries for a Figure-5 style display: ``num_success`` with a correct rank-1 and the highest AP, and
    ``num_failure`` with a wrong rank-1 and the lowest AP (valid queries only, ties by query index). Returns a
    frame with ``query``, ``kind`` ("success" / "failure"), ``AP`` and ``hits in top-k``; fewer rows when the
    run has fewer of a kind."""
    ap = np.asarray(ap, dtype=float)
    valid = np.isfinite(ap)
    first = correct[:, 0]
    order = np.lexsort((np.arange(len(ap)), -ap))          # AP descending, then index
    success = [q for q in order if valid[q] and first[q]][:num_success]
    failure = sorted((q for q in range(len(ap)) if valid[q] and not first[q]), key=lambda q: (ap[q], q))[:num_failure]
    rows = [(q, "success") for q in success] + [(q, "failure") for q in failure]
    return pd.DataFrame([{"query": int(q), "kind": kind, "AP": float(ap[q]), "hits in top-k": int(correct[q].sum())}
                         for q, kind in rows])


# ---------------------------------------------------------------------------------------------------- drawing

def load_images(samples: list[Sample]) -> list[np.ndarray]:
    """The images of ``samples`` as RGB arrays (for the synthetic data set only: see :func:`images_allowed`)."""
    return [np.asarray(read_image(s.path)) for s in samples]


def identity_thumbnails(pool: Pool, max_ids: int = 40) -> list[np.ndarray | None]:
    """One image per identity (its first in the pool) for the first ``max_ids`` identities in pool order,
    None for every other point: thumbnails for :func:`plot_embedding` that do not bury the plot."""
    _, first = np.unique(pool.pids, return_index=True)
    shown = np.sort(first)[:max_ids]
    thumbnails: list[np.ndarray | None] = [None] * len(pool.pids)
    for index, image in zip(shown, load_images([pool.samples[i] for i in shown])):
        thumbnails[index] = image
    return thumbnails


def _point_colours(view: AnchorView, labels) -> list[str]:
    labels = np.asarray(labels)
    return [POSITIVE if labels[j] == view.label else NEGATIVE for j in range(len(labels))]


def _set_markers(ax, xy, view: AnchorView, labels, size: float = 60) -> None:
    """Filled: in S+ / S-; hollow: outside the support set; star: the anchor."""
    colours = _point_colours(view, labels)
    inside = np.zeros(len(xy), bool)
    inside[np.concatenate([view.positive, view.negative]).astype(int)] = True
    inside[view.anchor] = False
    outside = ~inside
    outside[view.anchor] = False
    ax.scatter(xy[outside, 0], xy[outside, 1], s=size, facecolors="white",
               edgecolors=[c for c, o in zip(colours, outside) if o], linewidths=1.5, zorder=3)
    fill = [FALLBACK if (view.fallback and j in view.positive) else colours[j] for j in np.flatnonzero(inside)]
    ax.scatter(xy[inside, 0], xy[inside, 1], s=size, c=fill, edgecolors="black", linewidths=0.6, zorder=4)
    ax.scatter(*xy[view.anchor], s=3 * size, marker="*", c=ANCHOR, edgecolors="black", linewidths=0.6, zorder=5)
    ax.scatter(*xy[view.furthest_positive], s=2.6 * size, marker="D", facecolors="none", edgecolors=POSITIVE,
               linewidths=1.2, zorder=4)


def _legend(ax) -> None:
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], marker="*", ls="", ms=12, mfc=ANCHOR, mec="black", label="anchor"),
               Line2D([], [], marker="o", ls="", mfc=POSITIVE, mec="black", label="S+ (same identity, in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc=NEGATIVE, mec="black", label="S- (other identity, in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc=FALLBACK, mec="black", label="S+ fallback (no positive in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc="white", mec=POSITIVE, label="same identity, outside"),
               Line2D([], [], marker="o", ls="", mfc="white", mec=NEGATIVE, label="other identity, outside"),
               Line2D([], [], marker="D", ls="", mfc="none", mec=POSITIVE, label="furthest positive"),
               Line2D([], [], ls="--", color="grey", label="threshold t_i"),
               Line2D([], [], ls=":", lw=2.5, color=FALLBACK, label="squeeze term")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)


def _squeeze_lines(ax, xy, view: AnchorView) -> None:
    for j, sign in squeeze_pairs(view):
        ax.plot(*zip(xy[view.anchor], xy[j]), ls=":", lw=2.5, color=FALLBACK, zorder=2)
        ax.annotate("pull" if sign > 0 else "push", xy[j], textcoords="offset points", xytext=(6, -12),
                    fontsize=7, color=FALLBACK)


def draw_anchor(ax, xy, labels, view: AnchorView, grads=None, circle: bool = True, title: str | None = None,
                legend: bool = False, arrow_length: float = 0.25, offset: float = 0.0) -> None:
    """One anchor in 2-D: the sets (markers as :func:`_legend`), lines to the support neighbours, the threshold
    circle (``circle``: only where ``xy`` keeps the anchor's distances; radius t_i - ``offset``, the offset of
    :func:`anchor_layout`), the squeeze term's pairs, and ``-grads`` as arrows (the descent direction; the
    longest arrow is ``arrow_length`` of the plot's span)."""
    xy = np.asarray(xy, dtype=float)
    for j in np.concatenate([view.positive, view.negative]).astype(int):
        ax.plot(*zip(xy[view.anchor], xy[j]), lw=0.8, color="grey", alpha=0.6, zorder=1)
    if circle and math.isfinite(view.threshold):
        from matplotlib.patches import Circle
        ax.add_patch(Circle(xy[view.anchor], view.threshold - offset, fill=False, ls="--", color="grey", zorder=1))
    _squeeze_lines(ax, xy, view)
    _set_markers(ax, xy, view, labels)
    if grads is not None:
        step = -np.asarray(grads, dtype=float)[:, :2]
        span = np.ptp(xy, axis=0).max() or 1.0
        length = np.linalg.norm(step, axis=1)
        shown = length > 0.01 * length.max()          # arrows under 1% of the longest would be dots
        if shown.any():
            step = step * (arrow_length * span / length.max())
            ax.quiver(xy[shown, 0], xy[shown, 1], step[shown, 0], step[shown, 1], angles="xy", scale_units="xy",
                      scale=1, width=0.004, color="black", alpha=0.8, zorder=6)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        _legend(ax)


def draw_radial(ax, velocity: np.ndarray, view: AnchorView, labels, top: int | None = None) -> None:
    """Bar chart of d D_{anchor,j}/dt for the anchor's support neighbours and positives (sorted by distance):
    below zero pulled in, above pushed out; bars coloured as the sets."""
    shown = np.unique(np.concatenate([view.neighbors, view.positive,
                                      np.flatnonzero(np.asarray(labels) == view.label)]).astype(int))
    shown = shown[shown != view.anchor]
    shown = shown[np.argsort(view.distances[shown], kind="stable")][:top]
    from matplotlib.colors import to_rgba
    colours = _point_colours(view, labels)
    in_set = set(np.concatenate([view.positive, view.negative]).astype(int))
    fill = [to_rgba(colours[j], 1.0 if j in in_set else 0.3) for j in shown]
    ax.bar(range(len(shown)), velocity[shown], color=fill, edgecolor="black", linewidth=0.4)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(shown)), [f"{view.distances[j]:.2f}" for j in shown], rotation=90, fontsize=7)
    ax.set_xlabel("neighbour (labelled by its distance to the anchor)", fontsize=8)
    ax.set_ylabel("dD/dt  (<0 pulled in, >0 pushed out)", fontsize=8)


def _draw_cell(ax, image: np.ndarray, caption: str, colour: str) -> None:
    """An image with a thick frame in ``colour`` and ``caption`` under it."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_xlabel(caption, fontsize=7, labelpad=2)


def plot_image_rows(rows: list[list[tuple[np.ndarray, str, str]]], row_titles: list[str] | None = None,
                    cell: float = 0.9, title: str | None = None):
    """A figure of image rows; each cell ``(image, caption, frame colour)``, a thick frame in that colour and
    the caption under the image. Rows may differ in length."""
    import matplotlib.pyplot as plt
    cols = max(len(r) for r in rows)
    height = rows[0][0][0].shape[0] / rows[0][0][0].shape[1]
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols, cell * height * len(rows) * 1.2),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(row):
                ax.axis("off")
                continue
            _draw_cell(ax, *row[c])
        if row_titles:
            axes[r][0].set_ylabel(row_titles[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def support_rows(view: AnchorView, images: list[np.ndarray]) -> list[tuple[np.ndarray, str, str]]:
    """One image row: the anchor, then its support neighbours by distance (S+ green "+", S- red "-", a
    fallback positive orange "+fb")."""
    row = [(images[view.anchor], "anchor", ANCHOR)]
    positives = set(view.positive.tolist())
    for j in sorted(set(view.neighbors.tolist()) | positives, key=lambda j: view.distances[j]):
        if j in positives:
            mark, colour = ("+fb", FALLBACK) if view.fallback else ("+", POSITIVE)
        else:
            mark, colour = "-", NEGATIVE
        row.append((images[j], f"{mark} {view.distances[j]:.2f}", colour))
    return row


def ranked_rows(ranked: RankedLists, queries, query_images, gallery_images) -> list[list]:
    """Image rows for :func:`plot_image_rows`: each query, then its top-k (correct green "+", wrong red "-",
    with the distance)."""
    rows = []
    for q in queries:
        row = [(query_images[q], "query", ANCHOR)]
        for g, d, ok in zip(ranked.index[q], ranked.distance[q], ranked.correct[q]):
            if g >= 0:
                row.append((gallery_images[g], f"{'+' if ok else '-'} {d:.2f}", POSITIVE if ok else NEGATIVE))
        rows.append(row)
    return rows


def plot_hit_matrix(ax, correct: np.ndarray, row_labels: list[str]) -> None:
    """The ranked lists without images (real data sets): one row per query, green = correct, red = wrong."""
    from matplotlib.colors import ListedColormap
    ax.imshow(np.asarray(correct, dtype=float), cmap=ListedColormap([NEGATIVE, POSITIVE]), vmin=0, vmax=1,
              aspect="auto")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xticks(range(correct.shape[1]), [str(r + 1) for r in range(correct.shape[1])], fontsize=8)
    ax.set_xlabel("rank")


def _identity_colours(labels) -> np.ndarray:
    import matplotlib
    palette = np.concatenate([matplotlib.colormaps[name](np.linspace(0, 1, 20))
                              for name in ("tab20", "tab20b", "tab20c")])
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    return palette[(codes * 7) % len(palette)]


def plot_embedding(ax, xy: np.ndarray, labels, title: str | None = None, thumbnails=None,
                   thumb_zoom: float = 0.35) -> None:
    """A 2-D embedding, points coloured by identity; with ``thumbnails`` (list of images, or None entries) the
    image is drawn at its point, framed in the identity's colour."""
    xy = np.asarray(xy)
    colours = _identity_colours(labels)
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=10, linewidths=0)
    if thumbnails is not None:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        for point, image, colour in zip(xy, thumbnails, colours):
            if image is not None:
                box = AnnotationBbox(OffsetImage(image, zoom=thumb_zoom), point, frameon=True, pad=0.1,
                                     bboxprops={"edgecolor": colour, "linewidth": 1.5})
                ax.add_artist(box)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_composition(curves: pd.DataFrame, reference: pd.DataFrame | None = None):
    """Support-set composition during training (``composition_history``; thin: every iteration, bold: epoch
    means) and, with ``reference`` (rows: model, columns as ``support_composition``), the same measured on
    test-set batches, as horizontal lines."""
    import matplotlib.pyplot as plt
    names = {"knn_without_positive": "share of anchors with no positive in the k-NN",
             "support_pos": "mean |S+| in the k-NN (before fallback)", "support_neg": "mean |S-| in the k-NN"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    per_epoch = curves.groupby("epoch").agg({"iteration": "max", **{c: "mean" for c in names}})
    for ax, (column, label) in zip(axes, names.items()):
        ax.plot(curves["iteration"], curves[column], lw=0.6, color="grey", alpha=0.7, label="training batch")
        ax.plot(per_epoch["iteration"], per_epoch[column], "o-", color="black", label="epoch mean")
        if reference is not None:
            for n, (model, values) in enumerate(reference.iterrows()):
                ax.axhline(values[column], ls=("--", "-.", ":")[n % 3], lw=1.4, color=f"C{n % 10}",
                           label=f"test batches: {model}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------- explorer

class SupportNeighborExplorer:
    """Interactive view of one test-set P x K batch: pick a model (e.g. before / after training), an anchor,
    k, alpha, lambda and the squeeze reading; see the sets (anchor-centred layout with the true distances),
    the radial pull / push of every neighbour under gradient descent, the anchor's terms and its ranked list
    over the whole test pool.

    ``pools``: model name -> :class:`Pool` (same images in the same order, features of that model);
    ``batch``: indices into the pool; ``images``: one image per pool entry, or None (real data sets: no
    images are drawn). :meth:`state` is plain data (tested), :meth:`render` draws it, :meth:`widget` wires
    ipywidgets to :meth:`render`.
    """

    def __init__(self, pools: dict[str, Pool], batch, images: list[np.ndarray] | None = None, topk: int = 10,
                 anchor: int = 0, k: int = 10, alpha: float = 50.0, lam: float = 0.1, squeeze: str = "released"):
        if not pools:
            raise ValueError("pools is empty: pass at least one model's test pool")
        sizes = {name: len(pool.pids) for name, pool in pools.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the pools hold different test sets ({sizes}); extract them from the same data set")
        self.pools, self.batch, self.images, self.topk = pools, np.asarray(batch), images, topk
        self.defaults = {"model": next(iter(pools)), "anchor": anchor, "k": k, "alpha": alpha, "lam": lam,
                         "squeeze": squeeze}

    def state(self, model: str, anchor: int, k: int, alpha: float, lam: float, squeeze: str) -> dict:
        """Everything one rendering shows, for anchor number ``anchor`` of the batch."""
        pool = self.pools[model]
        features = pool.features[torch.as_tensor(self.batch)].double()
        labels = torch.as_tensor(pool.pids[self.batch])
        view = anchor_view(features, labels, anchor, k, alpha, lam, squeeze)
        grads = sn_gradients(features, labels, anchor, k, alpha, lam, squeeze)
        query = self.batch[anchor]
        ranked = ranked_lists(pool.features[[query]], pool.features, pool.pids[[query]], pool.pids,
                              pool.camids[[query]], pool.camids, topk=self.topk)
        return {"view": view, "layout": anchor_layout(features, view, offset=view.zoom_offset),
                "labels": labels.numpy(), "velocity": radial_velocity(features, grads, anchor), "ranked": ranked,
                "query": int(query)}

    def summary(self, state: dict, k: int, alpha: float, lam: float, squeeze: str) -> str:
        """The text of one rendering: the settings, the anchor's terms and its ranked list's hits (+ / -)."""
        terms = "\n".join(f"{name:>24s}  {value:.4g}" for name, value in state["view"].terms().items())
        hits = "".join("+" if c else "-" for c in state["ranked"].correct[0])
        return (f"k={k}  alpha={alpha:g}  lambda={lam:g}\nsqueeze={squeeze}\n\n{terms}\n\n"
                f"top-{self.topk} over the test set:\n{hits}")

    def render(self, model: str, anchor: int, k: int, alpha: float, lam: float, squeeze: str,
               state: dict | None = None):
        """Draw :meth:`state` (2-D sets, radial pull / push, terms; images only when ``images`` is given);
        ``state``: that state when already computed."""
        import matplotlib.pyplot as plt
        s = state if state is not None else self.state(model, anchor, k, alpha, lam, squeeze)
        view = s["view"]
        with_images = self.images is not None
        fig = plt.figure(figsize=(14, 10 if with_images else 4.6))
        grid = fig.add_gridspec(3 if with_images else 1, 3, height_ratios=[2.6, 1, 1] if with_images else None,
                                hspace=0.55, wspace=0.3)
        draw_anchor(fig.add_subplot(grid[0, 0]), s["layout"], s["labels"], view, offset=view.zoom_offset,
                    title=f"{model}: anchor {anchor} (identity {view.label})\n"
                          f"radius = distance to the anchor - {view.zoom_offset:.2f}")
        draw_radial(fig.add_subplot(grid[0, 1]), s["velocity"], view, s["labels"], top=2 * k)
        text = fig.add_subplot(grid[0, 2])
        text.axis("off")
        text.text(0, 0.95, self.summary(s, k, alpha, lam, squeeze), family="monospace", fontsize=8, va="top")
        if with_images:
            batch_images = [self.images[i] for i in self.batch]
            rows = {"support set": support_rows(view, batch_images),
                    "ranked list": ranked_rows(s["ranked"], [0], [self.images[s["query"]]], self.images)[0]}
            for row, (label, cells) in enumerate(rows.items(), start=1):
                sub = grid[row, :].subgridspec(1, max(len(cells), self.topk + 1))
                for c, cell in enumerate(cells):
                    _draw_cell(fig.add_subplot(sub[0, c]), *cell)
                fig.axes[-len(cells)].set_ylabel(label, fontsize=8)
        return fig

    def widget(self):
        """ipywidgets controls wired to :meth:`render` (JupyterLab); returns the widget box.

        In a batch run (``make reproduce`` sets ``SNLIB_BATCH=1``) no widget is built and ``None`` is returned:
        papermill waits forever on an ipywidgets interactive output (papermill issue #723)."""
        if settings.batch_mode():
            print(f"{settings.BATCH_ENV}=1 (batch run): the widget is built when the notebook runs in JupyterLab; "
                  "the static rendering below stands in for it")
            return None
        import ipywidgets as w
        import matplotlib.pyplot as plt
        from IPython.display import display
        d = self.defaults
        controls = {
            "model": w.Dropdown(options=list(self.pools), value=d["model"], description="model"),
            "anchor": w.IntSlider(value=d["anchor"], min=0, max=len(self.batch) - 1, description="anchor"),
            "k": w.IntSlider(value=d["k"], min=1, max=len(self.batch) - 1, description="k"),
            "alpha": w.FloatLogSlider(value=d["alpha"], base=10, min=0, max=2.5, description="alpha"),
            "lam": w.FloatLogSlider(value=d["lam"], base=10, min=-4, max=1, description="lambda"),
            "squeeze": w.Dropdown(options=list(SQUEEZE_READINGS), value=d["squeeze"], description="squeeze"),
        }

        def show(**values):
            state = self.state(**values)
            print(f"{values['model']}: anchor {values['anchor']} (identity {state['view'].label})\n"
                  + self.summary(state, values["k"], values["alpha"], values["lam"], values["squeeze"]))
            fig = self.render(**values, state=state)
            display(fig)
            plt.close(fig)

        out = w.interactive_output(show, controls)
        return w.VBox([w.HBox(list(controls.values())[:3]), w.HBox(list(controls.values())[3:]), out])
