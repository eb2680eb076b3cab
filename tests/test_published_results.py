"""The published studies (``results/cpu/synthetic``, the real-image ``results/cpu/cuhk03p1``): the selection and
the claims have the columns the protocol promises, and every number traces to a committed run record
(``results/runs/cpu``) of that study's data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from snlib import settings
from snlib.records import load_record
from snlib.statistics import verdict
from snlib.study.claims import COLUMNS

RECORDS = settings.results_dir() / "runs" / "cpu"
#: study folder -> the data set and data root (portable form) its records name
STUDIES = {"synthetic": ("synthetic", "data"), "cuhk03p1": ("market1501", "../shared/data/cuhk03p1")}


@pytest.fixture(params=sorted(STUDIES))
def study(request):
    """(output folder, data set, data root) of a published study; skipped while it has no claims table."""
    out = settings.results_dir() / "cpu" / request.param
    if not (out / "claims.csv").is_file():
        pytest.skip(f"{request.param}: not yet published under the protocol (no claims.csv)")
    return (out, *STUDIES[request.param])


def _records(cells) -> set[str]:
    return {h for cell in cells for h in str(cell).split()}


def test_the_selection_has_one_chosen_rate_per_recipe_from_validation_records(study):
    out, dataset, data_root = study
    table = pd.read_csv(out / "lr_selection.csv")
    assert list(table.columns[:6]) == ["loss", "lr", "split", "rank1", "mAP", "selected"]
    assert set(table["split"]) == {"val"} and (table.groupby("loss")["lr"].count() >= 4).all()
    assert (table.groupby("loss")["selected"].sum() == 1).all()
    assert table.groupby(["loss", "lr"]).size().max() == 1                    # one row per recipe and rate
    for row in table.itertuples():
        records = [load_record(RECORDS / f"{h}.json") for h in row.records.split()]
        assert all(r.split == "val" and r.config.lr == row.lr and r.name == row.loss for r in records)
        assert all(r.config.dataset == dataset and r.to_dict()["config"]["data_root"] == data_root
                   for r in records)
        scored = [r.metrics["mAP"] for r in records if not r.diverged]             # a diverged run has no score
        assert (np.isnan(row.mAP) and not scored) or row.mAP == pytest.approx(np.mean(scored))
        assert row.runs == len(records) in (1, 2) and (row.collapsed == 0 or row.runs == 2)  # collapsed: rerun
    best = table.loc[table.groupby("loss")["mAP"].idxmax()]
    assert best["selected"].all()                                             # the rule, recomputed


def test_every_claim_has_an_interval_a_verdict_by_rule_and_its_records(study):
    claims = pd.read_csv(study[0] / "claims.csv")
    assert list(claims.columns[:len(COLUMNS)]) == list(COLUMNS)
    for row in claims.itertuples():
        if np.isfinite(row.ci_low):
            assert row.ci_low <= row.delta <= row.ci_high or row.metric.startswith("relative")
            assert row.verdict == verdict(row.ci_low, row.ci_high, row.seeds, row.same_sign_seeds)
        else:
            assert row.verdict == "unresolved"
        assert all((RECORDS / f"{h}.json").is_file() for h in str(row.records).split()), row.claim
    table1 = claims[claims["claim"].str.startswith("SN beats") & ~claims["claim"].str.contains("budget")]
    assert set(table1["b"]) >= {"ce", "triplet", "bot"} and (table1["seeds"] >= 3).all()
    readings = claims[claims["claim"].str.startswith("the squeeze helps")]
    assert set(readings["a"]) == {"sn", "sn-paper", "sn-neighbors", "pair"} and (readings["seeds"] >= 3).all()


def test_the_records_are_small_and_hold_no_weights(study):
    paths = sorted(RECORDS.glob("*.json"))
    assert paths and max(p.stat().st_size for p in paths) < 1_000_000   # every variant of a test run: < 1 MB
    assert not list(RECORDS.glob("*.pt"))
    referenced = _records(pd.read_csv(study[0] / "claims.csv")["records"]) | _records(
        pd.read_csv(study[0] / "lr_selection.csv")["records"])
    assert referenced <= {p.stem for p in paths}


def test_the_later_losses_have_the_minimum_each_with_5_seeds_and_verdicts_by_rule(study):
    """Notebook 13 where published: at least circle, multi-similarity and a margin softmax, 5 seeds each, every
    claim's verdict the rule's and every record present; each later loss's cost counts its own records."""
    out = study[0]
    if not (out / "later_losses.csv").is_file():
        pytest.skip(f"{out.name}: notebook 13 not published")
    scores = pd.read_csv(out / "later_losses_scores.csv")
    later = scores[scores["era"] == "later"]
    assert {"circle", "ms"} <= set(later["loss"]) and {"arcface", "cosface"} & set(later["loss"])
    assert (later["seeds"] == 5).all() and scores["strongest baseline"].sum() == 1
    claims = pd.read_csv(out / "later_losses.csv")
    assert list(claims.columns[:len(COLUMNS)]) == list(COLUMNS) and len(claims) == 2 * 2 * len(later)
    for row in claims.itertuples():
        assert row.verdict == verdict(row.ci_low, row.ci_high, row.seeds, row.same_sign_seeds), row.claim
        assert row.seeds == 5 and all((RECORDS / f"{h}.json").is_file() for h in str(row.records).split())
    cost = pd.read_csv(out / "later_cost.csv").set_index("loss")
    selection = pd.read_csv(out / "later_lr_selection.csv")
    for loss in later["loss"]:
        hashes = _records(selection.loc[selection["loss"] == loss, "records"])
        assert cost.loc[loss, "selection runs"] == len(hashes) and cost.loc[loss, "final runs"] == 5
        assert cost.loc[loss, "selection min"] == pytest.approx(
            sum(load_record(RECORDS / f"{h}.json").wall_time_s for h in hashes) / 60)


