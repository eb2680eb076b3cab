"""Run records: what a finished run leaves that travels (committed under ``results/runs/``).

A record is a small JSON file, ``results/runs/<preset>/<config hash>.json`` (tens of KB, no weights): the configuration,
the data set and split it was scored on, a thinned training history, the evaluations during training, the final
metrics (none where the run diverged: ``diverged`` holds why) and, per evaluation variant, the result of every
query (``pid``, ``camid``, ``ap``, ``first``: the 0-based rank of its first true match, -1 where the query was
skipped). Variants: ``sq`` (single query, what the run was
scored on), and on the test split ``mq`` (multi-query), ``rerank`` (k-reciprocal re-ranking) and
``distractors-<n>`` (single query against the gallery plus ``n`` distractors). Paired statistics
(``snlib.statistics``) compare two runs query by query from their records; a study reads finished runs from here,
so an interrupted study, or one moved to another machine, resumes without retraining.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import settings
from .collapse import is_diagnostic
from .presets import TrainConfig, config_hash

#: The ``format`` of a record file.
#: 2: evaluations no longer shift the training generators; the ``diverged`` field.
RECORD_FORMAT = "snlib-record-2"
#: Rows of the training history a record keeps (evenly spaced, the last one included).
HISTORY_ROWS = 50
#: History columns a record keeps (what the curves plot), with the collapse diagnostics (``snlib.collapse``:
#: ``feature_norm``, ``pair_dist``, ``hard_gap``, a triplet term's ``<term>/hardest_pos_dist``,
#: ``<term>/hardest_neg_dist``, ``<term>/active``; records written before them lack them).
HISTORY_COLUMNS = ("iteration", "epoch", "lr", "loss")


def per_query(rank, pids, camids) -> dict[str, list]:
    """A rank result (``snlib.evaluation.RankResult``) per query, as a record stores it: ``pid``, ``camid``,
    ``ap`` (null where the query was skipped) and ``first`` (0-based rank of the first true match, -1 where
    skipped), in the order of the queries (``pids``, ``camids``)."""
    return {"pid": [int(p) for p in pids], "camid": [int(c) for c in camids],
            "ap": [None if math.isnan(v) else round(float(v), 6) for v in rank.ap], "first": [int(v) for v in rank.first]}


def records_dir(preset: str) -> Path:
    """``results/runs/<preset>`` of the repository (``settings.results_dir()``; the smoke preset's is not
    committed)."""
    return settings.results_dir() / "runs" / (preset or "none")


@dataclass
class RunRecord:
    """One finished run's record (module docstring)."""

    config: TrainConfig
    dataset: str
    split: str
    metrics: dict
    evaluations: list[dict]
    history: list[dict]
    wall_time_s: float
    per_query: dict[str, dict] = field(default_factory=dict)
    diverged: str = ""    # the run stopped on NaN/inf (the error's message): no metrics, no per-query results

    @property
    def hash(self) -> str:
        return config_hash(self.config)

    @property
    def name(self) -> str:
        """The recipe (or loss spec) the run trained."""
        return self.config.label

    def scores(self, variant: str = "sq", metric: str = "mAP") -> tuple[np.ndarray, np.ndarray]:
        """``(keys, values)`` of ``variant`` per query: keys ``(pid, camid)`` rows, values the AP (``metric="mAP"``)
        or the rank-1 hit (1.0 / 0.0, ``"rank1"``), NaN where the query was skipped."""
        if variant not in self.per_query:
            raise KeyError(f"run {self.hash} ({self.name}) has no per-query results for {variant!r}; "
                           f"it has {sorted(self.per_query)}")
        rows = self.per_query[variant]
        keys = np.stack([np.asarray(rows["pid"]), np.asarray(rows["camid"])], axis=1)
        first = np.asarray(rows["first"])
        if metric == "mAP":
            values = np.array(rows["ap"], dtype=float)
        elif metric == "rank1":
            values = np.where(first >= 0, (first == 0).astype(float), np.nan)
        else:
            raise ValueError(f"metric must be 'mAP' or 'rank1', got {metric!r}")
        return keys, values

    def to_dict(self) -> dict:
        """The record as JSON values; ``data_root`` in its portable form (``settings.portable_path``: relative to
        the repository where it lies inside it), so no machine's path is committed and the hash is unchanged."""
        config = {**self.config.to_dict(),
                  "data_root": settings.portable_path(settings.repo_path(self.config.data_root))}
        return {"format": RECORD_FORMAT, "config": config, "config_hash": self.hash,
                "dataset": self.dataset, "split": self.split, "metrics": self.metrics,
                "evaluations": self.evaluations, "history": self.history, "wall_time_s": self.wall_time_s,
                "per_query": self.per_query, "diverged": self.diverged}

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        return cls(config=TrainConfig.from_dict(data["config"]), dataset=data["dataset"], split=data["split"],
                   metrics=data["metrics"], evaluations=data["evaluations"], history=data["history"],
                   wall_time_s=data["wall_time_s"], per_query=data["per_query"], diverged=data["diverged"])


def thin_history(history: list[dict], rows: int = HISTORY_ROWS) -> list[dict]:
    """About ``rows`` evenly spaced rows of ``history`` (the last one always), only ``HISTORY_COLUMNS`` and the
    collapse diagnostics (``snlib.collapse.is_diagnostic``)."""
    if not history:
        return []
    step = max(1, math.ceil(len(history) / rows))
    kept = history[step - 1::step]
    if kept[-1] is not history[-1]:
        kept.append(history[-1])
    return [{**{key: row[key] for key in HISTORY_COLUMNS if key in row},
             **{key: value for key, value in row.items() if is_diagnostic(key)}} for row in kept]


def record_path(config: TrainConfig, root: str | Path | None = None) -> Path:
    """``<root>/<config hash>.json``; root: ``records_dir(config.preset)`` when None."""
    return Path(root or records_dir(config.preset)) / f"{config_hash(config)}.json"


def read_record(config: TrainConfig, root: str | Path | None = None) -> RunRecord | None:
    """The record of ``config``'s run, None when there is none."""
    path = record_path(config, root)
    return load_record(path) if path.is_file() else None


def load_record(path: str | Path) -> RunRecord:
    """The record in the file ``path``."""
    path = Path(path)
    data = json.loads(path.read_text())
    if data.get("format") != RECORD_FORMAT:
        raise ValueError(f"{path} is not an snlib run record (format {data.get('format')!r}, expected "
                         f"{RECORD_FORMAT!r}); move it away and the run is recorded again")
    return RunRecord.from_dict(data)


def write_record(record: RunRecord, root: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``<root>/<config hash>.json``; NaN is written as null."""
    path = record_path(record.config, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_no_nan(record.to_dict()), indent=1, default=str)
    return settings.atomic_write(path, text + "\n")


def _no_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
