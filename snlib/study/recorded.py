"""The runs of a study as records (``snlib.records``): the learning rates the protocol selected, the record of a
run with its per-query results under each evaluation variant, read from ``results/runs/<preset>/`` when it is
there (a study interrupted or moved to another machine resumes without retraining)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .. import engine
from ..evaluation import evaluate_features, pool_multi_query
from ..records import RunRecord, per_query, read_record, records_dir, thin_history, write_record
from ..runs import RunResult


class RecordedRuns:
    """What :class:`~snlib.study.study.Study` does with records (a mixin: it uses the study's ``config``,
    ``features``, ``evaluate`` and ``with_distractors``)."""

    def use_protocol(self, protocol) -> None:
        """Select every recipe's learning rate on the validation identities (``snlib.study.protocol``; the
        selection runs train once, then come from their records); from then on every run of a recipe takes its
        selected rate and the protocol's budget unless the call overrides them."""
        from .protocol import select_rates, selected_lr
        self.protocol, self.selection = protocol, select_rates(self, protocol, progress=False)
        self.settings = {r: {"lr": selected_lr(self.selection, r), **protocol.budget()} for r in protocol.recipes}

    def record(self, loss: str = "sn", seed: int = 0, variants: Sequence[str] = ("sq",), progress: bool = True,
               diverged_ok: bool = False, **overrides) -> RunRecord:
        """The record (``snlib.records``) of ``config(loss, seed, **overrides)`` holding the per-query results of
        ``variants``: read from ``results/runs/<preset>/`` when it is there, else trained (or read from the run
        cache), evaluated and written there. Variants other than ``sq`` need the test split. A run that diverges
        raises ``engine.TrainingDivergedError``; with ``diverged_ok`` (the selection) it is recorded as diverged
        instead, and its record is returned (then and on every later call)."""
        config = self.config(loss, seed, **overrides)
        record = read_record(config, self.records_root)
        if record is not None and record.diverged:
            if diverged_ok:
                return record
            raise engine.TrainingDivergedError(f"run {record.hash} ({record.name}) diverged: {record.diverged}")
        if record is not None and set(variants) <= set(record.per_query):
            return record
        try:
            run = engine.train(config, progress=progress)
        except engine.TrainingDivergedError as error:
            if not diverged_ok:
                raise
            record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics={},
                               evaluations=[], history=[], wall_time_s=float("nan"), diverged=error.reason)
            write_record(record, self.records_root)
            return record
        results = {"sq": run.per_query, **(record.per_query if record else {})}
        for variant in variants:
            if variant not in results:
                results[variant] = self.variant_per_query(run, variant)
        record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics=run.metrics,
                           evaluations=run.evaluations, history=thin_history(run.history),
                           wall_time_s=run.wall_time_s, per_query=results)
        write_record(record, self.records_root)
        return record

    @property
    def records_root(self) -> Path:
        """Where this study's run records are kept: ``results/runs/<preset>`` (``snlib.records``)."""
        return records_dir(self.preset)

    def variant_per_query(self, run: RunResult, variant: str) -> dict:
        """Per-query results of ``run`` (a test-split run) under ``variant``: ``mq``, ``rerank`` or
        ``distractors-<n>`` (``snlib.records``)."""
        if run.config.split != "test":
            raise ValueError(f"variant {variant!r} needs a run scored on the test split, not {run.config.split!r}")
        if variant == "mq":  # the pooled queries: one per (identity, camera), in pool_multi_query's order
            feats = self.features(run)
            _, q_pids, q_camids = pool_multi_query(*feats.get("multi_query", feats["query"]))
            return per_query(self.evaluate(run, multi_query=True), q_pids, q_camids)
        if variant == "rerank":
            rank = self.evaluate(run, rerank=True)
            _, q_pids, q_camids = self.features(run)["query"]
            return per_query(rank, q_pids, q_camids)
        if variant.startswith("distractors-"):
            count = int(variant.split("-", 1)[1])
            qf, gf, q_pids, g_pids, q_camids, g_camids = self.with_distractors(run, count)
            rank = evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=run.config.eval_metric)
            return per_query(rank, q_pids, q_camids)
        raise ValueError(f"unknown variant {variant!r}: one of sq, mq, rerank, distractors-<n>")
