"""The run store: the one owner of a run folder's layout, and the run cache as a user sees it (``snlib runs``).

A run folder is ``<cache root>/<config hash>/`` (``run_dir_for``); the model a run starts from, before any re-ID
training, is stored as a finished run in ``<cache root>/epoch0-<config hash>/`` (``initial_run_dir``). It holds::

    config.json      the TrainConfig (written when training starts)
    .lock            "<host>:<pid>" of the process training it (while it trains)
    checkpoint.pt    weights, optimiser, RNG states, history of an unfinished run (removed once finished)
    model.pt         weights + architecture (snlib.models.model_checkpoint)
    history.csv      one row per training iteration
    result.json      configuration, hash, data set, final metrics, periodic evaluations, timings
    features_<name>.pt   cached test features (query, gallery, ...) of the run's model

A run is *finished* when it holds ``result.json`` and ``model.pt``, *unfinished at epoch N* when it holds a
checkpoint, *empty* otherwise (training never reached its first checkpoint). Every file is written atomically
(``settings.atomic_write``) and every torch file read with ``weights_only=True`` (``models.read_checkpoint``).
"""
from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from . import settings
from .collapse import GAP_TOLERANCE, SHRINK_RATIO, collapse_evidence, is_diagnostic
from .errors import DamagedFileError, RunNotFoundError, SnlibError, UsageError
from .models import ReIDModel, load_model, read_checkpoint
from .presets import PRESETS, TrainConfig, config_hash, get_preset

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
MODEL = "model.pt"
HISTORY = "history.csv"
RESULT = "result.json"
LOCK = ".lock"
#: The ``format`` of a training checkpoint (``model.pt`` holds ``"snlib-model"``).
TRAIN_FORMAT = "snlib-train"


class RunLockedError(SnlibError, RuntimeError):
    """Another living process is training the same run folder."""


def run_dir_for(config: TrainConfig, cache_root: str | Path | None = None) -> Path:
    """``<cache root>/<config hash>`` (cache root: ``settings.cache_root()`` when None)."""
    return Path(cache_root or settings.cache_root()) / config_hash(config)


def initial_run_dir(config: TrainConfig, cache_root: str | Path | None = None) -> Path:
    """``<cache root>/epoch0-<config hash>``: the run folder of ``config``'s model before re-ID training."""
    return Path(cache_root or settings.cache_root()) / f"epoch0-{config_hash(config)}"


