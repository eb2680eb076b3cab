"""The findings README leads with (snlib.study.findings): the decided claims named by outcome and the unresolved
counted, from a hand-made claims table, the regime of a study's runs, and the claims of two studies side by side."""
from __future__ import annotations

import dataclasses
import shutil

import pandas as pd
import pytest

from snlib.settings import repo_root
from snlib.study.findings import (SIDE_BY_SIDE, STRONGEST, claims_by_study, findings_markdown, regime,
                                  save_claims_by_study, verdict_lines)
from snlib.study.protocol import Protocol
from snlib.study.study import open_study


def _claims(rows):
    return pd.DataFrame(rows, columns=["claim", "metric", "verdict"])


def test_decided_claims_are_named_by_outcome_on_map_and_the_unresolved_counted():
    claims = _claims([("SN beats ce", "rank1", "supported"), ("SN beats ce", "mAP", "supported"),
                      ("SN beats triplet", "rank1", "unresolved"), ("SN beats triplet", "mAP", "refuted"),
                      ("SN beats bot", "rank1", "supported"), ("SN beats bot", "mAP", "unresolved"),
                      ("SN beats pair", "rank1", "unresolved"), ("SN beats pair", "mAP", "unresolved"),
                      ("SN converges sooner than triplet", "iterations to 90% (fewer)", "unresolved")])
    assert verdict_lines(claims) == [
        "**supported**: SN beats ce; SN beats bot (rank-1 only)",
        "**refuted**: SN beats triplet (rank-1: unresolved)",
        "**unresolved** on every metric: 2 claims (`claims.md`)"]
    text = findings_markdown(claims, "cuhk03p1", "a regime", "later_losses.md")
    assert text.startswith("**cuhk03p1** (a regime): 1 supported, 1 refuted, 3 unresolved.")
    assert text.count("\n- ") == 3 and text.endswith("2 claims (`later_losses.md`)\n")
    one = _claims([("SN beats ce", "mAP", "unresolved")])
    assert verdict_lines(one) == ["**unresolved** on every metric: 1 claim (`claims.md`)"]


def test_the_regime_is_that_of_the_runs(tmp_path):
    study = dataclasses.replace(open_study("cpu", "synthetic", tmp_path / "d", tmp_path / "o", train_from="blocks.6"),
                                protocol=Protocol(iterations=700, seeds=(0, 1, 2, 3, 4)))
    text = regime(study)
    assert "`efficientnet_lite0` (ImageNet weights), trunk frozen before `blocks.6`" in text
    assert "700 iterations, 5 seeds" in text and f"{study.base.height}x{study.base.width}" in text


def test_the_regime_names_the_recipes_that_had_not_plateaued_within_the_pilot(tmp_path):
    study = dataclasses.replace(open_study("cpu", "synthetic", tmp_path / "d", tmp_path / "o"),
                                protocol=Protocol(iterations=600, seeds=(0, 1)))
    table = pd.DataFrame({"loss": ["sn", "triplet", "ce"], "plateaued": [True, False, False]})
    assert "600 iterations (the pilot's length; not plateaued within it: triplet, ce), 2 seeds" in regime(
        dataclasses.replace(study, pilot=table))
    assert "600 iterations (the pilot's choice: every recipe plateaued), 2 seeds" in regime(
        dataclasses.replace(study, pilot=table.assign(plateaued=True)))


def _full_claims(rows):
    """Claims' rows (claim, metric, delta, low, high, verdict) with the columns a and b of ``claims.csv``."""
    table = pd.DataFrame(rows, columns=["claim", "metric", "delta", "ci_low", "ci_high", "verdict"])
    return table.assign(a="sn", b=table["claim"].str.split().str[2])


