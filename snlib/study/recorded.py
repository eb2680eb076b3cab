"""The runs of a study as records (``snlib.records``): the record of a run with its per-query results under each
evaluation variant, read from ``results/runs/<preset>/`` when it is there (a study interrupted or moved to another
machine resumes without retraining). Every record a study reads must be of its protocol version
(``RecordedRuns.protocol_version``), checked before anything trains (:meth:`RecordedRuns.check_records`)."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import engine
from ..evaluation import AP_RULES, evaluate_features, pool_multi_query
from ..presets import PROTOCOL_VERSION
from ..records import (AP_KEYS, RunRecord, check_protocol_version, per_query, read_record, records_dir,
                       thin_history, write_record)
from ..runs import RunFolder, RunResult, run_dir_for


#: Evaluation variant of a record -> (multi-query, re-ranking): the four settings of the paper's Table 1.
VARIANT_SETTINGS = {"sq": (False, False), "mq": (True, False), "rerank": (False, True), "mq-rerank": (True, True)}


#: The variants of a Table-1 row (every setting; each record keeps both AP rules).
TABLE1_VARIANTS = tuple(VARIANT_SETTINGS)


def variant_of(multi_query: bool, rerank: bool) -> str:
    """The record variant of a (multi-query, re-ranking) setting."""
    return next(name for name, setting in VARIANT_SETTINGS.items() if setting == (multi_query, rerank))


def _missing(per_query: dict, variants: Sequence[str], ap_rules: Sequence[str]) -> list[str]:
    """The ``variants`` absent from ``per_query`` or present without the key of one of ``ap_rules``."""
    return [v for v in variants if v not in per_query or any(AP_KEYS[r] not in per_query[v] for r in ap_rules)]


def _record_of(run: RunResult, per_query: dict, version: int, retrained: bool = False) -> RunRecord:
    config = run.config
    return RunRecord(config=config, dataset=config.dataset, split=config.split, metrics=run.metrics,
                     evaluations=run.evaluations, history=thin_history(run.history), wall_time_s=run.wall_time_s,
                     per_query=per_query, protocol_version=version, retrained=retrained)


class RecordedRuns:
    """What :class:`~snlib.study.study.Study` does with records (a mixin: it uses the study's ``preset``,
    ``config``, ``features``, ``evaluate``, ``with_distractors`` and ``compare_with_record``)."""

    def record(self, loss: str = "sn", seed: int = 0, variants: Sequence[str] = ("sq",), progress: bool = True,
               diverged_ok: bool = False, ap_rules: Sequence[str] = ("standard",), keep: Sequence[str] = (),
               **overrides) -> RunRecord:
        """The record (``snlib.records``) of ``config(loss, seed, **overrides)`` holding the per-query results of
        ``variants`` under ``ap_rules``: read from ``results/runs/<preset>/`` when it is there, else trained (or read
        from the run cache), evaluated and written there, with ``keep`` (more variants later readers need: a test
        record keeps every variant under both AP rules, so it never needs its network again). Variants other than
        ``sq`` need the test split.

        A record that lacks what is asked for, whose network is not in the run cache (a fresh clone of a study
        recorded before its tables were), is never changed: the run is retrained into the cache, compared with
        its record (``Study.compare_with_record``), and an unwritten record of the retrained network is returned
        (``retrained`` True). A run that diverges raises ``engine.TrainingDivergedError``; with ``diverged_ok``
        (the selection) it is recorded as diverged instead, and its record is returned (then and on every later
        call). A record of another protocol version than the study's raises
        ``snlib.errors.ProtocolVersionError`` (``snlib.records.check_protocol_version``)."""
        config = self.config(loss, seed, **overrides)
        record = read_record(config, self.records_root)
        check_protocol_version([record] if record is not None else [], self.protocol_version, self.records_root)
        if record is not None and record.diverged:
            if diverged_ok:
                return record
            raise engine.TrainingDivergedError(f"run {record.hash} ({record.name}) diverged: {record.diverged}")
        if record is not None and not _missing(record.per_query, variants, ap_rules):
            return record
        drifted = record is not None and not RunFolder(run_dir_for(config)).finished
        try:
            run = engine.train(config, progress=progress)
        except engine.TrainingDivergedError as error:
            if not diverged_ok:
                raise
            record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics={},
                               evaluations=[], history=[], wall_time_s=float("nan"), diverged=error.reason,
                               protocol_version=self.protocol_version)
            write_record(record, self.records_root)
            return record
        if drifted:
            self.compare_with_record(run)
            fresh = {"sq": run.per_query}
            return _record_of(run, {**fresh, **self._per_query(run, fresh, variants, AP_RULES)},
                              self.protocol_version, retrained=True)
        results = {"sq": run.per_query, **(record.per_query if record else {})}
        wanted = tuple(dict.fromkeys((*variants, *keep)))
        rules = AP_RULES if set(wanted) != {"sq"} else ("standard",)   # a record for the tables: both AP rules
        record = _record_of(run, {**results, **self._per_query(run, results, wanted, rules)}, self.protocol_version)
        write_record(record, self.records_root)
        return record

    def _per_query(self, run: RunResult, known: dict, variants: Sequence[str], ap_rules: Sequence[str]) -> dict:
        """The per-query results of ``variants`` that ``known`` lacks (or holds without one of ``ap_rules``)."""
        return {v: self.variant_per_query(run, v) for v in _missing(known, variants, ap_rules)}

    def check_records(self, runs: Iterable[dict]) -> None:
        """Before anything trains: ``snlib.errors.ProtocolVersionError`` where a record already there of one of
        ``runs`` (each the keyword arguments of ``config``) is of another protocol version than the study's, naming
        every such record at once (what :meth:`record` would meet one at a time, after training the runs before)."""
        found = [read_record(self.config(**run), self.records_root) for run in runs]
        check_protocol_version([r for r in found if r is not None], self.protocol_version, self.records_root)

    @property
    def protocol_version(self) -> int:
        """The protocol version of the study's records: its protocol's, else (a study at the preset's schedule)
        ``snlib.presets.PROTOCOL_VERSION``."""
        return self.protocol.version if self.protocol is not None else PROTOCOL_VERSION

    @property
    def records_root(self) -> Path:
        """Where this study's run records are kept: ``results/runs/<preset>`` (``snlib.records``)."""
        return records_dir(self.preset)

    def variant_per_query(self, run: RunResult, variant: str) -> dict:
        """Per-query results of ``run`` (a test-split run) under ``variant`` (``snlib.records``), under both AP
        rules: ``sq``, ``mq``, ``rerank``, ``mq-rerank`` or ``distractors-<n>`` (the first ``n`` of the study's
        distractors, in :meth:`~snlib.study.study.Study.distractors`' order)."""
        if run.config.split != "test":
            raise ValueError(f"variant {variant!r} needs a run scored on the test split, not {run.config.split!r}")
        if variant.startswith("distractors-"):
            qf, gf, q_pids, g_pids, q_camids, g_camids = self.with_distractors(run, int(variant.split("-", 1)[1]))
            rank, market = (evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids,
                                              metric=run.config.eval_metric, ap=ap) for ap in AP_RULES)
            return per_query(rank, q_pids, q_camids, market)
        if variant not in VARIANT_SETTINGS:
            raise ValueError(f"unknown variant {variant!r}: one of {', '.join(VARIANT_SETTINGS)}, distractors-<n>")
        multi, rerank = VARIANT_SETTINGS[variant]
        feats = self.features(run)
        _, q_pids, q_camids = pool_multi_query(*feats.get("multi_query", feats["query"])) if multi else feats["query"]
        rank, market = (self.evaluate(run, multi_query=multi, rerank=rerank, ap=ap) for ap in AP_RULES)
        return per_query(rank, q_pids, q_camids, market)
