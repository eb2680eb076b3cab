"""Batch reproduction: run every notebook of ``notebooks/`` with papermill, write ``results/<preset>/<name>/``.

Each notebook receives the parameters ``preset``, ``dataset``, ``data_root`` and ``output_dir`` (papermill injects
them after the cell tagged ``parameters``), and those of ``--param`` its parameters cell declares. Trained runs are
cached by configuration (``snlib.engine``), so notebooks that share a run train it once and a re-run after an
interruption resumes instead of restarting; the kernels' training lines (batch mode) are relayed to the console.
The output folder receives the executed notebooks, the tables (CSV + Markdown) and figures (PNG) the notebooks
save, and ``manifest.json``: one record per notebook, kept across calls (parameters, status, the error and failing
cell, wall time, git commit), and the package versions of the last call; paths relative to the repository;
``reproduce_log.txt``: each call's command and console lines, appended.
"""
from __future__ import annotations

import contextlib
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from . import settings
from .errors import ConfigError, NotebooksFailedError
from .reporting import RETRAINED_FILE, environment_info, write_manifest

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


#: The parameters every notebook receives; its ``parameters`` cell must declare them.
COMMON_PARAMETERS = ("preset", "dataset", "data_root", "output_dir")


def run_reproduction(preset: str = "cpu", dataset: str = "synthetic", data_root: str | Path = "data",
                     notebooks: list[str] | None = None, out: str | Path | None = None, name: str | None = None,
                     update_notebooks: bool = False, extra_parameters: dict | None = None,
                     cache_root: str | Path | None = None, records_root: str | Path | None = None) -> Path:
    """Execute the notebooks with papermill; return the output folder.

    ``out`` defaults to ``results/<preset>/<name>`` with ``name`` defaulting to ``dataset``. With
    ``update_notebooks`` the executed notebooks (injected parameters removed) replace the sources in
    ``notebooks/``: this is how the committed notebooks come to carry the outputs of the published run.
    ``extra_parameters`` (e.g. ``{"seeds": [0]}``) go, beside the four common ones, to each notebook whose
    ``parameters`` cell declares them; one that no selected notebook declares is an error before any run.
    ``cache_root`` is the run cache of the kernels (default ``settings.cache_root()``), ``records_root`` the root
    of their run records (``<records_root>/<preset>/``; default ``settings.records_root()``). Paths are handed to the
    notebooks and recorded relative to the repository (``settings.portable_path``). A failing notebook is
    recorded in the manifest (error, failing cell) and the others still run; the call then raises.
    """
    import papermill as pm

    out = settings.user_path(out) if out else settings.results_dir() / preset / (name or dataset)
    common = {"preset": preset, "dataset": dataset, "data_root": settings.portable_path(settings.user_path(data_root)),
              "output_dir": settings.portable_path(out)}
    plan = _plan(list_notebooks(notebooks), {**common, **(extra_parameters or {})})
    environment = environment_info()  # the commit before this call writes anything
    out.mkdir(parents=True, exist_ok=True)
    log = _CallLog(out / LOG_NAME, _command(common, notebooks, extra_parameters, update_notebooks, cache_root,
                                            records_root), environment)
    records, failed = [], []
    start = time.perf_counter()
    with contextlib.ExitStack() as scope:
        scope.enter_context(settings.batch_run())  # inherited by the kernels: no widgets, training lines
        if cache_root is not None:
            scope.enter_context(settings.using_cache_root(cache_root))
        if records_root is not None:
            scope.enter_context(settings.using_records_root(records_root))
        cache = settings.portable_path(settings.cache_root())
        for nb, parameters in plan.items():
            log.write(f"[reproduce] {nb.name} ...")
            t0 = time.perf_counter()
            record = {"notebook": nb.name, "parameters": parameters, "status": "ok", "cache_root": cache,
                      "records_root": settings.portable_path(settings.records_root()), "git_commit": environment["git_commit"]}
            try:
                pm.execute_notebook(str(nb), str(out / nb.name), parameters=parameters, cwd=str(NOTEBOOK_DIR),
                                    kernel_name="python3", progress_bar=True, stdout_file=_TrainingLines())
            except Exception as exc:  # papermill raises PapermillExecutionError with the failing cell
                record.update(status="failed", error=_failure(exc))
                failed.append(nb.name)
            wall = time.perf_counter() - t0
            record.update(wall_time_s=round(wall, 1),
                          finished=datetime.now(timezone.utc).isoformat(timespec="seconds"))
            records.append(record)
            log.write(f"[reproduce] {nb.name}: {record['status']} in {wall / 60:.1f} min"
                      + (f": {_describe(record['error'])}" if "error" in record else ""))
            _update_manifest(out, records, environment, time.perf_counter() - start)  # after each: a kill loses none
            if (out / nb.name).is_file():
                executed = make_portable(drop_widget_state(nbformat.read(out / nb.name, as_version=4)))
                nbformat.write(executed, out / nb.name)
                if update_notebooks and record["status"] == "ok":
                    nbformat.write(strip_injected_parameters(executed), nb)
    total = time.perf_counter() - start
    log.write(f"[reproduce] done in {total / 60:.1f} min -> {settings.portable_path(out)}")
    if failed:
        raise NotebooksFailedError(f"{len(failed)} notebook(s) failed: {', '.join(failed)} (the first error of each "
                                   f"is above and in {settings.portable_path(out / 'manifest.json')}; the executed "
                                   f"copies in {settings.portable_path(out)} show the failing cell)")
    return out


