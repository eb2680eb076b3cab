"""What the notebooks share: a :class:`Study` per (preset, data set), runs through the engine's run cache,
the evaluation variants of the paper's tables, and the writing of tables and figures.

A notebook opens a study from its parameters cell and asks for runs by loss and seed::

    study = open_study(preset, dataset, data_root, output_dir)
    run = study.run("sn", seed=0)                  # trained once, then read from the cache
    study.evaluate(run, multi_query=True, rerank=True).as_dict()
    study.save_table(df, "table1")                 # output_dir/table1.csv + .md

Every run's configuration is the preset's with the overrides named in the call, so notebooks that ask for the
same run share it (``snlib.engine`` caches by the hash of the configuration).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import engine
from .data import ReIDDataset, load_dataset
from .evaluation import RankResult, evaluate_features, pool_multi_query
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

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one is read against the repository root (notebooks run in notebooks/)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (REPO / path).resolve()


@dataclass
class Study:
    """One preset on one data set: the base configuration, where results go, and the runs asked for."""

    preset: str
    base: TrainConfig
    output_dir: Path

    @property
    def dataset_name(self) -> str:
        return self.base.dataset

    @functools.cached_property
    def data(self) -> ReIDDataset:
        """The data set of the study (the synthetic default is generated on first use)."""
        return load_dataset(self.base.dataset, self.base.data_root, **self.base.dataset_options)

    def config(self, loss: str = "sn", seed: int = 0, **overrides) -> TrainConfig:
        """The preset's configuration with ``loss``, ``seed`` and any other TrainConfig field replaced."""
        return self.base.replace(loss=loss, seed=seed, **overrides)

    def run(self, loss: str = "sn", seed: int = 0, progress: bool = True, **overrides) -> engine.RunResult:
        """Train (or read from the cache) the run ``config(loss, seed, **overrides)``."""
        return engine.train(self.config(loss, seed, **overrides), progress=progress)

    def runs(self, variants: list[dict], seeds=(0,), progress: bool = True) -> pd.DataFrame:
        """Train every variant (dicts of ``config`` keyword arguments) for every seed; one row per run with
        the variant's fields, the seed, the final test metrics (percent) and the training wall time."""
        rows = []
        for variant in variants:
            for seed in seeds:
                result = self.run(seed=seed, progress=progress, **variant)
                rows.append({**variant, "seed": seed, **result.metrics, "wall_time_s": result.wall_time_s,
                             "run": result.run_dir.name})
        return pd.DataFrame(rows)

    # ------------------------------------------------------------------------------------------- evaluation
    def features(self, run: engine.RunResult) -> dict[str, tuple[torch.Tensor, np.ndarray, np.ndarray]]:
        """L2-normalised test features of ``run``'s model for ``query``, ``gallery`` (and ``multi_query``
        where the data set has it); extracted once and kept in the run's folder."""
        path = run.run_dir / "features.pt"
        if path.is_file():
            stored = torch.load(path, weights_only=True)
            return {name: (f, p.numpy(), c.numpy()) for name, (f, p, c) in stored.items()}
        model = run.load_model()
        splits = {"query": self.data.query, "gallery": self.data.gallery}
        if self.data.multi_query:
            splits["multi_query"] = self.data.multi_query
        out = {}
        for name, samples in splits.items():
            loader = engine.eval_loader(samples, run.config, torch.device("cpu"))
            out[name] = engine.extract_features(model, loader, "cpu", flip=run.config.eval_flip, desc=name)
        engine.atomic_save({n: (f, torch.from_numpy(p), torch.from_numpy(c)) for n, (f, p, c) in out.items()}, path)
        return out

    def evaluate(self, run: engine.RunResult, multi_query: bool = False, rerank: bool = False,
                 ap: str = "standard", pool: str = "mean") -> RankResult:
        """Query-vs-gallery evaluation of ``run`` (Market-1501 protocol, Euclidean on L2-normalised features).

        ``multi_query``: the features of each query's (identity, camera) images in ``multi_query`` (or the
        query set itself when the data set has no separate one) are pooled (``pool``: mean as the paper, or
        max) into one query feature. ``rerank``: k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3).
        ``ap``: "standard" (non-interpolated) or "market" (the official trapezoid rule).
        """
        feats = self.features(run)
        qf, q_pids, q_camids = feats["query"]
        gf, g_pids, g_camids = feats["gallery"]
        if multi_query:
            qf, q_pids, q_camids = pool_multi_query(*feats.get("multi_query", feats["query"]), how=pool)
        return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, metric=run.config.eval_metric,
                                 normalize=True, rerank=rerank, ap=ap)

    # -------------------------------------------------------------------------------------------- writing
    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        return save_table(df, self.output_dir, name)

    def save_figure(self, fig, name: str) -> Path:
        return save_figure(fig, self.output_dir, name)


def open_study(preset: str = "cpu", dataset: str | None = None, data_root: str | Path | None = None,
               output_dir: str | Path | None = None, **overrides) -> Study:
    """The study of a notebook's parameters: ``preset`` with the data set and root replaced where given.

    ``output_dir`` defaults to ``results/<preset>/<dataset>``; relative paths are read against the
    repository root. ``overrides`` are TrainConfig fields (e.g. ``epochs=4``) applied to every run.
    """
    base = get_preset(preset)
    changes = dict(overrides)
    if dataset is not None and dataset != base.dataset:
        changes.update(dataset=dataset, dataset_options={})
    if data_root is not None:
        changes["data_root"] = str(resolve_path(data_root))
    else:
        changes["data_root"] = str(resolve_path(base.data_root))
    base = base.replace(**changes)
    out = resolve_path(output_dir) if output_dir else REPO / "results" / preset / base.dataset
    out.mkdir(parents=True, exist_ok=True)
    return Study(preset=preset, base=base, output_dir=out)


def mean_and_spread(df: pd.DataFrame, by: list[str] | str, metrics=("rank1", "mAP")) -> pd.DataFrame:
    """Mean, standard deviation (ddof=1; NaN for one seed) and count of ``metrics`` per group ``by``."""
    grouped = df.groupby(by, sort=False)[list(metrics)]
    table = grouped.agg(["mean", "std", "count"])
    table.columns = [f"{m}_{stat}" for m, stat in table.columns]
    return table.reset_index()


def config_summary(config: TrainConfig) -> pd.DataFrame:
    """The configuration of a run as a two-column table (for the notebooks' configuration echo)."""
    return pd.DataFrame([{"field": f.name, "value": getattr(config, f.name)} for f in dataclasses.fields(config)])