def _published_version(out) -> int:
    """The protocol version of the records a published study's claims name (one, or the study is mixed)."""
    versions = {load_record(RECORDS / f"{h}.json").protocol_version
                for h in _records(pd.read_csv(out / "claims.csv")["records"])}
    assert len(versions) == 1, f"{out.name} mixes records of protocol versions {sorted(versions)}"
    return versions.pop()


@pytest.mark.slow
def test_the_tables_of_the_records_rebuild_byte_for_byte(study, tmp_path, monkeypatch):
    """What a fresh clone computes from the committed records alone (nothing trains; only the untrained network is
    scored, for the selection's floor) equals the committed files: the pilot, the selection, every claim, the
    ablation runs, the sensitivity sweep, the convergence curves and, where published, the later losses' tables
    (their cost from the records' wall time)."""
    from snlib import engine
    from snlib.study import claims as claims_module
    from snlib.study import later, plans, protocol
    from snlib.study.study import open_study

    def no_training(config, **kwargs):
        raise AssertionError(f"a published run was trained again: {config.label} seed {config.seed}")

    out, dataset, data_root = study
    if not settings.repo_path(data_root).exists():
        pytest.skip(f"{data_root} is absent")
    published, current = _published_version(out), plans.study_protocol(
        open_study("cpu", dataset, settings.repo_path(data_root), tmp_path / "probe")).version
    if published != current:
        pytest.skip(f"{out.name} holds the study of protocol version {published}; the cpu preset runs version "
                    f"{current}, whose rerun of this study is in progress (README: what is published)")
    monkeypatch.setattr(engine, "train", no_training)
    settled, _ = plans.setup("claims", "cpu", dataset, data_root, tmp_path)
    settled.save_table(settled.selection, "lr_selection")
    settled.save_table(protocol.pilot_report(settled)[0], "pilot")
    claims_module.save_claims(protocol.claims(settled), tmp_path)
    ablation = plans.ablation(settled)
    settled.save_table(settled.runs(ablation.variants, ablation.seeds, progress=False), "ablation_runs")
    sweep = plans.sensitivity(settled)
    results = settled.sweep(sweep.sweeps, sweep.seeds, sweep.fixed).fillna(sweep.defaults)
    settled.save_table(results, "sensitivity")
    settled.save_table(protocol.curve_table(protocol.convergence_records(settled, progress=False)),
                       "convergence_curves")
    names = ["pilot.csv", "lr_selection.csv", "claims.csv", "ablation_runs.csv", "sensitivity.csv", "convergence_curves.csv"]
    if (out / "later_losses.csv").is_file():   # notebook 13: the later losses' selection, runs and claims
        scores = pd.read_csv(out / "later_losses_scores.csv")        # the later losses the notebook ran there
        recipes = tuple(scores.loc[scores["era"] == "later", "loss"])
        with_later = later.with_later(settled, recipes)
        with_later.save_table(protocol.rate_table(with_later, recipes), "later_lr_selection")
        runs = later.later_runs(with_later, recipes, progress=False)
        with_later.save_table(later.later_scores(with_later, recipes, runs), "later_losses_scores")
        with_later.save_table(later.later_cost(with_later, recipes, runs), "later_cost")
        later.save_later_losses(later.later_claims(with_later, recipes, runs), tmp_path)
        names += ["later_lr_selection.csv", "later_losses_scores.csv", "later_cost.csv", "later_losses.csv"]
    for name in names:
        assert (tmp_path / name).read_text() == (out / name).read_text(), name
