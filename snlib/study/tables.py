"""The notebooks' tables, built from long frames (one row per run, epoch, setting or gallery step): mean and
spread over seeds (standard deviation with ddof=1; undefined for one seed), the paper's Table 1 layout beside
its published rows, paired differences by seed, convergence, the gallery-size drop and deviations from the recipe.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import stats
import pandas as pd

from ..runs import RunResult
from ..paper import published
from ..presets import TrainConfig, get_preset
from .style import loss_label

#: Which published Table 1 row a reproduced loss stands beside (``family`` column of ``published("table1")``).
PAPER_FAMILY = {"sn": "sn", "triplet": "triplet"}


def training_curve(run: RunResult) -> pd.DataFrame:
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
        table["method"] = stats[by].map(lambda loss: loss_label(loss))
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
        row = {"method": loss_label(loss) + (" + re-ranking" if rerank else ""), "loss": loss,
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
                        metric: str = "rank1", share: float = 0.9, x: str = "iteration") -> pd.DataFrame:
    """Per group ``by`` of training-curve rows (``x``: ``iteration`` or ``epoch``): the final ``metric`` (mean,
    std over seeds, and as text), the spread across seeds averaged over the evaluated points (the stability
    figure) and the first ``x`` at which the mean curve reaches ``share`` of its final value (the speed)."""
    evaluated = curves.dropna(subset=[metric])
    rows = []
    for key, group in evaluated.groupby(list(by), sort=False):
        per_point = group.groupby(x)[metric].agg(["mean", "std"])
        final = group[group[x] == group[x].max()][metric]
        reached = per_point.index[per_point["mean"] >= share * per_point["mean"].iloc[-1]]
        rows.append({**dict(zip(by, key)), "seeds": final.size,
                     f"final_{metric}": format_mean_std(final.mean(), final.std()),
                     f"final_{metric}_mean": final.mean(), f"final_{metric}_std": final.std(),
                     f"{metric}_std_over_{x}s": per_point["std"].mean(),
                     f"{x}s_to_{round(100 * share)}pct": int(reached.min())})
    return pd.DataFrame(rows)


def interval_table(df: pd.DataFrame, by: Sequence[str] | str, metrics: Sequence[str] = ("rank1", "mAP"),
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per group ``by``: each metric's mean over the runs (seeds) with a Student-t interval, ``mean [low, high]``
    as text (``-`` for one run), and the number of runs."""
    by = [by] if isinstance(by, str) else list(by)
    rows = []
    for key, group in df.groupby(by, sort=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)), runs=len(group))
        for metric in metrics:
            values = group[metric].to_numpy(dtype=float)
            mean = values.mean()
            half = (stats.t.ppf(0.5 + confidence / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
                    if len(values) > 1 else np.nan)
            row.update({f"{metric}_mean": mean, f"{metric}_low": mean - half, f"{metric}_high": mean + half,
                        metric: f"{mean:.1f} [{mean - half:.1f}, {mean + half:.1f}]" if len(values) > 1
                        else f"{mean:.1f} (-)"})
        rows.append(row)
    return pd.DataFrame(rows)


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


def deviations_from_paper(config: TrainConfig, rates: dict | None = None) -> pd.DataFrame:
    """The fields of ``config`` (a run's: ``Study.config("sn")`` holds the protocol's budget and SN's selected
    rate) that differ from the paper's recipe (``paper`` preset), side by side; operational fields (workers,
    device, ...) and the data root left out. ``rates`` (recipe -> rate, ``Study.rates``) adds a row with every
    recipe's rate (the paper trains SN at 2e-4)."""
    paper = get_preset("paper")
    fields = [f.name for f in dataclasses.fields(config) if f.metadata.get("hash", True) and f.name != "data_root"]
    rows = [{"field": name, "paper": getattr(paper, name), "this study": getattr(config, name)}
            for name in fields if getattr(paper, name) != getattr(config, name)]
    if rates:
        rows.append({"field": "lr of each recipe", "paper": f"sn {paper.lr:g}",
                     "this study": ", ".join(f"{name} {lr:g}" for name, lr in rates.items())})
    return pd.DataFrame(rows, columns=["field", "paper", "this study"])


def drop_beside_paper(curves: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """:func:`relative_drop` of the reproduced ``curves`` (per loss) above that of the paper's Figure 4 (per
    method, in the ``loss`` column), with a ``source`` column ("reproduced" / "paper, Figure 4")."""
    return pd.concat([relative_drop(curves, by="loss").assign(source="reproduced"),
                      relative_drop(paper, by="method").rename(columns={"method": "loss"})
                      .assign(source="paper, Figure 4")], ignore_index=True)


def anchor_terms(views: dict) -> pd.DataFrame:
    """One row per (model, anchor) of ``views`` (model name -> :class:`~snlib.study.geometry.AnchorView` list):
    ``model``, ``anchor``, ``identity``, ``fallback`` and the anchor's terms and set sizes."""
    return pd.DataFrame([{"model": name, "anchor": v.anchor, "identity": v.label, "fallback": v.fallback,
                          **v.terms()} for name, vs in views.items() for v in vs])


def terms_by_network(views: dict) -> pd.DataFrame:
    """The terms and set sizes of each network's first anchor view (one column per network, one row per term)."""
    return pd.DataFrame({name: vs[0].terms() for name, vs in views.items()})
