"""``snlib runs HASH --retrain`` (``snlib.retrain``): a committed record retrained here and compared with it. On the
machine that made the record training is deterministic, so the retrained run must equal it exactly; a record
altered by hand (its loss at one iteration, its rank-1) must be reported as differing exactly there."""
from __future__ import annotations

import json

import pytest

from _cli_helpers import run_cli
from snlib import settings
from snlib.data import load_dataset
from snlib.engine import train
from snlib.presets import PROTOCOL_VERSION, get_preset
from snlib.records import RunRecord, record_path, write_record
from snlib.retrain import first_loss_departure, seed_records
from snlib.study.recorded import _record_of


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A results folder whose ``runs/smoke`` holds the records of two seeds of one small run, trained here."""
    root = tmp_path_factory.mktemp("retrain")
    config = get_preset("smoke", data_root=str(root / "synthetic-smoke"), iterations=12, height=32, width=16, p=4)
    load_dataset(config.dataset, config.data_root, **config.dataset_options)
    folder = root / "results" / "runs" / "smoke"
    records = [_record_of(train(config.replace(seed=seed), cache_root=root / "cache", progress=False), {},
                          PROTOCOL_VERSION) for seed in (0, 1)]
    for record in records:
        write_record(record, folder)
    return root, folder, records


def test_first_loss_departure_by_hand():
    recorded = [{"iteration": 2, "loss": 5.0}, {"iteration": 4, "loss": 4.0}, {"iteration": 6, "loss": 3.0}]
    same = [{"iteration": i, "loss": loss} for i, loss in ((1, 9.0), (2, 5.0), (3, 9.0), (4, 4.0 * (1 + 1e-8)),
                                                           (5, 9.0), (6, 3.0))]
    assert first_loss_departure(recorded, same) == {"checked": 3, "equal_until": 6, "departs_at": None,
                                                    "record_loss": None, "retrained_loss": None}
    apart = [*same[:3], {"iteration": 4, "loss": 4.0 * (1 + 1e-5)}, *same[4:]]
    assert first_loss_departure(recorded, apart) == {"checked": 2, "equal_until": 2, "departs_at": 4,
                                                     "record_loss": 4.0, "retrained_loss": 4.0 * (1 + 1e-5)}
    assert first_loss_departure(recorded, [{"iteration": 2, "loss": 6.0}])["equal_until"] is None
    assert first_loss_departure(recorded, [])["checked"] == 0


def test_seed_records_are_the_same_configuration_with_any_seed(recorded, tmp_path):
    _, folder, records = recorded
    for path in folder.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    other = records[0].config.replace(lr=records[0].config.lr * 2)
    write_record(RunRecord(config=other, dataset=other.dataset, split="test", metrics={"rank1": 1.0, "mAP": 1.0},
                           evaluations=[], history=[], wall_time_s=1.0), tmp_path)
    (tmp_path / ("f" * 16 + ".json")).write_text("{ truncated")
    found = seed_records(records[1], tmp_path)
    assert [r.hash for r in found] == [records[0].hash, records[1].hash]


def test_retrain_on_the_machine_that_made_the_record_equals_it(recorded, capsys, monkeypatch):
    root, _, records = recorded
    monkeypatch.setattr(settings, "results_dir", lambda: root / "results")
    status, out, err = run_cli(capsys, "runs", records[0].hash[:9], "--retrain")
    assert status == 0, err
    checked = len([row for row in records[0].history if "loss" in row])
    assert f"training loss: equal to the record's at all {checked} recorded iterations" in out
    m = records[0].metrics
    assert (f"rank-1: record {m['rank1']:.2f}, retrained {m['rank1']:.2f} (+0.00); mAP: record {m['mAP']:.2f}, "
            f"retrained {m['mAP']:.2f} (+0.00)") in out
    assert "inside the range of the recipe's 2 recorded seed(s)" in out
    assert "data: synthetic at" in out      # trained afresh, not read back from a run cache


def test_retrain_reports_where_an_altered_record_departs(recorded, capsys, monkeypatch, tmp_path):
    root, _, records = recorded
    results = tmp_path / "results"
    record = records[0]
    path = record_path(record.config, results / "runs" / "smoke")
    path.parent.mkdir(parents=True)
    data = json.loads(record_path(record.config, root / "results" / "runs" / "smoke").read_text())
    third = data["history"][2]
    third["loss"] += 0.5
    data["metrics"]["rank1"] += 10.0
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    monkeypatch.setattr(settings, "results_dir", lambda: results)
    status, out, err = run_cli(capsys, "runs", record.hash, "--retrain")
    assert status == 0, err
    assert (f"training loss: equal up to iteration {data['history'][1]['iteration']}, first differs at iteration "
            f"{third['iteration']} (record {third['loss']:.6f}, here {third['loss'] - 0.5:.6f})") in out
    assert f"rank-1: record {data['metrics']['rank1']:.2f}, retrained {record.metrics['rank1']:.2f} (-10.00)" in out
    assert "OUTSIDE the range of the recipe's 1 recorded seed(s)" in out
    assert path.read_bytes() == before      # the record is never written


def test_retrain_errors_are_one_line(recorded, capsys, monkeypatch, tmp_path):
    root, _, records = recorded
    status, _, err = run_cli(capsys, "runs", "--retrain")
    assert status == 2 and "--retrain needs the hash" in err
    monkeypatch.setattr(settings, "results_dir", lambda: root / "results")
    status, _, err = run_cli(capsys, "runs", "zzz", "--retrain")
    assert status == 2 and "no run record 'zzz' in results/runs/" in err
    damaged = tmp_path / "results" / "runs" / "smoke" / f"{records[0].hash}.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text('{"format": "snlib-rec')
    monkeypatch.setattr(settings, "results_dir", lambda: tmp_path / "results")
    status, _, err = run_cli(capsys, "runs", records[0].hash, "--retrain")
    assert status == 2 and "cannot be read" in err and "restore it from git" in err and "Traceback" not in err
