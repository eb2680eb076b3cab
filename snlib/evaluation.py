"""Re-ID evaluation: distances, CMC / mAP / mINP in two AP conventions, multi-query pooling, CUHK03 classic CMC,
k-reciprocal re-ranking (re-exported from :mod:`snlib.reranking`).

Protocol (Market-1501; the data set's official code, torchreid and fast-reid agree on it):
    * for each query, the gallery images of the query's identity taken by the query's camera are removed;
    * gallery images of identity -1 (Market-1501's "junk" boxes) are removed for every query, as in the
      official code. Identity 0 (Market-1501's distractors) and every other identity stay, as non-matches;
    * a query left with no gallery image of its identity is skipped, and counted in ``num_skipped``;
    * ranking ties are broken by gallery index (a stable sort, as MATLAB's sort in the official code).

torchreid's ``evaluate_rank`` does not look at identity -1: a junk image from another camera stays in its ranking
as a non-match. torchreid never meets one, because its Market-1501 loader drops those images, so
``evaluate_rank(d, q_pids, g_pids, ...)`` here equals torchreid's on ``d[:, g_pids != -1]``; on galleries
without identity -1 the two are equal as they stand.

Metrics, per valid query with R relevant gallery images, the i-th hit (0-based) at rank r (0-based, after the
removals above):
    CMC[k]   fraction of valid queries whose first hit has r <= k (rank-(k+1) accuracy)
    AP       ``ap="standard"``: (1/R) sum_hits (i+1)/(r+1)  (non-interpolated; torchreid, fast-reid, BoT)
             ``ap="market"``:   (1/R) sum_hits (i/r + (i+1)/(r+1)) / 2, with i/r = 1 when r = 0
                                (trapezoid rule of Market-1501's official MATLAB code; never above "standard")
    INP      R / (r_last + 1), r_last the rank of the last hit (fast-reid's mINP is its mean)
CMC, mAP and mINP are fractions in [0, 1]; ``RankResult.as_dict()`` gives percentages.

Everything accepts numpy arrays and torch tensors (CPU or CUDA). Distances are computed with torch (on the
features' device); ranking runs on the CPU with numpy, one block of queries at a time, so memory stays bounded
(:func:`evaluate_features` never holds the full query x gallery matrix: Market-1501 + 500k distractors fits).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .arrays import as_distance_matrix, check_finite, rows_per_block, to_numpy
from .reranking import re_ranking

__all__ = [
    "RankResult", "evaluate_rank", "evaluate_features", "pairwise_distance", "pool_multi_query",
    "cuhk03_classic_cmc", "market1501_removed", "re_ranking", "JUNK_PID", "METRICS", "AP_RULES",
]

#: Gallery identity that never counts (Market-1501's junk boxes).
JUNK_PID = -1
METRICS = ("euclidean", "sqeuclidean", "cosine")
AP_RULES = ("standard", "market")
_MIN_QUERY_ROWS = 64
_NO_VALID_QUERY = (
    "none of the {num_q} queries has a gallery image of its identity from another camera: check that query "
    "and gallery identities overlap and that pids and camids are not swapped"
)


# ---------------------------------------------------------------------------------------------- input checks
def _as_ids(array, name: str, length: int, axis_name: str) -> np.ndarray:
    ids = to_numpy(array, name)
    if ids.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {ids.shape}")
    if ids.dtype.kind not in "iu":
        example = ", ".join(repr(x) for x in ids[:3])
        raise TypeError(
            f"{name} must hold integer ids, got dtype {ids.dtype} ({example}...); map other labels to integers "
            "first, e.g. np.unique(labels, return_inverse=True)[1] (keep -1 for junk)"
        )
    if len(ids) != length:
        raise ValueError(f"{name} has {len(ids)} entries but there are {length} {axis_name}")
    return ids.astype(np.int64, copy=False)


def _check_choice(value, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _check_positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _ids(q_pids, g_pids, q_camids, g_camids, num_q: int, num_g: int):
    return (
        _as_ids(q_pids, "q_pids", num_q, "queries"),
        _as_ids(g_pids, "g_pids", num_g, "gallery images"),
        _as_ids(q_camids, "q_camids", num_q, "queries"),
        _as_ids(g_camids, "g_camids", num_g, "gallery images"),
    )


# ------------------------------------------------------------------------------------------------ distances
def _as_features(array, name: str) -> torch.Tensor:
    x = array if isinstance(array, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(_real(array, name)))
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (images x dimensions) matrix, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must hold floating-point features, got dtype {x.dtype}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty: it needs at least one image")
    step = rows_per_block(x.shape[1])
    for start in range(0, len(x), step):            # by blocks: no full-size mask for a 500k gallery
        finite = torch.isfinite(x[start:start + step]).all(dim=1)
        if not bool(finite.all()):
            row = start + int(torch.nonzero(~finite)[0])
            raise ValueError(f"{name}[{row}] holds NaN or infinite values: features must be finite")
    return x.detach().float() if x.dtype in (torch.float16, torch.bfloat16) else x.detach()


def _real(array, name: str) -> np.ndarray:
    a = to_numpy(array, name)
    if a.dtype.kind != "f":
        raise TypeError(f"{name} must hold floating-point features, got dtype {a.dtype}")
    return a


def _feature_pair(qf, gf) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated query and gallery features, of one dtype, on the query features' device."""
    q, g = _as_features(qf, "qf"), _as_features(gf, "gf")
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"qf has {q.shape[1]} dimensions but gf has {g.shape[1]}")
    dtype = torch.promote_types(q.dtype, g.dtype)
    return q.to(dtype), g.to(device=q.device, dtype=dtype)


