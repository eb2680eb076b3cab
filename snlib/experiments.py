"""What the notebooks share: a :class:`Study` per (preset, data set), runs through the engine's run cache,
the evaluation variants of the paper's tables, and the writing of tables and figures.

A notebook opens a study from its parameters cell and asks for runs by loss and seed::

    study = open_study(preset, dataset, data_root, output_dir)
    run = study.run("sn", seed=0)                  # trained once, then read from the cache
    study.evaluate(run, multi_query=True, rerank=True).as_dict()
    long = study.evaluation_table([run])           # single/multi query x re-ranking x AP rule: a row each
    study.save_table(paper_layout(long), "table1") # output_dir/table1.csv + .md

Every run's configuration is the preset's with the overrides named in the call, so notebooks that ask for the
same run share it (``snlib.engine`` caches by the hash of the configuration). ``train_fraction`` trains on a
fixed, nested subset of the training identities (:func:`train_subset_root`); ``Study.distractors`` gives extra
gallery images for the gallery-size experiment (the data set's own, e.g. Market-1501's 500k, or synthetic ones).
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import distributed, engine, settings
from .data import DataNotFoundError, ReIDDataset, Sample, load_dataset
from .data.synthetic import SyntheticConfig
from .evaluation import RankResult, cuhk03_classic_cmc, evaluate_features, pairwise_distance, pool_multi_query
from .models import read_checkpoint
from .paper import published
from .presets import TrainConfig, get_preset
from .reporting import save_figure, save_table

REPO = Path(__file__).resolve().parents[1]

#: Human-readable names of the loss specs the notebooks compare.
LOSS_LABELS = {
    "sn": "SN loss (released squeeze)",
    "sn-paper": "SN loss (paper squeeze)",
    "sn-neighbors": "SN loss (neighbours squeeze)",
    "sep": "separation term only",
    "sn+ce": "SN + softmax",
    "triplet": "batch-hard triplet (TriNet)",
    "triplet+ce": "triplet + softmax",
    "contrastive": "contrastive (verification)",
    "ce": "softmax (identification)",
}

#: Which published Table 1 row a reproduced loss stands beside (``family`` column of ``published("table1")``).
PAPER_FAMILY = {"sn": "sn", "triplet": "triplet"}

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")

#: The four evaluation settings of the paper's Table 1: (query mode, k-reciprocal re-ranking).
TABLE1_SETTINGS = (("single", False), ("multi", False), ("single", True), ("multi", True))

#: AP conventions (snlib.evaluation): "standard" (non-interpolated, torchreid / fast-reid) and "market"
#: (the official Market-1501 trapezoid rule, most likely the paper's).
AP_RULES = ("standard", "market")

#: Where train-subset views of data sets are built (ignored by git, as every generated data set).
SUBSET_DIR = REPO / "data" / "subsets"


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one is read against the repository root (notebooks run in notebooks/)."""
    return settings.repo_path(path)


