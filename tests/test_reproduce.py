"""The papermill driver of ``make reproduce`` on throw-away notebooks (a kernel start each: a few seconds)."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess

import nbformat
import pytest

from snlib.errors import NotebooksFailedError
from snlib import reproduce, settings
from snlib.errors import ConfigError
from snlib.reporting import git_commit

COMMON = 'preset = "cpu"\ndataset = None\ndata_root = None\noutput_dir = None\n'


def _notebook(path, body: str, parameters: str = COMMON + "seeds = None") -> None:
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb", "from pathlib import Path\nfrom snlib import settings\n"
                                      "Path(output_dir, 'seen.json').write_text(__import__('json').dumps("
                                      "{'preset': preset, 'dataset': dataset, 'data_root': data_root, 'seeds': seeds, "
                                      "'batch': __import__('os').environ.get('SNLIB_BATCH'), "
                                      "'cache': str(settings.cache_root())}))")
    _notebook(folder / "02_fails.ipynb", "raise ValueError('boom')", parameters=COMMON)  # takes no seeds
    nb = nbformat.read(folder / "01_ok.ipynb", as_version=4)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}  # as tqdm leaves it
    nbformat.write(nb, folder / "01_ok.ipynb")
    monkeypatch.setattr(reproduce, "NOTEBOOK_DIR", folder)
    monkeypatch.delenv("SNLIB_BATCH", raising=False)
    return folder


def test_list_notebooks_selects_by_fragment(notebooks):
    assert [nb.name for nb in reproduce.list_notebooks()] == ["01_ok.ipynb", "02_fails.ipynb"]
    assert [nb.name for nb in reproduce.list_notebooks(["02"])] == ["02_fails.ipynb"]
    with pytest.raises(ValueError, match="no notebook matches \\['07'\\]"):
        reproduce.list_notebooks(["07"])


def test_parse_parameters_reads_scientific_notation_as_numbers():
    """YAML 1.1 (PyYAML) reads 2e-4 as a string; a learning rate must arrive as a float."""
    parsed = reproduce.parse_parameters(["overrides={lr: 2e-4, epochs: 3}", "x=[1E3, 'e5', 2.5e-1]", "name=1e-3x"])
    assert parsed == {"overrides": {"lr": 2e-4, "epochs": 3}, "x": [1000.0, "e5", 0.25], "name": "1e-3x"}
    assert isinstance(parsed["overrides"]["lr"], float)


def test_parse_parameters_reads_yaml_values():
    assert reproduce.parse_parameters(["seeds=[0, 1]", "n=500", "name=cuhk03p1", "x=null"]) == \
        {"seeds": [0, 1], "n": 500, "name": "cuhk03p1", "x": None}
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        reproduce.parse_parameters(["seeds"])


def test_reproduction_passes_parameters_records_failures_and_updates_sources(notebooks, tmp_path, caplog):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="papermill"), \
            pytest.raises(NotebooksFailedError, match="1 notebook\\(s\\) failed: 02_fails.ipynb "):
        reproduce.run_reproduction("smoke", "synthetic", tmp_path, out=out, update_notebooks=True,
                                   extra_parameters={"seeds": [0]})
    # each notebook gets only what its parameters cell declares (02 takes no seeds): papermill warns of nothing
    assert [r.getMessage() for r in caplog.records if r.name.startswith("papermill")] == []
    # the kernels see SNLIB_BATCH=1 (no widgets); this process's environment is left as it was
    seen = json.loads((out / "seen.json").read_text())
    assert {k: seen[k] for k in ("preset", "dataset", "seeds", "batch")} == {"preset": "smoke", "dataset": "synthetic",
                                                                             "seeds": [0], "batch": "1"}
    assert "SNLIB_BATCH" not in os.environ
    manifest = json.loads((out / "manifest.json").read_text())
    records = manifest["notebooks"]
    assert records["01_ok.ipynb"]["status"] == "ok" and records["02_fails.ipynb"]["status"] == "failed"
    assert records["01_ok.ipynb"]["parameters"]["seeds"] == [0] and "seeds" not in records["02_fails.ipynb"]["parameters"]
    # the successful notebook replaced its source, without papermill's injected cell; the failed one did not
    updated = nbformat.read(notebooks / "01_ok.ipynb", as_version=4)
    assert len(updated.cells) == 2 and updated.cells[1].execution_count is not None
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in updated.cells)
    assert "widgets" not in updated.metadata
    assert nbformat.read(notebooks / "02_fails.ipynb", as_version=4).cells[1].execution_count is None


def test_failing_notebook_reports_the_error_and_the_cell(notebooks, tmp_path, capsys):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        reproduce.run_reproduction("smoke", "synthetic", tmp_path, notebooks=["02"], out=out)
    error = json.loads((out / "manifest.json").read_text())["notebooks"]["02_fails.ipynb"]["error"]
    executed = nbformat.read(out / "02_fails.ipynb", as_version=4)  # cells as run: without papermill's markers
    cells = [c for c in executed.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    failing = [i for i, c in enumerate(cells) if any(o.get("ename") for o in c.get("outputs", []))]
    assert failing == [error["cell_index"]] and cells[failing[0]].source == "raise ValueError('boom')"
    assert cells[failing[0]].execution_count == error["exec_count"]
    assert (error["ename"], error["evalue"], error["cell_first_line"]) == ("ValueError", "boom",
                                                                           "raise ValueError('boom')")
    console = capsys.readouterr().out
    assert f"ValueError: boom (cell {failing[0]}, In [{error['exec_count']}]: raise ValueError('boom'))" in console


def test_manifest_keeps_the_records_of_earlier_calls(notebooks, tmp_path):
    out = tmp_path / "out"
    reproduce.run_reproduction("smoke", "synthetic", tmp_path, notebooks=["01"], out=out,
                               extra_parameters={"seeds": [3]})
    with pytest.raises(RuntimeError):
        reproduce.run_reproduction("cpu", "synthetic", tmp_path, notebooks=["02"], out=out)
    manifest = json.loads((out / "manifest.json").read_text())
    first, second = manifest["notebooks"]["01_ok.ipynb"], manifest["notebooks"]["02_fails.ipynb"]
    assert (first["status"], first["parameters"]["preset"], first["parameters"]["seeds"]) == ("ok", "smoke", [3])
    assert (second["status"], second["parameters"]["preset"]) == ("failed", "cpu")
    assert manifest["last_call"]["notebooks"] == ["02_fails.ipynb"]
    assert all(r["wall_time_s"] > 0 and r["git_commit"] for r in (first, second))
    # the log: both calls, each under its command, with its notebooks' lines
    log = (out / "reproduce_log.txt").read_text()
    calls = [block for block in log.split("\n# 20") if block.strip()]
    assert len(calls) == 2
    assert "python -m snlib reproduce --preset smoke --dataset synthetic" in calls[0]
    assert "--notebooks 01 --param 'seeds=[3]'" in calls[0] and "01_ok.ipynb: ok in" in calls[0]
    assert "--preset cpu" in calls[1] and "02_fails.ipynb: failed in" in calls[1] and "ValueError: boom" in calls[1]
    assert all("] done in" in call for call in calls)


def test_manifest_and_notebook_parameters_hold_no_absolute_repository_path(notebooks, tmp_path):
    out = tmp_path / "out"
    reproduce.run_reproduction("smoke", "synthetic", settings.repo_root() / "data" / "synthetic", notebooks=["01"],
                               out=out)
    text = (out / "manifest.json").read_text()
    assert str(settings.repo_root()) not in text
    assert json.loads(text)["notebooks"]["01_ok.ipynb"]["parameters"]["data_root"] == "data/synthetic"
    assert json.loads((out / "seen.json").read_text())["data_root"] == "data/synthetic"  # what the kernel got


def test_unknown_param_is_an_error_before_any_notebook_runs(notebooks, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--param \\['sedes'\\]: no selected notebook declares it"):
        reproduce.run_reproduction("smoke", "synthetic", tmp_path, out=out, extra_parameters={"sedes": [0]})
    with pytest.raises(ConfigError, match="--param \\['seeds'\\]"):  # declared by 01 only, not selected here
        reproduce.run_reproduction("smoke", "synthetic", tmp_path, notebooks=["02"], out=out,
                                   extra_parameters={"seeds": [0]})
    assert not out.exists()


def test_cache_root_reaches_the_kernels(notebooks, tmp_path, monkeypatch):
    monkeypatch.delenv("SNLIB_CACHE", raising=False)
    out = tmp_path / "out"
    reproduce.run_reproduction("smoke", "synthetic", tmp_path, notebooks=["01"], out=out,
                               cache_root=tmp_path / "cache")
    assert json.loads((out / "seen.json").read_text())["cache"] == str(tmp_path / "cache")
    assert json.loads((out / "manifest.json").read_text())["notebooks"]["01_ok.ipynb"]["cache_root"] == \
        str(tmp_path / "cache")
    assert "SNLIB_CACHE" not in os.environ


def test_clean_tree_commit_has_no_dirty_mark_and_results_do_not_count(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              check=True, capture_output=True, text=True).stdout.strip()
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "table.csv").write_text("a\n1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    head = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "results" / "table.csv").write_text("a\n2\n")  # what a reproduction writes
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_training_lines_reach_the_console_and_the_rest_does_not(capsys):
    relay = reproduce._TrainingLines()
    for chunk in ["table row\n[snlib] training sn seed 0 (ab", "c): epoch 1/2, loss 0.5\nrank-1 3", "0\n"]:
        relay.write(chunk)
    assert capsys.readouterr().out == "  training sn seed 0 (abc): epoch 1/2, loss 0.5\n"


def test_make_files_portable_rewrites_repository_paths_only(tmp_path):
    root = str(settings.repo_root())
    image = "iVBOR" + root + "/x"  # base64 data that happens to read as a path: left alone
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)", outputs=[
        nbformat.v4.new_output("stream", text=f"figures go to {root}/results/cpu/synthetic\n"),
        nbformat.v4.new_output("display_data", data={"image/png": image, "text/plain": f"<{root}>"})])])
    nb.metadata["papermill"] = {"parameters": {"data_root": f"{settings.repo_root().parent}/shared/data/x",
                                               "output_dir": "/elsewhere/out"}}
    nbformat.write(nb, tmp_path / "run.ipynb")
    manifest = {"notebooks": {"a": {"parameters": {"output_dir": f"{root}/results/cpu/x", "lr": 2e-4}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert reproduce.make_files_portable([tmp_path / "run.ipynb", tmp_path / "manifest.json"]) == \
        [tmp_path / "run.ipynb", tmp_path / "manifest.json"]
    nb = nbformat.read(tmp_path / "run.ipynb", as_version=4)
    outputs = nb.cells[0].outputs
    assert outputs[0].text == "figures go to results/cpu/synthetic\n"
    assert outputs[1].data == {"image/png": image, "text/plain": "<.>"}
    assert nb.metadata.papermill.parameters == {"data_root": "../shared/data/x", "output_dir": "/elsewhere/out"}
    assert json.loads((tmp_path / "manifest.json").read_text()) == \
        {"notebooks": {"a": {"parameters": {"output_dir": "results/cpu/x", "lr": 2e-4}}}}
    assert reproduce.make_files_portable([tmp_path / "run.ipynb"]) == []  # nothing left to rewrite
    (tmp_path / "again.json").write_text(json.dumps({"p": root}, indent=2) + "\n")
    (tmp_path / "other.json").write_text(json.dumps({"p": root}))  # another layout: refused, nothing changed
    with pytest.raises(ValueError, match="other.json: not in the JSON layout"):
        reproduce.make_files_portable([tmp_path / "again.json", tmp_path / "other.json"])
    assert (tmp_path / "again.json").read_text() == json.dumps({"p": root}, indent=2) + "\n"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_passes_allow_root_only_to_root():
    """``make lab``: jupyter lab refuses root without --allow-root (containers); a normal user gets no such flag."""
    def command(uid: int) -> str:
        return subprocess.run(["make", "-s", "-n", "-o", ".venv/.snlib-installed", "lab", f"LAB_UID={uid}"],
                              cwd=settings.repo_root(), check=True, capture_output=True, text=True).stdout.strip()
    assert command(0).split() == [".venv/bin/jupyter", "lab", "--ip=127.0.0.1", "--no-browser", "--allow-root",
                                  "notebooks/"]
    assert command(1000).split() == [".venv/bin/jupyter", "lab", "--ip=127.0.0.1", "--no-browser", "notebooks/"]


COMMON_PARAMETERS = ("preset", "dataset", "data_root", "output_dir", "overrides")


@pytest.mark.parametrize("path", sorted(reproduce.NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_takes_the_common_parameters_and_applies_overrides(path):
    """Each notebook opens with a markdown claim, then one tagged ``parameters`` cell defining the parameters
    ``make reproduce`` passes, and hands ``overrides`` (TrainConfig fields) to its one ``setup`` call (which applies them to every run)."""
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is nb.cells[1]
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line}
    assert set(COMMON_PARAMETERS) <= names
    calls = [c.source for c in nb.cells if c.cell_type == "code" and "setup(" in c.source]
    assert len(calls) == 1 and "overrides" in calls[0].split("setup(", 1)[1].split(")")[0], (
        f"{path.name}: one setup(...) call that passes overrides (snlib.study.plans.setup hands them to every run)")


def test_portable_path_keeps_the_name_of_a_link_beside_the_repository(tmp_path, monkeypatch):
    """A clean clone whose ``../shared`` is a link to another disk records ``../shared/...``, the name it was
    given, so that a real-image run has the same hash there as here (resolving the link gave an absolute path)."""
    elsewhere = tmp_path / "disk" / "shared" / "data" / "cuhk03p1"
    elsewhere.mkdir(parents=True)
    (tmp_path / "clone" / "repo").mkdir(parents=True)
    (tmp_path / "clone" / "shared").symlink_to(tmp_path / "disk" / "shared")
    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path / "clone" / "repo")
    assert settings.portable_path(tmp_path / "clone" / "repo" / ".." / "shared" / "data" / "cuhk03p1") == \
        "../shared/data/cuhk03p1"
    assert settings.portable_path(tmp_path / "clone" / "repo" / "data" / "synthetic") == "data/synthetic"
    assert settings.portable_path(elsewhere) == str(elsewhere.resolve())  # the target itself: outside, absolute
    # a repository reached through a link: the resolved form still finds it
    (tmp_path / "link").symlink_to(tmp_path / "clone" / "repo")
    assert settings.portable_path(tmp_path / "link" / "data") == "data"


def test_failed_notebooks_end_the_command_with_one_line_and_status_2(notebooks, tmp_path, monkeypatch, capsys):
    from snlib.__main__ import main

    monkeypatch.setattr(settings, "debug", lambda: False)
    with pytest.raises(SystemExit) as done:
        main(["reproduce", "--preset", "smoke", "--notebooks", "02", "--out", str(tmp_path / "out")])
    assert done.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]          # above it: the notebooks' progress bars
    assert last.startswith("snlib reproduce: error: 1 notebook(s) failed: 02_fails.ipynb")
    assert "Traceback" not in err