def _block_rows(chunk_size: int | None, num_gallery: int) -> int:
    """Query rows per distance block: ~4M distances, but at least _MIN_QUERY_ROWS (each block reads the whole
    gallery: 8-row blocks against 500k x 2048 features would move 4 GB per 8 queries)."""
    if chunk_size is None:
        return max(_MIN_QUERY_ROWS, rows_per_block(num_gallery))
    _check_positive_int(chunk_size, "chunk_size")
    return chunk_size


def _distance_blocks(q: torch.Tensor, g: torch.Tensor, metric: str, step: int, normalize: bool = False):
    """Yield (start, stop, distances of queries start:stop as a numpy array) over blocks of ``step`` queries.

    With ``normalize`` the distances are those of the L2-normalised features, computed without a normalised
    copy of the gallery (which, at 500k x 2048 float32, would be another 4 GB).
    """
    unit = normalize or metric == "cosine"
    with torch.no_grad():
        if unit:                            # cos = q/|q| . g/|g|; cosine: 1 - cos; |q/|q| - g/|g||^2 = 2 - 2 cos
            offset = 1.0 if metric == "cosine" else 2.0
            g_scale = -offset / g.norm(dim=1).clamp_min(1e-12)
        else:
            g_sq = g.square().sum(dim=1)
        for start in range(0, q.shape[0], step):
            block = q[start:start + step]
            if unit:
                d = (F.normalize(block, dim=1) @ g.T).mul_(g_scale).add_(offset).clamp_(0, 2 * offset)
            else:                           # |q|^2 + |g|^2 - 2 q.g, clamped at 0 against rounding
                d = torch.addmm(g_sq[None, :] + block.square().sum(dim=1, keepdim=True), block, g.T, alpha=-2)
                d.clamp_(min=0)
            if metric == "euclidean":
                d.sqrt_()
            yield start, start + len(block), d.cpu().numpy()


