"""A :class:`Study` per (preset, data set): the runs a notebook asks for (through the engine's run cache and the run
records), their test features (kept in the run's folder) and the evaluation variants of the paper's tables.

    study, plan = setup("table1", preset, dataset, data_root, output_dir, overrides)   # snlib.study.plans
    run = study.run("sn", seed=0)                  # trained once, then read from the cache
    study.evaluate(run, multi_query=True, rerank=True).as_dict()
    record = study.record("sn", seed=0, variants=TABLE1_VARIANTS, ap_rules=AP_RULES)   # snlib.study.recorded
    long = study.evaluation_table([record])        # single/multi query x re-ranking x AP rule: a row each

A study is settled before any of its runs: :func:`open_study` fixes the preset, the data and the notebook's
overrides, :func:`snlib.study.protocol.settle` adds the protocol and the selected learning rates, and from then on
the study does not change. :meth:`Study.config` resolves a run's configuration in one written order of precedence,
so notebooks that ask for the same run share it (``snlib.engine`` caches by the hash of the configuration).
``train_fraction`` trains on a fixed, nested subset of the training identities
(:func:`snlib.data.train_share`, applied by ``snlib.engine.run_dataset``).
"""
from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import distributed, engine, settings
from ..data import DataNotFoundError, ReIDDataset, Sample, load_dataset
from ..evaluation import (AP_RULES, RankResult, cuhk03_classic_cmc, evaluate_features, pairwise_distance,
                          pool_multi_query)
from ..models import initial_model, model_checkpoint, read_checkpoint
from ..presets import TrainConfig, get_preset
from ..recipes import run_config
from ..records import RunRecord, compare_with_record, read_record
from ..reporting import RETRAINED_FILE, save_figure, save_table
from ..runs import RunFolder, RunResult, atomic_save, initial_run_dir
from . import views
from .features import file_digests, paths_digest, query_gallery
from .pools import identity_pool
from .recorded import RecordedRuns, variant_of
from .tables import training_curve

#: The four evaluation settings of the paper's Table 1: (query mode, k-reciprocal re-ranking).
TABLE1_SETTINGS = (("single", False), ("multi", False), ("single", True), ("multi", True))