@dataclass
class Study:
    """One preset on one data set: the base configuration, where results go, and the runs asked for."""

    preset: str
    base: TrainConfig
    output_dir: Path
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
        text = (f"{self.preset} preset, {b.dataset} at {settings.portable_path(self.data.root)}, {b.model} "
                f"{b.height}x{b.width}, {b.epochs} epochs")
        return text + (f", {len(seeds)} seed{'s' if len(seeds) > 1 else ''}" if seeds is not None else "")

    # ------------------------------------------------------------------------------------------- runs
    def config(self, loss: str = "sn", seed: int = 0, train_fraction: float = 1.0, **overrides) -> TrainConfig:
        """The preset's configuration with ``loss``, ``seed`` and any other TrainConfig field replaced;
        ``train_fraction`` < 1 trains on that fraction of the training identities (:func:`train_subset_root`)."""
        if train_fraction != 1.0:
            overrides["data_root"] = str(train_subset_root(self.data, train_fraction))
        return self.base.replace(loss=loss, seed=seed, **overrides)

    def run(self, loss: str = "sn", seed: int = 0, progress: bool = True, **overrides) -> engine.RunResult:
        """Train (or read from the cache) the run ``config(loss, seed, **overrides)``."""
        return engine.train(self.config(loss, seed, **overrides), progress=progress)

    def each_run(self, variants: Sequence[dict], seeds: Iterable[int] = (0,),
                 progress: bool = True) -> Iterator[tuple[dict, int, engine.RunResult]]:
        """``(variant, seed, run)`` for every variant (dicts of ``config`` keyword arguments) and seed."""
        seeds = list(seeds)
        for variant in variants:
            for seed in seeds:
                yield variant, seed, self.run(seed=seed, progress=progress, **variant)

    def runs(self, variants: Sequence[dict], seeds: Iterable[int] = (0,), progress: bool = True) -> pd.DataFrame:
        """Train every variant for every seed; one row per run with the variant's fields, the seed, the final
        test metrics (percent; single query, standard AP) and the training wall time."""
        return pd.DataFrame([
            {**variant, "seed": seed, **result.metrics, "wall_time_s": result.wall_time_s, "run": result.run_dir.name}
            for variant, seed, result in self.each_run(variants, seeds, progress)])

    def curves(self, variants: Sequence[dict], seeds: Iterable[int] = (0,), progress: bool = True) -> pd.DataFrame:
        """Train every variant for every seed; one row per (run, epoch) with the variant's fields, the seed
        and :func:`training_curve`'s columns (mean training loss, test metrics where evaluated)."""
        frames = [training_curve(result).assign(**variant, seed=seed)
                  for variant, seed, result in self.each_run(variants, seeds, progress)]
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------------------------------- features
    def extract(self, run: engine.RunResult, samples: Sequence[Sample], name: str,
                reuse: Sequence[tuple[Sequence[Sample], torch.Tensor]] = ()) -> tuple[torch.Tensor, np.ndarray,
                                                                                     np.ndarray]:
        """L2-normalised features of ``samples`` under ``run``'s model, kept in the run's folder as
        ``features_<name>.pt`` together with the image paths (a changed list is extracted again).

        ``reuse``: ``(samples, features)`` already extracted; an image whose file is byte-identical to one of
        theirs takes its feature (the test transform is deterministic) instead of another forward pass.
        """
        path = run.run_dir / f"features_{name}.pt"
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
            loader = engine.eval_loader([samples[i] for i in missing], run.config, device)
            new, _, _ = engine.extract_features(self._model(run, device), loader, device, flip=run.config.eval_flip,
                                                desc=name)
            known.update(zip((keys[i] for i in missing), new))
        feats = torch.stack([known[key] for key in keys])
        pids = np.array([s.pid for s in samples], dtype=np.int64)
        camids = np.array([s.camid for s in samples], dtype=np.int64)
        engine.atomic_save({"features": feats, "pids": torch.from_numpy(pids), "camids": torch.from_numpy(camids),
                            "paths_sha256": digest}, path)
        return feats, pids, camids

    def _model(self, run: engine.RunResult, device: torch.device):
        """``run``'s model, kept while features of several lists are extracted (one model at a time)."""
        if run.run_dir not in self._model_cache:
            self._model_cache.clear()
            self._model_cache[run.run_dir] = run.load_model(device)
        return self._model_cache[run.run_dir]

    def features(self, run: engine.RunResult) -> dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        """Test features of ``run``'s model for ``query``, ``gallery`` (and ``multi_query`` where the data set
        has it), each ``(features, pids, camids)``; extracted once and kept in the run's folder."""
        splits = {"query": self.data.query, "gallery": self.data.gallery}
        out = {name: self.extract(run, samples, name) for name, samples in splits.items()}
        if self.data.multi_query:  # often copies of query / gallery images (Market-1501's gt_bbox holds the queries)
            reuse = [(samples, out[name][0]) for name, samples in splits.items()]
            out["multi_query"] = self.extract(run, self.data.multi_query, "multi_query", reuse)
        return out

    # ------------------------------------------------------------------------------------------- evaluation
    def _queries(self, feats: dict, multi_query: bool, pool: str):
        if not multi_query:
            return feats["query"]
        return pool_multi_query(*feats.get("multi_query", feats["query"]), how=pool)

    def evaluate(self, run: engine.RunResult, multi_query: bool = False, rerank: bool = False,
                 ap: str = "standard", pool: str = "mean") -> RankResult:
        """Query-vs-gallery evaluation of ``run`` (Market-1501 protocol, Euclidean on L2-normalised features).

        ``multi_query``: the features of each query's (identity, camera) images in ``multi_query`` (or the
        query set itself when the data set has no separate one) are pooled (``pool``: mean as the paper, or
        max) into one query feature. ``rerank``: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
        ``ap``: "standard" (non-interpolated) or "market" (the official trapezoid rule).
        """
        feats = self.features(run)
        qf, q_pids, q_camids = self._queries(feats, multi_query, pool)
        gf, g_pids, g_camids = feats["gallery"]
        return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=run.config.eval_metric,
                                 normalize=True, rerank=rerank, ap=ap)

    def evaluation_table(self, runs: Iterable[engine.RunResult], settings=TABLE1_SETTINGS,
                         ap_rules: Sequence[str] = AP_RULES) -> pd.DataFrame:
        """Every run under every (query mode, re-ranking) setting and AP rule: one row each with ``loss``,
        ``seed``, ``query`` ("single" / "multi"), ``rerank``, ``ap`` and the metrics in percent."""
        rows = []
        for run in runs:
            for query, rerank in settings:
                for ap in ap_rules:
                    result = self.evaluate(run, multi_query=query == "multi", rerank=rerank, ap=ap)
                    rows.append({"loss": run.config.loss, "seed": run.config.seed, "query": query,
                                 "rerank": rerank, "ap": ap, **result.as_dict()})
        return pd.DataFrame(rows)

    def classic_cmc(self, runs: Iterable[engine.RunResult], num_repeats: int = 100,
                    ranks: Sequence[int] = (1, 5, 10, 20)) -> pd.DataFrame:
        """CUHK03 classic protocol (single-gallery-shot CMC, ``num_repeats`` random gallery draws): one row
        per run with ``loss``, ``seed`` and ``rank<k>`` in percent."""
        rows = []
        for run in runs:
            feats = self.features(run)
            (qf, q_pids, q_camids), (gf, g_pids, g_camids) = feats["query"], feats["gallery"]
            dist = pairwise_distance(qf, gf, run.config.eval_metric)  # features are L2-normalised
            cmc = cuhk03_classic_cmc(dist, q_pids, g_pids, q_camids, g_camids, num_repeats=num_repeats,
                                     max_rank=max(ranks), seed=run.config.seed)
            rows.append({"loss": run.config.loss, "seed": run.config.seed,
                         **{f"rank{k}": 100 * float(cmc[k - 1]) for k in ranks}})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------------------- gallery size
    def distractors(self, count: int | None = None) -> list[Sample]:
        """Extra gallery images of no query identity, for the gallery-size experiment (the paper's Figure 4).

        The data set's ``extra_gallery`` when it has one; on Market-1501 the 500k distractor set found beside
        it (``distractors_500k``; the study's runs are unchanged); on the synthetic set, ``count`` new
        pedestrians drawn by the generator as distractors in the same cameras (:func:`synthetic_distractors`).
        ``count`` None: all of the data set's extra gallery. :class:`DataNotFoundError` where there is none.
        """
        if self.data.extra_gallery:
            return list(self.data.extra_gallery[:count])
        if self.dataset_name == "market1501":  # the runs' configuration (and cache) stays that of the study
            options = {**self.base.dataset_options, "distractors_500k": True}
            return list(load_dataset("market1501", self.base.data_root, **options).extra_gallery[:count])
        if self.dataset_name == "synthetic":
            if count is None:
                raise ValueError("the synthetic set has no extra gallery of its own: give count, the number of "
                                 "distractor images to generate")
            return synthetic_distractors(self.base.data_root, self.base.dataset_options, count)
        raise DataNotFoundError(f"{self.dataset_name} at {self.base.data_root} has no extra gallery (distractor set); "
                                "Market-1501's 500k distractors and the synthetic set have one")

    def gallery_size_curve(self, run: engine.RunResult, distractors: Sequence[Sample], steps: Sequence[int],
                           ap_rules: Sequence[str] = AP_RULES, seed: int = 0) -> pd.DataFrame:
        """Single-query metrics of ``run`` as the first ``n`` of ``distractors`` (shuffled once with ``seed``,
        so every run and every step draws from the same order) join the gallery, for each ``n`` in ``steps``.

        One row per (n, AP rule): ``loss``, ``seed``, ``distractors`` (n), ``gallery_size``, ``ap``, metrics.
        """
        if max(steps) > len(distractors):
            raise ValueError(f"steps go up to {max(steps)} distractors but only {len(distractors)} were given")
        feats = self.features(run)
        qf, q_pids, q_camids = feats["query"]
        gf, g_pids, g_camids = feats["gallery"]
        xf, x_pids, x_camids = self.extract(run, distractors, "distractors") if distractors else \
            (gf[:0], g_pids[:0], g_camids[:0])
        order = torch.from_numpy(np.random.default_rng(seed).permutation(len(distractors)))
        xf, x_pids, x_camids = xf[order], x_pids[order.numpy()], x_camids[order.numpy()]
        rows = []
        for n in steps:
            gallery = (torch.cat([gf, xf[:n]]), np.concatenate([g_pids, x_pids[:n]]),
                       np.concatenate([g_camids, x_camids[:n]]))
            for ap in ap_rules:
                result = evaluate_features(qf, gallery[0], q_pids, gallery[1], q_camids, gallery[2],
                                           metric=run.config.eval_metric, normalize=True, ap=ap)
                rows.append({"loss": run.config.loss, "seed": run.config.seed, "distractors": n,
                             "gallery_size": len(gallery[1]), "ap": ap, **result.as_dict()})
        return pd.DataFrame(rows)

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
    changes["data_root"] = str(resolve_path(data_root if data_root is not None else base.data_root))
    base = base.replace(**changes)
    out = resolve_path(output_dir) if output_dir else REPO / "results" / preset / base.dataset
    out.mkdir(parents=True, exist_ok=True)
    return Study(preset=preset, base=base, output_dir=out)


