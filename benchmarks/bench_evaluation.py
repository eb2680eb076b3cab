"""snlib.evaluation against torchreid 0.2.5 at Market-1501 size, in one run: time, peak memory, same numbers.

    .venv/bin/python benchmarks/bench_evaluation.py [--rerank-size full|small] [--distractors 500000]

1. evaluate_rank on a random 3,368 x 15,913 float64 distance matrix (750 identities over 6 cameras, 2,793
   distractors of identity 0, as Market-1501's test split after torchreid drops the junk), against torchreid's
   Python evaluator (its Cython build is optional and often missing). Goal: >= 40x faster, same CMC and mAP.
2. re_ranking (k1=20, k2=6, lambda=0.3) on Euclidean distances of clustered L2-normalised random features,
   3,368 queries + 15,913 gallery images, against torchreid's re_ranking: time, peak memory, largest difference,
   the query rows that differ (at most 0.1 %: exact float32 ties among nearest neighbours, which both order by
   numpy's processor-dependent sort) and the queries whose top-10 are identical.
   ``--rerank-size small`` compares at 1,000 + 5,000 and runs only snlib at full size (torchreid's version
   needs ~10 GB and over a minute at full size).
3. evaluate_features on a Market-1501-sized gallery, then with ``--distractors`` extra images of identity 0
   (the paper's Figure 4 setting), 256-d features: time and peak memory of the blocked evaluation, which
   never holds the full distance matrix. ``--distractors 0`` skips it.

Peak memory is the process's resident high-water mark above its level before the step (Linux /proc; freed heap
is handed back with malloc_trim and the mark reset through /proc/self/clear_refs between steps).
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.util
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from snlib.evaluation import evaluate_features, evaluate_rank, pairwise_distance, re_ranking

NUM_QUERY, NUM_GALLERY, NUM_DISTRACTORS, NUM_IDS, NUM_CAMS = 3368, 15913, 2793, 750, 6
NOISE = 2.0          # per-dimension noise around unit-variance identity centres: rank-1 ~ 88 % on Market size


def torchreid_module(relative: str):
    spec = importlib.util.find_spec("torchreid")
    if spec is None:
        raise SystemExit("torchreid (the reference) is not installed: pip install -e '.[test]'")
    path = Path(spec.submodule_search_locations[0]) / relative
    module_spec = importlib.util.spec_from_file_location(f"torchreid_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module_spec.loader.exec_module(module)
    return module


class PeakMemory:
    """Resident-memory high-water mark of this process above its level at entry, in MB (Linux)."""

    def __enter__(self):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)                 # hand freed heap back: a clean baseline
        except (OSError, AttributeError):
            pass
        try:
            Path("/proc/self/clear_refs").write_text("5")          # reset VmHWM to the current VmRSS
            self.start = self._status("VmRSS")
        except OSError:
            self.start = None
        self.mb = float("nan")
        return self

    def __exit__(self, *exc):
        if self.start is not None:
            self.mb = (self._status("VmHWM") - self.start) / 1024

    @staticmethod
    def _status(key: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise OSError(key)


def timed(fn, *args, repeats=1, **kwargs):
    """(result, best wall time in seconds over ``repeats`` calls, peak memory in MB of the first)."""
    best = float("inf")
    for i in range(repeats):
        with PeakMemory() as memory:
            start = time.perf_counter()
            result = fn(*args, **kwargs)
            best = min(best, time.perf_counter() - start)
        peak = memory.mb if i == 0 else peak
    return result, best, peak


def market_ids(rng, num_query=NUM_QUERY, num_gallery=NUM_GALLERY, num_distractors=NUM_DISTRACTORS):
    """Query = distinct (identity, camera) pairs as Market-1501's; gallery = identities 1..750 and distractors 0."""
    pairs = rng.choice(NUM_IDS * NUM_CAMS, num_query, replace=False)
    q_pids, q_camids = pairs // NUM_CAMS + 1, pairs % NUM_CAMS
    g_pids = np.concatenate([rng.integers(1, NUM_IDS + 1, num_gallery - num_distractors),
                             np.zeros(num_distractors, dtype=np.int64)])
    return q_pids, g_pids, q_camids, rng.integers(0, NUM_CAMS, num_gallery)


def bench_evaluate_rank(rng):
    print("== evaluate_rank, 3,368 x 15,913 float64 distances ==")
    ids = market_ids(rng)
    q_pids, g_pids = ids[0], ids[1]
    # Gaussian scores, positives shifted: tie-free, rank-1 ~ 88 %, mAP ~ 39 % (a plausible operating point).
    distmat = 10 + rng.standard_normal((NUM_QUERY, NUM_GALLERY)) - 3.0 * (q_pids[:, None] == g_pids[None, :])
    ours, t_ours, mem_ours = timed(evaluate_rank, distmat, *ids, repeats=5)
    _, t_ours32, _ = timed(evaluate_rank, distmat.astype(np.float32), *ids, repeats=5)
    _, t_market, _ = timed(evaluate_rank, distmat, *ids, ap="market", repeats=5)
    rank = torchreid_module("reid/metrics/rank.py")
    (cmc, mAP), t_ref, mem_ref = timed(rank.evaluate_py, distmat, *ids, 50, False)
    n = ours.num_valid_q
    same_cmc = np.array_equal(np.rint(ours.cmc * n), np.rint(cmc * n))
    print(f"snlib     {t_ours:8.3f} s  (float32 input {t_ours32:.3f} s, ap='market' {t_market:.3f} s)  "
          f"peak +{mem_ours:.0f} MB")
    print(f"torchreid {t_ref:8.3f} s  (Python evaluator)  peak +{mem_ref:.0f} MB")
    print(f"speed-up  {t_ref / t_ours:8.1f}x   (goal >= 40x)")
    print(f"rank-1 {100 * ours.cmc[0]:.2f} / {100 * cmc[0]:.2f}   mAP {100 * ours.mAP:.6f} / {100 * mAP:.6f}   "
          f"CMC identical: {same_cmc}   |mAP difference| {abs(ours.mAP - mAP):.1e}")
    if not same_cmc or abs(ours.mAP - mAP) > 1e-9:
        raise SystemExit("MISMATCH with torchreid")


