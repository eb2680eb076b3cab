"""Does SN still matter? The losses that came after it (``snlib.recipes.LATER``: Circle, multi-similarity,
supervised contrastive, ArcFace, CosFace) under the study's own protocol, against SN and against the strongest loss
of the paper's time.

Each later loss is treated as every recipe of Table 1 (``snlib.study.protocol``): its learning rate selected on the
validation identities over the protocol's grid, with the same seeds, grid extension and collapse rule
(``select_rates`` of those recipes), or its literature rate where the protocol fixes the rates (``paper``:
``snlib.presets.PAPER_RATES``), or the rate the overrides force; then the protocol's budget and seeds on the test
split. The budget is the one the study settled: where a pilot chose it, the pilot ran the recipes of Table 1 only
(adding the later losses to it would move the budget of every published run), so a later loss that needs longer to
converge is measured at that budget all the same.

The claims are rows of ``claims.csv`` (``snlib.study.claims``: the same columns, the same paired intervals and
verdict rule): for each later loss r and each metric, "SN beats r" and "r beats b", where b is the strongest
baseline of the paper's time: the recipe of the study's Table 1 other than SN (``Protocol.selection``) with the
best mean test mAP over the protocol's seeds (:func:`strongest_baseline`). What the later losses added to the study's
training is their records' own wall time (:func:`later_cost`).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from .. import settings
from ..errors import ConfigError
from ..records import RunRecord
from .claims import CLAIM_METRICS, claims_markdown, query_claim
from .findings import STRONGEST, findings_markdown
from .protocol import finals, select_rates, selected_lr, selection_records
from .study import Study

#: The files :func:`save_later_losses` writes into the study's output folder.
LATER_FILE = "later_losses"
#: The few lines of :func:`save_later_findings` (README's findings include them).
FINDINGS_FILE = "later_findings.md"


def later_rates(study: Study, recipes, select: bool = True,
                progress: bool = False) -> tuple[dict, pd.DataFrame | None]:
    """``({recipe: rate}, selection table or None)`` of the later losses ``recipes`` in ``study``: the rate the
    overrides force, else the protocol's fixed rate (``Protocol.rates``), else (with ``select``) the rate
    ``select_rates`` chooses on validation for them at the study's budget; without ``select`` there, ``{}``."""
    if "lr" in study.overrides:
        return {r: study.overrides["lr"] for r in recipes}, None
    protocol = study.protocol
    if protocol.rates:
        missing = [r for r in recipes if r not in protocol.rates]
        if missing:
            raise ConfigError(f"the protocol's fixed rates name no rate for {missing}; they hold "
                              f"{sorted(protocol.rates)}")
        return {r: protocol.rates[r] for r in recipes}, None
    if not select:
        return {}, None
    staged = dataclasses.replace(study, protocol=dataclasses.replace(protocol, selection=tuple(recipes), family=()))
    table = select_rates(staged, progress=progress)
    return {r: selected_lr(table, r) for r in recipes}, table


def with_later(study: Study, recipes, progress: bool = False) -> Study:
    """``study`` with the rates of the later losses ``recipes`` (:func:`later_rates`) added to its own, and their
    selection, where one ran, appended to its selection table."""
    rates, table = later_rates(study, recipes, progress=progress)
    selection = study.selection
    if table is not None:
        selection = table if selection is None else pd.concat([selection, table], ignore_index=True)
    return dataclasses.replace(study, rates={**study.rates, **rates}, selection=selection)


def baselines(study: Study) -> tuple[str, ...]:
    """The baselines of the paper's time in ``study``: the recipes of its Table 1 other than SN."""
    return tuple(r for r in study.protocol.selection if r != "sn")


def mean_map(records: list[RunRecord]) -> float:
    """The mean test mAP (percent, single query, standard AP) of one recipe's records."""
    return float(np.mean([r.metrics["mAP"] for r in records]))


def strongest_baseline(runs: dict[str, list[RunRecord]], candidates) -> str:
    """The recipe of ``candidates`` whose records in ``runs`` have the best mean test mAP (ties: the first)."""
    if not candidates:
        raise ConfigError("the study's Table 1 has no baseline besides SN to compare the later losses with")
    best = max(mean_map(runs[r]) for r in candidates)
    return next(r for r in candidates if mean_map(runs[r]) == best)


def later_runs(study: Study, recipes, progress: bool = True) -> dict[str, list[RunRecord]]:
    """``{recipe: its final test records, one per seed}`` of SN, the baselines and the later losses ``recipes``
    (``study`` holds their rates: :func:`with_later`); the records already there are read, not trained."""
    return finals(study, ("sn", *baselines(study), *recipes), progress=progress)


