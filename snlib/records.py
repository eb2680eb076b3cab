"""Run records: what a finished run leaves that travels (committed under ``results/runs/``).

A record is a small JSON file, ``results/runs/<preset>/<config hash>.json`` (tens of KB, no weights): the configuration,
the data set and split it was scored on, a thinned training history, the evaluations during training, the final
metrics (none where the run diverged: ``diverged`` holds why) and, per evaluation variant, the result of every
query (``pid``, ``camid``, ``ap``, ``first``: the 0-based rank of its first true match, -1 where the query was
skipped; ``inp``; ``ap_market``: the AP under the official Market-1501 rule, where the tables need it). Variants:
``sq`` (single query, what the run was scored on), and on the test split ``mq`` (multi-query), ``rerank``
(k-reciprocal re-ranking), ``mq-rerank`` (both) and ``distractors-<n>`` (single query against the gallery plus
the first ``n`` of the study's distractors); ``protocol_version``, the version of the study protocol it was made
under (``snlib.presets.PROTOCOL_VERSION``; 1 in a record without it), and ``provenance``, the code, packages and
machine that wrote it (``snlib.provenance``; absent from records written before it). Paired statistics
(``snlib.statistics``) compare two runs query by query from their records, and every table of a study is computed
from them (:func:`variant_metrics`); a study reads finished runs from here, so an interrupted study, or one moved
to another machine, resumes without retraining and rebuilds its tables exactly, and refuses records of another
protocol version (:func:`check_protocol_version`).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import settings
from .collapse import is_diagnostic
from .errors import DamagedRecordError, ProtocolVersionError
from .presets import PROTOCOL_VERSION, TrainConfig, config_hash
from .provenance import provenance

#: The ``format`` of a record file.
#: 2: evaluations no longer shift the training generators; the ``diverged`` field.
RECORD_FORMAT = "snlib-record-2"
#: Rows of the training history a record keeps (evenly spaced, the last one included).
HISTORY_ROWS = 50
#: History columns a record keeps (what the curves plot), with the collapse diagnostics (``snlib.collapse``:
#: ``feature_norm``, ``pair_dist``, ``hard_gap``, a triplet term's ``<term>/hardest_pos_dist``,
#: ``<term>/hardest_neg_dist``, ``<term>/active``; records written before them lack them).
HISTORY_COLUMNS = ("iteration", "epoch", "lr", "loss")
#: The protocol version of a record without the field: every record written before versions.
FIRST_PROTOCOL_VERSION = 1


#: The per-query key of each AP rule (``snlib.evaluation.AP_RULES``) in a record's variant.
AP_KEYS = {"standard": "ap", "market": "ap_market"}


def _rounded(values) -> list:
    return [None if math.isnan(v) else round(float(v), 6) for v in values]


def per_query(rank, pids, camids, market=None) -> dict[str, list]:
    """A rank result (``snlib.evaluation.RankResult``) per query, as a record stores it: ``pid``, ``camid``,
    ``ap`` (null where the query was skipped), ``first`` (0-based rank of the first true match, -1 where
    skipped) and ``inp``, in the order of the queries (``pids``, ``camids``); with ``market`` (the same ranking
    scored under the Market-1501 AP rule) also ``ap_market``. Values are rounded to 6 decimals."""
    rows = {"pid": [int(p) for p in pids], "camid": [int(c) for c in camids], "ap": _rounded(rank.ap),
            "first": [int(v) for v in rank.first], "inp": _rounded(rank.inp)}
    if market is not None:
        rows[AP_KEYS["market"]] = _rounded(market.ap)
    return rows


def variant_metrics(rows: dict, ap: str = "standard", ranks=(1, 5, 10)) -> dict[str, float]:
    """The metrics of one variant's per-query results (percent), as ``RankResult.as_dict`` gives them for the same
    ranking: ``rank<k>`` = share of the evaluated queries (``first`` >= 0) whose first true match is within the
    top k, ``mAP`` = mean AP (``ap``, or ``ap_market`` for ``ap="market"``), ``mINP`` = mean INP, over the
    evaluated queries."""
    key = AP_KEYS[ap]
    if key not in rows or "inp" not in rows:
        raise KeyError(f"these per-query results hold {sorted(rows)}: no {key!r}/'inp' (a record of an older run)")
    first = np.asarray(rows["first"])
    valid = first >= 0
    metrics = {f"rank{k}": 100 * float(np.mean(first[valid] < k)) for k in ranks}
    metrics["mAP"] = 100 * float(np.nanmean(np.array(rows[key], dtype=float)))
    metrics["mINP"] = 100 * float(np.nanmean(np.array(rows["inp"], dtype=float)))
    return metrics


def records_dir(preset: str) -> Path:
    """``<records root>/<preset>``: ``results/runs/<preset>`` of the repository unless ``$SNLIB_RECORDS`` (``snlib
    reproduce --records-root``) names another root (``settings.records_root``; the smoke preset's is not
    committed)."""
    return settings.records_root() / (preset or "none")


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
    protocol_version: int = PROTOCOL_VERSION   # of the study protocol the run was made under
    #: ``snlib.provenance.provenance()`` of the process that wrote the record; None in a record written before it,
    #: or not yet written (``write_record`` fills it in)
    provenance: dict | None = None
    #: not read from its file: the run's network retrained on this machine, whose record lacked what was asked for
    #: (never written; ``snlib.study.recorded``)
    retrained: bool = field(default=False, compare=False)

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

    def variant_metrics(self, variant: str = "sq", ap: str = "standard") -> dict[str, float]:
        """:func:`variant_metrics` of ``variant``'s per-query results."""
        if variant not in self.per_query:
            raise KeyError(f"run {self.hash} ({self.name}) has no per-query results for {variant!r}; "
                           f"it has {sorted(self.per_query)}")
        return variant_metrics(self.per_query[variant], ap)

    def to_dict(self) -> dict:
        """The record as JSON values; ``data_root`` in its portable form (``settings.portable_path``: relative to
        the repository where it lies inside it), so no machine's path is committed and the hash is unchanged."""
        config = {**self.config.to_dict(),
                  "data_root": settings.portable_path(settings.repo_path(self.config.data_root))}
        return {"format": RECORD_FORMAT, "config": config, "config_hash": self.hash,
                "dataset": self.dataset, "split": self.split, "metrics": self.metrics,
                "evaluations": self.evaluations, "history": self.history, "wall_time_s": self.wall_time_s,
                "per_query": self.per_query, "diverged": self.diverged, "protocol_version": self.protocol_version,
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, data: dict) -> "RunRecord":
        return cls(config=TrainConfig.from_dict(data["config"]), dataset=data["dataset"], split=data["split"],
                   metrics=data["metrics"], evaluations=data["evaluations"], history=data["history"],
                   wall_time_s=data["wall_time_s"], per_query=data["per_query"], diverged=data["diverged"],
                   protocol_version=data.get("protocol_version", FIRST_PROTOCOL_VERSION),
                   provenance=data.get("provenance"))