def clustered_features(rng, pids, centers):
    """Features around one centre per identity (identity 0, the distractors, around none), L2-normalised later."""
    x = np.empty((len(pids), centers.shape[1]), dtype=np.float32)
    for s in range(0, len(pids), 100_000):
        block = pids[s:s + 100_000]
        x[s:s + 100_000] = centers[block] * (block[:, None] > 0) + NOISE * rng.standard_normal(
            (len(block), centers.shape[1]))
    return x


def compare_re_ranking(rng, num_q: int, num_g: int, reference: bool):
    print(f"-- {num_q:,} queries + {num_g:,} gallery images")
    centers = rng.standard_normal((NUM_IDS + 1, 256))
    pids = rng.integers(1, NUM_IDS + 1, num_q), rng.integers(1, NUM_IDS + 1, num_g)
    q, g = (torch.nn.functional.normalize(torch.from_numpy(clustered_features(rng, p, centers)), dim=1) for p in pids)
    inputs = [pairwise_distance(a, b) for a, b in ((q, g), (q, q), (g, g))]
    ours, t_ours, mem_ours = timed(re_ranking, *inputs)
    print(f"snlib     {t_ours:8.2f} s  peak +{mem_ours:7.0f} MB")
    if not reference:
        return
    module = torchreid_module("reid/utils/rerank.py")
    theirs, t_ref, mem_ref = timed(module.re_ranking, *inputs)
    print(f"torchreid {t_ref:8.2f} s  peak +{mem_ref:7.0f} MB")
    differing = ~np.isclose(ours, theirs, rtol=1e-5, atol=1e-6).all(axis=1)
    top10 = lambda d: np.argsort(d, axis=1, kind="stable")[:, :10]  # noqa: E731
    same_top10 = (top10(ours) == top10(theirs)).all(axis=1).mean()
    print(f"speed-up  {t_ref / t_ours:8.1f}x   peak memory {mem_ref / mem_ours:.0f}x smaller   "
          f"max |difference| {np.abs(ours - theirs).max():.1e}   query rows differing beyond float32 summation "
          f"order: {differing.sum()} of {num_q:,}   top-10 identical for {same_top10:.2%} of the queries")
    # Exact float32 ties among an image's nearest neighbours are ordered by numpy's argsort / argpartition, whose
    # order of equal values depends on the processor's SIMD sort (torchreid's argsort is not stable either): a tie
    # at the k1 boundary changes one k-reciprocal set and every row that expands through it. So a few rows may
    # differ; more than 0.1 % of them is a different algorithm.
    if differing.mean() > 1e-3:
        raise SystemExit("MISMATCH with torchreid")


def bench_re_ranking(rng, reference_size: str):
    print("\n== re_ranking (k1=20, k2=6, lambda=0.3) of Euclidean distances (float32), 256-d features ==")
    if reference_size == "small":
        compare_re_ranking(rng, 1000, 5000, reference=True)
    compare_re_ranking(rng, NUM_QUERY, NUM_GALLERY, reference=reference_size == "full")


def bench_distractors(rng, num_distractors: int):
    num_g = NUM_GALLERY + num_distractors
    print(f"\n== evaluate_features, 3,368 queries, Market-1501-sized gallery + {num_distractors:,} distractors "
          "(identity 0), 256-d ==")
    q_pids, g_pids, q_camids, g_camids = market_ids(rng)
    g_pids = np.concatenate([g_pids, np.zeros(num_distractors, dtype=np.int64)])
    g_camids = np.concatenate([g_camids, rng.integers(0, NUM_CAMS, num_distractors)])
    centers = rng.standard_normal((NUM_IDS + 1, 256))
    qf, gf = clustered_features(rng, q_pids, centers), clustered_features(rng, g_pids, centers)
    for n in (NUM_GALLERY, num_g):
        result, seconds, peak = timed(evaluate_features, qf, gf[:n], q_pids, g_pids[:n], q_camids, g_camids[:n])
        print(f"gallery {n:>9,}: {seconds:7.2f} s  peak +{peak:5.0f} MB (the full float32 distance matrix: "
              f"{NUM_QUERY * n * 4 / 2**20:5.0f} MB)   rank-1 {100 * result.cmc[0]:.2f}  mAP {100 * result.mAP:.2f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rerank-size", choices=("full", "small"), default="full")
    parser.add_argument("--distractors", type=int, default=500_000)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, numpy {np.__version__}, {torch.get_num_threads()} threads")
    rng = np.random.default_rng(0)
    bench_evaluate_rank(rng)
    bench_re_ranking(rng, args.rerank_size)
    if args.distractors > 0:
        bench_distractors(rng, args.distractors)


if __name__ == "__main__":
    main()
