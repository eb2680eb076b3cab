"""snlib.evaluation against torchreid 0.2.5's Python evaluator and re-ranking, plain per-query oracles
(including a transcription of Market-1501's official compute_AP.m), hand-worked cases, and bad input."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from snlib.evaluation import (
    cuhk03_classic_cmc, evaluate_features, evaluate_rank, market1501_removed, pairwise_distance, pool_multi_query,
    re_ranking,
)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _torchreid_module(relative: str):
    """A torchreid source file loaded by path (importing the package needs cv2 and more)."""
    spec = importlib.util.find_spec("torchreid")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchreid (the oracle, a test dependency) is not installed")
    path = Path(spec.submodule_search_locations[0]) / relative
    module_spec = importlib.util.spec_from_file_location(f"torchreid_oracle_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    with warnings.catch_warnings():      # rank.py warns that its Cython build is absent
        warnings.simplefilter("ignore")
        module_spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def torchreid_rank():
    return _torchreid_module("reid/metrics/rank.py")


@pytest.fixture(scope="module")
def torchreid_rerank():
    return _torchreid_module("reid/utils/rerank.py")


def _random_protocol(rng, num_q, num_g, num_ids, num_cams, junk=True):
    """Ids with distractors (0), junk (-1, optional), absent query identities and same-camera positives."""
    q_pids = rng.integers(1, num_ids + 3, num_q)               # ids above num_ids never appear in the gallery
    g_pids = rng.integers(-1 if junk else 0, num_ids + 1, num_g)
    return q_pids, g_pids, rng.integers(0, num_cams, num_q), rng.integers(0, num_cams, num_g)


def _per_query_oracle(distmat, q_pids, g_pids, q_camids, g_camids):
    """Plain loop: stable argsort per query, junk dropped; per query (first hit, AP std, AP trapezoid, INP)."""
    out = []
    for q in range(len(distmat)):
        order = np.argsort(distmat[q], kind="stable")
        junk = (g_pids[order] == -1) | ((g_pids[order] == q_pids[q]) & (g_camids[order] == q_camids[q]))
        hits = np.flatnonzero(g_pids[order][~junk] == q_pids[q])     # 0-based ranks of the hits
        if len(hits) == 0:
            out.append(None)
            continue
        i = np.arange(len(hits))
        standard = np.mean((i + 1) / (hits + 1))
        previous = np.array([1.0 if r == 0 else k / r for k, r in zip(i, hits)])
        trapezoid = np.mean((previous + (i + 1) / (hits + 1)) / 2)
        out.append((hits[0], standard, trapezoid, len(hits) / (hits[-1] + 1)))
    return out


def _official_market_ap(ranked_gallery, good, junk):
    """Market-1501's compute_AP.m (MATLAB), transcribed loop for loop: AP and CMC of one query."""
    ap, old_recall, old_precision, intersect, j, good_now, njunk = 0.0, 0.0, 1.0, 0, 0, 0, 0
    cmc = np.zeros(len(ranked_gallery))
    for n, image in enumerate(ranked_gallery):
        flag = image in good
        if flag:
            cmc[n - njunk:] = 1
            good_now += 1
        if image in junk:
            njunk += 1
            continue
        intersect += flag
        recall, precision = intersect / len(good), intersect / (j + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision = recall, precision
        j += 1
        if good_now == len(good):
            break
    return ap, cmc


# ------------------------------------------------------------------------------- against torchreid's evaluator
@pytest.mark.parametrize("seed", range(24))
def test_equals_torchreid_python_evaluator(torchreid_rank, seed):
    rng = np.random.default_rng(seed)
    num_q, num_g = int(rng.integers(1, 60)), int(rng.integers(80, 400))
    ids = _random_protocol(rng, num_q, num_g, int(rng.integers(2, 40)), int(rng.integers(1, 7)))
    q_pids, g_pids, q_camids, g_camids = ids
    distmat = rng.random((num_q, num_g)) * rng.choice([1e-3, 1.0, 1e3])      # tie-free float64
    max_rank = int(rng.integers(1, 60))
    kept = g_pids != -1          # torchreid's loader drops identity -1; its evaluator keeps what it is given
    try:
        cmc, mAP = torchreid_rank.evaluate_py(distmat[:, kept], q_pids, g_pids[kept], q_camids, g_camids[kept],
                                              max_rank, False)
    except AssertionError:                          # torchreid: no valid query at all
        with pytest.raises(ValueError, match="none of the"):
            evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
        return
    ours = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank)
    n = ours.num_valid_q
    np.testing.assert_array_equal(np.rint(ours.cmc * n), np.rint(cmc * n))     # same counts at every rank
    assert abs(ours.mAP - mAP) <= 1e-9
    assert ours.num_valid_q + ours.num_skipped == num_q