def pairwise_distance(qf, gf, metric: str = "euclidean", chunk_size: int | None = None,
                      dtype=np.float32) -> np.ndarray:
    """Distances (nq, ng) between query features ``qf`` (nq, d) and gallery features ``gf`` (ng, d).

    metric: ``"euclidean"`` |q - g| (the paper's, on L2-normalised features), ``"sqeuclidean"`` |q - g|^2, or
    ``"cosine"`` 1 - cos(q, g). Computed with torch on the features' device (CPU or CUDA) in blocks of
    ``chunk_size`` query rows (default: about 4M distances, at least 64 rows), so the working memory beyond
    the returned matrix stays bounded; float32 features are computed in float32, as torchreid and fast-reid do.
    """
    _check_choice(metric, "metric", METRICS)
    q, g = _feature_pair(qf, gf)
    out = np.empty((len(q), len(g)), dtype=dtype)
    for start, stop, d in _distance_blocks(q, g, metric, _block_rows(chunk_size, len(g))):
        out[start:stop] = d
    return out


def market1501_removed(q_pids, g_pids, q_camids, g_camids, junk_pids=(JUNK_PID,)) -> np.ndarray:
    """(nq, ng) bool: the gallery images the Market-1501 protocol takes out of each query's ranking: those of
    the query's identity seen by the query's camera, and junk (``junk_pids``, identity -1) for every query.
    :func:`evaluate_rank` applies the same rule without building the mask (it places only the query's own
    identity); the ranked lists and the CUHK03 classic draw use the mask."""
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    removed = (g_pids[None, :] == q_pids[:, None]) & (np.asarray(g_camids)[None, :] == np.asarray(q_camids)[:, None])
    return removed | np.isin(g_pids, list(junk_pids))[None, :]


