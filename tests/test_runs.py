"""snlib.runs, the run store: the layout of a run folder, its lock, and the files it writes and reads."""
import os
import socket

import pytest
import torch

from snlib import settings
from snlib.errors import DamagedFileError
from snlib.presets import config_hash, get_preset
from snlib.runs import (CHECKPOINT, CONFIG, HISTORY, MODEL, RESULT, RunFolder, RunLockedError, RunResult,
                        initial_run_dir, read_config, run_dir_for)


def test_run_folders_are_named_by_the_config_hash(tmp_path, monkeypatch):
    config = get_preset("smoke")
    assert run_dir_for(config, tmp_path) == tmp_path / config_hash(config)
    assert initial_run_dir(config, tmp_path) == tmp_path / f"epoch0-{config_hash(config)}"
    monkeypatch.setattr(settings, "cache_root", lambda: tmp_path / "cache")
    assert run_dir_for(config) == tmp_path / "cache" / config_hash(config)
    assert RunFolder(tmp_path).features_file("query") == tmp_path / "features_query.pt"


def test_a_finished_run_is_written_and_read_back(tmp_path):
    config = get_preset("smoke", epochs=1)
    folder = RunFolder(tmp_path / "run")
    assert folder.create() and not folder.create()
    folder.write_config(config)
    folder.write_checkpoint({"epoch": 1, "evaluations": []})
    assert folder.read_checkpoint() == {"format": "snlib-train", "epoch": 1, "evaluations": []}
    assert not folder.finished
    summary = {"config": config.to_dict(), "metrics": {"rank1": 50.0}, "evaluations": [], "wall_time_s": 1.5}
    folder.finish({"format": "snlib-model", "state_dict": {}}, [{"epoch": 1, "loss": 0.5}], summary)
    assert folder.finished and not folder.checkpoint.exists()
    assert {p.name for p in folder.path.iterdir()} == {CONFIG, MODEL, HISTORY, RESULT}
    run = RunResult.load(folder.path)
    assert (run.config, run.metrics, run.history, run.from_cache) == (config, {"rank1": 50.0},
                                                                      [{"epoch": 1, "loss": 0.5}], True)
    assert read_config(folder.path) == config
    folder.discard()
    assert {p.name for p in folder.path.iterdir()} == {CONFIG, HISTORY}


def test_a_checkpoint_of_another_kind_is_damaged(tmp_path):
    torch.save({"epoch": 1}, tmp_path / CHECKPOINT)
    with pytest.raises(DamagedFileError, match="not an snlib training checkpoint"):
        RunFolder(tmp_path).read_checkpoint()
    assert RunFolder(tmp_path / "none").read_checkpoint() is None


def test_the_lock_refuses_a_living_trainer_and_takes_over_a_dead_one(tmp_path):
    folder = RunFolder(tmp_path)
    with folder.lock():
        assert (tmp_path / ".lock").read_text() == f"{socket.gethostname()}:{os.getpid()}"
        with pytest.raises(RunLockedError, match=f"being trained by process {os.getpid()}"):
            with folder.lock():
                pass
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text(f"{socket.gethostname()}:999999999")  # no such process
    with folder.lock():
        pass
    assert not (tmp_path / ".lock").exists()


def test_an_empty_folder_is_removed_but_not_one_with_a_checkpoint(tmp_path):
    empty, kept = RunFolder(tmp_path / "empty"), RunFolder(tmp_path / "kept")
    for folder in (empty, kept):
        folder.create()
        folder.write_config(get_preset("smoke"))
    kept.write_checkpoint({"epoch": 1})
    empty.remove_if_empty()
    kept.remove_if_empty()
    assert not empty.path.exists() and kept.checkpoint.is_file()
