"""The command line (``python -m snlib``): one-line expected errors (exit 2), --debug, help texts, ``runs``,
``train --dry-run``, ``evaluate --json`` / fail-fast, --version; and the run files behind it: damaged checkpoints,
the "resumed" line, no orphan run folder after an early failure."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import snlib
from _cli_helpers import run_cli
from snlib import data, engine
from snlib.__main__ import _HelpFormatter, _train_config, build_parser, main as cli
from snlib.data import load_dataset
from snlib.engine import train
from snlib.runs import CHECKPOINT, MODEL, RESULT, run_dir_for
from snlib.errors import ConfigError, DamagedFileError
from snlib.models import load_model
from snlib.presets import config_hash, get_preset
from snlib.recipes import RECIPES, apply_recipe


class _Stop(Exception):
    pass


def _stop_after_first_epoch(epoch, state):
    raise _Stop


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A run cache with one finished run (1 epoch) and one unfinished run (checkpoint of epoch 1 of 2)."""
    root = tmp_path_factory.mktemp("cli")
    config = get_preset("smoke", data_root=str(root / "synthetic-smoke"), epochs=1, height=32, width=16, p=4)
    load_dataset(config.dataset, config.data_root, **config.dataset_options)
    finished = train(config, cache_root=root / "cache", progress=False)
    unfinished = config.replace(epochs=2, seed=1)
    with pytest.raises(_Stop):
        train(unfinished, cache_root=root / "cache", progress=False, on_epoch_end=_stop_after_first_epoch)
    return SimpleNamespace(root=root / "cache", config=config, finished=finished.run_dir,
                           unfinished_config=unfinished, unfinished=run_dir_for(unfinished, root / "cache"))


def _copy_run(run_dir, tmp_path):
    return shutil.copytree(run_dir, tmp_path / run_dir.name)


ROOT = Path(__file__).resolve().parents[1]


# -------------------------------------------------------------------------------------- expected errors