#: The console lines of every call, appended in the output folder (the times a README quotes come from here).
LOG_NAME = "reproduce_log.txt"


def _command(common: dict, notebooks, extra_parameters, update_notebooks, cache_root, records_root=None) -> str:
    """The ``python -m snlib reproduce`` line of a call (``common``: the notebooks' common parameters, paths
    as ``settings.portable_path`` writes them)."""
    words = ["python -m snlib reproduce", f"--preset {common['preset']}", f"--dataset {common['dataset']}",
             f"--data-root {common['data_root']}", f"--out {common['output_dir']}"]
    words += [f"--notebooks {' '.join(notebooks)}"] if notebooks else []
    words += [f"--param '{name}={json.dumps(value)}'" for name, value in (extra_parameters or {}).items()]
    words += ["--update-notebooks"] if update_notebooks else []
    words += [f"--cache-root {settings.portable_path(settings.user_path(cache_root))}"] if cache_root else []
    words += [f"--records-root {settings.portable_path(settings.user_path(records_root))}"] if records_root else []
    return " ".join(words)


class _CallLog:
    """The console's ``[reproduce]`` lines, also appended to ``path`` under a header (the call's command, start
    time, commit and CPU count), each line flushed as it is written: an interrupted call keeps its lines."""

    def __init__(self, path: Path, command: str, environment: dict):
        self._path = path
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._append(f"\n# {started} commit {environment['git_commit']}, {environment['cpu_count']} CPU cores\n"
                     f"# {command}\n")

    def write(self, line: str) -> None:
        from tqdm.auto import tqdm

        tqdm.write(line)
        self._append(line + "\n")

    def _append(self, text: str) -> None:
        with open(self._path, "a", encoding="utf-8") as f:
            f.write(text)


def _plan(notebooks: list[Path], parameters: dict) -> dict[Path, dict]:
    """Each notebook with the parameters its ``parameters`` cell declares (papermill warns about any other).

    Raises ``ConfigError`` before any run when a notebook lacks a common parameter or a parameter is declared
    by none of the notebooks (a misspelt ``--param``)."""
    import papermill as pm

    declared = {nb: set(pm.inspect_notebook(str(nb))) for nb in notebooks}
    for nb, names in declared.items():
        if missing := [p for p in COMMON_PARAMETERS if p not in names]:
            raise ConfigError(f"{nb}: the parameters cell does not declare {missing} (papermill reads one "
                              "'name = value' line per parameter, a single '=' on the line)")
    if unknown := [p for p in parameters if not any(p in names for names in declared.values())]:
        raise ConfigError(f"--param {unknown}: no selected notebook declares it; their parameters: "
                          f"{sorted(set().union(*declared.values()))}")
    return {nb: {k: v for k, v in parameters.items() if k in names} for nb, names in declared.items()}


class _TrainingLines:
    """papermill's ``stdout_file``: relays the kernel's lines that start with ``settings.BATCH_LINE_PREFIX``
    (the engine's training progress in batch runs) to the console, above the cell bar; drops the rest."""

    def __init__(self):
        self._partial = ""

    def write(self, text: str) -> None:
        from tqdm.auto import tqdm

        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if line.startswith(settings.BATCH_LINE_PREFIX):
                tqdm.write("  " + line[len(settings.BATCH_LINE_PREFIX):])

    def flush(self) -> None:
        pass


