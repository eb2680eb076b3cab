"""``snlib reproduce --plan``: per notebook the runs it would train at the paper preset on a Market-layout folder
(the paper's budget from the identities, not 100 iterations), at the cpu preset with its pilot (the budget an upper
bound until the pilot is recorded, then the pilot's), what is already recorded, and an estimate; nothing trained or
written beside the records' folder."""
from __future__ import annotations

import pytest

from snlib import reproduce_plan
from snlib.__main__ import main
from snlib.data.synthetic import SyntheticConfig, generate_market_folder
from snlib.records import RunRecord, write_record
from snlib.study.protocol import Protocol

TINY = SyntheticConfig(num_train_ids=16, num_test_ids=4, num_cameras=3, images_per_camera=(2, 2), height=32,
                       width=16, num_distractors=2, num_junk=1)
OVERRIDES = {"p": 4, "pretrained": False}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return generate_market_folder(tmp_path_factory.mktemp("plan") / "market", TINY, num_extra=2)


def test_the_plan_of_the_paper_preset(market, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(reproduce_plan, "step_rate", lambda config, steps=3: 100.0)   # images/s, not timed here
    plan = reproduce_plan.plan_reproduction("paper", "market1501", market, notebooks=["01", "05", "12"],
                                            extra_parameters={"overrides": OVERRIDES}, records_root=tmp_path)
    # 150 epochs of 16 identities // 4 a batch = 4 iterations an epoch
    assert (plan["protocol"]["epochs"], plan["protocol"]["iterations"]) == (150, 600)
    rows = {row["notebook"][:2]: row for row in plan["notebooks"]}
    p = Protocol()
    finals = len(p.selection) * 3                                         # notebook 01: 6 recipes x 3 seeds
    convergence = len(p.fractions) * len(p.convergence_losses) * len(p.convergence_seeds)
    assert rows["01"]["to_train"] == finals and rows["05"]["to_train"] == convergence
    # notebook 12: the rest of the final runs (SN's variants), the long runs; its convergence runs are 05's
    assert rows["12"]["to_train"] == len(p.family) * 3 + len(p.selection)
    long = [g for g in rows["12"]["runs"] if g["iterations"] == 3 * 600]
    assert sum(g["runs"] for g in long) == len(p.selection) and all(g["seeds"] == [0] for g in long)
    total = 600 * (finals + convergence + len(p.family) * 3) + 1800 * len(p.selection)
    assert sum(row["iterations"] for row in plan["notebooks"]) == total
    assert plan["hours"] == pytest.approx(total * 16 / 100.0 / 3600, abs=0.01)
    printed = capsys.readouterr().out
    assert "600 iterations (150 epochs)" in printed and "triplet" in printed and "Hermans" not in printed
    assert not list(tmp_path.rglob("*.json"))                             # nothing written


def test_a_recorded_run_is_counted_and_not_trained_again(market, tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_plan, "step_rate", lambda config, steps=3: 100.0)
    plan = reproduce_plan.plan_reproduction("paper", "market1501", market, notebooks=["01"],
                                            extra_parameters={"overrides": OVERRIDES}, records_root=tmp_path)
    before = plan["notebooks"][0]["to_train"]
    # the record of SN seed 0 as notebook 01 asks for it (the study's configuration of that run)
    from snlib.study import plans
    from snlib.study.protocol import settle
    from snlib.study.study import open_study

    study = open_study("paper", "market1501", market, tmp_path / "out", **OVERRIDES)
    study = settle(study, plans.study_protocol(study), select=False)
    config = study.config("sn", seed=0, **study.protocol.budget())
    write_record(RunRecord(config=config, dataset="market1501", split="test", metrics={"rank1": 1.0, "mAP": 1.0},
                           evaluations=[], history=[], wall_time_s=1.0), tmp_path / "paper")
    again = reproduce_plan.plan_reproduction("paper", "market1501", market, notebooks=["01"],
                                             extra_parameters={"overrides": OVERRIDES}, records_root=tmp_path)
    assert again["notebooks"][0]["to_train"] == before - 1
    assert {g["recipe"]: g["recorded"] for g in again["notebooks"][0]["runs"]}["sn"] == 1


def test_the_command_line_plan_times_a_step_and_trains_nothing(market, tmp_path, capsys):
    main(["reproduce", "--preset", "paper", "--dataset", "market1501", "--data-root", str(market), "--notebooks",
          "01", "--param", "overrides={p: 4, pretrained: false, height: 32, width: 16}", "--records-root",
          str(tmp_path), "--plan"])
    out = capsys.readouterr().out
    assert "600 iterations (150 epochs)" in out and "01_table1_market1501.ipynb (table1): 18 run(s) to train" in out
    assert "step rate here:" in out and "estimated training time:" in out
    assert not list(tmp_path.rglob("*"))


def _pilot_record(config, cap: int) -> RunRecord:
    """A pilot record whose validation curve rises linearly to 50 at iteration ``cap``, then stays there."""
    every = config.eval_every_iterations
    evaluations = [{"iteration": it, "rank1": 50 * min(it, cap) / cap, "mAP": 50 * min(it, cap) / cap}
                   for it in range(every, config.iterations, every)]
    return RunRecord(config=config, dataset="market1501", split="val", metrics={"rank1": 50.0, "mAP": 50.0},
                     evaluations=evaluations, history=[], wall_time_s=1.0, protocol_version=2)


SIZES = {"pilot_iterations": 4000}


def test_the_cpu_plan_counts_the_pilot_then_takes_its_budget(market, tmp_path, monkeypatch, capsys):
    """Protocol version 2 at the cpu preset, its pilot lengthened to 4000 iterations (a notebook's
    ``protocol_sizes``): the pilot (6 recipes x 2 seeds x 4000 iterations) first; before it is
    recorded every protocol run counts at the pilot's length (an upper bound); the selection 6 recipes x 5 rates x
    2 seeds; notebook 12 the final runs (11 recipes x 5 seeds), the long runs (6 x 2 seeds at 2x) and the
    convergence runs (3 shares x 3 losses x 3 seeds). Once the pilot is recorded, its plateau is the budget."""
    monkeypatch.setattr(reproduce_plan, "step_rate", lambda config, steps=3: 100.0)

    def plan():
        return reproduce_plan.plan_reproduction("cpu", "market1501", market, notebooks=["00", "12"],
                                                extra_parameters={"overrides": OVERRIDES, "protocol_sizes": SIZES},
                                                records_root=tmp_path)

    first = plan()
    assert first["protocol"]["budget_known"] is False and first["protocol"]["version"] == 2
    rows = {row["notebook"]: row for row in first["notebooks"]}
    pilot, selection, claims = rows["pilot"], rows["00_lr_selection.ipynb"], rows["12_claims.ipynb"]
    assert (pilot["to_train"], pilot["iterations"]) == (12, 12 * 4000)
    assert all(g["seeds"] == [0, 1] and g["iterations"] == 4000 for g in pilot["runs"])
    # the grid, 6 recipes x 5 rates x 2 seeds, and one round of 2 midpoints around each best rate at 2 seeds
    assert (selection["to_train"], selection["iterations"]) == (60 + 24, (60 + 24) * 4000)
    assert {g["recipe"]: g["runs"] for g in selection["refinements"]} == {r: 4 for r in Protocol().selection}
    assert claims["to_train"] == 55 + 12 + 27
    assert claims["iterations"] == 4000 * (55 + 27) + 8000 * 12
    assert sorted(g["seeds"] for g in claims["runs"] if g["iterations"] == 8000) == [[0, 1]] * 6
    assert "protocol version 2" in capsys.readouterr().out
    assert not list(tmp_path.rglob("*.json"))

    from snlib.study import plans
    from snlib.study.study import open_study

    study = open_study("cpu", "market1501", market, tmp_path / "out", **OVERRIDES)
    _, runs, known = reproduce_plan.settle_for_plan(study, plans.study_protocol(study, SIZES), tmp_path / "cpu",
                                                    set())
    assert not known and len(runs) == 12
    # every recipe flat from 1000 (plateau 1200: the last quarter up to it, {1000, 1200}, is flat), bot from 1400
    # (plateau 1800: up to 1600 the window [1200, 1600] still holds the rising 1200)
    for r in runs:
        write_record(_pilot_record(r.config, 1400 if r.config.recipe == "bot" else 1000), tmp_path / "cpu")
    again = plan()
    assert again["protocol"]["budget_known"] is True and again["protocol"]["iterations"] == 1800
    rows = {row["notebook"]: row for row in again["notebooks"]}
    assert rows["pilot"]["to_train"] == 0 and rows["00_lr_selection.ipynb"]["iterations"] == (60 + 24) * 1800
    assert rows["12_claims.ipynb"]["iterations"] == 1800 * (55 + 27) + 3600 * 12

    # SN's midpoints recorded at both seeds count as trained; a rate past the grid's edge (an extension) does not
    configs = reproduce_plan.recorded_configs(tmp_path / "cpu", version=2)
    settled, _, _ = reproduce_plan.settle_for_plan(study, plans.study_protocol(study, SIZES), tmp_path / "cpu",
                                                   reproduce_plan.recorded_keys(configs))
    for lr, seed in ((5.5e-4, 0), (5.5e-4, 1), (2e-2, 0)):
        config = settled.config("sn", seed=seed, split="val", lr=lr, **settled.protocol.budget(curves=True))
        write_record(RunRecord(config=config, dataset="market1501", split="val", metrics={"rank1": 1.0, "mAP": 1.0},
                               evaluations=[], history=[], wall_time_s=1.0, protocol_version=2), tmp_path / "cpu")
    selection = {row["notebook"]: row for row in plan()["notebooks"]}["00_lr_selection.ipynb"]
    assert {g["recipe"]: g["runs"] for g in selection["refinements"]} == {**{r: 4 for r in Protocol().selection},
                                                                          "sn": 2}
    assert selection["to_train"] == 60 + 22
    assert "sn             midpoints around its best rate" in capsys.readouterr().out


class _Clock:
    """A ``time`` stand-in whose ``perf_counter`` makes each timed step last the next of ``durations`` seconds."""

    def __init__(self, durations):
        self.readings = [value for d in durations for value in (0.0, d)]
        self.calls = 0

    def perf_counter(self):
        self.calls += 1
        return self.readings.pop(0)


def test_the_step_rate_is_the_batch_over_the_median_step_after_the_warm_up(monkeypatch):
    """Scripted step times: a slow warm-up step is left out, the rate is the batch (2 identities x K on a CPU
    without a trunk cache) over the median of the timed steps, and steps are timed until ``min_seconds``."""
    from snlib.presets import get_preset

    config = get_preset("smoke", height=32, width=16, pretrained=False)
    batch = 2 * config.k
    clock = _Clock([10.0, 1.0, 3.0, 2.0])
    monkeypatch.setattr(reproduce_plan, "time", clock)
    rate = reproduce_plan.step_rate(config, steps=3, warmup=1, min_seconds=0.0)
    assert rate == pytest.approx(batch / 2.0) and clock.calls == 8
    clock = _Clock([0.1] * 6)
    monkeypatch.setattr(reproduce_plan, "time", clock)
    rate = reproduce_plan.step_rate(config, steps=1, warmup=2, min_seconds=0.35)
    assert rate == pytest.approx(batch / 0.1) and clock.calls == 2 * (2 + 4)   # 4 steps reach 0.35 s
