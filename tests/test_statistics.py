"""snlib.statistics: hand-worked cases, the bootstrap interval against a normal approximation and a plain numpy
percentile bootstrap, the pairing, NaN queries, bad input, and every branch of the verdict rule."""
from __future__ import annotations

import numpy as np
import pytest

from snlib.statistics import (
    VERDICT_RULE, PairedDifference, paired_difference, relative_drop, relative_drop_difference, verdict,
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
    assert (result.seeds, result.same_sign_seeds, result.num_queries) == (3, 3, 300)
    assert result.verdict == "supported"


def test_zero_difference_is_exactly_zero():
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, 50), rng.uniform(0, 1, 50)
    result = paired_difference([x, y], [y, x])        # per seed +-(mean x - mean y), every d_q exactly 0
    assert (result.delta, result.ci_low, result.ci_high) == (0.0, 0.0, 0.0)
    assert result.method == "percentile"              # BCa is degenerate (no spread): the fallback
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
    d = a - b
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    width = 2 * half
    assert result.delta == pytest.approx(d.mean(), abs=1e-15)
    assert result.ci_low == pytest.approx(d.mean() - half, abs=0.04 * width)
    assert result.ci_high == pytest.approx(d.mean() + half, abs=0.04 * width)
    assert result.ci_high - result.ci_low == pytest.approx(width, rel=0.04)


@pytest.mark.parametrize("draw", [_ap_like, _rank1_hits])
def test_interval_agrees_with_numpy_percentile_bootstrap(draw):
    a, b = draw(np.random.default_rng(3), 2000)
    result = paired_difference([a], [b], seed=7)
    low, high, spread = _percentile_bootstrap((a - b,), np.mean)
    # at 10 000 resamples the Monte-Carlo sd of a BCa bound is ~0.04 spread, of the reference's ~0.025:
    # 0.2 spread is ~4 sd of their difference (BCa's own correction is ~0.01 spread here)
    assert abs(result.ci_low - low) < 0.2 * spread
    assert abs(result.ci_high - high) < 0.2 * spread


def test_confidence_level_sets_the_width():
    a, b = _ap_like(np.random.default_rng(4), 2000)
    wide, narrow = paired_difference([a], [b], confidence=0.95), paired_difference([a], [b], confidence=0.5)
    # normal quantiles: 1.96 against 0.674
    assert (narrow.ci_high - narrow.ci_low) / (wide.ci_high - wide.ci_low) == pytest.approx(0.674 / 1.96, rel=0.08)


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
    assert abs(result.ci_low - low) < 0.2 * spread                 # Monte-Carlo error: as for paired_difference
    assert abs(result.ci_high - high) < 0.2 * spread
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
