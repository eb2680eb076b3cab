"""snlib.statistics: hand-worked cases, the query bootstrap interval against a normal approximation and a plain
numpy percentile bootstrap, the t interval over seeds against scipy, the two-level bootstrap against plain loops and
the cases whose answer is known (no training variance, no query variance), the widest interval deciding, the
pairing, NaN queries, bad input, and every branch of the verdict rule."""
from __future__ import annotations

import numpy as np
import pytest

from snlib.statistics import (
    VERDICT_RULE, PairedDifference, paired_difference, relative_drop, relative_drop_difference, seed_interval,
    two_level_interval, verdict,
)


def _percentile_bootstrap(samples, statistic, confidence=0.95, n_resamples=10_000, seed=12345):
    """Reference: resample query indices (the same for every array), the statistic on each resample, and the
    (1 -/+ confidence)/2 percentiles; also the resamples' standard deviation."""
    rng = np.random.default_rng(seed)
    n = len(samples[0])
    values = np.empty(n_resamples)
    for i in range(n_resamples):
        index = rng.integers(0, n, n)
        values[i] = statistic(*(x[index] for x in samples))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return low, high, values.std()


def test_constant_difference_gives_a_point_interval():
    rng = np.random.default_rng(0)
    b = [rng.uniform(0, 1, 300) for _ in range(3)]
    result = paired_difference([x + 0.05 for x in b], b)
    assert result.delta == pytest.approx(0.05, abs=1e-12)
    assert result.ci_low == pytest.approx(0.05, abs=1e-12)
    assert result.ci_high == pytest.approx(0.05, abs=1e-12)
    assert result.per_seed == pytest.approx((0.05,) * 3, abs=1e-12)
    for ci in (result.query_ci, result.seed_ci, result.two_level_ci):
        assert ci == pytest.approx((0.05, 0.05), abs=1e-12)
    assert (result.seeds, result.same_sign_seeds, result.num_queries) == (3, 3, 300)
    assert result.verdict == "supported"


def test_zero_difference_is_exactly_zero():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    result = paired_difference([x, y], [y, x])        # per seed +-(mean x - mean y), every d_q exactly 0
    assert (result.delta, *result.query_ci) == (0.0, 0.0, 0.0)
    assert result.method == "percentile"              # BCa is degenerate (no spread): the fallback
    # the seeds disagree: the t interval (over +-g, g = mean x - mean y) is 12.71 |g| wide either side, the widest
    g = abs(result.per_seed[0])
    assert result.seed_ci == pytest.approx((-12.706204736174705 * g, 12.706204736174705 * g))
    assert (result.ci_low, result.ci_high) == result.seed_ci and result.ci_method.endswith("low seed t, high seed t")
    assert result.per_seed[0] == -result.per_seed[1] != 0
    assert result.same_sign_seeds == 0
    assert result.verdict == "unresolved"


def _ap_like(rng, n):
    return rng.beta(2, 5, n), rng.beta(2, 6, n)


def _rank1_hits(rng, n):
    return (rng.uniform(size=n) < 0.85).astype(float), (rng.uniform(size=n) < 0.80).astype(float)


@pytest.mark.parametrize("draw", [_ap_like, _rank1_hits])
def test_interval_agrees_with_normal_approximation(draw):
    a, b = draw(np.random.default_rng(2), 2000)
    result = paired_difference([a], [b])
    assert result.method == "BCa"
    low, high = result.query_ci
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    width = 2 * half
    assert result.delta == pytest.approx(d.mean(), abs=1e-15)
    assert low == pytest.approx(d.mean() - half, abs=0.04 * width)
    assert high == pytest.approx(d.mean() + half, abs=0.04 * width)
    assert high - low == pytest.approx(width, rel=0.04)


