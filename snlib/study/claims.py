"""The paper's claims as comparisons computed from run records, each with an interval and a verdict.

A claim reads "a better than b" on one metric (rank-1 or mAP, in percent). For claims on the test queries the
difference is paired query by query (``snlib.statistics.paired_difference``: seeds paired by seed number); its
interval ``ci_low``/``ci_high`` is the widest of a bootstrap over queries of the per-seed-mean difference
(``query_ci_*``: the networks fixed), Student's t over the per-seed differences (``seed_ci_*``: training
variance) and a two-level bootstrap over seeds and queries (``two_level_ci_*``); ``ci_method`` names them and
which gives each bound. With one seed only the query intervals are there. Two evaluation variants of one run
(single vs multi-query) are paired per (identity, camera): the single-query results of a group are averaged
first.
Claims about training curves (iterations to reach 90 % of the final validation rank-1) have one value per seed:
their interval is Student's t over the per-seed differences (none with one seed), with a spread no smaller than
the rounding of values read off a curve scored every few iterations. The verdict rule is
``snlib.statistics.VERDICT_RULE``; with no interval a claim is unresolved.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .. import settings
from ..records import RunRecord
from ..statistics import paired_difference, proportion_difference, relative_drop_difference, verdict

#: The columns of ``claims.csv`` (then the queries and the records it comes from): ``ci_low``/``ci_high`` the
#: interval the verdict uses (``ci_method``), ``per_seed`` the per-seed differences, then each interval there is
#: (NaN where a claim has none: the query ones for per-seed values, the seed ones with one seed).
COLUMNS = ("claim", "a", "b", "metric", "delta", "ci_low", "ci_high", "ci_method", "seeds", "same_sign_seeds",
           "verdict", "per_seed", "query_ci_low", "query_ci_high", "seed_ci_low", "seed_ci_high", "two_level_ci_low",
           "two_level_ci_high")
#: The intervals of a row besides the verdict's (``COLUMNS``), each ``<name>_low`` / ``<name>_high``.
INTERVALS = ("query_ci", "seed_ci", "two_level_ci")
#: The scores every claim is made on (percent; not the distance metrics of ``snlib.evaluation.METRICS``).
CLAIM_METRICS = ("rank1", "mAP")


def _by_seed(records: Sequence[RunRecord]) -> dict[int, RunRecord]:
    return {r.config.seed: r for r in records}


def _group_means(keys: np.ndarray, values: np.ndarray) -> dict[tuple[int, int], float]:
    """Mean of ``values`` per (pid, camid) key, NaN values left out (NaN when a group has none)."""
    groups: dict[tuple[int, int], list[float]] = {}
    for key, value in zip(map(tuple, keys.tolist()), values):
        groups.setdefault(key, []).append(value)
    return {key: float(np.nanmean(v)) if np.isfinite(v).any() else np.nan for key, v in groups.items()}


def aligned_scores(a: Sequence[RunRecord], b: Sequence[RunRecord], metric: str, variant_a: str = "sq",
                   variant_b: str = "sq") -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Per-seed per-query score arrays of ``a`` and ``b`` (fractions) over the same queries, for the seeds both
    have: identical query lists pair directly, else per (identity, camera) group (module docstring)."""
    a_seeds, b_seeds = _by_seed(a), _by_seed(b)
    seeds = sorted(set(a_seeds) & set(b_seeds))
    if not seeds:
        raise ValueError(f"no seed in common: {sorted(a_seeds)} vs {sorted(b_seeds)}")
    out_a, out_b = [], []
    for seed in seeds:
        ka, va = a_seeds[seed].scores(variant_a, metric)
        kb, vb = b_seeds[seed].scores(variant_b, metric)
        if ka.shape == kb.shape and (ka == kb).all():
            out_a.append(va), out_b.append(vb)
            continue
        ga, gb = _group_means(ka, va), _group_means(kb, vb)
        common = sorted(set(ga) & set(gb))
        out_a.append(np.array([ga[k] for k in common])), out_b.append(np.array([gb[k] for k in common]))
    return out_a, out_b, seeds


