"""``snlib reproduce --plan``: per notebook the runs it would train at the paper preset on a Market-layout folder
(the paper's budget from the identities, not 100 iterations), what is already recorded, and an estimate; nothing
trained or written beside the records' folder."""
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