@pytest.mark.parametrize("draw", [_ap_like, _rank1_hits])
def test_interval_agrees_with_numpy_percentile_bootstrap(draw):
    a, b = draw(np.random.default_rng(3), 2000)
    result = paired_difference([a], [b], seed=7)
    low, high, spread = _percentile_bootstrap((a - b,), np.mean)
    # at 10 000 resamples the Monte-Carlo sd of a BCa bound is ~0.04 spread, of the reference's ~0.025:
    # 0.2 spread is ~4 sd of their difference (BCa's own correction is ~0.01 spread here)
    assert abs(result.query_ci[0] - low) < 0.2 * spread
    assert abs(result.query_ci[1] - high) < 0.2 * spread
    # one seed: no t interval, and the two-level bootstrap is the query percentile bootstrap
    assert result.seed_ci is None and "one seed" in result.ci_method
    assert abs(result.two_level_ci[0] - low) < 0.15 * spread and abs(result.two_level_ci[1] - high) < 0.15 * spread
    assert result.ci_low == min(result.query_ci[0], result.two_level_ci[0])
    assert result.ci_high == max(result.query_ci[1], result.two_level_ci[1])


def test_confidence_level_sets_the_width():
    a, b = _ap_like(np.random.default_rng(4), 2000)
    wide, narrow = paired_difference([a], [b], confidence=0.95), paired_difference([a], [b], confidence=0.5)
    # normal quantiles: 1.96 against 0.674
    for ci in ("query_ci", "two_level_ci"):
        ratio = np.diff(getattr(narrow, ci)) / np.diff(getattr(wide, ci))
        assert ratio == pytest.approx(0.674 / 1.96, rel=0.08)
    three = [np.array([0.3, 0.5, 0.4, 0.6])] * 3
    t95, t50 = (seed_interval([0.1, 0.3, 0.2], c) for c in (0.95, 0.5))
    assert np.diff(t50) / np.diff(t95) == pytest.approx(0.8164965809 / 4.302652729911275)   # t(0.75, 2) / t(0.975, 2)
    assert paired_difference(three, three, confidence=0.5).confidence == 0.5


def test_pairing_cancels_shared_per_query_noise():
    rng = np.random.default_rng(5)
    n, shift = 500, 0.02
    query_noise = rng.normal(0, 0.3, n)               # query difficulty, shared by both methods and all seeds
    a = [query_noise + shift + rng.normal(0, 0.01, n) for _ in range(3)]
    b = [query_noise + rng.normal(0, 0.01, n) for _ in range(3)]
    result = paired_difference(a, b, n_resamples=2000)
    mean_a, mean_b = np.mean(a, axis=0), np.mean(b, axis=0)
    unpaired_width = 2 * 1.96 * np.sqrt(mean_a.var(ddof=1) / n + mean_b.var(ddof=1) / n)
    assert result.ci_low < shift < result.ci_high
    assert result.ci_high - result.ci_low < 0.1 * unpaired_width
    assert unpaired_width / 2 > shift                 # unpaired, the shift would not be resolved
    assert result.verdict == "supported"


def test_three_seed_hand_example():
    a = [[0.5, 0.7], [0.6, 0.6], [0.4, 0.8]]
    b = [[0.4, 0.6], [0.7, 0.7], [0.3, 0.5]]
    result = paired_difference([np.array(x) for x in a], [np.array(x) for x in b], n_resamples=1000)
    # seed means of a: (0.5, 0.7); of b: (1.4/3, 1.8/3); d = (0.1/3, 0.3/3)
    assert result.delta == pytest.approx(0.2 / 3, abs=1e-12)
    assert result.per_seed == pytest.approx((0.1, -0.1, 0.2), abs=1e-12)
    assert (result.seeds, result.same_sign_seeds, result.num_queries) == (3, 2, 2)
    assert result.verdict == "unresolved"             # seed 1 disagrees, whatever the interval
    assert isinstance(result, PairedDifference)


def test_nan_queries_are_dropped_from_every_run():
    rng = np.random.default_rng(6)
    a = [rng.uniform(0, 1, 40) for _ in range(2)]
    b = [rng.uniform(0, 1, 40) for _ in range(2)]
    keep = np.ones(40, bool)
    keep[[3, 17, 29]] = False
    a_nan, b_nan = [x.copy() for x in a], [x.copy() for x in b]
    a_nan[1][3] = np.nan
    b_nan[0][17] = np.nan
    a_nan[0][29] = b_nan[1][29] = np.nan
    result = paired_difference(a_nan, b_nan, n_resamples=2000)
    assert result == paired_difference([x[keep] for x in a], [x[keep] for x in b], n_resamples=2000)
    assert result.num_queries == 37
    assert np.isfinite([result.delta, result.ci_low, result.ci_high, *result.per_seed]).all()


