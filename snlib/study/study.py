"""A :class:`Study` per (preset, data set): the runs a notebook asks for (through the engine's run cache), their
test features (kept in the run's folder) and the evaluation variants of the paper's tables.

    study = open_study(preset, dataset, data_root, output_dir)
    run = study.run("sn", seed=0)                  # trained once, then read from the cache
    study.evaluate(run, multi_query=True, rerank=True).as_dict()
    long = study.evaluation_table([run])           # single/multi query x re-ranking x AP rule: a row each

Every run's configuration is the preset's with the overrides named in the call, so notebooks that ask for the
same run share it (``snlib.engine`` caches by the hash of the configuration). ``train_fraction`` trains on a
fixed, nested subset of the training identities (:func:`~snlib.study.views.train_subset_root`).
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import distributed, engine, settings
from ..data import DataNotFoundError, ReIDDataset, Sample, load_dataset
from ..evaluation import RankResult, cuhk03_classic_cmc, evaluate_features, pairwise_distance, pool_multi_query
from ..models import initial_model, model_checkpoint, read_checkpoint
from ..presets import TrainConfig, get_preset
from ..recipes import RECIPES, apply_recipe
from ..reporting import save_figure, save_table
from ..runs import RunFolder, RunResult, atomic_save, initial_run_dir
from . import views
from .recorded import RecordedRuns

#: The four evaluation settings of the paper's Table 1: (query mode, k-reciprocal re-ranking).
TABLE1_SETTINGS = (("single", False), ("multi", False), ("single", True), ("multi", True))

#: AP conventions (snlib.evaluation): "standard" (non-interpolated, torchreid / fast-reid) and "market"
#: (the official Market-1501 trapezoid rule, most likely the paper's).
AP_RULES = ("standard", "market")


def query_gallery(features: dict) -> tuple:
    """``(qf, gf, q_pids, g_pids, q_camids, g_camids)`` of a :meth:`Study.features` dict, in the order
    :func:`snlib.evaluation.evaluate_features` takes them."""
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = features["query"], features["gallery"]
    return qf, gf, q_pids, g_pids, q_camids, g_camids


@dataclass
class Study(RecordedRuns):
    """One preset on one data set: the base configuration, where results go, and the runs asked for."""

    preset: str
    base: TrainConfig
    output_dir: Path
    #: recipe -> TrainConfig fields every run of it takes (``use_protocol``: the selected rate and the budget)
    settings: dict = field(default_factory=dict, repr=False)
    protocol: object = field(default=None, repr=False)
    selection: pd.DataFrame | None = field(default=None, repr=False)
    #: the notebook's own TrainConfig overrides (``open_study``): they win over the recipe's ``settings``
    overrides: dict = field(default_factory=dict, repr=False)
    _model_cache: dict = field(default_factory=dict, init=False, repr=False)

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
        elif "lr" in self.overrides:   # e.g. papermill -p overrides '{lr: 2e-4}': the selection is not used
            budget = (f"{self.protocol.iterations} iterations, every recipe at lr {self.overrides['lr']:g} (forced by "
                      "the overrides: the validation-selected rates are not used)")
        else:
            budget = f"{self.protocol.iterations} iterations, each recipe at its validation-selected rate"
        text = (f"{self.preset} preset, {b.dataset} at {settings.portable_path(self.data.root)}, {b.model} "
                f"{b.height}x{b.width}, {budget}")
        return text + (f", {len(seeds)} seed{'s' if len(seeds) > 1 else ''}" if seeds is not None else "")

    def with_dataset(self, name: str, root: str | Path, options: dict | None = None) -> "Study":
        """The same study (preset, overrides, output folder) on data set ``name`` at ``root`` with loader
        ``options``."""
        base = self.base.replace(dataset=name, data_root=str(settings.repo_path(root)),
                                 dataset_options=dict(options or {}))
        return Study(preset=self.preset, base=base, output_dir=self.output_dir, overrides=dict(self.overrides))

    # ------------------------------------------------------------------------------------------- runs
    def config(self, loss: str = "sn", seed: int = 0, **overrides) -> TrainConfig:
        """The preset's configuration with ``loss``, ``seed``, the study's ``settings`` of the recipe, then the
        study's own ``overrides``, then any other TrainConfig field given here replaced. ``loss`` is a recipe of
        ``snlib.recipes`` (its loss and fields, e.g. ``"ce"``: label smoothing and BNNeck) or a plain loss spec
        (``"sn+0.5*ce"``)."""
        config = self.base.replace(seed=seed, **{**self.settings.get(loss, {}), **self.overrides, **overrides})
        return apply_recipe(config, loss) if loss in RECIPES else config.replace(loss=loss)

    def run(self, loss: str = "sn", seed: int = 0, progress: bool = True, **overrides) -> RunResult:
        """Train (or read from the cache) the run ``config(loss, seed, **overrides)``."""
        return engine.train(self.config(loss, seed, **overrides), progress=progress)

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
        from .tables import training_curve
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
        paths = [s.path for s in samples]
        digest = hashlib.sha256("\n".join(paths).encode()).hexdigest()
        if path.is_file():
            stored = read_checkpoint(path)
            if stored["paths_sha256"] == digest:
                return stored["features"], stored["pids"].numpy(), stored["camids"].numpy()
        known = {key: f for done, feats in reuse for key, f in zip(_file_digests(done), feats)}
        keys = _file_digests(samples) if reuse else list(range(len(samples)))
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
        from .pools import identity_pool
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

    def evaluation_table(self, runs: Iterable[RunResult], settings=TABLE1_SETTINGS,
                         ap_rules: Sequence[str] = AP_RULES) -> pd.DataFrame:
        """Every run under every (query mode, re-ranking) setting and AP rule: one row each with ``loss``,
        ``seed``, ``query`` ("single" / "multi"), ``rerank``, ``ap`` and the metrics in percent."""
        rows = []
        for run in runs:
            for query, rerank in settings:
                for ap in ap_rules:
                    result = self.evaluate(run, multi_query=query == "multi", rerank=rerank, ap=ap)
                    rows.append({"loss": run.config.label, "seed": run.config.seed, "query": query,
                                 "rerank": rerank, "ap": ap, **result.as_dict()})
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

    def gallery_size_curve(self, runs: Iterable[RunResult], distractors: Sequence[Sample],
                           steps: Sequence[int], ap_rules: Sequence[str] = AP_RULES, seed: int = 0) -> pd.DataFrame:
        """Single-query metrics of each run as the first ``n`` of ``distractors`` (shuffled once with ``seed``,
        so every run and every step draws from the same order) join the gallery, for each ``n`` in ``steps``.

        One row per (run, n, AP rule): ``loss``, ``seed``, ``distractors`` (n), ``gallery_size``, ``ap``, metrics.
        """
        if max(steps) > len(distractors):
            raise ValueError(f"steps go up to {max(steps)} distractors but only {len(distractors)} were given")
        rows = []
        for run in runs:
            qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(self.features(run))
            xf, x_pids, x_camids = self._shuffled_distractors(run, distractors, seed)
            for n in steps:
                gallery = (torch.cat([gf, xf[:n]]), np.concatenate([g_pids, x_pids[:n]]),
                           np.concatenate([g_camids, x_camids[:n]]))
                for ap in ap_rules:
                    result = evaluate_features(qf, gallery[0], q_pids, gallery[1], q_camids, gallery[2],
                                               metric=run.config.eval_metric, normalize=True, ap=ap)
                    rows.append({"loss": run.config.label, "seed": run.config.seed, "distractors": n,
                                 "gallery_size": len(gallery[1]), "ap": ap, **result.as_dict()})
        return pd.DataFrame(rows)

    def _shuffled_distractors(self, run: RunResult, distractors: Sequence[Sample], seed: int = 0):
        """``(features, pids, camids)`` of ``distractors`` under ``run``, shuffled once with ``seed``."""
        order = np.random.default_rng(seed).permutation(len(distractors))
        if not distractors:
            _, gf, _, g_pids, _, g_camids = query_gallery(self.features(run))
            return gf[:0], g_pids[:0], g_camids[:0]
        xf, x_pids, x_camids = self.extract(run, distractors, "distractors")
        return xf[torch.from_numpy(order)], x_pids[order], x_camids[order]

    def with_distractors(self, run: RunResult, count: int) -> tuple:
        """:func:`query_gallery` of ``run`` with the study's ``count`` distractors (:meth:`distractors`) in the
        gallery."""
        qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(self.features(run))
        xf, x_pids, x_camids = self._shuffled_distractors(run, self.distractors(count))
        return (qf, torch.cat([gf, xf]), q_pids, np.concatenate([g_pids, x_pids]), q_camids,
                np.concatenate([g_camids, x_camids]))

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


def _file_digests(samples: Sequence[Sample]) -> list[str]:
    """sha1 of each sample's file (identical bytes, identical image)."""
    return [hashlib.sha1(Path(s.path).read_bytes()).hexdigest() for s in samples]