def compare_with_record(metrics: dict, record: RunRecord, seed_records: list[RunRecord]) -> dict:
    """How far a retrained network (``metrics``, percent) lies from its ``record``: the difference in rank-1 and mAP
    (retrained - recorded), the spread of the recipe's recorded seeds (``seed_records``: the same configuration
    with other seeds, ``record`` included: max - min) and whether the retrained value lies inside the range of
    those seeds' values (``inside``). Training is deterministic on one machine, not across machines (floating-point
    order in the CPU kernels), so a network retrained elsewhere drifts: this says by how much."""
    out = {"run": record.hash, "recipe": record.name, "seed": record.config.seed}
    inside = True
    for metric in ("rank1", "mAP"):
        values = [r.metrics[metric] for r in seed_records if r.metrics]
        low, high = min(values), max(values)
        out.update({f"{metric}_record": round(record.metrics[metric], 2), f"{metric}_retrained": round(metrics[metric], 2),
                    f"{metric}_diff": round(metrics[metric] - record.metrics[metric], 2),
                    f"{metric}_seed_spread": round(high - low, 2), "seeds": len(values)})
        inside &= low <= metrics[metric] <= high
    out["inside_seed_spread"] = bool(inside)
    return out


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
    """The record in the file ``path``; :class:`~snlib.errors.DamagedRecordError` naming the file and the way out
    when it cannot be read, is not a record, is of another format, or holds another run than its name says."""
    path = Path(path)
    shown = settings.portable_path(path)
    way_out = (f"restore it from git (git checkout -- {shown}) or delete it and run again: the run is then "
               "retrained and recorded anew")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DamagedRecordError(f"run record {shown} cannot be read ({type(err).__name__}: {err}); "
                                 f"{way_out}") from err
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DamagedRecordError(f"{shown} is not an snlib run record of format {RECORD_FORMAT!r} (found "
                                 f"{found!r}); {way_out}")
    try:
        record = RunRecord.from_dict(data)
    except (KeyError, TypeError, ValueError) as err:
        raise DamagedRecordError(f"run record {shown} is incomplete ({type(err).__name__}: {err}); "
                                 f"{way_out}") from err
    if data.get("config_hash") != record.hash or path.stem != record.hash:
        raise DamagedRecordError(f"run record {shown} holds run {record.hash}, not {path.stem} (a copied or "
                                 f"edited file); {way_out}")
    return record