@dataclass(frozen=True)
class Study(RecordedRuns):
    """One preset on one data set, settled: the configuration every run starts from, where results go, the
    protocol (``snlib.study.protocol.Protocol``: budget, seeds, sizes) and each recipe's selected rate."""

    preset: str
    #: the preset with the study's data set, the protocol's fixed fields and the notebook's overrides
    base: TrainConfig
    output_dir: Path
    #: the protocol whose budget every run of a recipe takes (None: the preset's schedule)
    protocol: object = field(default=None, repr=False)
    #: the pilot that chose the budget (``protocol.run_pilot``; None when the protocol has none)
    pilot: pd.DataFrame | None = field(default=None, repr=False)
    #: the learning-rate selection (``protocol.select_rates``; None when not run: no protocol, or a forced ``lr``)
    selection: pd.DataFrame | None = field(default=None, repr=False)
    #: recipe -> its selected learning rate
    rates: dict = field(default_factory=dict, repr=False)
    #: the notebook's own TrainConfig overrides (``open_study``): they win over the budget, recipe and rate
    overrides: dict = field(default_factory=dict, repr=False)
    _model_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def dataset_name(self) -> str:
        return self.base.dataset

    @functools.cached_property
    def data(self) -> ReIDDataset:
        """The data set of the study (the synthetic default is generated on first use)."""
        return load_dataset(self.base.dataset, self.base.data_root, **self.base.dataset_options)

    @property
    def multi_query_source(self) -> str:
        """What the multi-query setting pools: the data set's own multi-query images or the query set."""
        if self.data.multi_query:
            return f"the data set's multi-query images ({len(self.data.multi_query)}, gt_bbox-style)"
        return "the query images themselves (the data set has no separate multi-query set)"

    def describe(self, seeds: Sequence[int] | None = None) -> str:
        """One line naming what the study's numbers come from (preset, data set and its folder, backbone, input,
        epochs)."""
        b = self.base
        if self.protocol is None:
            budget = f"{b.epochs} epochs"
        else:
            budget = f"{self.protocol.iterations} iterations" + (
                f" ({self.protocol.epochs} epochs over the training identities)" if self.protocol.epochs else "")
            if "lr" in self.overrides:   # e.g. papermill -p overrides '{lr: 2e-4}': the selection is not used
                budget += (f", every recipe at lr {self.overrides['lr']:g} (forced by the overrides: the "
                           f"{'fixed' if self.protocol.rates else 'validation-selected'} rates are not used)")
            elif self.protocol.rates:
                budget += ", each recipe at its rate from the literature (fixed: no selection)"
            else:
                budget += ", each recipe at its validation-selected rate"
        text = (f"{self.preset} preset, {b.dataset} at {settings.portable_path(self.data.root)}, {b.model} "
                f"{b.height}x{b.width}, {budget}")
        return text + (f", {len(seeds)} seed{'s' if len(seeds) > 1 else ''}" if seeds is not None else "")

    def with_dataset(self, name: str, root: str | Path, options: dict | None = None) -> "Study":
        """The same study (preset, overrides, output folder) on data set ``name`` at ``root`` with loader
        ``options``, from the preset's configuration (no protocol or selection was run on that data set, so none
        of this study's protocol fields, e.g. the synthetic study's 64x32 and trained head, carry over)."""
        fields = {"dataset": name, "data_root": str(settings.repo_path(root)), "dataset_options": dict(options or {})}
        base = get_preset(self.preset).replace(**{**self.overrides, **fields})
        return Study(preset=self.preset, base=base, output_dir=self.output_dir, overrides=dict(self.overrides))

    # ------------------------------------------------------------------------------------------- runs
    def config(self, loss: str = "sn", seed: int = 0, **overrides) -> TrainConfig:
        """The configuration of a run of ``loss`` (a recipe of ``snlib.recipes``, e.g. ``"ce"``: label smoothing
        and BNNeck, or a plain loss spec such as ``"sn+0.5*ce"``) with ``seed`` and the TrainConfig fields
        ``overrides``, in :func:`snlib.recipes.run_config`'s order: the study's base < the protocol's budget <
        the recipe's fields < its selected rate < the notebook's overrides < ``seed`` and ``overrides`` here."""
        budget = self.protocol.budget() if self.protocol is not None else {}
        return run_config(self.base, loss, budget=budget, lr=self.rates.get(loss), overrides=self.overrides,
                          call={"seed": seed, **overrides})

    def run(self, loss: str = "sn", seed: int = 0, progress: bool = True, **overrides) -> RunResult:
        """Train (or read from the cache) the run ``config(loss, seed, **overrides)``, for what needs its network
        (features, figures). Where the run has a record, the network is compared with it
        (:meth:`compare_with_record`); the record itself is never changed."""
        run = engine.train(self.config(loss, seed, **overrides), progress=progress)
        self.compare_with_record(run)
        return run

    def compare_with_record(self, run: RunResult) -> dict | None:
        """:func:`snlib.records.compare_with_record` of ``run``'s final metrics against its record (None where there
        is none): printed, and kept in ``<output_dir>/retrained_runs.json`` (one entry per run; ``snlib reproduce``
        copies it into the manifest)."""
        record = read_record(run.config, self.records_root)
        if record is None or record.diverged or not run.metrics:
            return None
        seeds = self.protocol.seeds if self.protocol is not None else (run.config.seed,)
        seed_records = [r for s in sorted({*seeds, run.config.seed})
                        if (r := read_record(run.config.replace(seed=s), self.records_root)) is not None]
        check = compare_with_record(run.metrics, record, seed_records)
        print(f"{record.name} seed {run.config.seed} ({record.hash}) against its record: rank-1 "
              f"{check['rank1_diff']:+.2f}, mAP {check['mAP_diff']:+.2f} "
              f"({'inside' if check['inside_seed_spread'] else 'OUTSIDE'} the spread of its {check['seeds']} "
              "recorded seeds)")
        path = self.output_dir / RETRAINED_FILE
        known = json.loads(path.read_text()) if path.is_file() else {}
        settings.atomic_write(path, json.dumps({**known, record.hash: check}, indent=1, sort_keys=True) + "\n")
        return check

    def initial_run(self, loss: str = "sn", seed: int = 0, **overrides) -> RunResult:
        """The run at epoch 0: the preset's model as training starts it (ImageNet weights where the preset is
        pretrained, else the random initialisation of ``seed``), stored as a finished run under
        ``<cache>/epoch0-<config hash>/`` so that :meth:`features` and :meth:`evaluate` work on it."""
        config = self.config(loss, seed, **overrides)
        folder = RunFolder(initial_run_dir(config))
        if not folder.model.is_file():
            folder.write_model(model_checkpoint(initial_model(config)))
        return RunResult(config=config, run_dir=folder.path, history=[], evaluations=[], metrics={},
                         wall_time_s=0.0, from_cache=True, extra={"epoch": 0})

    def named_runs(self, losses: dict[str, str | None]) -> dict[str, RunResult]:
        """``{name: run}`` for ``{name: loss spec}`` (seed 0); a spec of None is the :meth:`initial_run`."""
        return {name: self.initial_run() if loss is None else self.run(loss) for name, loss in losses.items()}

    def each_run(self, variants: Sequence[dict], seeds: Iterable[int] = (0,),
                 progress: bool = True) -> Iterator[tuple[dict, int, RunResult]]:
        """``(variant, seed, run)`` for every variant (dicts of ``config`` keyword arguments) and seed."""
        seeds = list(seeds)
        for variant in variants:
            for seed in seeds:
                yield variant, seed, self.run(seed=seed, progress=progress, **variant)

    def runs(self, variants: Sequence[dict], seeds: Iterable[int] = (0,), progress: bool = True) -> pd.DataFrame:
        """Every variant for every seed from its record (trained when there is none); one row per run with the
        variant's fields, the seed, the final metrics (percent; single query, standard AP), the training wall
        time and ``run`` (the record's hash)."""
        seeds = list(seeds)
        return pd.DataFrame([
            {**variant, "seed": seed, **record.metrics, "wall_time_s": record.wall_time_s, "run": record.hash}
            for variant in variants for seed in seeds
            for record in [self.record(seed=seed, progress=progress, **variant)]])

    def sweep(self, sweeps: dict[str, Sequence], seeds: Iterable[int], fixed: dict) -> pd.DataFrame:
        """:meth:`runs` of ``fixed`` with one field changed at a time (``sweeps``: field -> values), every sweep's
        rows with ``swept`` (its field) one after the other."""
        return pd.concat([self.runs([{**fixed, name: value} for value in values], seeds).assign(swept=name)
                          for name, values in sweeps.items()], ignore_index=True)

    def curves(self, variants: Sequence[dict], seeds: Iterable[int] = (0,), progress: bool = True) -> pd.DataFrame:
        """Train every variant for every seed; one row per (run, epoch) with the variant's fields, the seed
        and :func:`~snlib.study.tables.training_curve`'s columns (mean training loss, test metrics)."""
        frames = [training_curve(result).assign(**variant, seed=seed)
                  for variant, seed, result in self.each_run(variants, seeds, progress)]
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------------------------------- features
    def extract(self, run: RunResult, samples: Sequence[Sample], name: str,
                reuse: Sequence[tuple[Sequence[Sample], torch.Tensor]] = ()) -> tuple[torch.Tensor, np.ndarray,
                                                                                     np.ndarray]:
        """L2-normalised features of ``samples`` under ``run``'s model, kept in the run's folder as
        ``features_<name>.pt`` together with the image paths (a changed list is extracted again).

        ``reuse``: ``(samples, features)`` already extracted; an image whose file is byte-identical to one of
        theirs takes its feature (the test transform is deterministic) instead of another forward pass.
        """
        path = RunFolder(run.run_dir).features_file(name)
        digest = paths_digest(samples)
        if path.is_file():
            stored = read_checkpoint(path)
            if stored["paths_sha256"] == digest:
                return stored["features"], stored["pids"].numpy(), stored["camids"].numpy()
        known = {key: f for done, feats in reuse for key, f in zip(file_digests(done), feats)}
        keys = file_digests(samples) if reuse else list(range(len(samples)))
        missing = [i for i, key in enumerate(keys) if key not in known]
        if missing:
            device = engine.resolve_device(run.config, distributed.DistInfo())
            new, _, _ = engine.test_features(self._model(run, device), [samples[i] for i in missing], run.config,
                                             device, desc=name, training_layout=False)
            known.update(zip((keys[i] for i in missing), new))
        feats = torch.stack([known[key] for key in keys])
        pids = np.array([s.pid for s in samples], dtype=np.int64)
        camids = np.array([s.camid for s in samples], dtype=np.int64)
        atomic_save({"features": feats, "pids": torch.from_numpy(pids), "camids": torch.from_numpy(camids),
                     "paths_sha256": digest}, path)
        return feats, pids, camids

    def _model(self, run: RunResult, device: torch.device):
        """``run``'s model, kept while features of several lists are extracted (one model at a time)."""
        if run.run_dir not in self._model_cache:
            self._model_cache.clear()
            self._model_cache[run.run_dir] = run.load_model(device)
        return self._model_cache[run.run_dir]

    def features(self, run: RunResult) -> dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        """Test features of ``run``'s model for ``query``, ``gallery`` (and ``multi_query`` where the data set
        has it), each ``(features, pids, camids)``; extracted once and kept in the run's folder."""
        splits = {"query": self.data.query, "gallery": self.data.gallery}
        out = {name: self.extract(run, samples, name) for name, samples in splits.items()}
        if self.data.multi_query:  # often copies of query / gallery images (Market-1501's gt_bbox holds the queries)
            reuse = [(samples, out[name][0]) for name, samples in splits.items()]
            out["multi_query"] = self.extract(run, self.data.multi_query, "multi_query", reuse)
        return out

    def pool(self, run: RunResult):
        """The test images with an identity and their features under ``run`` (:func:`~snlib.study.pools.identity_pool`)."""
        return identity_pool(self.features(run), self.data)

    # ------------------------------------------------------------------------------------------- evaluation
    def evaluate(self, run: RunResult, multi_query: bool = False, rerank: bool = False,
                 ap: str = "standard", pool: str = "mean") -> RankResult:
        """Query-vs-gallery evaluation of ``run`` (Market-1501 protocol, Euclidean on L2-normalised features).

        ``multi_query``: the features of each query's (identity, camera) images in ``multi_query`` (or the
        query set itself when the data set has no separate one) are pooled (``pool``: mean as the paper, or
        max) into one query feature. ``rerank``: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
        ``ap``: "standard" (non-interpolated) or "market" (the official trapezoid rule).
        """
        feats = self.features(run)
        qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(feats)
        if multi_query:
            qf, q_pids, q_camids = pool_multi_query(*feats.get("multi_query", feats["query"]), how=pool)
        return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=run.config.eval_metric,
                                 normalize=True, rerank=rerank, ap=ap)

    def evaluation_table(self, records: Iterable[RunRecord], table_settings=TABLE1_SETTINGS,
                         ap_rules: Sequence[str] = AP_RULES) -> pd.DataFrame:
        """Every record under every (query mode, re-ranking) setting and AP rule, computed from its per-query
        results (``RunRecord.variant_metrics``: the same numbers on every machine): one row each with ``loss``,
        ``seed``, ``query`` ("single" / "multi"), ``rerank``, ``ap`` and the metrics in percent."""
        rows = []
        for record in records:
            for query, rerank in table_settings:
                variant = variant_of(query == "multi", rerank)
                for ap in ap_rules:
                    rows.append({"loss": record.name, "seed": record.config.seed, "query": query,
                                 "rerank": rerank, "ap": ap, **record.variant_metrics(variant, ap)})
        return pd.DataFrame(rows)

    def classic_cmc(self, runs: Iterable[RunResult], num_repeats: int = 100,
                    ranks: Sequence[int] = (1, 5, 10, 20)) -> pd.DataFrame:
        """CUHK03 classic protocol (single-gallery-shot CMC, ``num_repeats`` random gallery draws): one row
        per run with ``loss``, ``seed`` and ``rank<k>`` in percent."""
        rows = []
        for run in runs:
            qf, gf, *ids = query_gallery(self.features(run))
            dist = pairwise_distance(qf, gf, run.config.eval_metric)  # features are L2-normalised
            cmc = cuhk03_classic_cmc(dist, *ids, num_repeats=num_repeats, max_rank=max(ranks), seed=run.config.seed)
            rows.append({"loss": run.config.label, "seed": run.config.seed,
                         **{f"rank{k}": 100 * float(cmc[k - 1]) for k in ranks}})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------------------- gallery size
    def distractors(self, count: int | None = None, missing_ok: bool = False) -> list[Sample]:
        """Extra gallery images of no query identity, for the gallery-size experiment (the paper's Figure 4).

        The data set's ``extra_gallery`` when it has one; on Market-1501 the 500k distractor set found beside
        it (``distractors_500k``; the study's runs are unchanged); on the synthetic set, ``count`` new
        pedestrians drawn by the generator (:func:`~snlib.study.views.synthetic_distractors`); where the
        protocol's ``distractor_source`` is ``"train"``, the training images (``views.training_distractors``).
        ``count`` None: all of the data set's extra gallery. :class:`DataNotFoundError` where there is none, or with
        ``missing_ok`` a printed "SKIPPED" line and no distractors.
        """
        source = self.protocol.distractor_source if self.protocol is not None else "own"
        try:
            return views.distractors(self.data, self.base, count, source)
        except DataNotFoundError as err:
            if not missing_ok:
                raise
            print(f"SKIPPED: {err}")
            return []

    def gallery_steps(self, num_steps: int | None = None) -> list[int]:
        """The numbers of distractors the gallery-size curve is scored at (:func:`~snlib.study.views.gallery_steps`
        from the original gallery to all of the protocol's ``num_distractors``); ``[]`` without distractors."""
        total = self.protocol.num_distractors if self.protocol is not None else None
        if not total:
            return []
        return views.gallery_steps(len(self.data.gallery), total, num_steps or self.protocol.gallery_steps)

    def gallery_size_curve(self, records: Iterable[RunRecord], steps: Sequence[int],
                           ap_rules: Sequence[str] = AP_RULES) -> pd.DataFrame:
        """Single-query metrics of each record as the first ``n`` of the study's distractors join the gallery
        (variant ``distractors-<n>``, ``sq`` for n = 0; :meth:`with_distractors`), for each ``n`` in ``steps``,
        from the records' per-query results. One row per (record, n, AP rule): ``loss``, ``seed``,
        ``distractors`` (n), ``gallery_size``, ``ap``, metrics."""
        gallery = len(self.data.gallery)
        return pd.DataFrame([{"loss": record.name, "seed": record.config.seed, "distractors": n,
                              "gallery_size": gallery + n, "ap": ap,
                              **record.variant_metrics(f"distractors-{n}" if n else "sq", ap)}
                             for record in records for n in steps for ap in ap_rules])

    def with_distractors(self, run: RunResult, count: int, seed: int = 0) -> tuple:
        """:func:`query_gallery` of ``run`` with the first ``count`` of the study's distractors in the gallery: all
        of them (:meth:`distractors` of the protocol's ``num_distractors``; ``count`` without a protocol) shuffled
        once with ``seed``, so that every run and every gallery size draws from the same order."""
        total = self.protocol.num_distractors if self.protocol is not None and self.protocol.num_distractors else count
        if count > total:
            raise ValueError(f"{count} distractors asked for, but the study has {total}")
        everything = self.distractors(total)
        order = np.random.default_rng(seed).permutation(len(everything))[:count]
        qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(self.features(run))
        xf, x_pids, x_camids = self.extract(run, everything, "distractors")
        return (qf, torch.cat([gf, xf[torch.from_numpy(order)]]), q_pids, np.concatenate([g_pids, x_pids[order]]),
                q_camids, np.concatenate([g_camids, x_camids[order]]))

    # -------------------------------------------------------------------------------------------- writing
    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        return save_table(df, self.output_dir, name)

    def save_figure(self, fig, name: str) -> Path:
        return save_figure(fig, self.output_dir, name)


