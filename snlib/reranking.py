"""k-reciprocal re-ranking (Zhong, Zheng, Cao, Li, CVPR 2017), vectorised and memory-lean.

The result equals torchreid's ``re_ranking`` (``torchreid/reid/utils/rerank.py``, itself Zhong's Python code
as modified by Houjing Huang, on which the paper's released code builds) up to float32 rounding in the order
of summations, and up to the order of exact float32 ties among an image's nearest neighbours, which both leave to
numpy's sort (processor-dependent: ``benchmarks/bench_evaluation.py`` found one such row of 3,368). What differs
is the cost: torchreid builds several dense (n x n) matrices, n = queries + gallery (float64 copies, a full
int64 argsort, the dense encoding V and its query expansion), and loops in Python over every image; here only
the top-k neighbour lists (n x k) and the sparse encodings are kept, so the extra memory is a few hundred MB at
Market-1501 size instead of several GB.

Definitions (n = nq + ng images, queries first; A = [[q_q, q_g], [q_g^T, g_g]] the input distances):
    d(i, j) = A[j, i]^2 / max_m A[m, i]^2        (float32; the original's squaring, column max, transpose)
    N(i, k) = the k + 1 nearest images of i under d (i itself included)
    R(i, k) = {j in N(i, k) : i in N(j, k)}                                (k-reciprocal neighbours)
    R*(i)   = R(i, k1) united with every R(j, round(k1 / 2)), j in R(i, k1), that shares more than
              2/3 of its members with R(i, k1)
    V[i, j] = exp(-d(i, j)) / sum_{m in R*(i)} exp(-d(i, m)) for j in R*(i), else 0
    V <- mean of the rows V[j] over the k2 nearest images j of i            (query expansion, if k2 > 1)
    d_J(i, j) = 1 - m / (2 - m),  m = sum_t min(V[i, t], V[j, t])           (Jaccard distance)
    result  = (1 - lambda) d_J + lambda d,  on the query rows and gallery columns.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from tqdm.auto import tqdm

from .arrays import as_distance_matrix, check_finite_rows, rows_per_block

__all__ = ["re_ranking"]

#: (query, gallery) pairs sharing a non-zero column handled at once by the Jaccard step (~6 temporaries each).
_PAIRS_PER_BLOCK = 1 << 20


class _Joint:
    """A = [[q_q, q_g], [q_g^T, g_g]] read as B = (A^T)^2 in float32 (the original's matrix before its
    normalisation), by blocks of rows or by entries, without ever building it."""

    def __init__(self, q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray):
        self.q_g, self.q_q, self.g_g = q_g, q_q, g_g
        self.nq, self.ng = q_g.shape
        self.n = self.nq + self.ng

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows start:stop of B as float32: row i of B is column i of A."""
        nq = self.nq
        parts = []
        if start < nq:
            hi = min(stop, nq)
            parts.append(np.concatenate([self.q_q[:, start:hi].T, self.q_g[start:hi]], axis=1))
        if stop > nq:
            lo = max(start, nq) - nq
            parts.append(np.concatenate([self.q_g[:, lo:stop - nq].T, self.g_g[:, lo:stop - nq].T], axis=1))
        block = np.concatenate(parts) if len(parts) > 1 else parts[0]
        return np.square(block).astype(np.float32)

    def entries(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """B[i, j] = A[j, i]^2 as float32 for index arrays i, j (same shape)."""
        nq = self.nq
        out = np.empty(i.shape, dtype=np.float32)
        iq, jq = i < nq, j < nq
        for mask, source, rows, cols in (
            (iq & jq, self.q_q, j, i),
            (iq & ~jq, self.q_g, i, j - nq),
            (~iq & jq, self.q_g, j, i - nq),
            (~iq & ~jq, self.g_g, j - nq, i - nq),
        ):
            out[mask] = np.square(source[rows[mask], cols[mask]]).astype(np.float32)
        return out


def _nearest(joint: _Joint, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest images of every image under d (ordered, ties by index) and the row maxima of B."""
    n = joint.n
    nearest = np.empty((n, k), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float32)
    step = rows_per_block(n)
    for start in tqdm(range(0, n, step), desc="re-ranking: neighbours", leave=False, disable=None):
        stop = min(start + step, n)
        d = joint.rows(start, stop)
        row_max[start:stop] = d.max(axis=1)
        if not row_max[start:stop].all():
            i = start + int(np.argmin(row_max[start:stop]))
            raise ValueError(f"every distance from image {i} (queries first, then gallery) is 0: re-ranking "
                             "divides by the largest; check for constant or duplicated features")
        d /= row_max[start:stop, None]
        if k < n:                       # the k smallest, in index order (ties are then broken by index)
            top = np.sort(np.argpartition(d, k - 1, axis=1)[:, :k], axis=1)
        else:
            top = np.broadcast_to(np.arange(n), d.shape)
        order = np.argsort(np.take_along_axis(d, top, axis=1), axis=1, kind="stable")
        nearest[start:stop] = np.take_along_axis(top, order, axis=1)
    return nearest, row_max


def _reciprocal(nearest: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(N(i, k) as an (n, k + 1) index array, mask of its members j with i in N(j, k))."""
    neighbours = nearest[:, : k + 1]
    mask = np.empty(neighbours.shape, dtype=bool)
    step = rows_per_block(neighbours.shape[1] ** 2)
    for start in range(0, len(neighbours), step):
        rows = neighbours[start:start + step]
        own = np.arange(start, start + len(rows))[:, None, None]
        mask[start:start + step] = (neighbours[rows] == own).any(axis=2)
    return neighbours, mask


def _expanded_sets(nearest: np.ndarray, k1: int) -> tuple[np.ndarray, np.ndarray]:
    """R*(i) for every i as a padded index array (n, m) and a mask of its (distinct) members."""
    fwd, fwd_ok = _reciprocal(nearest, k1)
    half, half_ok = _reciprocal(nearest, int(np.around(k1 / 2.0)))
    n, a = fwd.shape
    h = half.shape[1]
    keep = np.empty((n, a), dtype=bool)
    step = rows_per_block(a * h * a)
    for start in range(0, n, step):
        f, f_ok = fwd[start:start + step], fwd_ok[start:start + step]
        cand, cand_ok = half[f], half_ok[f]          # (b, a, h): R(j, k1/2) for each j in N(i, k1)
        # shared[., x, y]: member y of candidate x's set lies in R(i, k1)
        shared = ((cand[..., None] == f[:, None, None, :]) & f_ok[:, None, None, :]).any(-1) & cand_ok
        keep[start:start + step] = f_ok & (shared.sum(-1) > 2.0 / 3 * cand_ok.sum(-1))
    members = np.concatenate([fwd, half[fwd].reshape(n, a * h)], axis=1)
    valid = np.concatenate([fwd_ok, (half_ok[fwd] & keep[..., None]).reshape(n, a * h)], axis=1)
    # Keep one copy of each member: sort (invalid entries last, as index n) and drop repeats.
    members = np.sort(np.where(valid, members, n), axis=1)
    distinct = members < n
    distinct[:, 1:] &= members[:, 1:] != members[:, :-1]
    return members, distinct


def _encode(joint: _Joint, nearest: np.ndarray, row_max: np.ndarray, k1: int, k2: int) -> sp.csr_matrix:
    """The sparse k-reciprocal encoding V (n x n, float32), query-expanded over the k2 nearest images."""
    n = joint.n
    members, distinct = _expanded_sets(nearest, k1)
    rows = np.broadcast_to(np.arange(n)[:, None], members.shape)[distinct]
    cols = members[distinct]
    weight = np.exp(-(joint.entries(rows, cols) / row_max[rows]))
    totals = np.zeros(n, dtype=np.float32)
    np.add.at(totals, rows, weight)
    encoding = sp.csr_matrix((weight / totals[rows], (rows, cols)), shape=(n, n), dtype=np.float32)
    if k2 == 1:
        return encoding
    picks = nearest[:, :k2]
    expand = sp.csr_matrix(
        (np.ones(picks.size, dtype=np.float32), (np.repeat(np.arange(n), picks.shape[1]), picks.ravel())),
        shape=(n, n),
    )
    expanded = (expand @ encoding).tocsr()
    expanded.data /= np.float32(picks.shape[1])
    return expanded


def _jaccard(encoding: sp.csr_matrix, nq: int) -> np.ndarray:
    """d_J between the query rows and the gallery rows of the encoding, (nq, ng) float32."""
    queries = encoding[:nq].tocsr()
    gallery = encoding[nq:].tocsc()                     # column t -> gallery images j with V[j, t] != 0
    ng = gallery.shape[0]
    col_start = gallery.indptr[:-1]
    col_count = np.diff(gallery.indptr)
    # Work in blocks of queries whose pairs (query nonzero, gallery nonzero of the same column) and output
    # stay bounded.
    query_of_nonzero = np.repeat(np.arange(nq), np.diff(queries.indptr))
    pairs = np.bincount(query_of_nonzero, weights=col_count[queries.indices], minlength=nq)
    cumulative = np.concatenate([[0], np.cumsum(pairs)])
    out = np.empty((nq, ng), dtype=np.float32)
    step, spans, start = rows_per_block(ng), [], 0
    while start < nq:
        stop = int(np.searchsorted(cumulative, cumulative[start] + _PAIRS_PER_BLOCK, side="right")) - 1
        stop = min(max(stop, start + 1), start + step, nq)
        spans.append((start, stop))
        start = stop
    for start, stop in tqdm(spans, desc="re-ranking: Jaccard", leave=False, disable=None):
        lo, hi = queries.indptr[start], queries.indptr[stop]
        query_row = np.repeat(np.arange(stop - start), np.diff(queries.indptr[start:stop + 1]))
        cols, values = queries.indices[lo:hi], queries.data[lo:hi]
        counts = col_count[cols]
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        where = np.repeat(col_start[cols], counts) + offsets
        overlap = np.minimum(np.repeat(values, counts), gallery.data[where])
        flat = np.repeat(query_row, counts) * ng + gallery.indices[where]
        m = np.bincount(flat, weights=overlap, minlength=(stop - start) * ng).reshape(stop - start, ng)
        m = m.astype(np.float32)
        out[start:stop] = 1 - m / (2 - m)
    return out


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> np.ndarray:
    """k-reciprocal re-ranked query-gallery distances (nq, ng), float32; see the module docstring.

    Args:
        q_g_dist, q_q_dist, g_g_dist: query-gallery (nq, ng), query-query (nq, nq) and gallery-gallery
            (ng, ng) distances, numpy arrays or torch tensors. They are squared inside, as in the original:
            pass plain (not squared) Euclidean distances, as the paper's code does.
        k1, k2, lambda_value: the paper's parameters (20, 6, 0.3 in Zhong et al. and in the SN paper).
    """
    q_g = as_distance_matrix(q_g_dist, "q_g_dist")
    q_q = as_distance_matrix(q_q_dist, "q_q_dist")
    g_g = as_distance_matrix(g_g_dist, "g_g_dist")
    nq, ng = q_g.shape
    for name, matrix in (("q_g_dist", q_g), ("q_q_dist", q_q), ("g_g_dist", g_g)):
        check_finite_rows(matrix, name)
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ValueError(
            f"shapes do not fit: q_g_dist {q_g.shape} needs q_q_dist ({nq}, {nq}) and g_g_dist ({ng}, {ng}), "
            f"got {q_q.shape} and {g_g.shape}"
        )
    for name, value in (("k1", k1), ("k2", k2)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must lie in [0, 1], got {lambda_value!r}")
    joint = _Joint(q_g, q_q, g_g)
    nearest, row_max = _nearest(joint, min(max(k1 + 1, k2), joint.n))
    jaccard = _jaccard(_encode(joint, nearest, row_max, k1, k2), nq)
    step, query_max = rows_per_block(ng), row_max[:nq, None]
    for start in range(0, nq, step):                # mix in d itself, one block of queries at a time
        original = np.square(q_g[start:start + step]).astype(np.float32, copy=False)
        original /= query_max[start:start + step]
        original *= np.float32(lambda_value)
        jaccard[start:start + step] *= np.float32(1 - lambda_value)
        jaccard[start:start + step] += original
    return jaccard