def find_datasets(entries: Iterable[Sequence]) -> tuple[list[tuple], list[tuple[str, str, str]]]:
    """Split ``(name, root)`` or ``(name, root, options)`` entries into those whose data is present
    (``(name, root, options)``) and those skipped (``(name, root, reason)``: the loader's first line)."""
    present, skipped = [], []
    for entry in entries:
        name, root, options = (*entry, {})[:3]
        try:
            load_dataset(name, resolve_path(root), **options)
        except (DataNotFoundError, FileNotFoundError) as err:
            skipped.append((name, str(root), str(err).splitlines()[0]))
        else:
            present.append((name, str(root), dict(options)))
    return present, skipped


# --------------------------------------------------------------------------------------------- data views
def _file_digests(samples: Sequence[Sample]) -> list[str]:
    """sha1 of each sample's file (identical bytes, identical image)."""
    return [hashlib.sha1(Path(s.path).read_bytes()).hexdigest() for s in samples]


def _link(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target, target_is_directory=source.is_dir())
    except OSError:  # no symlinks (Windows without privilege): copy
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)


def train_subset_root(dataset: ReIDDataset, fraction: float, subset_seed: int = 0) -> Path:
    """A view of ``dataset`` (Market-1501 layout) that trains on ``fraction`` of its training identities.

    The identities are the first ``round(fraction * C)`` of one fixed permutation (``subset_seed``), so the
    subsets of growing fractions are nested; query, gallery and the other folders are the originals (linked).
    The view is built once under ``data/subsets/`` (and again if the original's training images changed) and
    loads with the same loader and options as the original.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train fraction {fraction} must lie in (0, 1]")
    source = Path(dataset.root)
    if not (source / "bounding_box_train").is_dir():
        raise NotImplementedError(f"train subsets are built for data sets in the Market-1501 layout "
                                  f"(bounding_box_train/ ...); {dataset.name} at {source} is not one")
    labels = np.random.default_rng(subset_seed).permutation(dataset.num_train_pids)
    keep = set(labels[:max(1, round(fraction * len(labels)))].tolist())
    chosen = [Path(s.path) for s in dataset.train if s.pid in keep]
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    view = SUBSET_DIR / f"{dataset.name}-{tag}-{len(keep)}of{len(labels)}ids-seed{subset_seed}"
    if view.is_dir():
        linked = list((view / "bounding_box_train").iterdir())
        if {p.name for p in linked} == {p.name for p in chosen} and all(p.exists() for p in linked):
            return view
        shutil.rmtree(view)  # the original was regenerated or moved since: build the view again
    SUBSET_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=SUBSET_DIR, prefix=f".{view.name}."))
    try:
        for entry in source.iterdir():
            if entry.name != "bounding_box_train":
                _link(entry, staging / entry.name)
        (staging / "bounding_box_train").mkdir()
        for path in chosen:
            _link(path, staging / "bounding_box_train" / path.name)
        os.replace(staging, view)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return view


def synthetic_distractors(data_root: str | Path, options: dict, count: int) -> list[Sample]:
    """``count`` distractor images (identity 0) for the synthetic set of ``data_root`` / ``options``.

    The generator draws distractors after the identities, each unlike every identity of the set; the same
    configuration with ``num_distractors`` raised by ``count`` (generated once, in its own ``synthetic-<tag>``
    folder beside the original) holds exactly the original images plus ``count`` new distractors, which are
    returned.
    """
    config = SyntheticConfig(**options)
    larger = {**options, "num_distractors": config.num_distractors + count}
    dataset = load_dataset("synthetic", data_root, **options)
    original = {Path(s.path).name for s in dataset.gallery if s.pid == 0}
    bigger = load_dataset("synthetic", Path(dataset.root).parent, **larger)
    extra = [s for s in bigger.gallery if s.pid == 0 and Path(s.path).name not in original]
    if len(extra) != count:
        raise RuntimeError(f"{bigger.root} holds {len(extra)} new distractors instead of {count}: the synthetic "
                           "generator no longer appends distractors after the original ones; report it")
    return extra


def gallery_steps(gallery_size: int, num_distractors: int, num_steps: int = 6) -> list[int]:
    """Distractor counts ``0 = n_0 < ... < n_last = num_distractors`` whose galleries grow geometrically
    (``gallery_size + n_i`` evenly spaced on a log axis, as the paper's 19.7k -> 519.7k figure)."""
    if num_distractors <= 0:
        return [0]
    sizes = np.geomspace(gallery_size, gallery_size + num_distractors, max(num_steps, 2))
    return sorted({0, num_distractors, *np.round(sizes - gallery_size).astype(int).tolist()})


# --------------------------------------------------------------------------------------------- summaries
def training_curve(run: engine.RunResult) -> pd.DataFrame:
    """One row per epoch of ``run``: ``train_loss`` (mean of the iterations' total loss), ``train_loss_rel``
    (relative to the first epoch, so losses of different scales share an axis) and the test metrics of the
    epochs that were evaluated (``TrainConfig.eval_every``; NaN elsewhere; the last epoch always)."""
    history = run.history_frame()
    curve = history.groupby("epoch", as_index=False)["loss"].mean().rename(columns={"loss": "train_loss"})
    curve["train_loss_rel"] = curve["train_loss"] / curve["train_loss"].iloc[0]
    evaluations = pd.DataFrame(run.evaluations)
    if not evaluations.empty:
        curve = curve.merge(evaluations, on="epoch", how="left")
    return curve.assign(loss=run.config.loss)


def relative_drop(curves: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1"), by: str = "loss") -> pd.DataFrame:
    """Per ``by`` value: each metric at the smallest and the largest gallery (means over seeds) and the
    relative drop in percent of the starting value (the quantity Figure 4 compares)."""
    rows = []
    for name, group in curves.groupby(by, sort=False):
        means = group.groupby("gallery_size")[list(metrics)].mean()
        row = {by: name, "gallery_start": int(means.index.min()), "gallery_end": int(means.index.max())}
        for metric in metrics:
            start, end = means[metric].iloc[0], means[metric].iloc[-1]
            row.update({f"{metric}_start": start, f"{metric}_end": end,
                        f"{metric}_drop_pct": 100 * (start - end) / start if start else np.nan})
        rows.append(row)
    return pd.DataFrame(rows)


def mean_and_spread(df: pd.DataFrame, by: list[str] | str, metrics=("rank1", "mAP")) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and count of ``metrics`` per group ``by``."""
    grouped = df.groupby(by, sort=False)[list(metrics)]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    return table.reset_index()


def format_mean_std(mean: float, std: float, digits: int = 1) -> str:
    """``"73.4 ± 1.2"``; the mean alone where the spread is undefined (one seed)."""
    if pd.isna(mean):
        return "-"
    return f"{mean:.{digits}f}" if pd.isna(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_table(df: pd.DataFrame, by: str = "loss", metrics: Sequence[str] = ("rank1", "mAP", "mINP"),
                  digits: int = 1) -> pd.DataFrame:
    """``mean_and_spread`` as text cells ``mean ± std`` per ``by`` value, with the readable method name of a
    loss spec and the number of seeds."""
    stats = mean_and_spread(df, by, metrics)
    table = pd.DataFrame({by: stats[by]})
    if by == "loss":
        table["method"] = stats[by].map(lambda loss: LOSS_LABELS.get(loss, loss))
    for metric in metrics:
        table[metric] = [format_mean_std(m, s, digits) for m, s in zip(stats[f"{metric}_mean"], stats[f"{metric}_std"])]
    table["seeds"] = stats[f"{metrics[0]}_count"]
    return table


def paper_layout(long: pd.DataFrame, ap: str = "market") -> pd.DataFrame:
    """``Study.evaluation_table`` rows (AP rule ``ap``) in the layout of the paper's Table 1: one row per
    (loss, re-ranking), losses in their order of appearance, re-ranked rows last; columns ``sq_mAP``,
    ``sq_rank1``, ``mq_mAP``, ``mq_rank1`` (means over seeds), each with its ``_std`` (ddof=1), and ``seeds``."""
    stats = mean_and_spread(long[long["ap"] == ap], ["rerank", "loss", "query"])
    rows = []
    for (rerank, loss), group in stats.groupby(["rerank", "loss"], sort=False):
        row = {"method": LOSS_LABELS.get(loss, loss) + (" + re-ranking" if rerank else ""), "loss": loss,
               "rerank": rerank, "seeds": int(group["rank1_count"].max())}
        for query, prefix in (("single", "sq"), ("multi", "mq")):
            values = group[group["query"] == query]
            for metric in ("mAP", "rank1"):
                row[f"{prefix}_{metric}"] = values[f"{metric}_mean"].iloc[0] if len(values) else np.nan
                row[f"{prefix}_{metric}_std"] = values[f"{metric}_std"].iloc[0] if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("rerank", kind="stable", ignore_index=True)  # the paper's row order


def beside_published(layout: pd.DataFrame, source: str, digits: int = 1, with_paper: bool = True) -> pd.DataFrame:
    """``paper_layout`` rows as text cells ``mean ± std`` with ``source`` (a short label of the reproduction),
    each after the paper's published Table 1 rows (Market-1501) of the same loss family (SN, TriNet; with and
    without re-ranking) when ``with_paper``. Losses the paper did not report (e.g. softmax) stand alone."""
    paper = published("table1") if with_paper else None
    columns = ("sq_mAP", "sq_rank1", "mq_mAP", "mq_rank1")
    rows = []
    for _, row in layout.iterrows():
        family = PAPER_FAMILY.get(row["loss"])
        if with_paper and family:
            match = paper[(paper["family"] == family) & (paper["rerank"] == row["rerank"])]
        else:
            match = pd.DataFrame()
        for _, ref in match.iterrows():
            rows.append({"method": ref["method"], "source": "paper (Market-1501, ResNet-50)",
                         **{c: "-" if pd.isna(ref[c]) else f"{ref[c]:.2f}" for c in columns}})
        rows.append({"method": row["method"], "source": source,
                     **{c: format_mean_std(row[c], row[f"{c}_std"], digits) for c in columns}})
    return pd.DataFrame(rows)


def paired_differences(df: pd.DataFrame, reference: str = "sn", metrics: Sequence[str] = ("rank1", "mAP"),
                       column: str = "loss", pair_on: str = "seed") -> pd.DataFrame:
    """``reference`` minus every other value of ``column``, paired on ``pair_on`` (runs of the same seed): per
    metric the mean and standard deviation of the differences and in how many pairs ``reference`` is ahead."""
    ref = df[df[column] == reference].set_index(pair_on)
    rows = []
    for other in df[column].drop_duplicates():
        if other == reference:
            continue
        diff = ref[list(metrics)] - df[df[column] == other].set_index(pair_on)[list(metrics)]
        diff = diff.dropna()
        row = {column: other, "pairs": len(diff)}
        for metric in metrics:
            row.update({f"{metric}_diff_mean": diff[metric].mean(), f"{metric}_diff_std": diff[metric].std(),
                        f"{metric}_ahead": f"{int((diff[metric] > 0).sum())}/{len(diff)}"})
        rows.append(row)
    return pd.DataFrame(rows)


def convergence_summary(curves: pd.DataFrame, by: Sequence[str] = ("loss", "train_fraction"),
                        metric: str = "rank1", share: float = 0.9) -> pd.DataFrame:
    """Per group ``by`` of :meth:`Study.curves` rows: the final ``metric`` (mean, std over seeds, and as text), the
    spread across seeds averaged over the evaluated epochs (the stability figure) and the first epoch at which the
    mean curve reaches ``share`` of its final value (the convergence speed)."""
    evaluated = curves.dropna(subset=[metric])
    rows = []
    for key, group in evaluated.groupby(list(by), sort=False):
        per_epoch = group.groupby("epoch")[metric].agg(["mean", "std"])
        final = group[group["epoch"] == group["epoch"].max()][metric]
        reached = per_epoch.index[per_epoch["mean"] >= share * per_epoch["mean"].iloc[-1]]
        rows.append({**dict(zip(by, key)), "seeds": final.size,
                     f"final_{metric}": format_mean_std(final.mean(), final.std()),
                     f"final_{metric}_mean": final.mean(), f"final_{metric}_std": final.std(),
                     f"{metric}_std_over_epochs": per_epoch["std"].mean(),
                     f"epochs_to_{round(100 * share)}pct": int(reached.min())})
    return pd.DataFrame(rows)


def deviations_from_paper(config: TrainConfig) -> pd.DataFrame:
    """The fields of ``config`` that differ from the paper's recipe (``paper`` preset), side by side;
    operational fields (workers, device, ...) and the data root left out."""
    paper = get_preset("paper")
    fields = [f.name for f in dataclasses.fields(config) if f.metadata.get("hash", True) and f.name != "data_root"]
    rows = [{"field": name, "paper": getattr(paper, name), "this study": getattr(config, name)}
            for name in fields if getattr(paper, name) != getattr(config, name)]
    return pd.DataFrame(rows, columns=["field", "paper", "this study"])


def config_summary(config: TrainConfig) -> pd.DataFrame:
    """The configuration of a run as a two-column table (for the notebooks' configuration echo)."""
    return pd.DataFrame([{"field": f.name, "value": getattr(config, f.name)} for f in dataclasses.fields(config)])
