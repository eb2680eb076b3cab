"""Paired comparisons of two re-ID methods from per-query results, and the verdict rule.

Input: per method, one per-query score array per seed (AP in [0, 1], or the rank-1 hit 0/1), all over the
same queries in the same order; seed s of method a is paired with seed s of method b (same data). A query
that is NaN (skipped by the evaluation) in any run of any method compared is dropped from every run.

With A_q = mean_s a[s][q] and B_q = mean_s b[s][q] (per-query means over seeds):

    d_q = A_q - B_q,    delta = mean_q d_q,    per_seed[s] = mean_q (a[s][q] - b[s][q])

in the unit of the input (multiply by 100 for percent). Three intervals, each at level ``confidence``:

- ``query_ci``, over queries: queries are resampled with replacement, the same indices for every array, and
  the seeds are kept, so it measures the query-sampling uncertainty given these trained networks only. BCa
  (bias-corrected and accelerated, ``scipy.stats.bootstrap``): per-query differences of AP or of 0/1 hits are
  bounded, often skewed and heavy at 0, and the relative drop is a ratio of means; BCa corrects the bias and
  skewness of the bootstrap distribution (one-sided coverage error O(1/n), against O(1/sqrt(n)) for the
  percentile interval). Where BCa is degenerate (NaN: e.g. all differences equal, so the jackknife has no
  spread) the percentile interval of the same resamples is used (``method`` says which); for all-equal
  differences c it is [c, c], exactly [0, 0] for c = 0.
- ``seed_ci``, over seeds (training variance): Student's t over the S per-seed differences,
  mean_s per_seed[s] +- t(1/2 + confidence/2, S - 1) * sd(per_seed) / sqrt(S); None with one seed.
- ``two_level_ci``, a two-level bootstrap (training and query variance together): each resample draws S
  seeds with replacement (seed s of a with seed s of b) and n queries with replacement, and takes the
  statistic of ``query_ci`` on the S x n values x[drawn seed][drawn query] of every array (for a - b their
  mean; for the relative drop the same ratio of means). The query indices are the same for every drawn seed
  and every method: seeds and queries are crossed, not nested (every network is scored on the same test
  queries), so a query's difficulty is shared by all seeds. Drawing the queries anew for each drawn seed
  would average S independent query samples and shrink the query part of the variance S-fold: with S
  identical seeds it would give an interval sqrt(S) narrower than the query bootstrap of one of them. Crossed,
  identical seeds give exactly the query bootstrap and constant-per-seed differences exactly the bootstrap of
  the seed means (Owen 2007, the "pigeonhole" bootstrap; slightly conservative in the interaction term).
  The percentile interval of these resamples: BCa needs a jackknife acceleration, which is not defined for a
  two-level resample (``scipy.stats.bootstrap`` resamples one level only). With few seeds the seed level is
  coarse (3 seeds: 10 distinct seed multisets) and its spread biased low by (S - 1) / S, which is why the t
  interval is kept beside it.

The verdict uses the widest: [ci_low, ci_high] = [lowest low, highest high] of the intervals there are (the
union; ``ci_method`` names them and which one gives each bound). With one seed there is no estimate of the
training variance: no t interval, the two-level bootstrap reduces to the query bootstrap (percentile), and
the verdict rests on the query intervals alone (``ci_method`` says "one seed").
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

VERDICT_RULE = (
    'A claim is phrased "a better than b"; [ci_low, ci_high] is the interval on delta (a - b): for a paired '
    'comparison the widest of its intervals (lowest low, highest high of the query bootstrap, the Student-t '
    'interval over seeds and the two-level seed-and-query bootstrap; with one seed the query ones alone). '
    '"supported": ci_low > 0 and every seed\'s difference has the sign of delta (same_sign_seeds == seeds). '
    '"refuted": ci_high < 0 (b is better, the interval excluding 0). '
    '"unresolved": otherwise (the interval touches or straddles 0, or some seed disagrees).'
)

_BATCH_ELEMENTS = 1 << 21  # resamples x queries (x seeds, two-level) per bootstrap batch: about 16 MiB an array


@dataclass(frozen=True)
class PairedDifference:
    """delta = mean_q d_q; [ci_low, ci_high] the interval the verdict uses, the widest of ``query_ci`` (bootstrap
    over queries, seeds kept), ``seed_ci`` (Student t over the per-seed differences; None with one seed) and
    ``two_level_ci`` (bootstrap over seeds, then queries within each seed), each ``(low, high)``; ``ci_method``
    names them and which gives each bound. per_seed[s] the difference for seed s alone; same_sign_seeds the
    seeds whose difference has the sign of delta (0 when delta == 0); method the query interval's ("BCa", or
    "percentile" where BCa is degenerate)."""

    delta: float
    ci_low: float
    ci_high: float
    per_seed: tuple[float, ...]
    seeds: int
    same_sign_seeds: int
    num_queries: int
    confidence: float
    method: str
    query_ci: tuple[float, float]
    seed_ci: tuple[float, float] | None
    two_level_ci: tuple[float, float]
    ci_method: str

    @property
    def verdict(self) -> str:
        """``verdict(ci_low, ci_high, seeds, same_sign_seeds)``: see ``VERDICT_RULE``."""
        return verdict(self.ci_low, self.ci_high, self.seeds, self.same_sign_seeds)


def verdict(ci_low: float, ci_high: float, seeds: int, same_sign_seeds: int) -> str:
    """The verdict by ``VERDICT_RULE``: "supported", "refuted" or "unresolved" (a bound exactly 0: unresolved)."""
    if seeds < 1 or not 0 <= same_sign_seeds <= seeds:
        raise ValueError(f"need seeds >= 1 and 0 <= same_sign_seeds <= seeds, got {seeds}, {same_sign_seeds}")
    if ci_low > ci_high:
        raise ValueError(f"ci_low {ci_low} > ci_high {ci_high}")
    if ci_low > 0 and same_sign_seeds == seeds:
        return "supported"
    if ci_high < 0:
        return "refuted"
    return "unresolved"


def paired_difference(a: Sequence[np.ndarray], b: Sequence[np.ndarray], confidence: float = 0.95,
                      n_resamples: int = 10_000, seed: int = 0) -> PairedDifference:
    """Paired difference a - b: d_q = mean_s a[s][q] - mean_s b[s][q], delta = mean_q d_q, per_seed[s] =
    mean_q (a[s][q] - b[s][q]); the BCa interval of mean_q d_q over resampled queries, the t interval over
    per_seed, the two-level interval of the mean of a - b over resampled seeds and queries, and the widest of
    them for the verdict (module docstring).

    ``a``, ``b``: one 1-D per-query array per seed (or a seeds x queries array), same seeds and queries;
    queries NaN in any run of a or b are dropped. ``seed`` seeds the resampling (same seed, same interval).
    """
    _check_confidence(confidence)
    a, b = _paired_runs(a=a, b=b)
    per_seed = a.mean(axis=1) - b.mean(axis=1)
    d = a.mean(axis=0) - b.mean(axis=0)
    return _result(float(np.mean(d)), per_seed, (d,), (a - b,), np.mean, confidence, n_resamples, seed)


def relative_drop(base: Sequence[np.ndarray], big: Sequence[np.ndarray]) -> float:
    """Relative mAP drop of one method from the base gallery to the gallery with distractors,
    (mAP_base - mAP_big) / mAP_base, mAP being the mean over seeds and over the queries not NaN in any run."""
    base, big = _paired_runs(base=base, big=big)
    _check_positive(base=base)
    return float(_drop(base.mean(axis=0), big.mean(axis=0)))


def relative_drop_difference(a_base: Sequence[np.ndarray], a_big: Sequence[np.ndarray],
                             b_base: Sequence[np.ndarray], b_big: Sequence[np.ndarray],
                             confidence: float = 0.95, n_resamples: int = 10_000,
                             seed: int = 0) -> PairedDifference:
    """Paired difference of relative mAP drops, delta = drop_b - drop_a: positive means a degrades less.

    drop_m = (mAP_base - mAP_big) / mAP_base = 1 - mean_q M_big[q] / mean_q M_base[q], with M[q] the mean over
    seeds of method m's per-query AP. The BCa interval resamples the query indices, the same ones for all four
    arrays, and takes the ratio of means on each resample (``scipy.stats.bootstrap``, paired=True); the
    two-level one resamples seeds, then queries within each, and takes the same ratio of means over the
    resampled seeds and queries. per_seed[s] is the same difference for seed s alone (drops are ratios, so
    delta is not mean(per_seed)); the t interval is over per_seed, centred on its mean. The verdict uses the
    widest (module docstring).
    Queries NaN in any of the four are dropped; a mAP_base of 0 (for a seed) raises ValueError.
    """
    _check_confidence(confidence)
    runs = _paired_runs(a_base=a_base, a_big=a_big, b_base=b_base, b_big=b_big)
    _check_positive(a_base=runs[0], b_base=runs[2])
    per_seed = _drop_gap(*runs, axis=1)
    samples = tuple(x.mean(axis=0) for x in runs)
    return _result(float(_drop_gap(*samples)), per_seed, samples, runs, _drop_gap, confidence, n_resamples, seed)


def _drop(base, big, axis=-1):
    """1 - mean(big) / mean(base) along ``axis``."""
    return 1.0 - np.mean(big, axis=axis) / np.mean(base, axis=axis)


def _drop_gap(a_base, a_big, b_base, b_big, axis=-1):
    """drop_b - drop_a along ``axis``."""
    return _drop(b_base, b_big, axis) - _drop(a_base, a_big, axis)


def _result(delta, per_seed, samples, runs, statistic, confidence, n_resamples, seed) -> PairedDifference:
    """The three intervals of ``statistic`` (``statistic(*arrays, axis=-1)`` of per-query arrays) and the widest:
    the query bootstrap over ``samples`` (per-query means over seeds), the two-level one over ``runs`` (seeds x
    queries arrays), the t interval over ``per_seed``."""
    query_low, query_high, method = _interval(samples, statistic, confidence, n_resamples, seed)
    seed_ci = seed_interval(per_seed, confidence)
    two_level_ci = two_level_interval(runs, statistic, confidence, n_resamples, seed)
    intervals = {f"query {method}": (query_low, query_high), "seed t": seed_ci, "two-level": two_level_ci}
    intervals = {name: ci for name, ci in intervals.items() if ci is not None}
    low = min(intervals, key=lambda name: intervals[name][0])            # the first of ties
    high = max(intervals, key=lambda name: intervals[name][1])
    ci_method = (f"widest of {', '.join(intervals)}{'' if seed_ci else ' (one seed: no t)'}; "
                 f"low {low}, high {high}")
    signs = np.sign(per_seed) == np.sign(delta)
    return PairedDifference(
        delta=delta, ci_low=intervals[low][0], ci_high=intervals[high][1], per_seed=tuple(float(x) for x in per_seed),
        seeds=len(per_seed), same_sign_seeds=0 if delta == 0 else int(signs.sum()),
        num_queries=samples[0].shape[0], confidence=confidence, method=method, query_ci=(query_low, query_high),
        seed_ci=seed_ci, two_level_ci=two_level_ci, ci_method=ci_method)


def seed_interval(per_seed: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """Student's t interval of the mean of the per-seed values x_s, mean +- t(1/2 + confidence/2, S - 1) *
    sd(x, ddof=1) / sqrt(S); None for one seed (no spread to estimate)."""
    x = np.asarray(per_seed, dtype=float)
    if len(x) < 2:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean() - half), float(x.mean() + half)


def two_level_interval(runs: Sequence[np.ndarray], statistic, confidence: float = 0.95, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the two-level bootstrap (module docstring) of ``statistic`` over ``runs``, arrays of
    seeds x queries paired by seed and by query. A resample draws seeds j_1..j_S and queries q_1..q_n, the same
    for every array and every drawn seed; ``statistic(*arrays, axis=-1)`` then reads each array's S * n values
    x[j_k, q_i]. Batches of resamples keep each array's resampled values near ``_BATCH_ELEMENTS``; per batch
    the seed draws (batch x S) come first from ``np.random.default_rng(seed)``, then the query draws
    (batch x n), so the interval is fixed by ``seed``."""
    runs = [np.asarray(x, dtype=float) for x in runs]
    seeds, queries = runs[0].shape
    rng = np.random.default_rng(seed)
    batch = max(1, _BATCH_ELEMENTS // (seeds * queries))
    values = []
    for start in range(0, n_resamples, batch):
        size = min(batch, n_resamples - start)
        drawn = rng.integers(0, seeds, (size, seeds))
        index = rng.integers(0, queries, (size, 1, queries))
        values.append(statistic(*(x[drawn[:, :, None], index].reshape(size, -1) for x in runs), axis=-1))
    tail = 50 * (1 - confidence)
    low, high = np.percentile(np.concatenate(values), [tail, 100 - tail])
    return float(low), float(high)


def _interval(samples, statistic, confidence, n_resamples, seed):
    """(low, high, method): the BCa interval, or the percentile one where BCa gives NaN."""
    options = dict(n_resamples=n_resamples, batch=max(1, _BATCH_ELEMENTS // samples[0].shape[0]),
                   vectorized=True, paired=True, axis=-1, confidence_level=confidence)
    with warnings.catch_warnings():  # a degenerate BCa warns (0/0 acceleration), and is replaced below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = stats.bootstrap(samples, statistic, method="BCa", rng=np.random.default_rng(seed),
                             **options).confidence_interval
    method = "BCa"
    if not (np.isfinite(ci.low) and np.isfinite(ci.high)):
        ci = stats.bootstrap(samples, statistic, method="percentile", rng=np.random.default_rng(seed),
                             **options).confidence_interval
        method = "percentile"
    return float(ci.low), float(ci.high), method


def _check_confidence(confidence):
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _check_positive(**bases):
    for name, base in bases.items():
        if np.any(base.mean(axis=1) <= 0):
            raise ValueError(f"{name}: mAP_base is 0 for some seed; the relative drop is undefined")


def _paired_runs(**methods: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each method's runs as a seeds x queries array, the queries NaN in any run of any method dropped."""
    stacked = {}
    for name, runs in methods.items():
        arrays = [np.asarray(x, dtype=float) for x in runs]
        if not arrays:
            raise ValueError(f"{name}: needs at least 1 seed, got 0")
        if any(x.ndim != 1 for x in arrays):
            raise ValueError(f"{name}: each seed's scores must be a 1-D per-query array")
        lengths = sorted({len(x) for x in arrays})
        if len(lengths) > 1:
            raise ValueError(f"{name}: its seeds have different numbers of queries {lengths}")
        stacked[name] = np.stack(arrays)
    seeds = {name: x.shape[0] for name, x in stacked.items()}
    if len(set(seeds.values())) > 1:
        raise ValueError(f"different numbers of seeds (seeds are paired): {seeds}")
    queries = {name: x.shape[1] for name, x in stacked.items()}
    if len(set(queries.values())) > 1:
        raise ValueError(f"different numbers of queries (queries are paired): {queries}")
    keep = ~np.any([np.isnan(x).any(axis=0) for x in stacked.values()], axis=0)
    if keep.sum() < 2:
        raise ValueError(f"{int(keep.sum())} queries left after dropping NaN ones; the bootstrap needs 2")
    return [x[:, keep] for x in stacked.values()]


def proportion_difference(successes_a: int, n_a: int, successes_b: int, n_b: int,
                          confidence: float = 0.95) -> tuple[float, float, float]:
    """``(delta, low, high)``: p_a - p_b of two independent proportions (e.g. the share of a loss's selection
    runs that did not collapse) with Newcombe's hybrid score interval (Newcombe 1998, method 10: from the Wilson
    intervals (l, u) of each proportion, low = delta - sqrt((p_a - l_a)^2 + (u_b - p_b)^2), high = delta +
    sqrt((u_a - p_a)^2 + (p_b - l_b)^2))."""
    _check_confidence(confidence)
    for s, n in ((successes_a, n_a), (successes_b, n_b)):
        if n < 1 or not 0 <= s <= n:
            raise ValueError(f"need n >= 1 and 0 <= successes <= n, got {s} of {n}")
    z = stats.norm.ppf(0.5 + confidence / 2)
    (pa, la, ua), (pb, lb, ub) = (_wilson(s, n, z) for s, n in ((successes_a, n_a), (successes_b, n_b)))
    delta = pa - pb
    return delta, delta - np.hypot(pa - la, ub - pb), delta + np.hypot(ua - pa, pb - lb)


def _wilson(successes: int, n: int, z: float) -> tuple[float, float, float]:
    """The proportion and its Wilson score interval."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return p, centre - half, centre + half
