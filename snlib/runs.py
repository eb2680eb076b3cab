"""The run cache as a user sees it (``snlib runs``): the runs of a cache root, their status and results.

A run folder (``snlib.engine``) is *finished* when it holds ``result.json`` and ``model.pt``, *unfinished at epoch
N* when it holds a checkpoint, *empty* otherwise (training never reached its first checkpoint).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import settings
from .engine import CHECKPOINT, MODEL, RESULT
from .errors import DamagedFileError, RunNotFoundError, SnlibError, UsageError
from .models import read_checkpoint
from .presets import PRESETS, TrainConfig, get_preset

CONFIG = "config.json"


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
    if (run_dir / RESULT).is_file() and (run_dir / MODEL).is_file():
        try:
            summary = json.loads((run_dir / RESULT).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return RunInfo(run_dir, config, f"finished, {RESULT} damaged{note}")
        return RunInfo(run_dir, config, "finished" + note, summary["metrics"], summary["evaluations"])
    if (run_dir / CHECKPOINT).is_file():
        try:
            state = read_checkpoint(run_dir / CHECKPOINT)
        except DamagedFileError:
            state = None
        if not isinstance(state, dict) or state.get("format") != "snlib-train":
            return RunInfo(run_dir, config, f"unfinished, {CHECKPOINT} damaged{note}")
        epochs = f" of {config.epochs}" if config else ""
        return RunInfo(run_dir, config, f"unfinished at epoch {state['epoch']}{epochs}{note}",
                       evaluations=state["evaluations"])
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
