"""The committed check tables of the real-image study (``results/cpu/cuhk03p1/trunk_check.*`` and
``baselines_check.*``): their judged columns (yes / no) follow from their own numbers and from the committed run
records, recomputed here independently of the scripts that wrote them."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from snlib import settings
from snlib.collapse import collapse_evidence
from snlib.records import load_record

FOLDER = settings.results_dir() / "cpu" / "cuhk03p1"
RECORDS = settings.results_dir() / "runs" / "cpu"


def _table(name: str) -> pd.DataFrame:
    path = FOLDER / f"{name}.csv"
    if not path.is_file():
        pytest.skip(f"{name}.csv not published")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def test_the_trunk_checks_rates_means_orderings_and_edges_follow_from_its_runs():
    table, runs = _table("trunk_check"), _table("trunk_check_runs")
    for (variant, loss), row in table.set_index(["variant", "loss"]).iterrows():
        mine = runs[(runs["variant"] == variant) & (runs["loss"] == loss)]
        grid = mine[mine["selection"]]
        assert row["lr"] == grid.loc[grid["mAP"].idxmax(), "lr"], (variant, loss)    # best validation mAP
        chosen = mine[mine["lr"] == row["lr"]].drop_duplicates("seed")
        assert len(chosen) == 2 and row["mAP"] == pytest.approx(chosen["mAP"].mean())
        assert row["rank1"] == pytest.approx(chosen["rank1"].mean())
        edge = row["lr"] in (grid["lr"].min(), grid["lr"].max())
        assert row["at the grid's edge"] == ("yes" if edge else "no"), (variant, loss)
        for run in mine["run"]:                                  # every run has its record, of its variant's rate
            assert load_record(RECORDS / f"{run}.json").config.lr in set(mine["lr"])
    orders = {v: " > ".join(g.sort_values("mAP", ascending=False)["loss"]) for v, g in table.groupby("variant")}
    reference = orders["end to end 128x64"]
    for variant, group in table.groupby("variant"):
        assert set(group["ordering (mAP)"]) == {orders[variant]}
        assert set(group["as end to end"]) == {"yes" if orders[variant] == reference else "no"}


def test_the_baselines_checks_collapse_and_floor_columns_follow_from_the_records():
    table = _table("baselines_check")
    header = (FOLDER / "baselines_check.md").read_text()
    floor = re.search(r"Untrained network [^:]*: rank-1 (\d+(?:\.\d+)?), mAP (\d+(?:\.\d+)?)", header)
    floor_rank1, floor_map = float(floor.group(1)), float(floor.group(2))
    assert len(table) == 18
    for _, row in table.iterrows():
        record = load_record(RECORDS / f"{row['run']}.json")
        assert record.config.lr == pytest.approx(row["lr"])
        assert row["final mAP"] == pytest.approx(record.metrics["mAP"])
        assert row["final rank1"] == pytest.approx(record.metrics["rank1"])
        evidence = collapse_evidence(record.history)
        assert row["collapsed (rule)"] == ("yes" if evidence and evidence["collapsed"] else "no"), row["run"]
        above = row["final mAP"] > floor_map and row["final rank1"] > floor_rank1
        assert row["above untrained"] == ("yes" if above else "no"), row["run"]