def write_record(record: RunRecord, root: str | Path | None = None) -> Path:
    """Write ``record`` atomically to ``<root>/<config hash>.json``, one line per top-level field (the per-query
    lists compact: a record of every variant of a test run stays a few hundred KB); NaN is written as null. A
    record without ``provenance`` (one just made) gets this process's (``snlib.provenance.provenance``), in the file
    and on ``record``. A record retrained from another record (``retrained``) is never written."""
    if record.retrained:
        raise ValueError(f"run {record.hash} is a retrained network, not its record: records are never overwritten")
    if record.provenance is None:
        record.provenance = provenance()
    path = record_path(record.config, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = _no_nan(record.to_dict())
    text = ",\n".join(f" {json.dumps(key)}: {json.dumps(value, default=str, separators=(',', ':'))}"
                      for key, value in fields.items())
    return settings.atomic_write(path, "{\n" + text + "\n}\n")


def check_protocol_version(records: list[RunRecord], version: int, root: str | Path | None = None) -> None:
    """Nothing when every one of ``records`` (what a study gathers, files under ``root``) was made under protocol
    ``version`` (the study's); else :class:`~snlib.errors.ProtocolVersionError` naming the others (file, recipe,
    seed, version, commit where recorded), the versions found, and the two ways out: rerun the study under
    ``version``, or check out the commit that made them. A study's tables never mix protocol versions."""
    others = [r for r in records if r.protocol_version != version]
    if not others:
        return
    found = Counter(r.protocol_version for r in records)
    shown = "; ".join(
        f"{settings.portable_path(record_path(r.config, root))} ({r.name}, seed {r.config.seed}): version "
        f"{r.protocol_version}" + (f", commit {r.provenance['commit']}" if (r.provenance or {}).get("commit") else "")
        for r in others[:5]) + (f"; and {len(others) - 5} more" if len(others) > 5 else "")
    raise ProtocolVersionError(
        f"this study runs protocol version {version}, but {len(others)} of the run records it reads were made under "
        f"another (versions found: {', '.join(f'{v} in {n} record(s)' for v, n in sorted(found.items()))}): "
        f"{shown}. A study never mixes protocol versions in its tables: rerun the study under version {version} "
        f"(move those records out of the records folder, or give `snlib reproduce --records-root` an empty one: "
        f"their runs are trained anew), or check out the commit that made them to rebuild their tables (`snlib runs "
        f"<hash>` shows a record's commit; a record without provenance predates protocol versions and is of version "
        f"{FIRST_PROTOCOL_VERSION})")


def _no_nan(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value
