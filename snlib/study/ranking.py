"""Ranked lists (the paper's Figure 5): each query's top-k gallery images under the Market-1501 protocol, and
the queries a figure shows, chosen by rule (best successes, worst failures)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..evaluation import JUNK_PID, market1501_removed, pairwise_distance
from .features import query_gallery


@dataclass(frozen=True)
class RankedLists:
    """Top-``topk`` gallery indices per query after the Market-1501 removals, their distances and hits."""
    index: np.ndarray      # (nq, topk) gallery indices, nearest first
    distance: np.ndarray   # (nq, topk)
    correct: np.ndarray    # (nq, topk) bool: same identity as the query


def ranked_lists(qf, gf, q_pids, g_pids, q_camids, g_camids, topk: int = 10,
                 junk_pids=(JUNK_PID,)) -> RankedLists:
    """Each query's top-``topk`` gallery images by Euclidean distance of the features as given, with the
    Market-1501 protocol (:func:`snlib.evaluation.market1501_removed`: same identity + same camera and junk
    removed), ties broken by gallery index. A query with fewer than ``topk`` candidates has its list padded with
    index -1."""
    dist = pairwise_distance(qf, gf).astype(np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    dist[market1501_removed(q_pids, g_pids, q_camids, g_camids, junk_pids)] = np.inf
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


def ranked_lists_of(study, runs: dict, topk: int = 10) -> dict[str, RankedLists]:
    """:func:`ranked_lists` of each run's test features (``runs``: name -> run)."""
    return {name: ranked_lists(*query_gallery(study.features(run)), topk=topk) for name, run in runs.items()}


def figure5_queries(study, runs: dict, ranked: dict[str, RankedLists], num_success: int = 3,
                    num_failure: int = 3) -> pd.DataFrame:
    """:func:`choose_queries` by the first run of ``runs``, with each query's ``identity`` and, for the second
    run (``<loss>`` its loss spec), its ``AP (<loss>)`` and ``hits in top-<k> (<loss>)``."""
    (name, run), (other, other_run) = list(runs.items())[:2]
    chosen = choose_queries(ranked[name].correct, study.evaluate(run).ap, num_success, num_failure)
    tag, topk = other_run.config.loss, ranked[other].index.shape[1]
    chosen["identity"] = study.features(run)["query"][1][chosen["query"]]
    chosen[f"AP ({tag})"] = study.evaluate(other_run).ap[chosen["query"]]
    chosen[f"hits in top-{topk} ({tag})"] = ranked[other].correct[chosen["query"]].sum(axis=1)
    return chosen