@pytest.mark.parametrize("a, b, kwargs, message", [
    ([np.ones(4), np.ones(4)], [np.ones(4)], {}, "different numbers of seeds"),
    ([np.ones(4)], [np.ones(5)], {}, "different numbers of queries"),
    ([np.ones(4), np.ones(3)], [np.ones(4), np.ones(4)], {}, "its seeds have different numbers of queries"),
    ([], [], {}, "at least 1 seed"),
    ([np.ones((2, 3))], [np.ones((2, 3))], {}, "1-D"),
    ([np.full(4, np.nan)], [np.ones(4)], {}, "0 queries left"),
    ([np.array([np.nan, 1.0])], [np.ones(2)], {}, "1 queries left"),
    ([np.ones(4)], [np.ones(4)], {"confidence": 0.0}, "confidence"),
    ([np.ones(4)], [np.ones(4)], {"confidence": 1.0}, "confidence"),
    ([np.ones(4)], [np.ones(4)], {"confidence": 95}, "confidence"),
    ([np.ones(4)], [np.ones(4)], {"confidence": np.nan}, "confidence"),
])
def test_bad_input(a, b, kwargs, message):
    with pytest.raises(ValueError, match=message):
        paired_difference(a, b, **kwargs)


@pytest.mark.parametrize("ci_low, ci_high, seeds, same_sign, expected", [
    (0.01, 0.03, 3, 3, "supported"),
    (0.01, 0.03, 3, 2, "unresolved"),     # above 0 but one seed opposite
    (-0.03, -0.01, 3, 3, "refuted"),
    (-0.03, -0.01, 3, 1, "refuted"),      # seeds need not agree for a refutation
    (-0.01, 0.03, 3, 3, "unresolved"),    # straddles 0
    (0.0, 0.03, 3, 3, "unresolved"),      # touches 0 from above
    (-0.03, 0.0, 3, 3, "unresolved"),     # touches 0 from below
    (0.0, 0.0, 1, 0, "unresolved"),
    (0.02, 0.02, 1, 1, "supported"),
])
def test_verdict_rule(ci_low, ci_high, seeds, same_sign, expected):
    assert verdict(ci_low, ci_high, seeds, same_sign) == expected


@pytest.mark.parametrize("args", [(0.1, 0.0, 3, 3), (0.1, 0.2, 0, 0), (0.1, 0.2, 3, 4), (0.1, 0.2, 3, -1)])
def test_verdict_bad_input(args):
    with pytest.raises(ValueError):
        verdict(*args)


def test_verdict_rule_is_stated():
    assert all(word in VERDICT_RULE for word in ('"supported"', '"refuted"', '"unresolved"', "same_sign_seeds"))


def test_relative_drop_hand_example():
    a_base = [np.array([0.8, 0.4, 0.6]), np.array([0.6, 0.6, 0.6])]   # mAP 0.6, 0.6
    a_big = [np.array([0.6, 0.3, 0.3]), np.array([0.6, 0.3, 0.6])]    # mAP 0.4, 0.5: drops 1/3, 1/6
    b_base = [np.array([0.5, 0.5, 0.5]), np.array([0.3, 0.5, 0.7])]   # mAP 0.5, 0.5
    b_big = [np.array([0.2, 0.4, 0.3]), np.array([0.3, 0.4, 0.5])]    # mAP 0.3, 0.4: drops 0.4, 0.2
    assert relative_drop(a_base, a_big) == pytest.approx(0.25, abs=1e-12)     # 1 - 0.45 / 0.6
    assert relative_drop(b_base, b_big) == pytest.approx(0.3, abs=1e-12)      # 1 - 0.35 / 0.5
    result = relative_drop_difference(a_base, a_big, b_base, b_big, n_resamples=1000)
    assert result.delta == pytest.approx(0.05, abs=1e-12)                     # drop_b - drop_a: a degrades less
    assert result.per_seed == pytest.approx((0.4 - 1 / 3, 0.2 - 1 / 6), abs=1e-12)
    assert (result.seeds, result.same_sign_seeds, result.num_queries) == (2, 2, 3)
    flipped = relative_drop_difference(b_base, b_big, a_base, a_big, n_resamples=1000)
    assert flipped.delta == pytest.approx(-0.05, abs=1e-12)


