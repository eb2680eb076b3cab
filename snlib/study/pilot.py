"""The budget chosen by convergence: a pilot on the validation identities and the plateau rule that reads it.

Every recipe of the protocol's selection trains at its literature's rate (``snlib.presets.PAPER_RATES``) times
``Protocol.pilot_rate_factor`` (1: the literature's; the ``cpu`` protocol's 3, the rate its regime prefers, as
``benchmarks/baselines_check.py`` measured: the literature's rates are ResNet-50's end to end at 128 a batch) for
``Protocol.pilot_iterations`` at a constant rate after a short linear warm-up (``final_lr_factor = 1``: no decay, so
that the curve up to iteration B is what a run of B iterations at that rate learns before its decay), seeds
``Protocol.pilot_seeds``, scored on the validation identities ``Protocol.pilot_evaluations`` times.

**The plateau rule** (:func:`plateau_iteration`), on a recipe's validation curve m(t) (the metric averaged over
the pilot's seeds, at the evaluated iterations t): the recipe has plateaued at B when

1. m(B) >= max_t m(t) - tol (B is within ``tol`` of the best the whole pilot reached: it does not get better
   later), and
2. |m(t) - m(B)| <= tol for every evaluated t in [(1 - tail) B, B], at least two of them (the last ``tail`` of
   the curve up to B is flat).

The protocol's budget (:func:`budget`) is the smallest B at which every recipe has plateaued: the largest of the
recipes' plateau iterations. A recipe that has not plateaued within the pilot leaves the budget at the pilot's
length, and the pilot's table says so. The final runs' schedule (warm-up, constant, decay from 76/150) then scales
with that budget (``Protocol.budget``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..presets import PAPER_RATES
from ..records import RunRecord

#: The pilot table's columns (one row per recipe).
COLUMNS = ("loss", "lr", "seeds", "plateau", "value at plateau", "best", "final", "plateaued")


def pilot_rates(recipes, factor: float = 1.0) -> dict[str, float]:
    """Each recipe's literature rate (``PAPER_RATES``) times ``factor``: the rate its pilot trains at."""
    missing = [r for r in recipes if r not in PAPER_RATES]
    if missing:
        raise KeyError(f"no literature rate for {missing}: a pilot recipe needs one (snlib.presets.PAPER_RATES)")
    return {r: PAPER_RATES[r][0] * factor for r in recipes}


def pilot_runs(protocol) -> list[dict]:
    """The pilot's runs as ``Study.record`` keywords: every selected recipe (``loss``) at its pilot rate, each of
    ``pilot_seeds``, on the validation split, with :func:`pilot_budget`'s fields."""
    rates, budget = pilot_rates(protocol.selection, protocol.pilot_rate_factor), pilot_budget(protocol)
    return [{"loss": loss, "seed": seed, "split": "val", "lr": rates[loss], **budget}
            for loss in protocol.selection for seed in protocol.pilot_seeds]


def pilot_budget(protocol) -> dict:
    """The ``TrainConfig`` fields of a pilot run: ``pilot_iterations`` at a constant rate after a warm-up of
    ``pilot_warmup`` iterations, scored ``pilot_evaluations`` times."""
    total = protocol.pilot_iterations
    return {**protocol.budget(total), "warmup_iterations": protocol.pilot_warmup, "final_lr_factor": 1.0,
            "eval_every_iterations": max(1, total // protocol.pilot_evaluations)}


def plateau_iteration(curve: pd.Series, tolerance: float, tail: float) -> int | None:
    """The first evaluated iteration B at which ``curve`` (metric indexed by iteration) has plateaued (module
    docstring), or None."""
    curve = curve.sort_index()
    best = curve.max()
    for b, value in curve.items():
        window = curve[(curve.index >= (1 - tail) * b) & (curve.index <= b)]
        if len(window) >= 2 and value >= best - tolerance and (window - value).abs().max() <= tolerance:
            return int(b)
    return None


def pilot_curves(records: list[RunRecord], metric: str) -> pd.DataFrame:
    """One row per (recipe, evaluated iteration): ``loss, iteration, <metric>`` averaged over the records' seeds,
    and ``seeds``; the final evaluation included."""
    rows = []
    for r in records:
        points = list(r.evaluations)
        if not points or points[-1]["iteration"] != r.config.iterations:
            points.append({"iteration": r.config.iterations, **r.metrics})
        rows += [{"loss": r.name, "seed": r.config.seed, "iteration": p["iteration"], metric: p[metric]}
                 for p in points]
    long = pd.DataFrame(rows)
    return (long.groupby(["loss", "iteration"], sort=False)
            .agg(**{metric: (metric, "mean"), "seeds": ("seed", "nunique")}).reset_index())


def pilot_table(records: list[RunRecord], metric: str, tolerance: float, tail: float) -> pd.DataFrame:
    """Per recipe: its rate, seeds, plateau iteration (the pilot's length where none), the curve's value there,
    its best and final value, and whether it plateaued (module docstring)."""
    curves = pilot_curves(records, metric)
    rates = {r.name: r.config.lr for r in records}
    rows = []
    for loss, group in curves.groupby("loss", sort=False):
        curve = group.set_index("iteration")[metric]
        b = plateau_iteration(curve, tolerance, tail)
        at = int(curve.index.max()) if b is None else b
        rows.append({"loss": loss, "lr": rates[loss], "seeds": int(group["seeds"].max()), "plateau": at,
                     "value at plateau": float(curve.loc[at]), "best": float(curve.max()),
                     "final": float(curve.sort_index().iloc[-1]), "plateaued": b is not None})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def budget(table: pd.DataFrame) -> int:
    """The protocol's budget from a :func:`pilot_table`: the smallest iteration at which every recipe has
    plateaued (a recipe that did not counts with the pilot's length)."""
    return int(np.max(table["plateau"]))
