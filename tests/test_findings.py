"""The findings README leads with (snlib.study.findings): the decided claims named by outcome and the unresolved
counted, from a hand-made claims table, and the regime of a study's runs."""
from __future__ import annotations

import dataclasses

import pandas as pd

from snlib.study.findings import findings_markdown, regime, verdict_lines
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