def open_study(preset: str | None = "cpu", dataset: str | None = None, data_root: str | Path | None = None,
               output_dir: str | Path | None = None, **overrides) -> Study:
    """The study of a notebook's parameters: ``preset`` (``None``: ``settings.default_preset()``, i.e.
    ``$SNLIB_PRESET`` or ``cpu``) with the data set and root replaced where given.

    ``output_dir`` defaults to ``results/<preset>/<dataset>``; relative paths are read against the
    repository root. ``overrides`` are TrainConfig fields (e.g. ``epochs=4``, ``dataset_options={...}``)
    applied to every run; another data set than the preset's starts from empty ``dataset_options``.
    """
    preset = settings.default_preset(preset)
    base = get_preset(preset)
    changes = dict(overrides)
    if dataset is not None and dataset != base.dataset:
        changes["dataset"] = dataset
        changes.setdefault("dataset_options", {})
    changes["data_root"] = str(settings.repo_path(data_root if data_root is not None else base.data_root))
    base = base.replace(**changes)
    out = settings.repo_path(output_dir) if output_dir else settings.results_dir() / preset / base.dataset
    out.mkdir(parents=True, exist_ok=True)
    return Study(preset=preset, base=base, output_dir=out, overrides=dict(overrides))


def find_datasets(entries: Iterable[Sequence]) -> tuple[list[tuple], list[tuple[str, str, str]]]:
    """Split ``(name, root)`` or ``(name, root, options)`` entries into those whose data is present
    (``(name, root, options)``) and those skipped (``(name, root, reason)``: the loader's first line)."""
    present, skipped = [], []
    for entry in entries:
        name, root, options = (*entry, {})[:3]
        try:
            load_dataset(name, settings.repo_path(root), **options)
        except (DataNotFoundError, FileNotFoundError) as err:
            skipped.append((name, str(root), str(err).splitlines()[0]))
        else:
            present.append((name, str(root), dict(options)))
    return present, skipped