def atomic_save(obj, path: Path) -> None:
    """``torch.save`` through :func:`snlib.settings.atomic_write`: a crash never leaves a half-written file."""
    settings.atomic_write(path, lambda fh: torch.save(obj, fh))


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder (see the module docstring) and the reading and writing of them."""

    path: Path

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def model(self) -> Path:
        return self.path / MODEL

    def features_file(self, name: str) -> Path:
        return self.path / f"features_{name}.pt"

    @property
    def finished(self) -> bool:
        return (self.path / RESULT).is_file() and self.model.is_file()

    def create(self) -> bool:
        """Make the folder (and its parents); True when this call created it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.path.mkdir()
        except FileExistsError:
            return False
        return True

    def discard(self) -> None:
        """Remove a stored result and checkpoint (``train(..., fresh=True)``); the configuration stays."""
        for name in (RESULT, CHECKPOINT, MODEL):
            (self.path / name).unlink(missing_ok=True)

    def remove_if_empty(self) -> None:
        """Remove a folder that holds no checkpoint: its ``config.json``, then the folder unless something else
        was put in it (the lock is gone already)."""
        if self.checkpoint.exists():
            return
        (self.path / CONFIG).unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:
            pass

    def write_config(self, config: TrainConfig) -> None:
        settings.atomic_write(self.path / CONFIG, json.dumps(config.to_dict(), indent=2, default=str))

    def write_checkpoint(self, state: dict) -> None:
        atomic_save({"format": TRAIN_FORMAT, **state}, self.checkpoint)

    def read_checkpoint(self) -> dict | None:
        """The training checkpoint, None when there is none; a file that is not one is a ``DamagedFileError``."""
        if not self.checkpoint.is_file():
            return None
        state = read_checkpoint(self.checkpoint)
        if not isinstance(state, dict) or state.get("format") != TRAIN_FORMAT:
            raise DamagedFileError(f"{self.checkpoint} is not an snlib training checkpoint (no 'format': "
                                   f"'{TRAIN_FORMAT}'); retrain with `snlib train ... --fresh` "
                                   f"(train(..., fresh=True)), or delete {self.checkpoint}")
        return state

    def write_model(self, model_state: dict) -> None:
        atomic_save(model_state, self.model)

    def finish(self, model_state: dict, history: list[dict], summary: dict) -> None:
        """Store a finished run: ``model.pt``, ``history.csv``, then ``result.json`` (the run counts as finished
        from there on), and drop the checkpoint."""
        self.write_model(model_state)
        settings.atomic_write(self.path / HISTORY, pd.DataFrame(history).to_csv(index=False))
        settings.atomic_write(self.path / RESULT, json.dumps(summary, indent=2, default=str))
        self.checkpoint.unlink(missing_ok=True)

    def read_result(self) -> dict:
        return json.loads((self.path / RESULT).read_text())

    def read_history(self) -> list[dict]:
        """``history.csv`` as records (empty when the run has none)."""
        path = self.path / HISTORY
        return pd.read_csv(path).to_dict("records") if path.is_file() else []

    @contextmanager
    def lock(self):
        """One process trains a run folder at a time; a lock left by a dead process is taken over."""
        lock = self.path / LOCK
        me = f"{socket.gethostname()}:{os.getpid()}"
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            owner = lock.read_text().strip() if lock.exists() else ""
            host, _, pid = owner.partition(":")
            if host == socket.gethostname() and pid.isdigit() and _pid_alive(int(pid)):
                raise RunLockedError(f"{self.path} is being trained by process {pid}; wait for it, or remove {lock} "
                                     "if that process is not training this run") from None
            fd = os.open(lock, os.O_CREAT | os.O_TRUNC | os.O_WRONLY)
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield
        finally:
            if lock.exists() and lock.read_text().strip() == me:
                lock.unlink()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunResult:
    """A finished run: configuration, per-iteration history, evaluations, final test metrics, model file.

    ``wall_time_s``: seconds spent in the training epochs (periodic evaluations included), summed over
    resumptions; ``extra["eval_time_s"]``: the final query-vs-gallery evaluation.
    """

    config: TrainConfig
    run_dir: Path
    history: list[dict]
    evaluations: list[dict]
    metrics: dict
    wall_time_s: float
    from_cache: bool = False
    extra: dict = field(default_factory=dict)
    per_query: dict = field(default_factory=dict)   # the final evaluation per query (engine.per_query)

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL

    def load_model(self, device: str | torch.device = "cpu") -> ReIDModel:
        return load_model(self.model_path, map_location=device).to(device)

    def history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    @classmethod
    def load(cls, run_dir: str | Path) -> "RunResult":
        """Read a finished run folder (``result.json`` + ``history.csv``)."""
        folder = RunFolder(Path(run_dir))
        summary = folder.read_result()
        return cls(config=TrainConfig.from_dict(summary["config"]), run_dir=folder.path,
                   history=folder.read_history(), evaluations=summary["evaluations"], metrics=summary["metrics"],
                   wall_time_s=summary["wall_time_s"], from_cache=True, extra=summary.get("extra", {}),
                   per_query=summary.get("per_query", {}))


# ------------------------------------------------------------------------------------------ the cache listed


@dataclass
class RunInfo:
    """One run folder: its configuration (None when unreadable), status line and final metrics."""

    run_dir: Path
    config: TrainConfig | None
    status: str
    metrics: dict = field(default_factory=dict)
    evaluations: list = field(default_factory=list)

    @property
    def hash(self) -> str:
        return self.run_dir.name