# -------------------------------------------------------------------------------------------------- ranking
class _Gallery:
    """Gallery identities and cameras, indexed for ranking: non-junk columns, same-identity groups."""

    def __init__(self, pids: np.ndarray, camids: np.ndarray):
        self.camids = camids
        self.kept_mask = pids != JUNK_PID
        self.kept = None if self.kept_mask.all() else np.flatnonzero(self.kept_mask)
        kept = np.flatnonzero(self.kept_mask)
        self.by_identity = kept[np.argsort(pids[kept], kind="stable")]        # ascending index within a group
        self.group_pids, self.group_start, self.group_size = np.unique(
            pids[self.by_identity], return_index=True, return_counts=True
        )

    def own_group(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(index of each query's identity among the gallery groups, whether the gallery has that identity)."""
        if len(self.group_pids) == 0:
            return np.zeros(len(q_pids), dtype=np.int64), np.zeros(len(q_pids), dtype=bool)
        where = np.searchsorted(self.group_pids, q_pids).clip(max=len(self.group_pids) - 1)
        return where, self.group_pids[where] == q_pids

    def same_identity(self, q_pids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(b, P) gallery indices of each query's identity (ascending; padded with 0) and the mask of real ones."""
        group, found = self.own_group(q_pids)
        size = np.where(found, self.group_size[group], 0) if found.any() else np.zeros(len(q_pids), np.int64)
        offset = np.arange(size.max(initial=0))
        present = offset < size[:, None]
        if not present.any():
            return np.zeros(present.shape, dtype=np.int64), present
        return self.by_identity[np.where(present, self.group_start[group][:, None] + offset, 0)], present


def _ranked_before(dist: np.ndarray, member_dist: np.ndarray, members: np.ndarray, present: np.ndarray,
                   gallery: _Gallery) -> np.ndarray:
    """How many non-junk gallery images rank before each member: closer, or as close with a smaller index."""
    ranked = np.take(dist, gallery.kept, axis=1) if gallery.kept is not None else dist.copy()
    ranked.sort(axis=1)
    before = torch.searchsorted(torch.from_numpy(ranked), torch.from_numpy(member_dist)).numpy()
    # A member is tied when the image right after its first equal in the sorted row has the same distance.
    next_value = np.take_along_axis(ranked, np.minimum(before + 1, ranked.shape[1] - 1), axis=1)
    tied = present & (before + 1 < ranked.shape[1]) & (next_value == member_dist)
    if tied.any():                                      # rare with real features: count equal, smaller index
        rows, cols = np.nonzero(tied)
        column = np.arange(dist.shape[1])
        step = rows_per_block(dist.shape[1])
        for s in range(0, len(rows), step):
            r, c = rows[s:s + step], cols[s:s + step]
            equal = (dist[r] == member_dist[r, c, None]) & (column < members[r, c, None]) & gallery.kept_mask
            before[r, c] += equal.sum(axis=1)
    return before


def _rank_block(dist: np.ndarray, q_pids: np.ndarray, q_camids: np.ndarray, gallery: _Gallery, ap_rule: str):
    """Per query of one block: (rank of the first hit, number of hits R, AP, INP); R = 0 marks a skipped query.

    Only the gallery images of the query's identity are placed (by counting how many images rank before
    them, with a sort and a binary search), so the block costs one sort of its rows.
    """
    members, present = gallery.same_identity(q_pids)
    member_dist = np.take_along_axis(dist, members, axis=1)
    member_dist[~present] = np.inf
    before = _ranked_before(dist, member_dist, members, present, gallery)
    order = np.argsort(member_dist, axis=1, kind="stable")          # the members in ranking order
    members, present, before = (np.take_along_axis(a, order, axis=1) for a in (members, present, before))
    same_camera = gallery.camids[members] == q_camids[:, None]
    hit, junk = present & ~same_camera, present & same_camera
    rank = before - (np.cumsum(junk, axis=1) - junk)                # 0-based, junk of this query removed
    hits_before = np.cumsum(hit, axis=1) - hit
    num_hits = hit.sum(axis=1)
    precision = (hits_before + 1) / (rank + 1)
    if ap_rule == "market":
        previous = np.where(rank > 0, hits_before / np.maximum(rank, 1), 1.0)
        precision = (previous + precision) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.where(hit, precision, 0).sum(axis=1) / num_hits
        inp = num_hits / (np.where(hit, rank, -1).max(axis=1, initial=-1) + 1)
    first = np.where(hit, rank, np.iinfo(np.int64).max).min(axis=1, initial=np.iinfo(np.int64).max)
    return first, num_hits, ap, inp


@dataclass
class RankResult:
    """Result of :func:`evaluate_rank` (fractions in [0, 1]; ``as_dict`` gives percentages).

    cmc: rank-1..max_rank accuracy; mAP, mINP: means over valid queries; ap, inp: per query (NaN where the
    query was skipped); first: per query, the 0-based rank of the first true match (-1 where skipped; a query is
    a rank-1 hit when it is 0); num_valid_q: queries evaluated; num_skipped: queries without any valid gallery match;
    ap_rule: the AP convention ("standard" or "market").
    """

    cmc: np.ndarray
    mAP: float
    mINP: float
    ap: np.ndarray
    inp: np.ndarray
    num_valid_q: int
    num_skipped: int
    ap_rule: str = "standard"
    first: np.ndarray | None = None

    def rank(self, k: int) -> float:
        """Rank-k accuracy (fraction), k = 1..max_rank."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank k must lie in 1..{len(self.cmc)} (max_rank), got {k}")
        return float(self.cmc[k - 1])

    def as_dict(self) -> dict[str, float]:
        """{"rank1", "rank5", "rank10", "mAP", "mINP"} in percent (ranks beyond max_rank left out)."""
        ranks = {f"rank{k}": 100 * self.rank(k) for k in (1, 5, 10) if k <= len(self.cmc)}
        return {**ranks, "mAP": 100 * self.mAP, "mINP": 100 * self.mINP}


def _evaluate_blocks(blocks, q_pids, q_camids, gallery: _Gallery, max_rank: int, ap_rule: str) -> RankResult:
    num_q = len(q_pids)
    first = np.empty(num_q, dtype=np.int64)
    num_hits = np.empty(num_q, dtype=np.int64)
    ap, inp = np.empty(num_q), np.empty(num_q)
    for start, stop, dist in blocks:
        sl = slice(start, stop)
        first[sl], num_hits[sl], ap[sl], inp[sl] = _rank_block(dist, q_pids[sl], q_camids[sl], gallery, ap_rule)
    valid = num_hits > 0
    num_valid = int(valid.sum())
    if num_valid == 0:
        raise ValueError(_NO_VALID_QUERY.format(num_q=num_q))
    cmc = np.cumsum(np.bincount(np.minimum(first[valid], max_rank), minlength=max_rank + 1)[:max_rank]) / num_valid
    return RankResult(
        cmc=cmc, mAP=float(ap[valid].mean()), mINP=float(inp[valid].mean()), ap=ap, inp=inp,
        num_valid_q=num_valid, num_skipped=num_q - num_valid, ap_rule=ap_rule, first=np.where(valid, first, -1),
    )


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank: int = 50,
                  ap: str = "standard") -> RankResult:
    """CMC, mAP and mINP of a (num_query, num_gallery) distance matrix under the Market-1501 protocol.

    See the module docstring for the protocol, the two AP rules (``ap="standard"`` or ``"market"``), the
    handling of identity -1 and how it compares with torchreid. ``cmc`` has ``max_rank`` entries even when
    the gallery is smaller (a valid query's first hit always lies within the gallery, so the tail is 1).
    """
    _check_choice(ap, "ap", AP_RULES)
    _check_positive_int(max_rank, "max_rank")
    dist = as_distance_matrix(distmat, "distmat")
    q_pids, g_pids, q_camids, g_camids = _ids(q_pids, g_pids, q_camids, g_camids, *dist.shape)
    step = rows_per_block(dist.shape[1])
    blocks = (
        (s, min(s + step, len(dist)), check_finite(dist[s:s + step], "distmat", s))
        for s in range(0, len(dist), step)
    )
    return _evaluate_blocks(blocks, q_pids, q_camids, _Gallery(g_pids, g_camids), max_rank, ap)


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric: str = "euclidean",
                      normalize: bool = True, rerank: bool = False, ap: str = "standard",
                      max_rank: int = 50, chunk_size: int | None = None) -> RankResult:
    """Evaluate query features ``qf`` against gallery features ``gf`` (the paper's test: L2-normalised,
    Euclidean distance, optionally k-reciprocal re-ranking with k1=20, k2=6, lambda=0.3).

    Without re-ranking, distances are computed and ranked one block of ``chunk_size`` queries at a time: the
    full query x gallery matrix is never held, so a gallery of hundreds of thousands of images (the paper's
    Figure 4) evaluates in bounded memory. Re-ranking needs the query-query and gallery-gallery distances in
    full ((nq + ng)^2 values), which limits it to galleries of tens of thousands of images.
    """
    _check_choice(ap, "ap", AP_RULES)
    _check_choice(metric, "metric", METRICS)
    _check_positive_int(max_rank, "max_rank")
    q, g = _feature_pair(qf, gf)
    q_pids, g_pids, q_camids, g_camids = _ids(q_pids, g_pids, q_camids, g_camids, len(q), len(g))
    step = _block_rows(chunk_size, len(g))
    if rerank:
        if normalize:
            q, g = F.normalize(q, dim=1), F.normalize(g, dim=1)
        distances = [pairwise_distance(a, b, metric, chunk_size) for a, b in ((q, g), (q, q), (g, g))]
        return evaluate_rank(re_ranking(*distances), q_pids, g_pids, q_camids, g_camids, max_rank, ap)
    blocks = tqdm(_distance_blocks(q, g, metric, step, normalize), total=-(-len(q) // step), desc="evaluating",
                  leave=False, disable=None)
    return _evaluate_blocks(blocks, q_pids, q_camids, _Gallery(g_pids, g_camids), max_rank, ap)


# ------------------------------------------------------------------------------------------- other protocols
def pool_multi_query(features, pids, camids, how: str = "mean"):
    """Market-1501 multi-query: one feature per (identity, camera), the mean or element-wise max of its images.

    Returns (pooled features, pids, camids), groups sorted by (pid, camid). The features keep their type
    (numpy array, or torch tensor on its device); ids come back as int64 numpy arrays. The paper averages
    the features of Market-1501's gt_bbox images sharing a query's identity and camera ("MQ" columns).
    """
    _check_choice(how, "how", ("mean", "max"))
    x = _as_features(features, "features")
    pids = _as_ids(pids, "pids", len(x), "features")
    camids = _as_ids(camids, "camids", len(x), "features")
    keys, group = np.unique(np.stack([pids, camids], axis=1), axis=0, return_inverse=True)
    index = torch.from_numpy(group.reshape(-1)).to(x.device)[:, None].expand_as(x)
    pooled = x.new_zeros((len(keys), x.shape[1])).scatter_reduce_(
        0, index, x, "mean" if how == "mean" else "amax", include_self=False
    )
    if isinstance(features, np.ndarray):
        pooled = pooled.numpy()
    return pooled, keys[:, 0].copy(), keys[:, 1].copy()


def cuhk03_classic_cmc(distmat, q_pids, g_pids, q_camids, g_camids, num_repeats: int = 100,
                       max_rank: int = 50, seed: int = 0) -> np.ndarray:
    """CUHK03 classic protocol: single-gallery-shot CMC (fractions, ``max_rank`` entries), averaged over repeats.

    For every query and every repeat, one gallery image per identity is drawn uniformly at random among the
    images the Market-1501 rule keeps (same identity and camera removed, identity -1 removed); the query's
    rank is that of its identity's drawn image among the drawn images (ties broken by identity). As
    torchreid's ``eval_cuhk03`` (which draws from numpy's global state and no longer runs on numpy 2);
    here the draws come from ``numpy.random.default_rng(seed)``. Queries without any such image are skipped.
    The classic protocol reports the mean of this CMC over its 20 train/test splits (one call per split).
    """
    _check_positive_int(num_repeats, "num_repeats")
    _check_positive_int(max_rank, "max_rank")
    dist = as_distance_matrix(distmat, "distmat")
    q_pids, g_pids, q_camids, g_camids = _ids(q_pids, g_pids, q_camids, g_camids, *dist.shape)
    rng = np.random.default_rng(seed)
    gallery = _Gallery(g_pids, g_camids)
    own, has_own = gallery.own_group(q_pids)
    if not has_own.any():
        raise ValueError(_NO_VALID_QUERY.format(num_q=len(q_pids)))
    columns = gallery.by_identity                     # non-junk gallery, grouped by identity
    start, size = gallery.group_start, gallery.group_size
    pid_of_column, cam_of_column = g_pids[columns], g_camids[columns]
    hits = np.zeros(max_rank + 1)
    num_valid = 0
    step = rows_per_block(len(columns) + 1)
    identity = np.arange(len(start))
    for s in range(0, len(dist), step):
        d = check_finite(dist[s:s + step], "distmat", s)[:, columns]
        rows = np.arange(len(d))
        removed = market1501_removed(q_pids[s:s + step], pid_of_column, q_camids[s:s + step], cam_of_column)
        valid = has_own[s:s + step] & np.logical_or.reduceat(~removed, start, axis=1)[rows, own[s:s + step]]
        num_valid += int(valid.sum())
        for _ in range(num_repeats):
            key = rng.random(d.shape)
            key[removed] = np.inf
            smallest = np.minimum.reduceat(key, start, axis=1)
            drawn = np.add.reduceat(np.where(key == np.repeat(smallest, size, axis=1), d, 0), start, axis=1)
            drawn[np.isinf(smallest)] = np.inf        # identity with no image left for this query
            mine = drawn[rows, own[s:s + step]][:, None]
            rank = ((drawn < mine) | ((drawn == mine) & (identity < own[s:s + step, None]))).sum(axis=1)
            hits += np.bincount(np.minimum(rank[valid], max_rank), minlength=max_rank + 1)
    if num_valid == 0:
        raise ValueError(_NO_VALID_QUERY.format(num_q=len(q_pids)))
    return np.cumsum(hits[:max_rank]) / (num_valid * num_repeats)