def test_an_expected_error_is_one_line_and_exit_status_2(tmp_path, capsys):
    status, out, err = run_cli(capsys, "train", "--preset", "smoke", "--set", "eval_metric=foo",
                                "--set", f"data_root={tmp_path / 'data'}", "--cache-root", str(tmp_path / "cache"))
    assert status == 2
    assert err == ("snlib train: error: invalid TrainConfig: eval_metric='foo' must be one of euclidean, "
                   "sqeuclidean, cosine\n")
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # failed before any training: no run folder, no data generated


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    argv = ["train", "--preset", "smoke", "--set", "normalization=explicit", "--set", "mean=1,2", "--cache-root", str(tmp_path)]
    for debug in (["--debug", *argv], [*argv, "--debug"]):
        with pytest.raises(ConfigError, match="mean=.* must hold 3 values"):
            cli(debug)
    monkeypatch.setenv("SNLIB_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli(argv)
    monkeypatch.delenv("SNLIB_DEBUG")
    env = {k: v for k, v in os.environ.items() if k != "SNLIB_DEBUG"}
    done = subprocess.run([sys.executable, "-m", "snlib", "--debug", *argv], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" in done.stderr and "ConfigError" in done.stderr


def test_evaluate_argument_check_is_an_expected_error(capsys):
    status, _, err = run_cli(capsys, "evaluate")
    assert status == 2
    assert err == "snlib evaluate: error: give either a run folder / model.pt or --initial (not both)\n"


# ------------------------------------------------------------------------------------------------- help


def _subparser(name):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


def test_train_help_shows_every_default_without_markup(capsys):
    train_parser = _subparser("train")
    formatter = _HelpFormatter("snlib train")
    for action in train_parser._actions:
        if action.dest != "help":
            assert action.help, action.dest
            assert "default" in formatter._get_help_string(action), action.dest
    status, out, _ = run_cli(capsys, "train", "--help")
    out = " ".join(out.split())  # as wrapped to the terminal's width
    assert status == 0
    assert "(default: cpu)" in out and "minutes" in out and "seconds" in out
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0 and "``" not in out and "::" not in out and "python -m snlib runs" in out


def test_demo_help_names_snlib_demo(capsys):
    status, out, _ = run_cli(capsys, "demo", "-h")
    assert status == 0 and out.startswith("usage: snlib demo ") and "(default: 5)" in " ".join(out.split())


def test_version(capsys):
    status, out, _ = run_cli(capsys, "--version")
    assert status == 0 and out == f"snlib {snlib.__version__}\n"


# ------------------------------------------------------------------------------------------------- runs


def _section(out: str, title: str) -> list[str]:
    """The lines of ``snlib runs``'s section whose first line starts with ``title``, that line first."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[start:end]


def test_runs_lists_finished_unfinished_and_empty_runs(cache, capsys, tmp_path):
    root = _copy_run(cache.root, tmp_path)  # an empty run folder added to a copy of the cache
    (root / ("0" * 16)).mkdir()
    status, out, _ = run_cli(capsys, "runs", "--cache-root", str(root))
    assert status == 0
    section = _section(out, "run cache")
    lines = {line.split()[0]: line for line in section[2:]}
    finished = json.loads((cache.finished / RESULT).read_text())["metrics"]
    assert lines[cache.finished.name].split() == [
        cache.finished.name, "synthetic", "sn", "smoke", "0", "finished", f"{finished['rank1']:.1f}",
        f"{finished['mAP']:.1f}"]
    assert lines[cache.unfinished.name].split() == [
        cache.unfinished.name, "synthetic", "sn", "smoke", "1", "unfinished", "at", "epoch", "1", "of", "2", "-", "-"]
    assert lines["0" * 16].split()[1:] == ["?", "?", "?", "?", "empty", "-", "-"]
    assert section[0].startswith(f"run cache {root}: 3 run(s) trained here") and len(section) == 5


def test_runs_lists_the_committed_records_as_records(capsys, tmp_path):
    """Beside an empty cache, every record of results/runs/cpu, said to be a record (results, no model)."""
    files = sorted((ROOT / "results" / "runs" / "cpu").glob("*.json"))
    status, out, _ = run_cli(capsys, "runs", "--cache-root", str(tmp_path))
    assert status == 0
    assert out.splitlines()[0].startswith(f"run cache {tmp_path}: 0 run(s) trained here")
    section = _section(out, "run records results/runs/cpu")
    assert section[0].startswith(f"run records results/runs/cpu: {len(files)} (results only, no model")
    assert len(section) == len(files) + 2
    rows = {line.split()[0]: line.split() for line in section[2:]}
    assert set(rows) == {f.stem for f in files}
    data = json.loads(files[0].read_text())
    config, metrics = data["config"], data["metrics"]
    assert rows[files[0].stem] == [files[0].stem, config["dataset"], config["recipe"] or config["loss"],
                                   config["preset"], str(config["seed"]), "recorded", f"({data['split']})",
                                   f"{metrics['rank1']:.1f}", f"{metrics['mAP']:.1f}"]
    status, out, _ = run_cli(capsys, "runs", files[0].stem[:10], "--cache-root", str(tmp_path))
    assert status == 0 and f"run {files[0].stem} (" in out and "a committed record" in out
    assert f"mAP {metrics['mAP']:.2f}" in out
    assert "protocol version: 1" in out and "provenance: not recorded" in out     # written before provenance


def test_runs_shows_a_records_provenance(capsys, tmp_path, monkeypatch):
    from snlib import settings
    from snlib.records import RunRecord, write_record

    monkeypatch.setattr(settings, "results_dir", lambda: tmp_path / "results")
    config = get_preset("smoke", iterations=3)
    record = RunRecord(config=config, dataset=config.dataset, split="test", metrics={"rank1": 50.0, "mAP": 40.0},
                       evaluations=[], history=[], wall_time_s=1.0)
    write_record(record, tmp_path / "results" / "runs" / "smoke")
    status, out, _ = run_cli(capsys, "runs", record.hash[:8], "--cache-root", str(tmp_path / "cache"))
    p = record.provenance
    assert status == 0 and "protocol version: 1" in out
    lines = out.splitlines()
    start = lines.index("provenance:")
    code = f"commit {p['commit']}" if p["commit"] else p["source"]
    assert lines[start + 1].startswith(f"  code: snlib {snlib.__version__}, {code}")
    assert lines[start + 2] == (f"  packages: python {p['python']}, torch {p['torch']}, torchvision "
                                f"{p['torchvision']}, timm {p['timm'] or 'absent'}, numpy {p['numpy']}")


def test_runs_shows_one_run_by_hash_prefix(cache, capsys):
    status, out, _ = run_cli(capsys, "runs", cache.unfinished.name[:6], "--cache-root", str(cache.root))
    assert status == 0
    assert f"run {cache.unfinished.name}" in out and "status: unfinished at epoch 1 of 2" in out
    smoke = get_preset("smoke")
    for name, value in (("epochs", 2), ("seed", 1), ("height", 32), ("width", 16), ("p", 4)):
        assert f"  {name}: {getattr(smoke, name)!r} -> {value!r}" in out
    assert "  lr:" not in out  # unchanged fields are not listed
    status, out, _ = run_cli(capsys, "runs", cache.finished.name, "--cache-root", str(cache.root))
    metrics = json.loads((cache.finished / RESULT).read_text())["metrics"]
    assert f"rank1 {metrics['rank1']:.2f}" in out and f"mAP {metrics['mAP']:.2f}" in out
    status, _, err = run_cli(capsys, "runs", "zzz", "--cache-root", str(cache.root))
    assert status == 2 and "no run 'zzz'" in err and "no run record in results/runs/ either" in err


# --------------------------------------------------------------------------------- train --dry-run


def test_dry_run_trains_nothing_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("a dry run trained")

    monkeypatch.setattr(engine, "train", no_training)
    status, out, _ = run_cli(capsys, "train", "--preset", "smoke", "--set", "lr=3e-4", "--set",
                              f"data_root={tmp_path / 'data'}", "--cache-root", str(tmp_path / "cache"), "--dry-run")
    assert status == 0
    expected = get_preset("smoke", lr=3e-4, data_root=str(tmp_path / "data"))
    printed = json.loads(out[:out.index("\nhash ")])
    assert printed["lr"] == 3e-4 and printed == json.loads(json.dumps(expected.to_dict()))
    assert f"hash {config_hash(expected)}" in out
    assert f"run folder {tmp_path / 'cache' / config_hash(expected)} (not trained yet)" in out
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- evaluate


def test_evaluate_json_prints_only_json(cache, capsys):
    status, out, _ = run_cli(capsys, "evaluate", str(cache.finished), "--json")
    assert status == 0
    assert json.loads(out) == json.loads((cache.finished / RESULT).read_text())["metrics"]


@pytest.mark.parametrize("which", ["missing folder", "missing model.pt", "unfinished run"])
def test_evaluate_fails_fast_without_a_model(cache, tmp_path, capsys, monkeypatch, which):
    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded before the model was found")

    monkeypatch.setattr(data, "load_dataset", no_data)
    target = {"missing folder": tmp_path / "nope", "missing model.pt": tmp_path / "nope" / "model.pt",
              "unfinished run": cache.unfinished}[which]
    status, _, err = run_cli(capsys, "evaluate", str(target))
    assert status == 2 and err.startswith("snlib evaluate: error: ") and "Traceback" not in err
    assert ("unfinished at epoch 1 of 2" if which == "unfinished run" else "does not exist") in err


# --------------------------------------------------------------------------------------------- run files


def _damage(path, how):
    if how == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(random.Random(0).randbytes(4096))


@pytest.mark.parametrize("how", ["truncated", "random bytes"])
def test_a_damaged_checkpoint_names_the_file_and_the_way_out(cache, tmp_path, how):
    run_dir = _copy_run(cache.unfinished, tmp_path)
    _damage(run_dir / CHECKPOINT, how)
    with pytest.raises(DamagedFileError) as info:
        train(cache.unfinished_config, run_dir=run_dir, progress=False)
    message = str(info.value)
    assert str(run_dir / CHECKPOINT) in message and "damaged" in message and "--fresh" in message
    assert "weights_only" not in message
    # the way out works: --fresh trains from scratch (here: killed again after its first epoch)
    with pytest.raises(_Stop):
        train(cache.unfinished_config, run_dir=run_dir, fresh=True, progress=False,
              on_epoch_end=_stop_after_first_epoch)


@pytest.mark.parametrize("how", ["truncated", "random bytes"])
def test_a_damaged_model_file_names_the_file(cache, tmp_path, capsys, how):
    run_dir = _copy_run(cache.finished, tmp_path)
    _damage(run_dir / MODEL, how)
    with pytest.raises(DamagedFileError) as info:
        load_model(run_dir / MODEL)
    assert str(run_dir / MODEL) in str(info.value) and "--fresh" in str(info.value)
    assert "weights_only" not in str(info.value)
    status, _, err = run_cli(capsys, "evaluate", str(run_dir))
    assert status == 2 and err.count("\n") == 1 and "damaged" in err


def test_a_resumed_run_says_so(cache, tmp_path, capsys):
    run_dir = _copy_run(cache.unfinished, tmp_path)
    capsys.readouterr()
    result = train(cache.unfinished_config, run_dir=run_dir, progress=False)
    assert result.extra["resumed"]
    assert f"resumed from epoch 1 of 2 ({run_dir / CHECKPOINT})" in capsys.readouterr().out


def test_a_run_failing_at_its_first_step_leaves_no_folder(cache, tmp_path, monkeypatch):
    def failing_step(self, *args):
        raise _Stop

    monkeypatch.setattr(engine._Trainer, "_step", failing_step)
    with pytest.raises(_Stop):
        train(cache.config, cache_root=tmp_path / "cache", progress=False)
    assert list((tmp_path / "cache").iterdir()) == []
    # a folder that was there before is the user's: kept, with what it held
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(_Stop):
        train(cache.config, run_dir=mine, progress=False)
    assert (mine / "notes.txt").read_text() == "keep"


# ------------------------------------------------------------------------------- help: every command, every option


def test_top_level_help_lists_every_command(capsys):
    status, out, _ = run_cli(capsys, "--help")
    assert status == 0
    commands = list(next(a for a in build_parser()._actions if a.dest == "command").choices)
    assert {"train", "evaluate", "runs", "verify", "reproduce", "readme", "synth", "demo"} <= set(commands)
    description = " ".join(out.split("Examples")[0].split())
    listed = out[out.index("COMMAND\n"):]
    for name in commands:
        assert name in description, name
        assert f"\n    {name} " in listed or f"\n    {name}\n" in listed, name


def test_every_option_of_every_command_says_its_default():
    formatter = _HelpFormatter("snlib")
    for name, command in next(a for a in build_parser()._actions if a.dest == "command").choices.items():
        for action in command._actions:
            if action.dest == "help" or name == "demo":
                continue
            text = formatter._get_help_string(action) % {"default": action.default}
            said = "required" in text if action.required else "default" in text
            assert action.help and said and "default: None" not in text, (name, action.dest, text)


def test_train_help_lists_every_recipe(capsys):
    status, out, _ = run_cli(capsys, "train", "--help")
    out = "".join(out.split())  # as wrapped to the terminal's width (which may break a name at its hyphen)
    assert status == 0 and "whichwin:" + ",".join(RECIPES) + "(default:none" in out


# ------------------------------------------------------------------------------------------- did you mean


@pytest.mark.parametrize("argv, hint", [
    (["--set", "lrr=3e-4"], "did you mean 'lr'?"),
    (["--loss", "snn"], "did you mean 'sn'?"),
    (["--recipe", "bott"], "did you mean 'bot'?"),
    (["--preset", "cpuu"], "did you mean 'cpu'?"),
    (["--dataset", "market150"], "did you mean 'market1501'?"),
])
def test_an_unknown_name_gets_a_suggestion(capsys, tmp_path, argv, hint):
    status, out, err = run_cli(capsys, "train", *argv, "--cache-root", str(tmp_path), "--dry-run")
    assert status == 2 and out == ""
    assert hint in err.strip().splitlines()[-1]  # after argparse's usage lines, where argparse refuses it
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_recipe_lists_the_known_ones(capsys):
    status, _, err = run_cli(capsys, "train", "--recipe", "bott", "--dry-run")
    assert status == 2 and ", ".join(RECIPES) in err


# ----------------------------------------------------------------------------------------- train --recipe


def _dry_run_config(out: str) -> dict:
    return json.loads(out[:out.index("\nrecipe ")] if "\nrecipe " in out else out[:out.index("\nhash ")])


def test_recipe_bot_dry_run_prints_the_bag_of_tricks_configuration(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "train", "--recipe", "bot", "--cache-root", str(tmp_path), "--dry-run")
    assert status == 0
    printed = _dry_run_config(out)
    assert (printed["recipe"], printed["loss"], printed["triplet_margin"], printed["label_smoothing"],
            printed["bnneck"]) == ("bot", "triplet+ce", 0.3, 0.1, True)
    assert "recipe bot: loss 'triplet+ce', as Bag of Tricks, triplet_margin=0.3, label_smoothing=0.1" in out
    assert f"hash {config_hash(apply_recipe(get_preset('cpu'), 'bot'))}" in out


def test_recipe_triplet_dry_run_shows_trinets_head_and_the_soft_margin(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "train", "--recipe", "triplet", "--cache-root", str(tmp_path), "--dry-run")
    assert status == 0
    printed = _dry_run_config(out)
    assert (printed["recipe"], printed["loss"], printed["embedding_head"]) == ("triplet", "triplet-soft", "trinet")
    assert "recipe triplet: loss 'triplet-soft', as TriNet, embedding_head='trinet'" in out
    assert "soft margin, TriNet's 1024-BN-ReLU-128 head; trains on the TriNet head's 128-d output" in out
    assert f"hash {config_hash(apply_recipe(get_preset('cpu'), 'triplet'))}" in out
    # the preset's frozen, cached trunk and its normalisation, as the study trains it
    assert (printed["train_from"], printed["trunk_cache"], printed["normalization"]) == ("blocks.6", "memory",
                                                                                         "backbone")


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_trains_the_tables_configuration(name):
    """The command's configuration is the preset with the recipe applied: the same hash as a table row's at the
    preset's rate and budget (the study then sets its budget and rate, as --set would)."""
    for preset in ("cpu", "smoke"):
        args = build_parser().parse_args(["train", "--preset", preset, "--recipe", name, "--set", "lr=3e-4"])
        assert config_hash(_train_config(args)) == config_hash(apply_recipe(get_preset(preset), name).replace(lr=3e-4))


def test_explicit_settings_win_over_the_recipe(capsys, tmp_path):
    status, out, _ = run_cli(capsys, "train", "--recipe", "ce", "--set", "label_smoothing=0",
                              "--cache-root", str(tmp_path), "--dry-run")
    assert status == 0
    printed = _dry_run_config(out)
    assert (printed["recipe"], printed["label_smoothing"], printed["bnneck"]) == ("ce", 0.0, True)


@pytest.mark.parametrize("argv, message", [
    (["--set", "recipe=bot"], "recipe is not a settable field: train a row of the tables with --recipe NAME"),
    (["--set", "recipe=bott"], "recipe is not a settable field"),
    (["--recipe", "bot", "--loss", "sn"], "give --recipe or the loss"),
    (["--recipe", "bot", "--set", "loss=sn"], "give --recipe or the loss"),
])
def test_recipe_is_chosen_with_recipe_only(capsys, argv, message):
    status, out, err = run_cli(capsys, "train", *argv, "--dry-run")
    assert status == 2 and out == "" and message in err
    if "recipe=" in argv[-1]:
        assert ", ".join(RECIPES) in err


# ------------------------------------------------------------------------------------ dry run: the data layout


def test_dry_run_checks_a_named_data_sets_layout(capsys, tmp_path):
    status, out, err = run_cli(capsys, "train", "--dataset", "market1501", "--data-root", str(tmp_path),
                                "--cache-root", str(tmp_path / "cache"), "--dry-run")
    assert status == 2 and out == ""
    assert err.startswith(f"snlib train: error: {tmp_path} does not have the market1501 layout: expected "
                          "bounding_box_train/")
    status, _, err = run_cli(capsys, "train", "--dataset", "market1501", "--data-root", str(tmp_path / "absent"),
                              "--dry-run")
    assert status == 2 and "does not exist" in err
    for folder in ("bounding_box_train", "query", "bounding_box_test"):  # names only: the dry run reads no image
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "0002_c1s1_000451_03.jpg").write_bytes(b"")
    status, out, _ = run_cli(capsys, "train", "--dataset", "market1501", "--data-root", str(tmp_path),
                              "--cache-root", str(tmp_path / "cache"), "--dry-run")
    assert status == 0 and _dry_run_config(out)["dataset"] == "market1501"


def test_every_command_line_in_the_readme_parses():
    """Each ``-m snlib ...`` line of README.md's code blocks is a valid command line (options that exist, values
    of the right kind), so an example cannot outlive a renamed or removed option."""
    import shlex

    text = (ROOT / "README.md").read_text()
    blocks = [block.replace("\\\n", " ") for block in text.split("```")[1::2]]   # continued lines joined
    lines = [line.split("-m snlib ", 1)[1] for block in blocks for line in block.splitlines() if "-m snlib " in line]
    assert len(lines) >= 10
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line, comments=True)
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README's command line does not parse: snlib {line}")
