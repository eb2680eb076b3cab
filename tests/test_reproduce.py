"""The papermill driver of ``make reproduce`` on throw-away notebooks (a kernel start each: a few seconds)."""
from __future__ import annotations

import json
import os

import nbformat
import pytest

from snlib import reproduce


def _notebook(path, body: str) -> None:
    params = nbformat.v4.new_code_cell('preset = "cpu"\ndataset = None\ndata_root = None\noutput_dir = None\n'
                                       'seeds = None')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "01_ok.ipynb", "from pathlib import Path\n"
                                      "Path(output_dir, 'seen.json').write_text(__import__('json').dumps("
                                      "{'preset': preset, 'dataset': dataset, 'seeds': seeds, "
                                      "'batch': __import__('os').environ.get('SNLIB_BATCH')}))")
    _notebook(folder / "02_fails.ipynb", "raise ValueError('boom')")
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


def test_reproduction_passes_parameters_records_failures_and_updates_sources(notebooks, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="1 notebook\\(s\\) failed: \\['02_fails.ipynb'\\]"):
        reproduce.run_reproduction("smoke", "synthetic", tmp_path, out=out, update_notebooks=True,
                                   extra_parameters={"seeds": [0]})
    # the kernels see SNLIB_BATCH=1 (no widgets); this process's environment is left as it was
    assert json.loads((out / "seen.json").read_text()) == {"preset": "smoke", "dataset": "synthetic", "seeds": [0],
                                                          "batch": "1"}
    assert "SNLIB_BATCH" not in os.environ
    manifest = json.loads((out / "manifest.json").read_text())
    status = {name: record["status"] for name, record in manifest["notebooks"].items()}
    assert status["01_ok.ipynb"] == "ok" and status["02_fails.ipynb"].startswith("failed: PapermillExecutionError")
    # the successful notebook replaced its source, without papermill's injected cell; the failed one did not
    updated = nbformat.read(notebooks / "01_ok.ipynb", as_version=4)
    assert len(updated.cells) == 2 and updated.cells[1].execution_count is not None
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in updated.cells)
    assert "widgets" not in updated.metadata
    assert nbformat.read(notebooks / "02_fails.ipynb", as_version=4).cells[1].execution_count is None


COMMON_PARAMETERS = ("preset", "dataset", "data_root", "output_dir", "overrides")


@pytest.mark.parametrize("path", sorted(reproduce.NOTEBOOK_DIR.glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_notebook_takes_the_common_parameters_and_applies_overrides(path):
    """Each notebook opens with a markdown claim, then one tagged ``parameters`` cell defining the parameters
    ``make reproduce`` passes, and hands ``overrides`` (TrainConfig fields) to every study it opens."""
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is nb.cells[1]
    names = {line.split("=")[0].strip() for line in tagged[0].source.splitlines() if "=" in line}
    assert set(COMMON_PARAMETERS) <= names
    calls = [c.source for c in nb.cells if c.cell_type == "code" and "open_study(" in c.source]
    assert calls and all(src.count("open_study(") == src.count("(overrides or {})") for src in calls)
