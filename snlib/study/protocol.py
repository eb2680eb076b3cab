"""The fair-comparison protocol: per-recipe learning rates chosen on validation identities, equal iteration
budgets, several seeds, every run a record (``snlib.records``).

0. **Pilot** (``run_pilot``, where ``pilot_iterations`` is set): the budget chosen by convergence, the smallest
   at which every recipe's validation curve has plateaued (``snlib.study.pilot``).
1. **Selection** (``select_rates``): every recipe of ``Protocol.selection`` trains on the training identities
   left after the validation split, at every rate of ``Protocol.lrs``, each seed of ``selection_seeds``, and is
   scored on the validation identities. A run that ends below the untrained network on validation (rank-1 and
   mAP), collapses by ``snlib.collapse``'s rule or diverges (NaN; its record says so) counts as *collapsed*; with
   a single selection seed it is run again with seed 1 and both runs are kept. The selected rate of a recipe has
   the highest mean validation ``Protocol.metric`` over its runs (ties: the smaller rate); when it lies at an
   edge of the grid, the grid is extended outwards by ``edge_factor`` (at most ``edge_extensions`` times;
   ``extended`` marks those rates), so that a selected rate is an optimum, not a bound; then, ``refinements``
   times, the geometric midpoints between the best rate and its neighbours among the rates tried are tried too
   (two significant digits; ``refined`` marks them), so that a recipe whose optimum is narrower than the grid's
   step is not judged between two of its poorer rates. The selected row also
   says by how much it beats the runner-up rate, paired per validation query and seed, with its interval, and
   whether that choice is distinguishable (``runner_up_margin``). SN's variants take SN's rate.
2. **Final runs** (``final_records``): every recipe at its selected rate, ``Protocol.seeds``, the same budget,
   trained on all training identities and scored on the test split once, at the end; ``long_records``:
   ``Protocol.long_factor`` times the budget, ``long_seeds``.
3. **Convergence** (``convergence_records``): fixed iterations on nested shares of the training identities,
   scored on validation every ``iterations / evaluations`` iterations.

Every recipe gets the same budget (``Protocol.budget``): ``iterations`` updates of P x K images, a linear warm-up
over the first ``warmup_share`` of them, the paper's schedule shape (constant, then exponential decay to 0.001x
from 76/150 of the budget).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import engine
from ..collapse import history_collapsed
from ..models import initial_model
from ..presets import PROTOCOL_VERSION
from ..errors import ConfigError
from ..recipes import SN_FAMILY
from ..evaluation import AP_RULES
from ..records import RunRecord, check_protocol_version, load_record
from ..statistics import paired_difference
from .claims import (CLAIM_METRICS, COLUMNS, aligned_scores, count_claim, drop_claim, query_claim, rounding_sd,
                     seed_claim)
from .recorded import TABLE1_VARIANTS
from .study import Study
from . import pilot


#: Epochs between a protocol run's checkpoints (an operational field: not in the run's hash). Its epochs are short
#: (one to a few iterations on a share of the synthetic identities) and a run takes minutes, so an interruption
#: loses at most the run in progress; a checkpoint every epoch cost about 6 % of a run's time.
CHECKPOINT_EPOCHS = 10


@dataclass(frozen=True)
class Protocol:
    """The protocol's sizes (``snlib.presets.PROTOCOLS`` per preset, resolved for a data set by
    ``snlib.study.plans.study_protocol``)."""

    selection: tuple[str, ...] = ("sn", "ce", "triplet", "triplet-0.3", "bot", "contrastive")
    family: tuple[str, ...] = ("sep", "sn-paper", "sn-neighbors", "pair", "sn+ce")
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 2e-3)
    edge_extensions: int = 3      # a best rate at the grid's edge: up to this many more rates outwards ...
    edge_factor: float = 2.0      # ... each this factor beyond the last
    refinements: int = 0          # rounds of midpoints between the best rate and its neighbours (0: none)
    selection_seeds: tuple[int, ...] = (0,)   # every (recipe, rate) of the selection trains each of these
    iterations: int = 100
    epochs: int | None = None     # the budget as passes over the training identities, whence ``iterations``
    seeds: tuple[int, ...] = (0, 1, 2)
    long_factor: int = 3
    long_seeds: tuple[int, ...] = (0,)
    warmup_share: float = 0.1
    evaluations: int = 10
    metric: str = "mAP"
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)
    convergence_losses: tuple[str, ...] = ("sn", "triplet", "contrastive")   # the paper's claim: verification losses
    convergence_seeds: tuple[int, ...] = (0, 1)
    num_distractors: int | None = None
    distractor_source: str = "own"   # the data set's own distractors, or "train": its training images
    gallery_losses: tuple[str, ...] = ("sn", "triplet")
    gallery_steps: int = 6        # gallery sizes of the gallery-size curve, from the original to all distractors
    overrides: dict = field(default_factory=dict)   # TrainConfig fields of every run of the study (input, batch)
    rates: dict = field(default_factory=dict)       # recipe -> a fixed learning rate: no selection is run
    rate_sources: dict = field(default_factory=dict)   # recipe -> where its fixed rate comes from
    # the budget chosen by convergence (``snlib.study.pilot``): 0, no pilot (the budget is ``iterations``)
    pilot_iterations: int = 0
    pilot_seeds: tuple[int, ...] = (0, 1)
    pilot_evaluations: int = 20
    pilot_warmup: int = 100
    pilot_rate_factor: float = 1.0   # the pilot's rate: the literature's times this
    plateau_tolerance: float = 1.0   # percentage points of ``metric`` (the plateau rule)
    plateau_tail: float = 0.25
    version: int = PROTOCOL_VERSION   # what the study's records are made under (``snlib.presets.PROTOCOL_VERSION``)

    @property
    def recipes(self) -> tuple[str, ...]:
        """Every recipe of the final runs: the selected ones, then SN's variants."""
        return self.selection + tuple(r for r in self.family if r not in self.selection)

    def budget(self, iterations: int | None = None, curves: bool = False) -> dict:
        """The ``TrainConfig`` fields of a budget of ``iterations`` (default: the protocol's), with ``overrides``;
        ``curves``: also score ``evaluations`` times during training (the validation runs of the selection and
        the convergence study; test-split runs are scored once, at the end)."""
        total = iterations or self.iterations
        every = {"eval_every_iterations": max(1, total // self.evaluations)} if curves else {}
        return {"checkpoint_every": CHECKPOINT_EPOCHS, **self.overrides, "iterations": total,
                "warmup_iterations": max(1, round(self.warmup_share * total)), **every}


def settle(study: Study, protocol: Protocol, select: bool = True, progress: bool = False) -> Study:
    """``study`` settled for ``protocol``: its base takes the protocol's fixed fields (the notebook's overrides
    still win); with ``pilot_iterations`` the budget is chosen by the pilot (:func:`run_pilot`; the notebook's
    ``iterations`` override skips it); unless ``select`` is False every recipe's learning rate is selected on the
    validation identities (:func:`select_rates`; the runs train once, then come from their records). The returned
    study carries the protocol, the pilot, the selection and the rates and does not change afterwards. A protocol
    with fixed ``rates`` (the literature's) runs no selection: its recipes take those (:func:`fixed_rates`)."""
    base = study.base.replace(**{**protocol.overrides, **study.overrides})
    staged = dataclasses.replace(study, base=base, protocol=protocol, pilot=None, selection=None, rates={})
    if protocol.pilot_iterations and "iterations" not in study.overrides:
        table = run_pilot(staged, progress)
        protocol = dataclasses.replace(protocol, iterations=pilot.budget(table), epochs=None)
        staged = dataclasses.replace(staged, protocol=protocol, pilot=table)
    if protocol.rates:
        return dataclasses.replace(staged, rates=fixed_rates(protocol))
    if not select:
        return staged
    selection = select_rates(staged, progress=progress)
    return dataclasses.replace(staged, selection=selection,
                               rates={r: selected_lr(selection, r) for r in protocol.recipes})


def pilot_records(study: Study, progress: bool = True) -> list[RunRecord]:
    """The pilot's validation-scored records (``snlib.study.pilot``): every selected recipe at its literature's
    rate times ``pilot_rate_factor``, constant after the warm-up, ``pilot_iterations``, each of ``pilot_seeds``."""
    runs = pilot.pilot_runs(study.protocol)
    study.check_records(runs)
    return [study.record(progress=progress, diverged_ok=True, **run) for run in runs]


def run_pilot(study: Study, progress: bool = True) -> pd.DataFrame:
    """The pilot's table (``snlib.study.pilot.pilot_table``): each recipe's plateau on the validation curve."""
    protocol = study.protocol
    return pilot.pilot_table(pilot_records(study, progress), protocol.metric, protocol.plateau_tolerance,
                             protocol.plateau_tail)


def pilot_report(study: Study) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(table, curves)`` of the study's pilot (``Study.pilot`` and ``pilot.pilot_curves`` of its records, read,
    not trained: ``settle`` ran them); both empty where the protocol has no pilot (its budget is fixed)."""
    if study.pilot is None:
        return pd.DataFrame(columns=list(pilot.COLUMNS)), pd.DataFrame(columns=["loss", "iteration", "mAP", "seeds"])
    return study.pilot, pilot.pilot_curves(pilot_records(study, progress=False), study.protocol.metric)


def fixed_rates(protocol: Protocol) -> dict[str, float]:
    """Every recipe's rate from the protocol's fixed ``rates``; SN's variants without one take SN's."""
    rates = dict(protocol.rates)
    missing = [r for r in protocol.recipes if r not in rates and not (r in SN_FAMILY and "sn" in rates)]
    if missing:
        raise ConfigError(f"the protocol's fixed rates name no rate for {missing}; they hold {sorted(rates)}")
    return {r: rates.get(r, rates.get("sn")) for r in protocol.recipes}


def rate_table(study: Study, recipes=None) -> pd.DataFrame:
    """The rate of every recipe of ``recipes`` (default: the selected ones, ``Protocol.selection``) and where it
    comes from: the selection's table (``select_rates``; its rows of ``recipes``) where one was run, else one row
    per recipe: ``loss, lr, source`` (the protocol's fixed rates and their sources, or the rate the overrides
    force)."""
    if study.selection is not None:
        if recipes is None:
            return study.selection
        return study.selection[study.selection["loss"].isin(recipes)].reset_index(drop=True)
    forced = study.overrides.get("lr")
    protocol = study.protocol
    return pd.DataFrame([{"loss": r, "lr": forced if forced is not None else study.rates[r],
                          "source": "forced by the overrides" if forced is not None else
                          protocol.rate_sources.get(r, "fixed by the protocol")}
                         for r in (protocol.selection if recipes is None else recipes)],
                        columns=["loss", "lr", "source"])


def untrained(study: Study, split: str = "val") -> dict:
    """Metrics (percent) of the network training starts from (ImageNet weights where the preset has them) on
    ``split``: the floor below which a run counts as collapsed."""
    config = study.config("sn", seed=0, split=split)
    data = engine.run_dataset(config)
    return engine.evaluate_model(initial_model(config), data.query, data.gallery, config, "cpu").as_dict()


def collapsed(record: RunRecord, floor: dict) -> bool:
    """The run diverged, ended below the untrained network on both rank-1 and mAP, or collapsed by the rule of
    ``snlib.collapse`` (its history's diagnostics; records written before them lack them)."""
    return bool(record.diverged) or history_collapsed(record.history) \
        or (record.metrics["rank1"] < floor["rank1"] and record.metrics["mAP"] < floor["mAP"])


def select_rates(study: Study, progress: bool = True) -> pd.DataFrame:
    """The selection of ``study.protocol``: one row per (recipe, lr): ``loss, lr, split, rank1, mAP, selected,
    runs, collapsed`` (validation means over the runs; ``collapsed``: share of its runs that collapsed),
    ``seeds``, ``records`` (their hashes) and ``extended`` (a rate beyond the grid, module docstring). The records
    of the grid already there are checked for the study's protocol version first (``Study.check_records``)."""
    protocol = study.protocol
    study.check_records({"loss": loss, "seed": seed, "split": "val", "lr": lr, **protocol.budget(curves=True)}
                        for loss in protocol.selection for lr in protocol.lrs
                        for seed in sorted({*protocol.selection_seeds, 0, 1}))
    floor = untrained(study, "val")
    rows, (up, down) = [], edge_rates(protocol)
    for loss in protocol.selection:
        mine = [_selection_row(study, protocol, loss, lr, floor, progress) for lr in protocol.lrs]
        for step in range(protocol.edge_extensions):  # the best rate at an edge of the grid: one more step outwards
            lrs = [row["lr"] for row in mine]
            best = _best(mine, protocol.metric)["lr"]
            if best not in (min(lrs), max(lrs)) or len(lrs) < 2:
                break
            lr = up[step] if best == max(lrs) else down[step]
            mine.append({**_selection_row(study, protocol, loss, lr, floor, progress), "extended": True})
        for _ in range(protocol.refinements):  # the optimum may lie between the best rate and a neighbour
            new = refined_rates([row["lr"] for row in mine], _best(mine, protocol.metric)["lr"])
            if not new:
                break
            mine += [{**_selection_row(study, protocol, loss, lr, floor, progress), "refined": True} for lr in new]
        rows += sorted(mine, key=lambda row: row["lr"])
    runs = [row.pop("_runs") for row in rows]
    table = pd.DataFrame(rows)
    for column in ("extended", "refined"):
        table[column] = table[column].fillna(False).astype(bool) if column in table else False
    ranked = table.sort_values([protocol.metric, "lr"], ascending=[False, True])
    best = ranked.groupby("loss").head(1).index
    table.insert(5, "selected", table.index.isin(best))
    margins = {}
    for loss, group in ranked.groupby("loss", sort=False):
        if len(group) > 1:
            margins[group.index[0]] = runner_up_margin(runs[group.index[0]], runs[group.index[1]],
                                                       float(group["lr"].iloc[1]), protocol.metric)
    for column in MARGIN_COLUMNS:
        table[column] = [margins.get(i, {}).get(column, np.nan) for i in table.index]
    return table


#: The columns the selection's chosen rows gain (:func:`runner_up_margin`).
MARGIN_COLUMNS = ("runner_up_lr", "margin", "margin_low", "margin_high", "distinguishable")


def runner_up_margin(chosen: list[RunRecord], runner_up: list[RunRecord], runner_up_lr: float,
                     metric: str) -> dict:
    """The chosen rate's validation ``metric`` minus the runner-up's (percent), paired per validation query and
    seed (``snlib.statistics.paired_difference``: its interval), and whether the choice is distinguishable (the
    interval above 0). Empty where either rate has no scored run with per-query results."""
    if not chosen or not runner_up or not all("sq" in r.per_query for r in (*chosen, *runner_up)):
        return {}
    try:
        a, b, _ = aligned_scores(chosen, runner_up, metric)
    except ValueError:     # no seed in common (a collapsed rate's retry)
        return {}
    d = paired_difference(a, b)
    return {"runner_up_lr": runner_up_lr, "margin": 100 * d.delta, "margin_low": 100 * d.ci_low,
            "margin_high": 100 * d.ci_high, "distinguishable": bool(d.ci_low > 0)}


def edge_rates(protocol: Protocol) -> tuple[list[float], list[float]]:
    """``(upwards, downwards)``: the rates :func:`select_rates` can add past the grid's largest and smallest rate,
    ``edge_extensions`` steps of ``edge_factor`` each (each step from the last, so the rates are those its records
    hold)."""
    up, down, upwards, downwards = max(protocol.lrs), min(protocol.lrs), [], []
    for _ in range(protocol.edge_extensions):
        up, down = up * protocol.edge_factor, down / protocol.edge_factor
        upwards.append(up)
        downwards.append(down)
    return upwards, downwards


def refined_rates(tried, best: float) -> list[float]:
    """The geometric midpoints sqrt(best x neighbour) between ``best`` and its neighbours among the ``tried`` rates,
    rounded to two significant digits (a rate a user would type), leaving out any already tried."""
    rates = sorted(set(tried))
    i = rates.index(best)
    midpoints = [float(f"{np.sqrt(best * rates[j]):.2g}") for j in (i - 1, i + 1) if 0 <= j < len(rates)]
    return [lr for lr in midpoints if not any(np.isclose(lr, r, rtol=1e-6, atol=0) for r in rates)]


def _best(rows: list[dict], metric: str) -> dict:
    """The row of the highest ``metric`` (ties: the smaller rate; a rate whose runs all diverged: never)."""
    return max(rows, key=lambda row: (-np.inf if np.isnan(row[metric]) else row[metric], -row["lr"]))


def _selection_row(study: Study, protocol: Protocol, loss: str, lr: float, floor: dict, progress: bool) -> dict:
    """One (recipe, rate) of the selection: every seed of ``selection_seeds``; with one seed, seed 1 too when it
    collapsed."""
    def run(seed):
        return study.record(loss, seed=seed, split="val", lr=lr, progress=progress, diverged_ok=True,
                            **protocol.budget(curves=True))

    records = [run(seed) for seed in protocol.selection_seeds]
    if len(records) == 1 and collapsed(records[0], floor):
        records.append(run(1 if protocol.selection_seeds != (1,) else 0))
    scored = [r for r in records if not r.diverged]
    return {"loss": loss, "lr": lr, "split": "val",
            "rank1": np.mean([r.metrics["rank1"] for r in scored]) if scored else np.nan,
            "mAP": np.mean([r.metrics["mAP"] for r in scored]) if scored else np.nan,
            "runs": len(records), "collapsed": np.mean([collapsed(r, floor) for r in records]),
            "seeds": " ".join(str(r.config.seed) for r in records),
            "records": " ".join(r.hash for r in records), "_runs": scored}


def selected_lr(selection: pd.DataFrame, recipe: str) -> float:
    """The selected rate of ``recipe``; SN's variants (``snlib.recipes.SN_FAMILY``) take SN's."""
    name = "sn" if recipe in SN_FAMILY and recipe not in set(selection["loss"]) else recipe
    rows = selection[(selection["loss"] == name) & selection["selected"]]
    if rows.empty:
        raise KeyError(f"no learning rate was selected for {name!r}; the selection holds {sorted(set(selection['loss']))}")
    return float(rows["lr"].iloc[0])


def final_records(study: Study, recipes=None, seeds=None, iterations: int | None = None, variants=("sq",),
                  ap_rules=("standard",), progress: bool = True) -> list[RunRecord]:
    """Test-split records of ``recipes`` (default: all) for ``seeds`` (default: the protocol's) at their selected
    rates (the study's ``rates``, unless its ``overrides`` set ``lr``) and the budget of ``iterations`` (default:
    the protocol's), holding the per-query ``variants`` under ``ap_rules``. A record of the protocol's budget is
    written with all of :func:`record_variants`, so that every table and claim reads it without its network. The
    records already there are checked for the study's protocol version before any run trains."""
    protocol = study.protocol
    budget = protocol.budget(iterations)
    runs = [(recipe, seed) for recipe in (recipes or protocol.recipes) for seed in (seeds or protocol.seeds)]
    study.check_records({"loss": recipe, "seed": seed, **budget} for recipe, seed in runs)
    return [study.record(recipe, seed=seed, variants=variants, ap_rules=ap_rules, progress=progress,
                         keep=record_variants(study, recipe) if iterations in (None, protocol.iterations) else (),
                         **budget)
            for recipe, seed in runs]


def table_records(study: Study, recipes, seeds=None, variants=TABLE1_VARIANTS) -> list[RunRecord]:
    """:func:`final_records` for a table: ``variants`` (default: the four settings of Table 1) under both AP
    rules."""
    return final_records(study, recipes, seeds, variants=variants, ap_rules=AP_RULES)


def long_records(study: Study, progress: bool = True) -> list[RunRecord]:
    """``long_seeds`` of every selected recipe at ``long_factor`` times the budget (does the ordering survive?)."""
    protocol = study.protocol
    return final_records(study, protocol.selection, protocol.long_seeds, protocol.long_factor * protocol.iterations,
                         progress=progress)


def convergence_records(study: Study, progress: bool = True) -> list[RunRecord]:
    """Validation-scored records of the convergence recipes on each training share, the same budget, each recipe
    at the study's rate (the records already there checked for the study's protocol version first)."""
    protocol = study.protocol
    runs = [{"loss": loss, "seed": seed, "split": "val", "train_fraction": fraction, **protocol.budget(curves=True)}
            for fraction in protocol.fractions for loss in protocol.convergence_losses
            for seed in protocol.convergence_seeds]
    study.check_records(runs)
    return [study.record(progress=progress, **run) for run in runs]


def selection_records(study: Study) -> list[RunRecord]:
    """The records of the study's selection runs (the ``records`` column of ``select_rates``; none where no
    selection was run), all of the study's protocol version."""
    if study.selection is None:
        return []
    records = [load_record(study.records_root / f"{h}.json") for cell in study.selection["records"]
               for h in cell.split()]
    check_protocol_version(records, study.protocol_version, study.records_root)
    return records


def curve_table(records: list[RunRecord]) -> pd.DataFrame:
    """One row per (record, evaluation): ``loss, seed, lr, train_fraction, iteration, rank1, mAP``; the final
    evaluation included."""
    rows = []
    for r in records:
        points = [*r.evaluations]
        if not points or points[-1]["iteration"] != r.config.iterations:
            points.append({"iteration": r.config.iterations, **r.metrics})
        rows += [{"loss": r.name, "seed": r.config.seed, "lr": r.config.lr, "train_fraction": r.config.train_fraction,
                  "iteration": p["iteration"], "rank1": p["rank1"], "mAP": p["mAP"]} for p in points]
    return pd.DataFrame(rows, columns=["loss", "seed", "lr", "train_fraction", "iteration", "rank1", "mAP"])


def iterations_to_fraction(curve: pd.DataFrame, share: float = 0.9, metric: str = "rank1") -> int:
    """The first evaluated iteration whose ``metric`` reaches ``share`` of the final one (one run's curve)."""
    curve = curve.sort_values("iteration")
    final = curve[metric].iloc[-1]
    return int(curve.loc[curve[metric] >= share * final, "iteration"].iloc[0])


def record_variants(study: Study, recipe: str) -> tuple[str, ...]:
    """The per-query variants a final record of ``recipe`` keeps (each under both AP rules), every one a table or
    claim reads: for the rows of Table 1 (the selected recipes) all four settings of ``recorded.VARIANT_SETTINGS``;
    for the gallery-size recipes also the gallery with the distractors of every step of the curve
    (``Study.gallery_steps``). Written at once, so that a record read back never needs its network again."""
    protocol = study.protocol
    variants = TABLE1_VARIANTS if recipe in protocol.selection else ("sq",)
    if recipe in protocol.gallery_losses:
        variants += tuple(f"distractors-{n}" for n in study.gallery_steps() if n)
    return variants


def claim_variants(protocol: Protocol, recipe: str) -> tuple[str, ...]:
    """The per-query variants the claims read from a final record of ``recipe``: SN also multi-query and
    re-ranking, the gallery-size recipes also the gallery with all ``num_distractors`` distractors."""
    variants = ("sq", "mq", "rerank") if recipe == "sn" else ("sq",)
    if protocol.num_distractors and recipe in protocol.gallery_losses:
        variants += (f"distractors-{protocol.num_distractors}",)
    return variants


def finals(study: Study, recipes=None, progress: bool = True) -> dict[str, list[RunRecord]]:
    """``{recipe: its final records, one per seed}`` (default: every recipe of the protocol) with what the claims
    read (:func:`claim_variants`)."""
    return {recipe: final_records(study, (recipe,), variants=claim_variants(study.protocol, recipe),
                                  progress=progress)
            for recipe in (recipes or study.protocol.recipes)}


def baseline_claims(study: Study) -> pd.DataFrame:
    """SN better than each baseline (the paper's Table 1), on the test split, every seed."""
    protocol = study.protocol
    runs = finals(study, protocol.selection)
    return pd.DataFrame([query_claim(f"SN beats {b}", runs["sn"], runs[b], metric)
                         for metric in CLAIM_METRICS for b in protocol.selection if b != "sn"])


def ablation_claims(study: Study) -> pd.DataFrame:
    """The squeeze helps (each reading against the separation term alone); softmax added to SN helps."""
    names = [r for r in ("sn", "sn-paper", "sn-neighbors", "pair", "sn+ce", "sep") if r in study.protocol.recipes]
    runs = finals(study, names)
    rows = []
    for metric in CLAIM_METRICS:
        if "sep" in runs:
            rows += [query_claim(f"the squeeze helps ({r} vs sep)", runs[r], runs["sep"], metric)
                     for r in names if r not in ("sep", "sn+ce")]
        if "sn+ce" in runs:
            rows.append(query_claim("softmax helps SN (sn+ce vs sn)", runs["sn+ce"], runs["sn"], metric))
    return pd.DataFrame(rows)


def long_claims(study: Study, progress: bool = True) -> pd.DataFrame:
    """SN better than each baseline at ``long_factor`` times the budget (``long_seeds``: does the ordering
    survive?)."""
    protocol = study.protocol
    runs: dict[str, list[RunRecord]] = {}
    for r in long_records(study, progress):
        runs.setdefault(r.name, []).append(r)
    return pd.DataFrame([query_claim(f"SN beats {b} at {protocol.long_factor}x the budget", runs["sn"], runs[b],
                                     metric) for metric in CLAIM_METRICS for b in protocol.selection if b != "sn"])


def evaluation_claims(study: Study) -> pd.DataFrame:
    """Multi-query and re-ranking raise SN (against its single-query result, per identity and camera)."""
    sn = finals(study, ("sn",))["sn"]
    return pd.DataFrame([row for metric in CLAIM_METRICS for row in (
        query_claim("multi-query raises SN", sn, sn, metric, "mq", "sq", "sn multi-query", "sn single query"),
        query_claim("re-ranking raises SN", sn, sn, metric, "rerank", "sq", "sn re-ranked", "sn"))])


def gallery_claims(study: Study) -> pd.DataFrame:
    """SN loses a smaller share of its mAP than the triplet as ``num_distractors`` distractors join."""
    protocol = study.protocol
    if not protocol.num_distractors or not {"sn", "triplet"} <= set(protocol.gallery_losses):
        return pd.DataFrame(columns=list(COLUMNS))
    runs = finals(study, ("sn", "triplet"))
    return pd.DataFrame([drop_claim("SN degrades less than triplet as distractors join", runs["sn"],
                                    runs["triplet"], f"distractors-{protocol.num_distractors}")])


def convergence_claims(study: Study, progress: bool = True) -> pd.DataFrame:
    """SN reaches 90 % of its final validation rank-1 in fewer iterations than each verification loss on all
    training identities, and its iterations grow less from the smallest share to all of them (per seed). Each
    iteration count is known to one evaluation step: a speed difference rounds two counts, a growth difference
    four (``claims.rounding_sd``)."""
    protocol = study.protocol
    records = convergence_records(study, progress)
    curves = curve_table(records)
    speed = {key: -iterations_to_fraction(group) for key, group in curves.groupby(["loss", "train_fraction", "seed"])}
    step = evaluation_step(curves)
    small, full = min(protocol.fractions), max(protocol.fractions)

    def at(loss, fraction):
        return {s: v for (name, f, s), v in speed.items() if name == loss and f == fraction}

    rows = []
    for b in (loss for loss in protocol.convergence_losses if loss in ("triplet", "contrastive")):
        used = [r for r in records if r.name in ("sn", b)]
        rows.append(seed_claim(f"SN converges sooner than {b}", "sn", b, "iterations to 90% (fewer)",
                               at("sn", full), at(b, full), used, rounding_sd=rounding_sd(step, 2)))
        growth = {loss: {s: v - at(loss, small).get(s, np.nan) for s, v in at(loss, full).items()}
                  for loss in ("sn", b)}
        rows.append(seed_claim(f"{b} slows more than SN as the training set grows ({small:.0%} to {full:.0%})",
                               "sn", b, "growth of iterations to 90% (less)", growth["sn"], growth[b], used,
                               rounding_sd=rounding_sd(step, 4)))
    return pd.DataFrame(rows)


def evaluation_step(curves: pd.DataFrame) -> float:
    """The largest spacing between consecutive evaluated iterations of any run's curve (``curve_table``): the
    resolution of an iteration count read off these curves."""
    gaps = [np.diff(np.sort(group["iteration"].unique())) for _, group in
            curves.groupby(["loss", "train_fraction", "seed"])]
    return float(max((g.max() for g in gaps if len(g)), default=0.0))


def stability_claims(study: Study) -> pd.DataFrame:
    """SN collapses less often than each baseline over the selection's rates: the share of selection runs that
    did not end below the untrained network, with Newcombe's interval for a difference of proportions (``seeds``
    counts SN's selection runs; the per-seed condition does not apply). The grid and its edge extensions count,
    not the ``refined`` midpoints (runs placed next to each recipe's best rate would weigh its optimum). None
    without a selection (a forced rate, or rates fixed by the protocol)."""
    selection = study.selection
    if selection is None:
        print("stability claims skipped: no selection was run (the rates are "
              + ("forced by the overrides)" if "lr" in study.overrides else "fixed by the protocol: the literature's)"))
        return pd.DataFrame(columns=list(COLUMNS))
    refined = selection["refined"] if "refined" in selection else pd.Series(False, index=selection.index)
    counts = {loss: (int(round((rows["runs"] * (1 - rows["collapsed"])).sum())), int(rows["runs"].sum()))
              for loss, rows in selection[~refined].groupby("loss")}
    midpoints = set(" ".join(selection.loc[refined, "records"]).split()) if refined.any() else set()
    runs = [r for r in selection_records(study) if r.hash not in midpoints]
    return pd.DataFrame([count_claim(f"SN collapses less often than {b} over the rates", "sn", b,
                                     "selection runs not collapsed (%)", counts["sn"], counts[b],
                                     [r for r in runs if r.name in ("sn", b)])
                         for b in study.protocol.selection if b != "sn"])


#: The claim groups (``claims(..., groups=...)``), in the order of ``claims.csv``. Each function takes the settled
#: study (its protocol, selection and rates).
CLAIM_GROUPS = {"baselines": baseline_claims, "ablation": ablation_claims, "long budget": long_claims,
                "evaluation": evaluation_claims, "gallery size": gallery_claims, "convergence": convergence_claims,
                "stability": stability_claims}


def claims(study: Study, groups=tuple(CLAIM_GROUPS)) -> pd.DataFrame:
    """The claims of ``groups`` (default: every claim of the study's protocol), one row per claim and metric
    (``snlib.study.claims.COLUMNS`` first, then ``queries``, ``records``)."""
    return pd.concat([CLAIM_GROUPS[g](study) for g in groups], ignore_index=True)