def _row(claim: str, a: str, b: str, metric: str, delta: float, low: float, high: float, ci_method: str, per_seed,
         queries: int, records: Sequence[RunRecord], seeds: int | None = None, same: int | None = None,
         per_seed_text: str | None = None, intervals: dict | None = None) -> dict:
    """One claims row; ``seeds`` / ``same`` default to the count of ``per_seed`` and of its entries with the sign
    of ``delta``; ``intervals`` maps names of ``INTERVALS`` to ``(low, high)`` (absent or None: NaN)."""
    seeds = len(per_seed) if seeds is None else seeds
    same = int(sum(np.sign(d) == np.sign(delta) != 0 for d in per_seed)) if same is None else same
    decided = verdict(low, high, seeds, same) if np.isfinite(low) and np.isfinite(high) else "unresolved"
    row = {"claim": claim, "a": a, "b": b, "metric": metric, "delta": delta, "ci_low": low, "ci_high": high,
           "ci_method": ci_method, "seeds": seeds, "same_sign_seeds": same, "verdict": decided,
           "per_seed": per_seed_text or " ".join(f"{d:+.2f}" for d in per_seed)}
    for name in INTERVALS:
        row[f"{name}_low"], row[f"{name}_high"] = (intervals or {}).get(name) or (np.nan, np.nan)
    return row | {"queries": queries, "records": " ".join(sorted(r.hash for r in records))}


def _paired_row(claim: str, a: str, b: str, metric: str, d, records: Sequence[RunRecord]) -> dict:
    """The claims row of a ``snlib.statistics.PairedDifference`` (fractions), in percent."""
    intervals = {name: tuple(100 * x for x in getattr(d, name)) for name in INTERVALS if getattr(d, name)}
    return _row(claim, a, b, metric, 100 * d.delta, 100 * d.ci_low, 100 * d.ci_high, d.ci_method,
                [100 * x for x in d.per_seed], d.num_queries, records, intervals=intervals)


def query_claim(claim: str, a: Sequence[RunRecord], b: Sequence[RunRecord], metric: str, variant_a: str = "sq",
                variant_b: str = "sq", a_name: str | None = None, b_name: str | None = None) -> dict:
    """One claims row: ``a`` (records, one per seed) better than ``b`` on ``metric``, paired per query."""
    sa, sb, seeds = aligned_scores(a, b, metric, variant_a, variant_b)
    d = paired_difference(sa, sb)
    used = [r for r in (*a, *b) if r.config.seed in seeds]
    return _paired_row(claim, a_name or a[0].name, b_name or b[0].name, metric, d, used)


def drop_claim(claim: str, a: Sequence[RunRecord], b: Sequence[RunRecord], big: str) -> dict:
    """``a`` loses a smaller share of its mAP than ``b`` when the gallery grows (variant ``big``);
    delta = drop_b - drop_a in percentage points of the relative drop."""
    a_base, b_base, seeds = aligned_scores(a, b, "mAP")
    a_big, b_big, _ = aligned_scores(a, b, "mAP", big, big)
    d = relative_drop_difference(a_base, a_big, b_base, b_big)
    used = [r for r in (*a, *b) if r.config.seed in seeds]
    return _paired_row(claim, a[0].name, b[0].name, f"relative mAP drop ({big})", d, used)


def rounding_sd(step: float, values: int) -> float:
    """The standard deviation that rounding alone gives a signed sum of ``values`` quantities each known only to
    ``step`` (uniform rounding error, variance step^2 / 12 each): step * sqrt(values / 12)."""
    return step * np.sqrt(values / 12)