def test_relative_drop_constant_ratios_give_a_point_interval():
    rng = np.random.default_rng(8)
    a_base = [rng.uniform(0.2, 1, 200) for _ in range(2)]
    b_base = [rng.uniform(0.2, 1, 200) for _ in range(2)]
    result = relative_drop_difference(a_base, [0.9 * x for x in a_base], b_base, [0.75 * x for x in b_base])
    for value in (result.delta, result.ci_low, result.ci_high, *result.per_seed):
        assert value == pytest.approx(0.15, abs=1e-12)


def test_relative_drop_interval_agrees_with_numpy_percentile_bootstrap():
    rng = np.random.default_rng(9)
    n = 500
    a_base, b_base = rng.beta(5, 2, n), rng.beta(5, 2, n)
    a_big, b_big = a_base * rng.uniform(0.7, 0.9, n), b_base * rng.uniform(0.5, 0.7, n)

    def gap(ab, ag, bb, bg):
        return (1 - bg.mean() / bb.mean()) - (1 - ag.mean() / ab.mean())

    result = relative_drop_difference([a_base], [a_big], [b_base], [b_big])
    low, high, spread = _percentile_bootstrap((a_base, a_big, b_base, b_big), gap)
    assert result.delta == pytest.approx(gap(a_base, a_big, b_base, b_big), abs=1e-12)
    assert result.ci_low < result.delta < result.ci_high
    assert abs(result.query_ci[0] - low) < 0.2 * spread            # Monte-Carlo error: as for paired_difference
    assert abs(result.query_ci[1] - high) < 0.2 * spread
    assert abs(result.two_level_ci[0] - low) < 0.15 * spread and abs(result.two_level_ci[1] - high) < 0.15 * spread
    # resampling the four arrays independently loses the pairing (base and big of a query move together)
    unpaired = [gap(*(x[rng.integers(0, n, n)] for x in (a_base, a_big, b_base, b_big))) for _ in range(2000)]
    assert result.ci_high - result.ci_low < 0.5 * (np.percentile(unpaired, 97.5) - np.percentile(unpaired, 2.5))


def test_relative_drop_bad_input_and_nan():
    ones = [np.ones(5)]
    with pytest.raises(ValueError, match="mAP_base is 0"):
        relative_drop_difference([np.zeros(5)], ones, ones, ones)
    with pytest.raises(ValueError, match="different numbers of seeds"):
        relative_drop_difference(ones, ones, ones, ones * 2)
    with pytest.raises(ValueError, match="confidence"):
        relative_drop_difference(ones, ones, ones, ones, confidence=1.5)
    base = np.array([0.8, 0.6, 0.4, np.nan])
    big = np.array([0.4, 0.3, 0.2, 0.1])
    result = relative_drop_difference([base], [big], [big], [0.5 * big], n_resamples=500)
    assert result.num_queries == 3
    assert result.delta == pytest.approx(0.0, abs=1e-12)    # both drop by half once query 3 is gone from all four
    with pytest.raises(ValueError, match="mAP_base is 0"):
        relative_drop([np.zeros(3)], [np.zeros(3)])


def test_same_seed_same_interval():
    a, b = _ap_like(np.random.default_rng(10), 300)
    first = paired_difference([a], [b], n_resamples=2000, seed=3)
    assert paired_difference([a], [b], n_resamples=2000, seed=3) == first
    other = paired_difference([a], [b], n_resamples=2000, seed=4)
    assert other.delta == first.delta and (other.ci_low, other.ci_high) != (first.ci_low, first.ci_high)


def test_proportion_difference_is_newcombes_method_10():
    from snlib.statistics import proportion_difference

    # Newcombe (1998), Statistics in Medicine 17:873, Table II: 56/70 vs 48/80 -> 0.2000 (0.0524, 0.3339)
    delta, low, high = proportion_difference(56, 70, 48, 80)
    assert delta == pytest.approx(0.2) and low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)
    # the same table: 5/56 vs 0/29 -> (-0.0381, 0.1926)
    delta, low, high = proportion_difference(5, 56, 0, 29)
    assert (low, high) == (pytest.approx(-0.0381, abs=1e-4), pytest.approx(0.1926, abs=1e-4))
    with pytest.raises(ValueError, match="successes"):
        proportion_difference(3, 2, 1, 2)