def read_config(run_dir: str | Path) -> TrainConfig:
    """The ``TrainConfig`` of a run folder (its ``config.json``)."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise RunNotFoundError(f"{run_dir} holds no {CONFIG}: it is not an snlib run folder")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedFileError(f"{path} is damaged ({exc}); retrain with `snlib train ... --fresh` "
                               f"(train(..., fresh=True)), or delete {path}") from None
    return TrainConfig.from_dict(data)


def run_info(run_dir: str | Path) -> RunInfo:
    """Status and results of one run folder; an unreadable file is reported in the status, not raised."""
    run_dir = Path(run_dir)
    config, note = None, ""
    try:
        config = read_config(run_dir)
    except RunNotFoundError:  # no config.json
        pass
    except SnlibError:  # damaged, or written by a version of snlib with other fields
        note = f" ({CONFIG} unreadable)"
    folder = RunFolder(run_dir)
    if folder.finished:
        try:
            summary = folder.read_result()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return RunInfo(run_dir, config, f"finished, {RESULT} damaged{note}")
        return RunInfo(run_dir, config, "finished" + note, summary["metrics"], summary["evaluations"])
    if folder.checkpoint.is_file():
        try:
            state = folder.read_checkpoint()
        except DamagedFileError:
            return RunInfo(run_dir, config, f"unfinished, {CHECKPOINT} damaged{note}")
        if config is not None and config.iterations:
            progress = f"at iteration {len(state['history'])} of {config.iterations}"
        else:
            progress = f"at epoch {state['epoch']}" + (f" of {config.epochs}" if config else "")
        return RunInfo(run_dir, config, f"unfinished {progress}{note}", evaluations=state["evaluations"])
    return RunInfo(run_dir, config, "empty" + note)


def list_runs(cache_root: str | Path | None = None) -> list[RunInfo]:
    """Every run folder of ``cache_root`` (default ``settings.cache_root()``), oldest first."""
    root = Path(cache_root) if cache_root else settings.cache_root()
    if not root.is_dir():
        return []
    folders = [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return [run_info(p) for p in sorted(folders, key=lambda p: (p.stat().st_mtime, p.name))]


def find_run(prefix: str, cache_root: str | Path | None = None) -> Path:
    """The run folder of ``cache_root`` whose hash starts with ``prefix`` (or ``prefix`` itself, a run folder)."""
    if (Path(prefix) / CONFIG).is_file():
        return Path(prefix)
    root = Path(cache_root) if cache_root else settings.cache_root()
    matches = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(prefix)) if root.is_dir() else []
    if not matches:
        raise RunNotFoundError(f"no run {prefix!r} in {root}; `snlib runs` lists the runs there "
                               "(--cache-root for another cache)")
    if len(matches) > 1:
        raise UsageError(f"{prefix!r} matches {len(matches)} runs in {root} ({', '.join(p.name for p in matches)}); "
                         "give more digits of the hash")
    return matches[0]


def preset_differences(config: TrainConfig) -> dict[str, tuple]:
    """``field -> (preset value, run value)`` for the fields where ``config`` differs from its preset (from the
    paper's recipe, ``TrainConfig()``, when the run names no preset)."""
    base = get_preset(config.preset) if config.preset in PRESETS else TrainConfig()
    ours, theirs = config.to_dict(), base.to_dict()
    return {name: (theirs[name], value) for name, value in ours.items() if value != theirs[name]}


def run_history(run_dir: str | Path) -> list[dict]:
    """A run folder's training history: the finished run's, else its last checkpoint's ([] when damaged:
    ``run_info`` reports that)."""
    folder = RunFolder(Path(run_dir))
    try:
        return folder.read_history() if folder.finished else (folder.read_checkpoint() or {}).get("history", [])
    except DamagedFileError:
        return []


def diagnostics_lines(history: list[dict], last: int = 5) -> list[str]:
    """The collapse diagnostics (``snlib.collapse``) of a run's last ``last`` history rows (a run folder's
    :func:`run_history`, or a record's thinned history) as table lines, then the collapse rule's reading; no lines
    when the history is empty or was logged before the diagnostics."""
    columns = ["iteration", "loss", *[c for c in (history[-1] if history else {}) if is_diagnostic(c)]]
    if len(columns) == 2:
        return []
    rows = [columns] + [[_cell(row.get(c)) for c in columns] for row in history[-last:]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [f"diagnostics of the last {len(rows) - 1} iterations:"]
    lines += ["  " + "  ".join(cell.rjust(width) for cell, width in zip(row, widths)) for row in rows]
    evidence = collapse_evidence(history)
    if evidence is not None:
        verdict = "collapsed" if evidence["collapsed"] else "not collapsed"
        lines.append(f"collapse rule: {verdict} (from iteration {evidence['tail_from']}: hard_gap / pair_dist "
                     f"{evidence['gap_ratio']:.3f}, limit {GAP_TOLERANCE}; pair_dist / first {evidence['shrink']:.3g}, "
                     f"limit {SHRINK_RATIO})")
    return lines


def _cell(value) -> str:
    if isinstance(value, float):
        return "nan" if value != value else f"{value:.4g}"
    return "-" if value is None else str(value)
