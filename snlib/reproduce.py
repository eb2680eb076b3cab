"""Batch reproduction: run every notebook of ``notebooks/`` with papermill, write ``results/<preset>/<name>/``.

Each notebook receives the parameters ``preset``, ``dataset``, ``data_root`` and ``output_dir`` (papermill injects
them after the cell tagged ``parameters``). Trained runs are cached by configuration (``snlib.engine``), so
notebooks that share a run train it once and a re-run after an interruption resumes instead of restarting.
The output folder receives the executed notebooks, the tables (CSV + Markdown) and figures (PNG) the notebooks
save, and ``manifest.json`` (parameters, per-notebook wall time and status, package versions, git commit).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import nbformat

from .reporting import write_manifest
from . import settings

REPO = settings.repo_root()
NOTEBOOK_DIR = settings.notebooks_dir()


def list_notebooks(selection: list[str] | None = None) -> list[Path]:
    """The reproduction notebooks in order (``NN_name.ipynb``), optionally filtered by name fragments."""
    notebooks = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if selection:
        chosen = [nb for nb in notebooks if any(s in nb.name for s in selection)]
        unknown = [s for s in selection if not any(s in nb.name for nb in notebooks)]
        if unknown:
            raise ValueError(f"no notebook matches {unknown}; available: {[nb.name for nb in notebooks]}")
        notebooks = chosen
    return notebooks


def drop_widget_state(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove the saved ipywidgets state (tqdm's progress bars: megabytes of layout models, no information)."""
    nb.metadata.pop("widgets", None)
    return nb


def strip_injected_parameters(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove papermill's ``injected-parameters`` cell, so an executed notebook can be committed as the source."""
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    return nb


def run_reproduction(preset: str = "cpu", dataset: str = "synthetic", data_root: str | Path = "data/synthetic",
                     notebooks: list[str] | None = None, out: str | Path | None = None, name: str | None = None,
                     update_notebooks: bool = False, extra_parameters: dict | None = None) -> Path:
    """Execute the notebooks with papermill; return the output folder.

    ``out`` defaults to ``results/<preset>/<name>`` with ``name`` defaulting to ``dataset``. With
    ``update_notebooks`` the executed notebooks (injected parameters removed) replace the sources in
    ``notebooks/``: this is how the committed notebooks come to carry the outputs of the published run.
    ``extra_parameters`` go to every notebook beside the four above (e.g. ``{"seeds": [0]}``; a notebook
    ignores a name its ``parameters`` cell does not define). A failing notebook is recorded in the manifest
    and the others still run; the call then raises.
    """
    import papermill as pm

    out = Path(out) if out else REPO / "results" / preset / (name or dataset)
    out.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_root).resolve()
    parameters = {"preset": preset, "dataset": dataset, "data_root": str(data_root), "output_dir": str(out),
                  **(extra_parameters or {})}
    records, failed = [], []
    start = time.perf_counter()
    with settings.batch_run():  # inherited by the kernels: no interactive widgets (snlib.visualize)
        for nb in list_notebooks(notebooks):
            print(f"[reproduce] {nb.name} ...", flush=True)
            t0 = time.perf_counter()
            status = "ok"
            try:
                pm.execute_notebook(str(nb), str(out / nb.name), parameters=parameters, cwd=str(NOTEBOOK_DIR),
                                    kernel_name="python3", progress_bar=True)
            except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
                status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                failed.append(nb.name)
            wall = time.perf_counter() - t0
            records.append({"notebook": nb.name, "status": status, "wall_time_s": round(wall, 1)})
            print(f"[reproduce] {nb.name}: {status} in {wall / 60:.1f} min", flush=True)
            _update_manifest(out, parameters, records, time.perf_counter() - start)  # after each: a kill loses nothing
            if (out / nb.name).is_file():
                executed = drop_widget_state(nbformat.read(out / nb.name, as_version=4))
                nbformat.write(executed, out / nb.name)
                if update_notebooks and status == "ok":
                    nbformat.write(strip_injected_parameters(executed), nb)
    total = time.perf_counter() - start
    print(f"[reproduce] done in {total / 60:.1f} min -> {out}", flush=True)
    if failed:
        raise RuntimeError(f"{len(failed)} notebook(s) failed: {failed}; see the executed copies in {out}")
    return out


def _update_manifest(out: Path, parameters: dict, records: list[dict], wall_time_s: float) -> None:
    """Merge this call's notebook records into ``out/manifest.json`` (records of earlier calls are kept)."""
    previous = out / "manifest.json"
    history = json.loads(previous.read_text()).get("notebooks", {}) if previous.is_file() else {}
    history.update({r["notebook"]: r for r in records})
    write_manifest(out, {"parameters": parameters, "notebooks": history,
                         "this_call": {"notebooks": [r["notebook"] for r in records],
                                       "wall_time_s": round(wall_time_s, 1)}})


def parse_parameters(items: list[str]) -> dict:
    """``["seeds=[0]", "num_distractors=500"]`` -> ``{"seeds": [0], "num_distractors": 500}`` (values read as
    YAML, as papermill's ``-y``: numbers (``2e-4`` included), lists, dicts, ``null``; anything else stays a
    string). ``overrides={lr: 2e-4}`` changes a TrainConfig field of every run of every notebook."""
    import yaml

    loader = _yaml_loader()
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE, e.g. seeds=[0]")
        out[name] = yaml.load(text, Loader=loader)
    return out


def _yaml_loader():
    """PyYAML's safe loader, plus the YAML 1.2 floats that YAML 1.1 reads as strings (``2e-4``, ``1E3``)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                                 list("-+0123456789."))
    return Loader