def later_scores(study: Study, recipes, runs: dict[str, list[RunRecord]] | None = None) -> pd.DataFrame:
    """One row per recipe (SN, the baselines of the paper's time, the later losses): ``loss, era`` ("SN", "paper's
    time", "later"), ``lr``, ``seeds``, the mean and standard deviation over the seeds (ddof=1) of the test rank-1
    and mAP, and ``strongest baseline`` (True on the row of :func:`strongest_baseline`)."""
    runs = runs or later_runs(study, recipes)
    strongest = strongest_baseline(runs, baselines(study))
    rows = []
    for loss, records in runs.items():
        era = "SN" if loss == "sn" else "later" if loss in recipes else "paper's time"
        row = {"loss": loss, "era": era, "lr": records[0].config.lr, "seeds": len(records)}
        for metric in CLAIM_METRICS:
            values = [r.metrics[metric] for r in records]
            row[metric] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
        rows.append({**row, "strongest baseline": loss == strongest})
    return pd.DataFrame(rows)


def minutes(records: list[RunRecord]) -> float:
    """The training time of ``records`` in minutes: the sum of their ``wall_time_s`` (a run that diverged has none
    and adds nothing)."""
    return float(np.nansum([r.wall_time_s for r in records])) / 60


def later_cost(study: Study, recipes, runs: dict[str, list[RunRecord]]) -> pd.DataFrame:
    """What the later losses ``recipes`` added to the study's training, from their records: per recipe, the runs of
    its rate selection (``protocol.selection_records`` of the study :func:`with_later` made; none where the rate is
    fixed or forced) and its final runs (``runs``, :func:`later_runs`), each as a count and minutes (:func:`minutes`), and
    ``total min``; a last row ``all`` sums them. SN's and the baselines' runs are Table 1's and not counted."""
    selected = selection_records(study)
    rows = []
    for recipe in recipes:
        selection = [r for r in selected if r.name == recipe]
        rows.append({"loss": recipe, "selection runs": len(selection), "selection min": minutes(selection),
                     "final runs": len(runs[recipe]), "final min": minutes(runs[recipe])})
    table = pd.DataFrame(rows)
    table["total min"] = table["selection min"] + table["final min"]
    total = {"loss": "all", **{column: table[column].sum() for column in table.columns[1:]}}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def later_claims(study: Study, recipes, runs: dict[str, list[RunRecord]] | None = None) -> pd.DataFrame:
    """For each later loss r of ``recipes`` and each metric: "SN beats r" and "r beats b" (b: the strongest
    baseline of the paper's time), paired per test query (``query_claim``): rows of ``claims.csv``."""
    runs = runs or later_runs(study, recipes)
    strongest = strongest_baseline(runs, baselines(study))
    return pd.DataFrame([row for r in recipes for metric in CLAIM_METRICS for row in (
        query_claim(f"SN beats {r}", runs["sn"], runs[r], metric),
        query_claim(f"{r} beats {strongest} ({STRONGEST})", runs[r], runs[strongest], metric))])


def save_later_losses(table: pd.DataFrame, out_dir: str | Path) -> Path:
    """``later_losses.csv`` (every column, exact) and ``later_losses.md`` (``claims.claims_markdown``) in
    ``out_dir``."""
    out = Path(out_dir)
    settings.atomic_write(out / f"{LATER_FILE}.md", claims_markdown(table))
    return settings.atomic_write(out / f"{LATER_FILE}.csv", table.to_csv(index=False))


def save_later_findings(table: pd.DataFrame, study: Study, runs: dict[str, list[RunRecord]]) -> Path:
    """``later_findings.md`` in the study's output folder: the verdicts of ``table`` (:func:`later_claims` of
    ``runs``) in the form of ``findings.md`` (``snlib.study.findings``), titled with the output folder's name; its
    regime is Table 1's, the strongest baseline of the paper's time named."""
    strongest = strongest_baseline(runs, baselines(study))
    title = f"{Path(study.output_dir).name}, the losses after SN"
    regime = (f"Table 1's regime, {len(study.protocol.seeds)} seeds; the strongest baseline of the paper's time: "
              f"{strongest}")
    return settings.atomic_write(Path(study.output_dir) / FINDINGS_FILE,
                                 findings_markdown(table, title, regime, f"{LATER_FILE}.md"))
