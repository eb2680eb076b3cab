"""The fair-comparison protocol: validation split, iteration budgets, recipes, run records, the learning-rate
selection and the claims computed from records."""
from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from snlib import engine
from snlib.data import ReIDDataset, Sample, load_dataset, train_share, validation_split
from snlib.data.validation import validation_ids
from snlib.engine import lr_factor, train
from snlib.errors import ConfigError, ProtocolVersionError
from snlib.presets import PROTOCOL_VERSION, TrainConfig, config_hash, get_preset
from snlib.recipes import RECIPES, apply_recipe
from snlib.records import RunRecord, read_record, thin_history, write_record
from snlib.study import protocol as P
from snlib.study.claims import (COLUMNS, aligned_scores, claims_markdown, count_claim, drop_claim, query_claim,
                                seed_claim)


def _dataset(num_ids=150, cams=3, per_cam=3, test_ids=20) -> ReIDDataset:
    train = [Sample(f"t/{pid}_{c}_{i}.jpg", 1000 + 7 * pid, c) for pid in range(num_ids) for c in range(cams)
             for i in range(per_cam)]
    query = [Sample(f"q/{pid}.jpg", 5000 + pid, 0) for pid in range(test_ids)]
    gallery = [Sample(f"g/{pid}.jpg", 5000 + pid, 1) for pid in range(test_ids)]
    return ReIDDataset("toy", "root", train, query, gallery)


# ----------------------------------------------------------------------------------------- validation split


def test_validation_split_holds_out_training_ids_disjoint_from_the_test_ids():
    data = _dataset()
    val = validation_split(data)
    held = {s.path for s in val.query + val.gallery}
    assert len({s.pid for s in val.query}) == validation_ids(150) == 30
    assert held.isdisjoint(s.path for s in val.train)                       # no validation image is trained on
    assert held <= {s.path for s in data.train}                             # they are training images ...
    assert held.isdisjoint(s.path for s in data.query + data.gallery)        # ... never test images
    assert len(val.train) + len(held) == len(data.train)
    assert val.num_train_pids == 120 and val.info["split"] == "val"
    # one query per (identity, camera); each query has a match in another camera
    keys = [(s.pid, s.camid) for s in val.query]
    assert len(keys) == len(set(keys)) == 30 * 3
    for q in val.query:
        assert any(g.pid == q.pid and g.camid != q.camid for g in val.gallery)


def test_validation_split_is_a_property_of_the_data_set_not_of_the_run():
    a, b = validation_split(_dataset()), validation_split(_dataset())
    assert [s.path for s in a.query] == [s.path for s in b.query]
    shuffled = _dataset()
    shuffled.train = list(reversed(shuffled.train))
    assert {s.path for s in validation_split(shuffled).query} == {s.path for s in a.query}
    # a run's seed, lr or loss never enters: the engine builds the same split for any of them
    config = get_preset("smoke", split="val")
    sets = [engine.run_dataset(config.replace(seed=s, lr=lr)) for s, lr in ((0, 1e-3), (5, 2e-4))]
    assert [s.path for s in sets[0].query] == [s.path for s in sets[1].query]


def test_validation_split_sizes_and_single_camera_ids():
    assert validation_ids(751) == 100 and validation_ids(743) == 100 and validation_ids(16) == 3
    data = _dataset(num_ids=20, cams=1)
    val = validation_split(data)
    assert val.query == [] and len(val.gallery) == 4 * 3      # one camera: no query possible, gallery only
    with pytest.raises(ValueError, match="too few"):
        validation_split(_dataset(num_ids=4))


def test_train_share_is_nested():
    data = _dataset(num_ids=40)
    quarter, half = ({s.pid for s in train_share(data, f).train} for f in (0.25, 0.5))
    assert len(quarter) == 10 and len(half) == 20 and quarter < half
    assert train_share(data, 1.0) is data
    assert train_share(data, 0.25).query == data.query and train_share(data, 0.25).gallery == data.gallery


# ----------------------------------------------------------------------------------------- iteration budgets