# ------------------------------------------------------------------------------- intervals over seeds


def _two_level_loop(runs, statistic, confidence=0.95, n_resamples=2000, seed=0):
    """Reference: the two-level bootstrap one resample and one value at a time, reading the draws in the order
    ``two_level_interval`` takes them from the generator when all resamples fit one batch (seed draws first,
    resamples x seeds, then the query draws, resamples x queries)."""
    seeds, queries = runs[0].shape
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, seeds, (n_resamples, seeds))
    index = rng.integers(0, queries, (n_resamples, queries))
    values = []
    for r in range(n_resamples):
        picked = [np.array([x[s, q] for s in drawn[r] for q in index[r]]) for x in runs]
        values.append(statistic(*picked))
    tail = 50 * (1 - confidence)
    return tuple(np.percentile(values, [tail, 100 - tail])), np.std(values)


def _gap(ab, ag, bb, bg, axis=-1):
    return (1 - np.mean(bg, axis) / np.mean(bb, axis)) - (1 - np.mean(ag, axis) / np.mean(ab, axis))


def test_two_level_bootstrap_equals_a_plain_loop_with_the_same_draws():
    rng = np.random.default_rng(20)
    diff = rng.normal(0.05, 0.2, (3, 7)) + rng.normal(0, 0.05, (3, 1))          # seed effects and query noise
    ci = two_level_interval([diff], np.mean, n_resamples=2000, seed=5)
    assert ci == pytest.approx(_two_level_loop([diff], np.mean, seed=5)[0], abs=1e-12)
    runs = [rng.uniform(0.3, 1, (4, 6)) for _ in range(4)]
    assert two_level_interval(runs, _gap, n_resamples=1500, seed=2) == pytest.approx(
        _two_level_loop(runs, _gap, n_resamples=1500, seed=2)[0], abs=1e-12)


def test_two_level_bootstrap_in_batches_agrees_with_an_independent_loop(monkeypatch):
    """Many batches (each of 3 resamples) and an independent generator: the same distribution."""
    import snlib.statistics as statistics

    rng = np.random.default_rng(21)
    diff = rng.normal(0.1, 0.3, (3, 40)) + np.array([[0.0], [0.1], [-0.05]])
    monkeypatch.setattr(statistics, "_BATCH_ELEMENTS", 3 * diff.size)
    ci = two_level_interval([diff], np.mean, n_resamples=8000, seed=1)
    assert two_level_interval([diff], np.mean, n_resamples=8000, seed=1) == ci          # fixed by the seed
    (low, high), spread = _two_level_loop([diff], np.mean, n_resamples=8000, seed=99)
    assert abs(ci[0] - low) < 0.15 * spread and abs(ci[1] - high) < 0.15 * spread


def test_two_level_without_training_variance_is_the_query_bootstrap_of_one_seed():
    a, b = _ap_like(np.random.default_rng(22), 1000)
    result = paired_difference([a] * 3, [b] * 3, seed=3)
    low, high, spread = _percentile_bootstrap((a - b,), np.mean)
    assert result.per_seed == pytest.approx((np.mean(a - b),) * 3)
    assert result.seed_ci == pytest.approx((np.mean(a - b),) * 2)                 # no spread over seeds
    assert abs(result.two_level_ci[0] - low) < 0.15 * spread and abs(result.two_level_ci[1] - high) < 0.15 * spread
    # the query BCa and the two-level percentile interval then nearly coincide, and the widest is one of them
    assert result.ci_low == min(result.query_ci[0], result.two_level_ci[0])
    assert result.ci_high == max(result.query_ci[1], result.two_level_ci[1])