def test_equals_torchreid_without_junk_as_given(torchreid_rank):
    rng = np.random.default_rng(100)
    q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 50, 300, 20, 4, junk=False)
    distmat = rng.random((50, 300))
    cmc, mAP = torchreid_rank.evaluate_py(distmat, q_pids, g_pids, q_camids, g_camids, 50, False)
    ours = evaluate_rank(torch.from_numpy(distmat), q_pids, g_pids, q_camids, torch.from_numpy(g_camids))
    np.testing.assert_array_equal(np.rint(ours.cmc * ours.num_valid_q), np.rint(cmc * ours.num_valid_q))
    assert abs(ours.mAP - mAP) <= 1e-9


# ------------------------------------------------------------------------------------- against plain oracles
@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_per_query_oracle_with_ties(seed, dtype):
    """Integer-valued distances: many ties, broken by gallery index; every metric, both AP rules."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 40, 150, 12, 3)
    distmat = rng.integers(0, 6, (40, 150)).astype(dtype)
    oracle = _per_query_oracle(distmat, q_pids, g_pids, q_camids, g_camids)
    valid = np.array([o is not None for o in oracle])
    rows = [o for o in oracle if o is not None]
    first, standard, trapezoid, inp = map(np.array, zip(*rows))
    for rule, expected_ap in (("standard", standard), ("market", trapezoid)):
        ours = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=20, ap=rule)
        np.testing.assert_allclose(ours.ap[valid], expected_ap, rtol=0, atol=1e-12)
        assert np.isnan(ours.ap[~valid]).all() and np.isnan(ours.inp[~valid]).all()
        np.testing.assert_allclose(ours.inp[valid], inp, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours.cmc, [(first <= k).mean() for k in range(20)], rtol=0, atol=1e-12)
        # per query, what the records keep and every paired rank-1 claim reads: the first hit's 0-based rank
        np.testing.assert_array_equal(ours.first[valid], first)
        assert (ours.first[~valid] == -1).all()
        assert ours.num_skipped == (~valid).sum()


@pytest.mark.parametrize("seed", range(6))
def test_market_rule_equals_official_matlab_code(seed):
    rng = np.random.default_rng(seed)
    q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 30, 120, 8, 3)
    distmat = rng.random((30, 120))
    ours = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=120, ap="market")
    cmcs = []
    for q in range(30):
        same = g_pids == q_pids[q]
        good = set(np.flatnonzero(same & (g_camids != q_camids[q])))
        junk = set(np.flatnonzero((g_pids == -1) | (same & (g_camids == q_camids[q]))))
        if not good:
            assert np.isnan(ours.ap[q])
            continue
        ap, cmc = _official_market_ap(np.argsort(distmat[q], kind="stable"), good, junk)
        assert ours.ap[q] == pytest.approx(ap, abs=1e-12)
        cmcs.append(cmc[:120])
    np.testing.assert_allclose(ours.cmc, np.mean(cmcs, axis=0), atol=1e-12)


def test_trapezoid_never_above_standard():
    rng = np.random.default_rng(7)
    for _ in range(20):
        q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 30, 200, 6, 3)
        distmat = rng.random((30, 200))
        standard = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, ap="standard")
        market = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, ap="market")
        valid = ~np.isnan(standard.ap)
        assert (market.ap[valid] <= standard.ap[valid] + 1e-15).all()
        assert market.mAP <= standard.mAP
        np.testing.assert_array_equal(market.cmc, standard.cmc)


# --------------------------------------------------------------------------------------------- hand-worked
def _one_query(kinds):
    """One query (pid 1, camera 0); gallery ranked in the given order ('hit', 'miss' = distractor 0,
    'same' = pid 1 in camera 0, 'junk' = pid -1)."""
    pid = {"hit": 1, "miss": 0, "same": 1, "junk": -1}
    cam = {"hit": 1, "miss": 1, "same": 0, "junk": 1}
    distmat = np.arange(1, len(kinds) + 1, dtype=float)[None, :]
    return distmat, np.array([1]), np.array([pid[k] for k in kinds]), np.array([0]), np.array([cam[k] for k in kinds])


@pytest.mark.parametrize("kinds, standard, trapezoid, inp, first", [
    # hits at ranks 0, 2 (R = 2). standard: (1/1 + 2/3) / 2 = 5/6.
    # trapezoid: hit 0 at r=0 -> (1 + 1/1)/2 = 1; hit 1 at r=2 -> (1/2 + 2/3)/2 = 7/12; AP = (1 + 7/12)/2 = 19/24.
    # INP = 2 / 3.
    (["hit", "miss", "hit"], 5 / 6, 19 / 24, 2 / 3, 0),
    # one hit at r=1: standard 1/2; trapezoid (0/1 + 1/2)/2 = 1/4; INP 1/2.
    (["miss", "hit"], 1 / 2, 1 / 4, 1 / 2, 1),
    # junk and the same-camera image are removed first: [miss, hit, hit] (hits at r=1, 2).
    # standard: (1/2 + 2/3)/2 = 7/12; trapezoid: (0/1 + 1/2)/2 = 1/4 and (1/2 + 2/3)/2 = 7/12 -> AP = 5/12.
    # INP = 2/3 (last hit at r=2).
    (["junk", "same", "miss", "hit", "junk", "hit"], 7 / 12, 5 / 12, 2 / 3, 1),
    # hits at r=0 and r=4: INP = 2/5; standard (1 + 2/5)/2 = 7/10; trapezoid (1 + (1/4 + 2/5)/2)/2 = 53/80.
    (["hit", "miss", "miss", "miss", "hit"], 7 / 10, 53 / 80, 2 / 5, 0),
])
def test_hand_worked(kinds, standard, trapezoid, inp, first):
    args = _one_query(kinds)
    std = evaluate_rank(*args, max_rank=4)
    mkt = evaluate_rank(*args, max_rank=4, ap="market")
    assert std.mAP == pytest.approx(standard, abs=1e-15)
    assert mkt.mAP == pytest.approx(trapezoid, abs=1e-15)
    assert std.mINP == pytest.approx(inp, abs=1e-15)
    np.testing.assert_array_equal(std.cmc, np.arange(4) >= first)
    assert std.num_valid_q == 1 and std.num_skipped == 0


def test_skipped_queries_counted_and_rank_result_accessors():
    # query 0 (pid 1) has a hit; query 1 (pid 2) has only a same-camera image; query 2 (pid 3) is absent.
    distmat = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2], [0.5, 0.6, 0.7]])
    result = evaluate_rank(distmat, [1, 2, 3], [1, 2, 0], [0, 0, 0], [1, 0, 1], max_rank=10)
    assert (result.num_valid_q, result.num_skipped) == (1, 2)
    assert np.isnan(result.ap[1:]).all() and result.ap[0] == 1.0
    assert len(result.cmc) == 10 and result.rank(10) == 1.0
    assert result.as_dict() == {"rank1": 100.0, "rank5": 100.0, "rank10": 100.0, "mAP": 100.0, "mINP": 100.0}
    with pytest.raises(ValueError, match="1..10"):
        result.rank(11)


# ----------------------------------------------------------------------------------------------- distances
def _features(rng, n, d=16, dtype=np.float64):
    return rng.normal(size=(n, d)).astype(dtype)


def test_distances_match_plain_formula_and_sklearn():
    from sklearn.metrics.pairwise import cosine_distances, euclidean_distances
    rng = np.random.default_rng(0)
    q, g = _features(rng, 17), _features(rng, 53)
    plain = np.sqrt(((q[:, None] - g[None]) ** 2).sum(-1))
    for metric, expected in (("euclidean", plain), ("sqeuclidean", plain ** 2),
                             ("cosine", cosine_distances(q, g))):
        got = pairwise_distance(q, g, metric, dtype=np.float64)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(pairwise_distance(q, g), euclidean_distances(q, g), rtol=1e-6)
    assert pairwise_distance(q, g).dtype == np.float32
    assert pairwise_distance(q, q)[np.arange(17), np.arange(17)].max() < 1e-3      # clamped, no NaN


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_chunked_distances_equal_unchunked(metric):
    rng = np.random.default_rng(1)
    q, g = torch.from_numpy(_features(rng, 23, dtype=np.float32)), _features(rng, 41, dtype=np.float32)
    whole = pairwise_distance(q, g, metric, chunk_size=23)
    for chunk in (1, 7, None):     # equal up to BLAS blocking (a 1-row product may sum in another order)
        np.testing.assert_allclose(pairwise_distance(q, g, metric, chunk_size=chunk), whole, rtol=1e-6, atol=1e-6)


def test_evaluate_features_equals_distance_then_rank():
    rng = np.random.default_rng(2)
    q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 30, 90, 10, 3)
    qf, gf = _features(rng, 30), _features(rng, 90)
    qn, gn = (x / np.linalg.norm(x, axis=1, keepdims=True) for x in (qf, gf))
    expected = evaluate_rank(pairwise_distance(qn, gn, dtype=np.float64), q_pids, g_pids, q_camids, g_camids)
    for chunk in (4, None):
        got = evaluate_features(torch.from_numpy(qf), gf, q_pids, g_pids, q_camids, g_camids, chunk_size=chunk)
        np.testing.assert_array_equal(got.cmc, expected.cmc)
        np.testing.assert_allclose(got.ap, expected.ap, atol=1e-12)
    for metric in ("sqeuclidean", "cosine"):
        raw = evaluate_rank(pairwise_distance(qf, gf, metric, dtype=np.float64), q_pids, g_pids, q_camids, g_camids)
        got = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=metric, normalize=False)
        np.testing.assert_allclose(got.ap, raw.ap, atol=1e-12)
    reranked = evaluate_rank(
        re_ranking(*(pairwise_distance(a, b) for a, b in ((qn, gn), (qn, qn), (gn, gn)))),
        q_pids, g_pids, q_camids, g_camids, ap="market",
    )
    got = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, rerank=True, ap="market")
    np.testing.assert_allclose(got.ap, reranked.ap, atol=1e-6)


@cuda
@pytest.mark.cuda
def test_cuda_inputs_give_cpu_results():
    rng = np.random.default_rng(3)
    q_pids, g_pids, q_camids, g_camids = _random_protocol(rng, 20, 70, 8, 3)
    qf, gf = _features(rng, 20, dtype=np.float32), _features(rng, 70, dtype=np.float32)
    expected = pairwise_distance(qf, gf)
    got = pairwise_distance(torch.from_numpy(qf).cuda(), torch.from_numpy(gf).cuda())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    cpu = evaluate_rank(expected, q_pids, g_pids, q_camids, g_camids)
    gpu = evaluate_rank(torch.from_numpy(expected).cuda(), torch.from_numpy(q_pids).cuda(), g_pids,
                        q_camids, g_camids)
    np.testing.assert_array_equal(gpu.ap, cpu.ap)
    pooled, _, _ = pool_multi_query(torch.from_numpy(qf).cuda(), q_pids, q_camids)
    assert pooled.is_cuda


# ------------------------------------------------------------------------------------------- multi-query
def test_pool_multi_query_hand_case():
    features = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0], [7.0, 7.0], [0.0, 9.0]])
    pids, camids = np.array([2, 1, 1, 1, 2]), np.array([0, 0, 0, 1, 0])
    pooled, p, c = pool_multi_query(features, pids, camids)           # groups (1,0) (1,1) (2,0)
    np.testing.assert_array_equal(p, [1, 1, 2])
    np.testing.assert_array_equal(c, [0, 1, 0])
    np.testing.assert_array_equal(pooled, [[4.0, 2.0], [7.0, 7.0], [0.5, 5.5]])
    pooled, _, _ = pool_multi_query(torch.from_numpy(features), pids, camids, how="max")
    assert isinstance(pooled, torch.Tensor)
    np.testing.assert_array_equal(pooled.numpy(), [[5.0, 4.0], [7.0, 7.0], [1.0, 9.0]])


# ------------------------------------------------------------------------------------------ CUHK03 classic
def test_cuhk03_perfect_distances_give_rank1_of_one():
    rng = np.random.default_rng(4)
    q_pids, g_pids = np.repeat(np.arange(10), 2), np.repeat(np.arange(10), 5)
    distmat = rng.random((20, 50)) + (q_pids[:, None] != g_pids[None, :])
    cmc = cuhk03_classic_cmc(distmat, q_pids, g_pids, np.zeros(20, int), np.ones(50, int), num_repeats=5)
    np.testing.assert_array_equal(cmc, np.ones(50))


def test_cuhk03_one_image_per_identity_equals_market_cmc():
    rng = np.random.default_rng(5)
    distmat = rng.random((30, 40))
    q_pids, g_pids = rng.integers(0, 40, 30), rng.permutation(40)
    q_camids, g_camids = np.zeros(30, int), np.ones(40, int)
    expected = evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=40).cmc
    np.testing.assert_allclose(cuhk03_classic_cmc(distmat, q_pids, g_pids, q_camids, g_camids, 3, 40), expected)


def test_cuhk03_expected_value_of_a_hand_case_and_determinism():
    # Query pid 1 / camera 0. Gallery: pid 1 at 0.1 and 0.5 (camera 1), pid 2 at 0.3, and pid 1 at 0.0 in the
    # query's camera (removed, never drawn). The draw picks 0.1 (rank 1) or 0.5 (rank 2) with probability 1/2.
    distmat = np.array([[0.1, 0.5, 0.3, 0.0]])
    args = distmat, [1], [1, 1, 2, 1], [0], [1, 1, 1, 0]
    cmc = cuhk03_classic_cmc(*args, num_repeats=4000, max_rank=3, seed=1)
    assert cmc[0] == pytest.approx(0.5, abs=0.03)     # 4 sigma
    np.testing.assert_array_equal(cmc[1:], [1.0, 1.0])
    np.testing.assert_array_equal(cuhk03_classic_cmc(*args, num_repeats=50, seed=2),
                                  cuhk03_classic_cmc(*args, num_repeats=50, seed=2))
    assert cuhk03_classic_cmc(*args, num_repeats=50, seed=2)[0] != cuhk03_classic_cmc(*args, num_repeats=50,
                                                                                        seed=3)[0]


# ------------------------------------------------------------------------------------------------ re-ranking
@pytest.mark.parametrize("num_q, num_g, k1, k2, lam, dtype", [
    (30, 120, 20, 6, 0.3, np.float64),
    (25, 90, 20, 6, 0.3, np.float32),
    (4, 9, 20, 6, 0.3, np.float64),                   # fewer images than k1 + 1
    (40, 100, 7, 1, 0.5, np.float64),                 # no query expansion
    (60, 150, 11, 3, 0.0, np.float64),                # odd k1, Jaccard only
])
def test_re_ranking_equals_torchreid(torchreid_rerank, num_q, num_g, k1, k2, lam, dtype):
    rng = np.random.default_rng(num_q)
    centers = rng.normal(size=(8, 12))
    q = centers[rng.integers(0, 8, num_q)] + rng.normal(size=(num_q, 12))
    g = centers[rng.integers(0, 8, num_g)] + rng.normal(size=(num_g, 12))
    q_g, q_q, g_g = (pairwise_distance(a, b, dtype=dtype) for a, b in ((q, g), (q, q), (g, g)))
    expected = torchreid_rerank.re_ranking(q_g, q_q, g_g, k1, k2, lam)
    got = re_ranking(torch.from_numpy(q_g), q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert got.dtype == np.float32 and got.shape == (num_q, num_g)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_re_ranking_follows_torchreid_on_asymmetric_inputs(torchreid_rerank):
    """The original squares, divides by column maxima and transposes; asymmetric inputs show it is followed."""
    rng = np.random.default_rng(9)
    q_g, q_q, g_g = rng.random((12, 40)), rng.random((12, 12)), rng.random((40, 40))
    np.testing.assert_allclose(re_ranking(q_g, q_q, g_g), torchreid_rerank.re_ranking(q_g, q_q, g_g),
                               rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------------- bad input
def _valid_args(num_q=3, num_g=5):
    return [np.ones((num_q, num_g)), np.arange(num_q), np.arange(num_g), np.zeros(num_q, int), np.ones(num_g, int)]


@pytest.mark.parametrize("position, value, error, message", [
    (1, np.arange(4), ValueError, "q_pids has 4 entries but there are 3 queries"),
    (4, np.ones(6, int), ValueError, "g_camids has 6 entries but there are 5 gallery images"),
    (2, np.array(["a", "b", "c", "d", "e"]), TypeError, "g_pids must hold integer ids"),
    (3, np.zeros(3), TypeError, "q_camids must hold integer ids"),
    (0, np.ones((3, 0)), ValueError, "distmat is empty"),
    (0, np.ones(3), ValueError, "2-D"),
    (0, np.array([["a"] * 5] * 3), TypeError, "real numbers"),
])
def test_bad_input_to_evaluate_rank(position, value, error, message):
    args = _valid_args()
    args[position] = value
    with pytest.raises(error, match=message):
        evaluate_rank(*args)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_distances_are_named(bad):
    args = _valid_args()
    args[0][2, 4] = bad
    with pytest.raises(ValueError, match=r"distmat\[2, 4\] is .*must be finite"):
        evaluate_rank(*args)
    with pytest.raises(ValueError, match=r"distmat\[2, 4\]"):
        cuhk03_classic_cmc(*args)
    g_g = np.ones((5, 5))
    g_g[2, 4] = bad
    with pytest.raises(ValueError, match=r"g_g_dist\[2, 4\]"):
        re_ranking(np.ones((2, 5)), np.ones((2, 2)), g_g)


def test_other_bad_input():
    args = _valid_args()
    with pytest.raises(ValueError, match="ap must be one of"):
        evaluate_rank(*args, ap="trapezoid")
    with pytest.raises(ValueError, match="max_rank must be a positive integer"):
        evaluate_rank(*args, max_rank=0)
    args[2] = np.arange(10, 15)                        # no identity in common
    with pytest.raises(ValueError, match="none of the 3 queries"):
        evaluate_rank(*args)
    features = np.ones((4, 8))
    features[1, 3] = np.nan
    with pytest.raises(ValueError, match=r"qf\[1\] holds NaN"):
        pairwise_distance(features, np.ones((2, 8)))
    with pytest.raises(ValueError, match="qf has 8 dimensions but gf has 7"):
        pairwise_distance(np.ones((4, 8)), np.ones((2, 7)))
    with pytest.raises(ValueError, match="metric must be one of"):
        pairwise_distance(np.ones((4, 8)), np.ones((2, 8)), metric="manhattan")
    with pytest.raises(ValueError, match="gf is empty"):
        evaluate_features(np.ones((2, 8)), np.ones((0, 8)), [1, 2], [], [0, 0], [])
    with pytest.raises(ValueError, match=r"needs q_q_dist \(2, 2\) and g_g_dist \(3, 3\)"):
        re_ranking(np.ones((2, 3)), np.ones((3, 3)), np.ones((3, 3)))
    with pytest.raises(ValueError, match="every distance from image 0 .* is 0"):
        re_ranking(np.zeros((2, 3)), np.zeros((2, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="pids has 2 entries but there are 3 features"):
        pool_multi_query(np.ones((3, 4)), [1, 2], [0, 0, 0])


def test_market1501_removed_by_hand():
    # gallery: id 1 cam 0, id 1 cam 1, junk (-1) cam 0, id 2 cam 0, distractor (0) cam 1
    g_pids, g_camids = [1, 1, -1, 2, 0], [0, 1, 0, 0, 1]
    removed = market1501_removed([1, 2], g_pids, [0, 1], g_camids)
    # query id 1 in cam 0: its own cam-0 image and the junk go; query id 2 in cam 1: only the junk goes
    assert removed.tolist() == [[True, False, True, False, False], [False, False, True, False, False]]
    assert not market1501_removed([1], g_pids, [0], g_camids, junk_pids=())[0, 2]