def seed_claim(claim: str, a: str, b: str, metric: str, a_values: dict[int, float], b_values: dict[int, float],
               records: Sequence[RunRecord], rounding_sd: float = 0.0) -> dict:
    """``a`` better than ``b`` on a per-seed value (``{seed: value}``, larger is better): delta the mean of the
    per-seed differences, a 95 % Student-t interval over them (none with one seed), delta +- t * s / sqrt(n) with
    s = max(sample standard deviation, ``rounding_sd``): values known only to a step (an iteration count read off
    a curve scored every few iterations; see ``rounding_sd``) cannot vouch for a spread smaller than their
    rounding, so identical per-seed differences do not give an interval of zero width."""
    seeds = sorted(set(a_values) & set(b_values))
    diffs = np.array([a_values[s] - b_values[s] for s in seeds], dtype=float)
    delta = float(diffs.mean())
    if len(diffs) > 1:
        floored = rounding_sd > float(diffs.std(ddof=1))
        spread = max(float(diffs.std(ddof=1)), rounding_sd)
        half = stats.t.ppf(0.975, len(diffs) - 1) * spread / np.sqrt(len(diffs))
        low, high = delta - half, delta + half
        method = "seed t" + (" (sd: the rounding floor)" if floored else "")
    else:
        low = high = np.nan
        method = "none (one seed)"
    return _row(claim, a, b, metric, delta, low, high, method, diffs.tolist(), 0, records,
                intervals={"seed_ci": (low, high)})


def count_claim(claim: str, a: str, b: str, metric: str, counts_a: tuple[int, int], counts_b: tuple[int, int],
                records: Sequence[RunRecord]) -> dict:
    """``a`` better than ``b`` on a share of runs (``(successes, runs)`` each): delta in percentage points with
    Newcombe's interval (``snlib.statistics.proportion_difference``); ``seeds`` counts a's runs, and the per-seed
    condition does not apply (``same_sign_seeds`` = ``seeds``)."""
    delta, low, high = proportion_difference(*counts_a, *counts_b)
    runs = counts_a[1]
    return _row(claim, a, b, metric, 100 * delta, 100 * low, 100 * high, "Newcombe (two proportions)", [], 0,
                records, seeds=runs, same=runs,
                per_seed_text=f"{a} {counts_a[0]}/{counts_a[1]}, {b} {counts_b[0]}/{counts_b[1]}")


def _interval_text(low: float, high: float, none: str = "-") -> str:
    return f"[{low:+.2f}, {high:+.2f}]" if np.isfinite(low) else none


def _bounds_from(ci_method: str) -> str:
    """The interval(s) giving the verdict's bounds, from ``ci_method`` ("widest of ...; low X, high Y")."""
    if "; low " not in ci_method:
        return ci_method
    low, high = ci_method.split("; low ")[1].split(", high ")
    return low if low == high else f"low {low}, high {high}"


def claims_markdown(table: pd.DataFrame) -> str:
    """``claims.md``: one line per claim and metric: the per-seed differences, the interval the verdict uses
    (the widest) and which interval gives its bounds, the interval over queries alone, and the verdict."""
    lines = ["| claim | a | b | metric | delta | per seed | 95% interval (widest) | from | over queries only | "
             "seeds (same sign) | verdict |",
             "|---|---|---|---|---:|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.claim} | {r.a} | {r.b} | {r.metric} | {r.delta:+.2f} | {r.per_seed} | "
                     f"{_interval_text(r.ci_low, r.ci_high, 'none (one seed)')} | {_bounds_from(r.ci_method)} | "
                     f"{_interval_text(r.query_ci_low, r.query_ci_high)} | {r.seeds} ({r.same_sign_seeds}) | "
                     f"**{r.verdict}** |")
    return "\n".join(lines) + "\n"


def save_claims(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """``claims.csv`` (every column, exact) and ``claims.md`` (``claims_markdown``) in ``out_dir``."""
    out = Path(out_dir)
    settings.atomic_write(out / "claims.md", claims_markdown(table))
    return settings.atomic_write(out / "claims.csv", table.to_csv(index=False))