def test_two_level_without_query_variance_is_the_bootstrap_of_the_seed_means():
    means = np.array([0.12, 0.03, 0.08, 0.15, 0.05])
    b = [np.random.default_rng(23).uniform(0, 0.5, 200)] * 5
    a = [x + m for x, m in zip(b, means)]                          # seed s: a - b = means[s] on every query
    result = paired_difference(a, b, seed=4)
    rng = np.random.default_rng(24)
    resampled = means[rng.integers(0, 5, (20_000, 5))].mean(axis=1)       # seed-only bootstrap, a plain reference
    low, high = np.percentile(resampled, [2.5, 97.5])
    spread = resampled.std()
    assert abs(result.two_level_ci[0] - low) < 0.1 * spread and abs(result.two_level_ci[1] - high) < 0.1 * spread
    assert result.query_ci == pytest.approx((means.mean(),) * 2, abs=1e-12)     # no query spread at all
    half = 2.7764451051977987 * means.std(ddof=1) / np.sqrt(5)                   # t(0.975, 4)
    assert result.seed_ci == pytest.approx((means.mean() - half, means.mean() + half))
    # comparable: the percentile interval of 5 seeds is narrower than t by about 1.96 sqrt(4/5) / 2.776 = 0.63
    ratio = np.diff(result.two_level_ci)[0] / (2 * half)
    assert 0.5 < ratio < 0.8
    assert (result.ci_low, result.ci_high) == result.seed_ci


def test_seed_interval_is_students_t():
    from scipy import stats

    x = [0.144, 0.153, 0.051]
    low, high = seed_interval(x)
    reference = stats.t.interval(0.95, 2, loc=np.mean(x), scale=stats.sem(x))
    assert (low, high) == pytest.approx(reference, abs=1e-12)
    assert seed_interval([0.3]) is None


def test_training_variance_overturns_a_query_only_verdict():
    """The referee's case: per-seed rank-1 differences of +14.4, +15.3 and +5.1 points; over 1000 queries each
    the query bootstrap alone excludes 0, the t interval over the seeds, [-2.4, +25.6], does not."""
    rng = np.random.default_rng(25)
    n, a, b = 1000, [], []
    for gain in (144, 153, 51):
        hits = (rng.uniform(size=n) < 0.6).astype(float)
        better = hits.copy()
        better[rng.choice(np.flatnonzero(hits == 0), gain, replace=False)] = 1.0
        a.append(better), b.append(hits)
    result = paired_difference(a, b)
    assert 100 * np.array(result.per_seed) == pytest.approx([14.4, 15.3, 5.1])
    assert result.query_ci[0] > 0 and verdict(*result.query_ci, 3, 3) == "supported"          # what it said
    assert 100 * np.array(result.seed_ci) == pytest.approx([-2.43, 25.63], abs=0.01)
    assert (result.ci_low, result.ci_high) == result.seed_ci
    assert result.verdict == "unresolved"
    assert result.ci_method == "widest of query BCa, seed t, two-level; low seed t, high seed t"


def test_one_seed_falls_back_to_the_query_intervals():
    a, b = _rank1_hits(np.random.default_rng(26), 500)
    result = paired_difference([a], [b], n_resamples=2000)
    assert result.seed_ci is None
    assert result.ci_method.startswith("widest of query BCa, two-level (one seed: no t)")
    assert result.ci_low == min(result.query_ci[0], result.two_level_ci[0])
    assert result.ci_high == max(result.query_ci[1], result.two_level_ci[1])
    assert result.verdict == verdict(result.ci_low, result.ci_high, 1, result.same_sign_seeds)


def test_relative_drop_two_level_counts_the_seeds():
    """Drops that differ by seed but not by query: the query interval is a point, the seed ones are not."""
    rng = np.random.default_rng(27)
    base = [rng.uniform(0.2, 1, 100)] * 3
    a_big = [f * x for f, x in zip((0.9, 0.8, 0.85), base)]                # a's drops 0.1, 0.2, 0.15
    b_big = [0.7 * x for x in base]                                        # b's 0.3 each seed
    result = relative_drop_difference(base, a_big, base, b_big, seed=1)
    gaps = np.array([0.2, 0.1, 0.15])
    assert result.query_ci == pytest.approx((0.15, 0.15), abs=1e-12)
    assert result.seed_ci == pytest.approx(seed_interval(gaps), abs=1e-12)
    low, high = result.two_level_ci                                        # seed means of the three gaps
    assert 0.1 - 1e-12 <= low < 0.15 < high <= 0.2 + 1e-12
    assert (result.ci_low, result.ci_high) == pytest.approx(seed_interval(gaps), abs=1e-12)