def test_iteration_schedule_warms_up_then_decays_to_the_final_factor():
    config = TrainConfig(iterations=100, warmup_iterations=10, warmup_factor=0.01)
    factors = [lr_factor(config, t // 7, t % 7, 7) for t in range(100)]
    assert factors[0] == pytest.approx(0.01 + 0.99 * 0.1)
    assert factors[9] == 1.0 and factors[50] == 1.0                          # constant to 76/150 of the budget
    assert factors[-1] == pytest.approx(1e-3)
    start = round(76 / 150 * 100)
    assert factors[start] == pytest.approx(1e-3 ** (1 / (100 - start)))
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


def test_new_fields_enter_the_hash_only_when_set():
    base = get_preset("cpu")
    assert "split" not in base.hashed_dict() and "iterations" not in base.hashed_dict()
    changed = {config_hash(base.replace(**{name: value}))
               for name, value in [("split", "val"), ("iterations", 50), ("train_fraction", 0.5)]}
    assert len(changed) == 3 and config_hash(base) not in changed
    assert config_hash(base.replace(recipe="anything")) == config_hash(base)  # a label
    with pytest.raises(ConfigError, match="need an iteration budget"):
        get_preset("cpu", warmup_iterations=5)
    with pytest.raises(ConfigError, match="split="):
        get_preset("cpu", split="train")


def test_a_run_takes_exactly_its_iterations_and_evaluates_on_validation(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    config = get_preset("smoke", data_root=data_root, height=32, width=16, p=4, split="val", iterations=7,
                        warmup_iterations=2, eval_every_iterations=3, eval_every=1)
    run = train(config, progress=False)
    assert len(run.history) == 7 and run.extra["iters_per_epoch"] == 3      # 13 training ids // 4
    assert [e["iteration"] for e in run.evaluations] == [3, 6, 7]            # not after each epoch (eval_every)
    assert run.history[-1]["lr"] == pytest.approx(config.lr * 1e-3)
    val = validation_split(load_dataset("synthetic", data_root, **config.dataset_options))
    assert run.per_query["pid"] == [s.pid for s in val.query]              # scored on the validation queries
    assert len(run.per_query["ap"]) == len(val.query) == len(run.per_query["first"])
    hits = np.mean([f == 0 for f in run.per_query["first"] if f >= 0])
    assert 100 * hits == pytest.approx(run.metrics["rank1"])



def test_evaluating_during_training_does_not_change_the_trained_network(data_root, tmp_path, monkeypatch):
    """An evaluation loader draws from torch's generator; the engine restores it, so a run that evaluates every
    3 iterations trains the same network as one that evaluates at the end only."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    runs = [train(get_preset("smoke", data_root=data_root, height=32, width=16, p=4, iterations=7,
                             warmup_iterations=2, eval_every_iterations=every), progress=False) for every in (3, 0)]
    assert [len(r.evaluations) for r in runs] == [3, 1]
    assert [h["loss"] for h in runs[0].history] == [h["loss"] for h in runs[1].history]
    assert runs[0].per_query == runs[1].per_query and runs[0].metrics == runs[1].metrics

# ------------------------------------------------------------------------------------------------ recipes


def test_recipes_set_what_their_literature_sets():
    base = get_preset("cpu")
    ce, triplet, hard, bot = (apply_recipe(base, name) for name in ("ce", "triplet", "triplet-0.3", "bot"))
    assert (ce.loss, ce.label_smoothing, ce.bnneck) == ("ce", 0.1, True)
    assert triplet.loss == "triplet-soft" and not triplet.bnneck
    assert (hard.loss, hard.triplet_margin) == ("triplet", 0.3)
    assert (bot.loss, bot.triplet_margin, bot.label_smoothing, bot.bnneck) == ("triplet+ce", 0.3, 0.1, True)
    assert apply_recipe(base, "pair").loss == "sn-pair" and ce.recipe == "ce"
    for name in RECIPES:  # every recipe builds a valid configuration
        apply_recipe(base, name).validate()
    with pytest.raises(ConfigError, match="unknown recipe"):
        apply_recipe(base, "lifted-structure")   # not a recipe (nor a loss after SN here)


# ------------------------------------------------------------------------------------------------ records


def _record(name="sn", seed=0, ap=(0.5, 1.0), first=(1, 0), pids=None, cams=None, variant="sq", split="test",
            **extra) -> RunRecord:
    pids = list(pids or range(len(ap)))
    cams = list(cams or [0] * len(ap))
    rows = {"pid": pids, "camid": cams, "ap": list(ap), "first": list(first)}
    config = apply_recipe(get_preset("cpu", seed=seed, split=split), name)
    return RunRecord(config=config, dataset="synthetic", split=split, metrics={"rank1": 50.0, "mAP": 75.0},
                     evaluations=[], history=[], wall_time_s=1.0, per_query={variant: rows, **extra})


def test_a_record_round_trips_and_writes_nan_as_null(tmp_path):
    record = _record(ap=(0.5, math.nan), first=(0, -1))
    path = write_record(record, tmp_path)
    assert path.name == f"{record.hash}.json" and "NaN" not in path.read_text()
    assert json.loads(path.read_text())["per_query"]["sq"]["ap"] == [0.5, None]
    assert json.loads(path.read_text())["config"]["data_root"] == "data"        # portable: no machine's path
    back = read_record(record.config, tmp_path)
    keys, ap = back.scores("sq", "mAP")
    assert keys.tolist() == [[0, 0], [1, 0]] and ap[0] == 0.5 and math.isnan(ap[1])
    assert back.scores("sq", "rank1")[1][0] == 1.0 and math.isnan(back.scores("sq", "rank1")[1][1])
    assert read_record(record.config.replace(seed=9), tmp_path) is None
    with pytest.raises(KeyError, match="no per-query results for 'mq'"):
        back.scores("mq")


def test_thin_history_keeps_the_last_row():
    history = [{"iteration": i, "epoch": 1, "lr": 0.1, "loss": 1.0 / i, "time_s": 3} for i in range(1, 121)]
    thin = thin_history(history, rows=50)
    assert thin[-1]["iteration"] == 120 and len(thin) <= 51 and "time_s" not in thin[0]
    assert thin_history([]) == []


# ------------------------------------------------------------------------------------------------ claims


def test_a_constant_per_query_advantage_is_supported_and_its_reverse_refuted():
    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 0.8, 200) for _ in range(3)]
    a = [_record("sn", s, ap=b + 0.1, first=[0] * 200) for s, b in enumerate(base)]
    b = [_record("ce", s, ap=b, first=[1] * 200) for s, b in enumerate(base)]
    row = query_claim("SN beats ce", a, b, "mAP")
    assert row["delta"] == pytest.approx(10.0) and row["ci_low"] == pytest.approx(10.0)
    assert (row["seeds"], row["same_sign_seeds"], row["verdict"]) == (3, 3, "supported")
    assert query_claim("SN beats ce", a, b, "rank1")["delta"] == pytest.approx(100.0)
    assert query_claim("ce beats SN", b, a, "mAP")["verdict"] == "refuted"
    assert set(row["records"].split()) == {r.hash for r in a + b}


def test_a_claim_decided_on_the_widest_interval_keeps_every_interval_and_the_per_seed_differences():
    """Hits of 3 seeds over 400 queries, SN ahead by 15, 15 and 5 points: the query interval alone excludes 0, the
    t interval over the seeds does not and decides."""
    rng = np.random.default_rng(1)
    a, b = [], []
    for seed, gain in enumerate((60, 60, 20)):
        hits = (rng.uniform(size=400) < 0.5).astype(int)
        better = hits.copy()
        better[rng.choice(np.flatnonzero(hits == 0), gain, replace=False)] = 1
        a.append(_record("sn", seed, ap=[0.5] * 400, first=(1 - better).tolist()))
        b.append(_record("ce", seed, ap=[0.5] * 400, first=(1 - hits).tolist()))
    row = query_claim("SN beats ce", a, b, "rank1")
    assert list(row)[:len(COLUMNS)] == list(COLUMNS) and list(row)[len(COLUMNS):] == ["queries", "records"]
    assert row["per_seed"] == "+15.00 +15.00 +5.00" and row["delta"] == pytest.approx(35 / 3)
    half = 4.302652729911275 * np.std([15, 15, 5], ddof=1) / math.sqrt(3)                 # t(0.975, 2)
    assert (row["seed_ci_low"], row["seed_ci_high"]) == pytest.approx((35 / 3 - half, 35 / 3 + half))
    assert row["query_ci_low"] > 0 and row["two_level_ci_low"] > row["seed_ci_low"]
    assert (row["ci_low"], row["ci_high"]) == (row["seed_ci_low"], row["seed_ci_high"])
    assert row["ci_method"] == "widest of query BCa, seed t, two-level; low seed t, high seed t"
    assert row["verdict"] == "unresolved"
    lone = query_claim("SN beats ce", a[:1], b[:1], "rank1")
    assert math.isnan(lone["seed_ci_low"]) and "one seed" in lone["ci_method"]
    assert lone["ci_low"] == min(lone["query_ci_low"], lone["two_level_ci_low"])
    table = pd.DataFrame([row, lone, seed_claim("faster", "sn", "triplet", "iterations", {0: 1.0}, {0: 0.0}, [])])
    lines = claims_markdown(table).splitlines()
    assert lines[0].startswith("| claim | a | b | metric | delta | per seed | 95% interval (widest) | from |")
    assert (f"| +15.00 +15.00 +5.00 | [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}] | seed t | "
            f"[{row['query_ci_low']:+.2f}, {row['query_ci_high']:+.2f}] | 3 (3) | **unresolved** |") in lines[2]
    assert "| none (one seed) | none (one seed) | - | 1 (1) | **unresolved** |" in lines[4]


def test_multi_query_is_paired_per_identity_and_camera():
    # single query: two queries of identity 0 in camera 0 (AP 0.2 and 0.4), one of identity 1; multi-query: one
    # pooled query per (identity, camera)
    record = _record(ap=(0.2, 0.4, 0.9), first=(3, 1, 0), pids=(0, 0, 1), cams=(0, 0, 0))
    record.per_query["mq"] = {"pid": [0, 1], "camid": [0, 0], "ap": [0.5, 0.9], "first": [0, 0]}
    mq, sq, seeds = aligned_scores([record], [record], "mAP", "mq", "sq")
    assert seeds == [0] and mq[0].tolist() == [0.5, 0.9] and sq[0] == pytest.approx([0.3, 0.9])


def test_seed_claims_use_a_t_interval_and_none_for_one_seed():
    row = seed_claim("faster", "sn", "triplet", "iterations", {0: -20, 1: -30, 2: -25}, {0: -40, 1: -45, 2: -50}, [])
    diffs = np.array([20, 15, 25])
    half = 4.302652729911275 * diffs.std(ddof=1) / math.sqrt(3)   # t(0.975, 2)
    assert row["delta"] == pytest.approx(20) and row["ci_low"] == pytest.approx(20 - half)
    assert (row["seed_ci_low"], row["seed_ci_high"]) == (row["ci_low"], row["ci_high"]) and row["ci_method"] == "seed t"
    assert math.isnan(row["query_ci_low"]) and math.isnan(row["two_level_ci_high"])
    assert row["verdict"] == "supported"
    lone = seed_claim("faster", "sn", "triplet", "iterations", {0: 1.0}, {0: 0.0}, [])
    assert math.isnan(lone["ci_low"]) and lone["verdict"] == "unresolved"


def test_seed_claims_never_take_identical_rounded_differences_for_certainty():
    """Two seeds 10 iterations apart each (a curve scored every 10): no spread, but the counts are rounded."""
    sn, triplet = {0: -60, 1: -60}, {0: -70, 1: -70}
    bare = seed_claim("faster", "sn", "triplet", "iterations", sn, triplet, [])
    half = 12.706204736174705 * 10 * math.sqrt(2 / 12) / math.sqrt(2)           # t(0.975, 1), rounding sd
    rounded = seed_claim("faster", "sn", "triplet", "iterations", sn, triplet, [], rounding_sd=10 * math.sqrt(2 / 12))
    assert bare["ci_low"] == bare["ci_high"] == 10 and bare["verdict"] == "supported"   # what no floor would say
    assert rounded["ci_low"] == pytest.approx(10 - half) and rounded["ci_high"] == pytest.approx(10 + half)
    assert rounded["verdict"] == "unresolved" and rounded["ci_method"] == "seed t (sd: the rounding floor)"
    spread = seed_claim("faster", "sn", "triplet", "iterations", {0: -20, 1: -30, 2: -25}, {0: -40, 1: -45, 2: -50},
                        [], rounding_sd=0.1)                                     # a larger spread wins
    assert spread["ci_low"] == pytest.approx(20 - 4.302652729911275 * 5 / math.sqrt(3))


def test_the_evaluation_step_is_the_widest_gap_of_any_curve():
    curves = pd.DataFrame({"loss": ["sn"] * 4 + ["triplet"] * 3, "train_fraction": 1.0, "seed": 0,
                           "iteration": [10, 20, 30, 40, 25, 50, 100]})
    assert P.evaluation_step(curves) == 50
    assert P.evaluation_step(curves.iloc[:1]) == 0


def test_drop_claim_sign_means_a_degrades_less():
    a = [_record("sn", 0, ap=[0.8] * 50, first=[0] * 50, **{"distractors-10": {
        "pid": list(range(50)), "camid": [0] * 50, "ap": [0.6] * 50, "first": [0] * 50}})]
    b = [_record("triplet", 0, ap=[0.8] * 50, first=[0] * 50, **{"distractors-10": {
        "pid": list(range(50)), "camid": [0] * 50, "ap": [0.4] * 50, "first": [0] * 50}})]
    row = drop_claim("SN degrades less", a, b, "distractors-10")
    assert row["delta"] == pytest.approx(100 * (0.5 - 0.25))


# ---------------------------------------------------------------------------------------------- selection


class _FakeStudy:
    """Records whose validation mAP is a function of (loss, lr, seed): no training."""

    def __init__(self, scores, protocol):
        self.scores, self.calls, self.checked, self.protocol = scores, [], [], protocol

    def check_records(self, runs):
        assert not self.calls, "the records were checked after a run"
        self.checked += [(run["loss"], run["lr"], run["seed"]) for run in runs]

    def record(self, loss, seed=0, lr=1e-3, split="val", progress=True, **budget):
        self.calls.append((loss, lr, seed))
        value = self.scores(loss, lr, seed)                 # None: the run diverged
        record = _record(loss, seed)
        record.config = record.config.replace(lr=lr)
        record.metrics = {} if value is None else {"rank1": value, "mAP": value}
        record.diverged = "loss is nan at epoch 1, iteration 3" if value is None else ""
        return record


def test_selection_reruns_collapsed_runs_and_selects_one_rate_per_loss(monkeypatch):
    monkeypatch.setattr(P, "untrained", lambda study, split: {"rank1": 10.0, "mAP": 10.0})
    scores = {("sn", 1e-3): 50, ("sn", 2e-3): 60, ("sn", 4e-3): 55,
              ("triplet", 1e-3): 40, ("triplet", 2e-3): 5, ("triplet", 5e-4): 30}
    study = _FakeStudy(lambda loss, lr, seed: scores[loss, lr] + (60 if (loss, lr, seed) == ("triplet", 2e-3, 1) else 0),
                       P.Protocol(selection=("sn", "triplet"), lrs=(1e-3, 2e-3)))
    table = P.select_rates(study)
    assert list(table.columns[:6]) == ["loss", "lr", "split", "rank1", "mAP", "selected"]
    assert study.checked == [(loss, lr, seed) for loss in ("sn", "triplet") for lr in (1e-3, 2e-3) for seed in (0, 1)]
    assert ("triplet", 2e-3, 1) in study.calls                               # the collapsed run is rerun ...
    assert sum(call[2] == 1 for call in study.calls) == 1                    # ... and only that one
    row = table[(table["loss"] == "triplet") & (table["lr"] == 2e-3)].iloc[0]
    assert (row["runs"], row["collapsed"], row["mAP"]) == (2, 0.5, 35.0)
    # both best rates lay at an edge of the grid: one more rate outwards each, where the score fell again
    assert table[table["extended"]][["loss", "lr"]].values.tolist() == [["sn", 4e-3], ["triplet", 5e-4]]
    assert table["loss"].tolist() == ["sn"] * 3 + ["triplet"] * 3 and table.groupby("loss")["selected"].sum().tolist() == [1, 1]
    assert P.selected_lr(table, "sn") == 2e-3 and P.selected_lr(table, "triplet") == 1e-3
    assert P.selected_lr(table, "pair") == 2e-3                              # SN's variants take SN's rate
    with pytest.raises(KeyError, match="no learning rate"):
        P.selected_lr(table, "ce")


def test_selection_extends_the_grid_at_most_edge_extensions_times(monkeypatch):
    monkeypatch.setattr(P, "untrained", lambda study, split: {"rank1": 0.0, "mAP": 0.0})
    study = _FakeStudy(lambda loss, lr, seed: 1000 * lr,                     # always better at a higher rate
                       P.Protocol(selection=("sn",), lrs=(1e-4, 1e-3), edge_extensions=2))
    table = P.select_rates(study)
    assert table["lr"].tolist() == pytest.approx([1e-4, 1e-3, 2e-3, 4e-3])
    assert P.selected_lr(table, "sn") == pytest.approx(4e-3)


def test_selection_refines_around_the_best_rate_and_finds_a_narrow_optimum(monkeypatch):
    monkeypatch.setattr(P, "untrained", lambda study, split: {"rank1": 0.0, "mAP": 0.0})
    # a narrow peak at 5.5e-4 between the grid's 3e-4 and 1e-3 (as cuhk03p1's hard-margin triplet): the grid alone
    # picks 1e-3; one refinement tries sqrt(1e-3 x 3e-4) = 5.5e-4 and sqrt(1e-3 x 3e-3) = 1.7e-3
    scores = {1e-4: 5.0, 3e-4: 10.0, 5.5e-4: 24.0, 1e-3: 12.0, 1.7e-3: 6.0, 3e-3: 2.0}
    grid = P.Protocol(selection=("triplet-0.3",), lrs=(1e-4, 3e-4, 1e-3, 3e-3), selection_seeds=(0, 1))
    plain = P.select_rates(_FakeStudy(lambda loss, lr, seed: scores[lr], grid))
    assert P.selected_lr(plain, "triplet-0.3") == 1e-3 and not plain["refined"].any()
    study = _FakeStudy(lambda loss, lr, seed: scores[lr], dataclasses.replace(grid, refinements=1))
    table = P.select_rates(study)
    assert table["lr"].tolist() == [1e-4, 3e-4, 5.5e-4, 1e-3, 1.7e-3, 3e-3]
    assert table[table["refined"]]["lr"].tolist() == [5.5e-4, 1.7e-3] and not table["extended"].any()
    assert {(lr, seed) for _, lr, seed in study.calls} >= {(5.5e-4, 0), (5.5e-4, 1), (1.7e-3, 0), (1.7e-3, 1)}
    assert P.selected_lr(table, "triplet-0.3") == 5.5e-4
    # a second round refines around the new best: sqrt(5.5e-4 x 3e-4) = 4.1e-4, sqrt(5.5e-4 x 1e-3) = 7.4e-4
    scores.update({4.1e-4: 11.0, 7.4e-4: 13.0})
    table = P.select_rates(_FakeStudy(lambda loss, lr, seed: scores[lr], dataclasses.replace(grid, refinements=2)))
    assert table[table["refined"]]["lr"].tolist() == [4.1e-4, 5.5e-4, 7.4e-4, 1.7e-3]


def test_refined_rates_are_midpoints_rounded_and_new():
    assert P.refined_rates([1e-4, 3e-4, 1e-3], 3e-4) == [1.7e-4, 5.5e-4]
    assert P.refined_rates([1e-4, 3e-4, 1e-3], 1e-3) == [5.5e-4]             # an edge: one neighbour
    assert P.refined_rates([1e-4, 1.7e-4, 3e-4, 5.5e-4], 1.7e-4) == [1.3e-4, 2.3e-4]
    assert P.refined_rates([1e-3, 1.05e-3], 1e-3) == []                      # the midpoint rounds to a rate tried
    assert P.refined_rates([1e-3], 1e-3) == []


def test_a_diverged_selection_run_counts_as_collapsed_and_is_never_selected(monkeypatch):
    monkeypatch.setattr(P, "untrained", lambda study, split: {"rank1": 10.0, "mAP": 10.0})
    scores = {1e-3: 40.0, 2e-3: 50.0, 4e-3: None}
    study = _FakeStudy(lambda loss, lr, seed: scores[lr], P.Protocol(selection=("sn",), lrs=(1e-3, 2e-3, 4e-3)))
    table = P.select_rates(study)
    row = table[table["lr"] == 4e-3].iloc[0]
    assert (row["runs"], row["collapsed"], row["seeds"]) == (2, 1.0, "0 1") and np.isnan(row["mAP"])
    assert P.selected_lr(table, "sn") == 2e-3 and not table["extended"].any()


def test_a_diverged_run_is_recorded_once_and_raises_outside_the_selection(data_root, tmp_path, monkeypatch):
    from snlib.study.study import open_study

    study = open_study("smoke", data_root=data_root, output_dir=tmp_path / "out", height=32, width=16, p=4)
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    calls = []

    def diverging(config, **kwargs):
        calls.append(config)
        raise engine.TrainingDivergedError(f"loss is nan ...; the last checkpoint ({tmp_path}/x.pt) is intact",
                                           "loss is nan at epoch 1, iteration 3")

    monkeypatch.setattr(engine, "train", diverging)
    budget = {"iterations": 4, "warmup_iterations": 1, "split": "val"}
    record = study.record("sn", 0, progress=False, diverged_ok=True, **budget)
    assert record.diverged == "loss is nan at epoch 1, iteration 3" and record.metrics == {} and len(calls) == 1
    text = (tmp_path / "records" / f"{record.hash}.json").read_text()
    assert str(tmp_path) not in text                                        # no machine path in the record
    assert study.record("sn", 0, progress=False, diverged_ok=True, **budget).diverged and len(calls) == 1
    with pytest.raises(engine.TrainingDivergedError, match="diverged: loss is nan"):
        study.record("sn", 0, progress=False, **budget)                     # a final run may not diverge quietly


def test_iterations_to_reach_ninety_percent():
    curve = pd.DataFrame({"iteration": [10, 20, 30, 40], "rank1": [10.0, 46.0, 50.0, 50.0]})
    assert P.iterations_to_fraction(curve) == 20          # 46 >= 0.9 * 50
    assert P.iterations_to_fraction(curve, share=0.95) == 30


# ------------------------------------------------------------------------------- records through a study


def test_a_study_reads_finished_runs_from_their_records_without_training(data_root, tmp_path, monkeypatch):
    from snlib.study.study import open_study

    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    study = open_study("smoke", data_root=data_root, output_dir=tmp_path / "out", height=32, width=16, p=4)
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    budget = {"iterations": 4, "warmup_iterations": 1}
    record = study.record("sn", 0, variants=("sq", "mq", "rerank", "distractors-6"), progress=False, **budget)
    assert set(record.per_query) == {"sq", "mq", "rerank", "distractors-6"}
    assert len(record.per_query["sq"]["ap"]) == len(study.data.query)
    assert (tmp_path / "records" / f"{record.hash}.json").is_file() and record.history[-1]["iteration"] == 4
    written = json.loads((tmp_path / "records" / f"{record.hash}.json").read_text())
    assert written["protocol_version"] == PROTOCOL_VERSION and written["provenance"] == record.provenance
    assert set(written["provenance"]) >= {"commit", "dirty", "snlib", "python", "torch", "numpy", "machine"}
    assert record.metrics["rank1"] == pytest.approx(100 * np.mean(np.array(record.per_query["sq"]["first"]) == 0))

    def no_training(*args, **kwargs):
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(engine, "train", no_training)
    again = study.record("sn", 0, variants=("sq", "mq"), progress=False, **budget)
    assert again.per_query == json.loads(json.dumps(record.per_query)) and again.hash == record.hash
    with pytest.raises(ValueError, match="needs a run scored on the test split"):
        monkeypatch.undo()
        monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
        study.record("sn", 0, split="val", variants=("sq", "mq"), progress=False, **budget)


def test_a_study_refuses_records_of_another_protocol_version_before_training(tmp_path, monkeypatch):
    """A study's tables never mix protocol versions: the final runs of a study at version 2 whose folder holds
    records of version 1 and 2 stop before any run trains, naming the version-1 record's file; the records of one
    version are read as before."""
    import dataclasses

    from snlib.study.study import open_study

    def no_training(config, **kwargs):
        raise AssertionError(f"{config.label} seed {config.seed} trained before the versions were checked")

    monkeypatch.setattr(engine, "train", no_training)
    study = dataclasses.replace(open_study("smoke", output_dir=tmp_path / "out"),
                                protocol=P.Protocol(selection=("sn", "triplet"), iterations=3, version=2),
                                rates={"sn": 1e-3, "triplet": 1e-3})
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    budget = study.protocol.budget()

    def recorded(recipe, seed, version):
        config = study.config(recipe, seed=seed, **budget)
        record = RunRecord(config=config, dataset=config.dataset, split="test", metrics={"rank1": 1.0, "mAP": 1.0},
                           evaluations=[], history=[], wall_time_s=1.0, protocol_version=version,
                           per_query={"sq": {"pid": [1], "camid": [0], "ap": [1.0], "first": [0], "inp": [1.0]}})
        write_record(record, tmp_path / "records")
        return record

    same = [recorded("sn", 0, 2), recorded("sn", 1, 2)]
    assert [r.hash for r in P.final_records(study, ("sn",), (0, 1), progress=False)] == [r.hash for r in same]
    old = recorded("triplet", 1, 1)                        # triplet seed 0 has no record: it would train first
    with pytest.raises(ProtocolVersionError) as err:
        P.final_records(study, ("sn", "triplet"), (0, 1), progress=False)
    text = str(err.value)
    assert "this study runs protocol version 2, but 1 of the run records it reads were made under another" in text
    assert "versions found: 1 in 1 record(s), 2 in 2 record(s)" in text
    assert f"{old.hash}.json (triplet, seed 1): version 1" in text and same[0].hash not in text
    assert old.provenance["commit"] is None or f"version 1, commit {old.provenance['commit']}" in text
    assert "rerun the study under version 2" in text and "check out the commit that made them" in text
    with pytest.raises(ProtocolVersionError, match=f"{old.hash}.json"):   # one run at a time too
        study.record("triplet", seed=1, progress=False, **budget)


def test_interval_table_is_a_student_t_interval():
    from snlib.study.tables import interval_table

    df = pd.DataFrame({"loss": ["a"] * 3 + ["b"], "rank1": [10.0, 20.0, 30.0, 5.0], "mAP": [1.0, 1.0, 1.0, 2.0]})
    out = interval_table(df, "loss").set_index("loss")
    half = 4.302652729911275 * 10.0 / math.sqrt(3)
    assert out.loc["a", "rank1_low"] == pytest.approx(20 - half) and out.loc["a", "runs"] == 3
    assert out.loc["a", "mAP_low"] == out.loc["a", "mAP_high"] == 1.0
    assert out.loc["b", "rank1"] == "5.0 (-)" and math.isnan(out.loc["b", "rank1_low"])


def test_a_record_lacking_variants_is_never_changed_a_retrained_network_answers(data_root, tmp_path, monkeypatch):
    """A fresh clone of a study recorded before its tables kept every variant: the run's network is not cached,
    so it is retrained, compared with its record, and the record file is left as it was."""
    from snlib.records import write_record
    from snlib.study.study import open_study

    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    study = open_study("smoke", data_root=data_root, output_dir=tmp_path / "out", height=32, width=16, p=4)
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    budget = {"iterations": 4, "warmup_iterations": 1}
    record = study.record("sn", 0, progress=False, **budget)
    assert set(record.per_query) == {"sq"} and "inp" in record.per_query["sq"]
    path = tmp_path / "records" / f"{record.hash}.json"
    before = path.read_text()
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "elsewhere"))          # another machine: no network cached
    again = study.record("sn", 0, variants=("sq", "mq"), ap_rules=("standard", "market"), progress=False, **budget)
    assert again.retrained and {"sq", "mq"} <= set(again.per_query) and "ap_market" in again.per_query["mq"]
    assert path.read_text() == before                                        # the record is never changed
    assert record.hash in json.loads((tmp_path / "out" / "retrained_runs.json").read_text())
    with pytest.raises(ValueError, match="never overwritten"):
        write_record(again, tmp_path / "records")


def test_the_chosen_rate_is_compared_with_the_runner_up_per_validation_query():
    """Chosen rate's AP 0.6 on every query, runner-up's 0.5 on every query (two seeds): a margin of exactly +10
    points, distinguishable; equal scores: margin 0, not distinguishable."""
    chosen = [_record("sn", seed, ap=(0.6,) * 8, first=(0,) * 8, split="val") for seed in (0, 1)]
    runner = [_record("sn", seed, ap=(0.5,) * 8, first=(0,) * 8, split="val") for seed in (0, 1)]
    margin = P.runner_up_margin(chosen, runner, 3e-4, "mAP")
    assert margin["margin"] == pytest.approx(10.0) and margin["distinguishable"] and margin["runner_up_lr"] == 3e-4
    assert margin["margin_low"] == pytest.approx(10.0) == margin["margin_high"]    # no spread: [10, 10]
    same = P.runner_up_margin(chosen, chosen, 3e-4, "mAP")
    assert same["margin"] == 0 and not same["distinguishable"]
    noisy = [_record("sn", s, ap=tuple(np.random.default_rng(s).uniform(0, 1, 8)), first=(0,) * 8, split="val")
             for s in (0, 1)]
    loop = 0.0                                      # plain loop: mean over seeds and queries of the difference
    for a, b in zip(noisy, chosen):
        for x, y in zip(a.per_query["sq"]["ap"], b.per_query["sq"]["ap"]):
            loop += (x - y) / 16
    assert P.runner_up_margin(noisy, chosen, 1e-3, "mAP")["margin"] == pytest.approx(100 * loop)
    assert P.runner_up_margin(chosen, [], 3e-4, "mAP") == {}


def test_two_selection_seeds_train_every_rate_twice_and_retry_nothing(monkeypatch):
    monkeypatch.setattr(P, "untrained", lambda study, split: {"rank1": 10.0, "mAP": 10.0})
    study = _FakeStudy(lambda loss, lr, seed: 5.0 if lr == 2e-3 else 40.0 + seed,       # 2e-3 collapses
                       P.Protocol(selection=("sn",), lrs=(1e-3, 2e-3), selection_seeds=(0, 1), edge_extensions=0))
    table = P.select_rates(study)
    assert sorted(study.calls) == [("sn", 1e-3, 0), ("sn", 1e-3, 1), ("sn", 2e-3, 0), ("sn", 2e-3, 1)]
    assert table["runs"].tolist() == [2, 2] and table.loc[table["lr"] == 1e-3, "mAP"].item() == 40.5
    assert set(P.MARGIN_COLUMNS) <= set(table.columns)
    # the margin sits on the chosen row only, against the next best rate (its value: runner_up_margin's test)
    chosen = table[table["selected"]].iloc[0]
    assert chosen["lr"] == 1e-3 and chosen["runner_up_lr"] == 2e-3
    assert table.loc[~table["selected"], "runner_up_lr"].isna().all()


def test_a_final_record_keeps_every_variant_its_claims_read():
    """Hand case: SN keeps and is claimed on multi-query, re-ranking and the full distractor gallery; a baseline of
    Table 1 keeps Table 1's four settings but is claimed on single query (and the full gallery when it is a
    gallery-size recipe); a recipe of the family alone keeps single query. Whatever the protocol, the variants a
    claim reads are among those its record keeps, or a fresh clone would retrain the run."""
    from snlib.study import views
    from snlib.study.recorded import TABLE1_VARIANTS

    protocol = P.Protocol(selection=("sn", "ce", "triplet"), family=("sep",), gallery_losses=("sn", "triplet"),
                          num_distractors=90, gallery_steps=3)
    study = SimpleNamespace(protocol=protocol, gallery_steps=lambda: views.gallery_steps(10, 90, 3))
    assert P.claim_variants(protocol, "sn") == ("sq", "mq", "rerank", "distractors-90")
    assert P.claim_variants(protocol, "triplet") == ("sq", "distractors-90")
    assert P.claim_variants(protocol, "ce") == P.claim_variants(protocol, "sep") == ("sq",)
    assert P.record_variants(study, "sep") == ("sq",)
    assert P.record_variants(study, "ce") == TABLE1_VARIANTS
    assert P.record_variants(study, "sn") == TABLE1_VARIANTS + tuple(f"distractors-{n}" for n in (22, 90))  # 10 -> 100
    for recipe in protocol.recipes:
        assert set(P.claim_variants(protocol, recipe)) <= set(P.record_variants(study, recipe)), recipe


def test_a_count_claim_reads_newcombes_interval_in_points_and_decides_by_the_rule():
    """Newcombe (1998), Table II: 56/70 vs 48/80 -> +20.00 points, [+5.24, +33.39]: above 0, so supported; every
    run counts as a seed that agrees (the per-seed condition does not apply to counts). Swapped: refuted."""
    row = count_claim("a collapses less often", "a", "b", "runs not collapsed (%)", (56, 70), (48, 80), [])
    assert row["delta"] == pytest.approx(20.0) and row["ci_low"] == pytest.approx(5.24, abs=0.01)
    assert row["ci_high"] == pytest.approx(33.39, abs=0.01)
    assert (row["seeds"], row["same_sign_seeds"], row["verdict"]) == (70, 70, "supported")
    assert row["per_seed"] == "a 56/70, b 48/80"
    swapped = count_claim("b collapses less often", "b", "a", "runs not collapsed (%)", (48, 80), (56, 70), [])
    assert swapped["delta"] == pytest.approx(-20.0) and swapped["verdict"] == "refuted"


def _hand_curves() -> pd.DataFrame:
    """Validation rank-1 every 10 iterations (the last is the final score, 100): the first iteration at >= 90 is
    SN 20 on all identities and 10 on half of them (both seeds); the triplet 40 / 30 (seeds 0 / 1) and 20."""
    reach = {("sn", 1.0): (20, 20), ("sn", 0.5): (10, 10), ("triplet", 1.0): (40, 30), ("triplet", 0.5): (20, 20)}
    rows = [{"loss": loss, "train_fraction": fraction, "seed": seed, "iteration": it,
             "rank1": 100.0 if it >= at else 50.0 * it / at}
            for (loss, fraction), ats in reach.items() for seed, at in enumerate(ats) for it in range(10, 60, 10)]
    return pd.DataFrame(rows)


def test_convergence_claims_by_hand(monkeypatch):
    """Speed is minus the iterations to 90 % (SN faster: positive), growth the full set's minus the half set's;
    per-seed differences by hand, a Student-t interval over the 2 seeds with the sd floored at the rounding of
    2 (speed) or 4 (growth) counts read off a 10-iteration curve."""
    monkeypatch.setattr(P, "convergence_records", lambda study, progress=True: [])
    monkeypatch.setattr(P, "curve_table", lambda records: _hand_curves())
    study = SimpleNamespace(protocol=P.Protocol(fractions=(0.5, 1.0), convergence_losses=("sn", "triplet")))
    speed, growth = P.convergence_claims(study).to_dict("records")
    # speed: sn -20 -20, triplet -40 -30 -> +20, +10; growth: sn -10 -10, triplet -20 -10 -> +10, +0
    for row, diffs, counts in ((speed, [20.0, 10.0], 2), (growth, [10.0, 0.0], 4)):
        sd = max(np.std(diffs, ddof=1), 10 * math.sqrt(counts / 12))
        half = stats.t.ppf(0.975, 1) * sd / math.sqrt(2)
        assert row["delta"] == pytest.approx(np.mean(diffs))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx((np.mean(diffs) - half, np.mean(diffs) + half))
        assert row["per_seed"] == " ".join(f"{d:+.2f}" for d in diffs) and row["verdict"] == "unresolved"
    assert speed["claim"] == "SN converges sooner than triplet"
    assert growth["claim"] == "triplet slows more than SN as the training set grows (50% to 100%)"


def test_stability_claims_count_the_runs_that_did_not_collapse(monkeypatch):
    """``runs x (1 - collapsed)`` summed over the rates, SN as a: SN 56 of 70, triplet 48 of 80 (Newcombe's
    Table II case), +20 points [+5.24, +33.39], supported."""
    monkeypatch.setattr(P, "selection_records", lambda study: [])
    selection = pd.DataFrame({"loss": ["sn", "sn", "triplet", "triplet"], "runs": [30, 40, 40, 40],
                              "collapsed": [0.2, 0.2, 0.5, 0.3]})
    study = SimpleNamespace(selection=selection, overrides={}, protocol=P.Protocol(selection=("sn", "triplet")))
    (row,) = P.stability_claims(study).to_dict("records")
    assert row["per_seed"] == "sn 56/70, triplet 48/80" and row["delta"] == pytest.approx(20.0)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((5.24, 33.39), abs=0.01)
    assert row["verdict"] == "supported"
    # the refined midpoints (runs next to each recipe's best rate) are not counted
    refined = pd.concat([selection.assign(refined=False),
                         pd.DataFrame({"loss": ["triplet"], "runs": [2], "collapsed": [0.0], "refined": [True],
                                       "records": ["aaaa bbbb"]})], ignore_index=True)
    (again,) = P.stability_claims(SimpleNamespace(**{**vars(study), "selection": refined})).to_dict("records")
    assert again["per_seed"] == "sn 56/70, triplet 48/80"