def _failure(exc: Exception) -> dict:
    """What failed: the notebook's exception and cell (papermill's ``PapermillExecutionError``), else ``exc``."""
    from papermill.exceptions import PapermillExecutionError

    if not isinstance(exc, PapermillExecutionError):
        return {"ename": type(exc).__name__, "evalue": str(exc)}
    source = (exc.source or "").strip().splitlines()
    return {"ename": exc.ename, "evalue": exc.evalue, "cell_index": exc.cell_index, "exec_count": exc.exec_count,
            "cell_first_line": source[0] if source else ""}


def _describe(error: dict) -> str:
    """One line: ``ValueError: boom (cell 2, In [1]: raise ValueError('boom'))``."""
    text = f"{error['ename']}: {(error['evalue'] or '').splitlines()[0] if error['evalue'] else ''}"
    if "cell_index" in error:
        text += f" (cell {error['cell_index']}, In [{error['exec_count']}]: {error['cell_first_line']})"
    return text


def _update_manifest(out: Path, records: list[dict], environment: dict, wall_time_s: float) -> None:
    """Merge this call's notebook records into ``out/manifest.json``: each notebook keeps the record of the
    last call that ran it (parameters, status, wall time, commit); ``environment`` is this call's."""
    path = out / "manifest.json"
    previous = json.loads(path.read_text()) if path.is_file() else {}
    history = previous.get("notebooks", {})
    earlier = previous.get("this_call", {}).get("notebooks", [])  # a manifest of before per-notebook records
    for record in history.values():
        if "parameters" not in record and record["notebook"] in earlier:
            record.update(parameters=previous.get("parameters"),
                          git_commit=previous.get("environment", {}).get("git_commit"))
    history.update({r["notebook"]: r for r in records})
    retrained = out / RETRAINED_FILE   # the networks the notebooks retrained, against their records
    write_manifest(out, make_portable({"notebooks": history,
                                       "last_call": {"notebooks": [r["notebook"] for r in records],
                                                     "wall_time_s": round(wall_time_s, 1)},
                                       "retrained_runs": json.loads(retrained.read_text()) if retrained.is_file()
                                       else {}}), environment)


def make_portable(obj):
    """``obj`` (a notebook, a manifest: JSON values) with every absolute path of or beside the repository in its
    strings written relative to it (``settings.portable_text``); images (``image/*`` outputs) untouched."""
    if isinstance(obj, str):
        return settings.portable_text(obj)
    if isinstance(obj, list):
        return [make_portable(v) for v in obj]
    if isinstance(obj, dict):
        return type(obj)({k: v if k.startswith("image/") else make_portable(v) for k, v in obj.items()})
    return obj


def make_files_portable(paths: list[str | Path] | None = None) -> list[Path]:
    """Rewrite records written with absolute paths (before the driver stored portable ones) through
    ``make_portable``; return the files changed. ``paths`` defaults to the committed records: every
    ``results/**/manifest.json``, ``results/**/*.ipynb`` and ``notebooks/*.ipynb``. A file that would not be
    written back byte for byte apart from the paths is refused (``ValueError``) before any file is changed.

    Run once: ``.venv/bin/python -c "from snlib.reproduce import make_files_portable; print(make_files_portable())"``
    """
    if paths is None:
        results = settings.results_dir()
        paths = [*results.glob("**/manifest.json"), *results.glob("**/*.ipynb"), *NOTEBOOK_DIR.glob("*.ipynb")]
    rewritten = {}
    for path in map(Path, paths):
        text = path.read_text()
        indent = 1 if path.suffix == ".ipynb" else 2  # as nbformat and write_manifest write them
        data = json.loads(text)
        if _dump(data, indent) != text:
            raise ValueError(f"{path}: not in the JSON layout nbformat / write_manifest write; nothing was changed")
        if (new := _dump(make_portable(data), indent)) != text:
            rewritten[path] = new
    for path, new in rewritten.items():
        settings.atomic_write(path, new)
    return list(rewritten)


def _dump(data, indent: int) -> str:
    return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False) + "\n"


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