def test_claims_side_by_side_align_by_claim_and_metric_kind_and_say_where_verdicts_differ():
    synthetic = _full_claims([("SN beats ce", "mAP", 5.561, 4.53, 6.62, "supported"),
                              ("SN degrades less", "relative mAP drop (distractors-3000)", -0.07, -3.39, 3.15,
                               "unresolved"),
                              ("SN beats ce", "rank1", 7.4, 4.4, 10.5, "supported"),
                              ("SN beats ce at 2x the budget", "mAP", 7.1, 3.9, 10.4, "supported")])
    real = _full_claims([("SN degrades less", "relative mAP drop (distractors-7239)", 5.63, -3.91, 15.26,
                          "unresolved"),
                         ("SN beats ce", "mAP", -1.0, -2.5, -0.1, "refuted"),
                         ("SN beats ce at 3x the budget", "mAP", -0.94, -3.99, 2.16, "unresolved")])
    table = claims_by_study({"synthetic": synthetic, "cuhk03p1": real})
    assert list(table.columns) == ["claim", "metric", "synthetic", "cuhk03p1", "same verdict"]
    rows = {(r.claim, r.metric): r for r in table.itertuples(index=False)}
    assert rows["SN beats ce", "mAP"].synthetic == "+5.56 [+4.53, +6.62] supported"
    assert rows["SN beats ce", "mAP"].cuhk03p1 == "-1.00 [-2.50, -0.10] refuted"
    assert rows["SN beats ce", "mAP"][-1] == "no"
    assert rows["SN degrades less", "relative mAP drop"][-1] == "yes"   # one comparison despite the gallery sizes
    assert rows["SN beats ce at 2x the budget", "mAP"].cuhk03p1 == "-"
    assert rows["SN beats ce at 3x the budget", "mAP"].synthetic == "-"
    assert rows["SN beats ce at 3x the budget", "mAP"][-1] == "-"
    assert list(table["claim"])[:3] == ["SN beats ce", "SN beats ce", "SN degrades less"]   # a claim's metrics adjacent
    assert list(table["metric"])[:2] == ["mAP", "rank1"]


def test_the_later_losses_side_by_side_align_the_strongest_baseline_whichever_it_was(tmp_path):
    """Each study's own strongest baseline of the paper's time: one row per later loss, the baseline in the cell."""
    columns = ["claim", "a", "b", "metric", "delta", "ci_low", "ci_high", "verdict"]
    for study, delta, strongest in (("cuhk03p1", 2.0, "triplet"), ("synthetic", -1.0, "contrastive")):
        (tmp_path / study).mkdir()
        verdict = "supported" if delta > 0 else "refuted"
        pd.DataFrame([("SN beats ms", "sn", "ms", "mAP", delta, delta - 0.5, delta + 0.5, verdict),
                      (f"ms beats {strongest} ({STRONGEST})", "ms", strongest, "mAP", delta, delta - 0.5,
                       delta + 0.5, verdict),
                      (f"ms beats {strongest}", "ms", strongest, "mAP", delta, delta - 0.5, delta + 0.5, verdict)],
                     columns=columns).to_csv(tmp_path / study / "later_losses.csv", index=False)
    assert save_claims_by_study(tmp_path) is None                 # no claims.csv: the claims table is not written
    written = save_claims_by_study(tmp_path, "later_losses")
    assert written.name == "later_losses_by_study.csv" and "later_losses" in SIDE_BY_SIDE
    rows = {row.claim: row for row in pd.read_csv(written).itertuples(index=False)}
    assert list(rows) == ["SN beats ms", f"ms beats {STRONGEST}", "ms beats triplet", "ms beats contrastive"]
    assert (rows["SN beats ms"].cuhk03p1, rows["SN beats ms"].synthetic, rows["SN beats ms"][-1]) == (
        "+2.00 [+1.50, +2.50] supported", "-1.00 [-1.50, -0.50] refuted", "no")
    strongest = rows[f"ms beats {STRONGEST}"]
    assert (strongest.cuhk03p1, strongest.synthetic) == ("+2.00 [+1.50, +2.50] supported (vs triplet)",
                                                         "-1.00 [-1.50, -0.50] refuted (vs contrastive)")
    assert rows["ms beats triplet"].synthetic == "-" and rows["ms beats triplet"][-1] == "-"   # named: not folded


def test_the_side_by_side_file_needs_two_studies_and_rebuilds_the_committed_one(tmp_path):
    one = tmp_path / "one"
    (one / "synthetic").mkdir(parents=True)
    _full_claims([("SN beats ce", "mAP", 1.0, 0.5, 1.5, "supported")]).to_csv(one / "synthetic" / "claims.csv",
                                                                             index=False)
    assert save_claims_by_study(one) is None and not (one / "claims_by_study.md").exists()
    committed = repo_root() / "results" / "cpu"
    studies = sorted(committed.glob("*/claims.csv"))
    if len(studies) < 2 or not (committed / "claims_by_study.md").is_file():
        pytest.skip("fewer than two published studies")
    for table in SIDE_BY_SIDE:                       # the claims and, where two studies have them, the later losses
        for claims in committed.glob(f"*/{table}.csv"):
            (tmp_path / "cpu" / claims.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(claims, tmp_path / "cpu" / claims.parent.name)
        written = save_claims_by_study(tmp_path / "cpu", table)
        assert (written is None) == (not (committed / f"{table}_by_study.md").is_file()), table
        for suffix in (".csv", ".md") if written else ():
            assert (tmp_path / "cpu" / f"{table}_by_study{suffix}").read_bytes() == (
                committed / f"{table}_by_study{suffix}").read_bytes()
