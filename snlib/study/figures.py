"""The notebooks' result figures (matplotlib + seaborn): each function takes a long table (one row per run, epoch
or step, as :class:`~snlib.study.study.Study` and :mod:`~snlib.study.tables` produce them) or embeddings and
returns a ``matplotlib.figure.Figure`` (or draws into the axes it is given).

Spread across seeds is shown the same way everywhere: the mean as a bar or line, one point per seed, and a
band or error bar of one standard deviation (ddof=1; absent for a single seed).
"""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import contextmanager

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import ListedColormap
from matplotlib.ticker import MaxNLocator

from .style import NEGATIVE, POSITIVE, loss_label, metric_label

#: The loss spec of each method of the paper's Figure 4 (``paper.published("figure4")``).
FIGURE4_LOSSES = {"SN loss": "sn", "TriNet (batch-hard triplet)": "triplet"}


#: The seed of the seed dots' jitter (``metric_bars``): seaborn draws it from numpy's global generator, whose state
#: depends on what ran before in the kernel (a run trained or read from its record), so the same records would give
#: a different picture; drawn from this seed, they give the same file, and the caller's generator is left as it was.
JITTER_SEED = 0


@contextmanager
def _seeded_global_rng(seed: int):
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _panels(count: int, width: float = 4.2, height: float = 3.4, sharex: bool = False):
    fig, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False, sharex=sharex)
    return fig, list(axes[0])


def metric_bars(df: pd.DataFrame, x: str = "loss", metrics: Sequence[str] = ("rank1", "mAP"),
                order: Sequence | None = None, title: str | None = None):
    """One panel per metric: a bar per ``x`` value (the mean over seeds), its standard deviation as an error
    bar and one dot per seed. Loss specs on ``x`` are written out (``style.loss_label``)."""
    data = df.assign(**{x: df[x].map(loss_label)})
    order = [loss_label(v) for v in (order if order is not None else df[x].drop_duplicates())]
    fig, axes = _panels(len(metrics), width=0.9 * len(order) + 1.5, height=3.8)
    for ax, metric in zip(axes, metrics):
        sns.barplot(data=data, y=x, x=metric, order=order, errorbar="sd", ax=ax, color="#9ecae1", capsize=0.2,
                    err_kws={"linewidth": 1.2})
        with _seeded_global_rng(JITTER_SEED):
            sns.stripplot(data=data, y=x, x=metric, order=order, ax=ax, color="black", size=4, jitter=0.15)
        ax.set_xlabel(metric_label(metric))
        ax.set_ylabel("")
        if ax is not axes[0]:
            ax.set_yticklabels([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_curves(df: pd.DataFrame, param: str, metrics: Sequence[str] = ("rank1", "mAP"),
                 default: float | None = None, log: bool = False, label: str | None = None,
                 noise: pd.DataFrame | None = None, axes=None):
    """Metrics against a swept parameter ``param``: the mean over seeds with a one-standard-deviation band and
    the seeds as dots; ``default`` (the paper's value) is marked by a dashed line; ``noise`` (one row of
    ``mean_and_spread``: ``<metric>_mean``, ``<metric>_std``), the spread of the default configuration over
    seeds, as a grey horizontal band. Draws into ``axes`` (one per metric) when given, else into a new
    figure; returns the figure."""
    fig, axes = _panels(len(metrics)) if axes is None else (axes[0].figure, list(axes))
    for ax, metric in zip(axes, metrics):
        if noise is not None:
            mean, std = float(noise[f"{metric}_mean"].iloc[0]), float(noise[f"{metric}_std"].fillna(0).iloc[0])
            ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, linewidth=0)
            ax.axhline(mean, color="grey", linewidth=0.8, label="default, mean ± std over seeds")
        stats = df.groupby(param)[metric].agg(["mean", "std"]).reset_index()
        ax.plot(stats[param], stats["mean"], marker="o", color="C0")
        ax.fill_between(stats[param], stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                        color="C0", alpha=0.2, linewidth=0)
        ax.scatter(df[param], df[metric], s=10, color="black", zorder=3)
        if default is not None:
            ax.axvline(default, color="grey", linestyle="--", linewidth=1, label="paper's value")
            ax.legend(loc="best", fontsize=8)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label or param)
        ax.set_ylabel(metric_label(metric))
    fig.tight_layout()
    return fig


def _band(ax, data: pd.DataFrame, x: str, y: str, color, label: str, seeds_thin: bool = True) -> None:
    """Mean over seeds of ``y`` against ``x`` with a one-standard-deviation band (and thin per-seed lines)."""
    data = data.dropna(subset=[y])
    stats = data.groupby(x)[y].agg(["mean", "std"]).reset_index()
    ax.plot(stats[x], stats["mean"], color=color, label=label, marker="o" if len(stats) < 15 else None,
            markersize=3)
    spread = stats["std"].fillna(0)
    ax.fill_between(stats[x], stats["mean"] - spread, stats["mean"] + spread, color=color, alpha=0.2, linewidth=0)
    if seeds_thin and "seed" in data:
        for _, run in data.groupby("seed"):
            ax.plot(run[x], run[y], color=color, alpha=0.35, linewidth=0.7)


def training_curves(curves: pd.DataFrame, y: Sequence[str] = ("train_loss_rel", "rank1"), hue: str = "loss",
                    col: str | None = None, x: str = "epoch"):
    """Training curves (``Study.curves`` rows): one row of panels per ``y`` column, one panel per ``col``
    value (e.g. the training fraction), one colour per ``hue`` value (the loss); mean over seeds with a
    one-standard-deviation band and thin per-seed lines; a legend on every panel of the first row where the
    panels hold different ``hue`` values (e.g. each recipe's own rates), else on the last. No rows (no runs, e.g.
    no selection): one empty panel that says so."""
    if curves.empty:
        fig, ax = plt.subplots(figsize=(4.2, 1.2))
        ax.text(0.5, 0.5, "no runs", ha="center", va="center")
        ax.set_axis_off()
        return fig
    columns = list(curves[col].drop_duplicates()) if col else [None]
    hues = list(curves[hue].drop_duplicates())
    if pd.api.types.is_numeric_dtype(curves[hue]):    # e.g. rates: ordered, one colour each along viridis
        hues.sort()
        colors = list(plt.cm.viridis(np.linspace(0, 0.9, len(hues))))
    else:
        colors = [f"C{h}" for h in range(len(hues))]
    fig, grid = plt.subplots(len(y), len(columns), figsize=(4.2 * len(columns), 3.2 * len(y)), squeeze=False,
                             sharey="row")
    panels = [curves if col is None else curves[curves[col] == value] for value in columns]
    own_hues = any(set(subset[hue]) != set(hues) for subset in panels)
    for j, (value, subset) in enumerate(zip(columns, panels)):
        for i, metric in enumerate(y):
            ax = grid[i][j]
            for name, color in zip(hues, colors):
                if len(part := subset[subset[hue] == name]):
                    _band(ax, part, x, metric, color, loss_label(name))
            ax.set_xlabel(x)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(metric_label(metric) if j == 0 else "")
            if col is not None and i == 0:
                ax.set_title(f"{col} = {loss_label(value)}")
        if own_hues:
            grid[0][j].legend(fontsize=7, loc="best", title=hue, title_fontsize=7)
    if not own_hues:
        grid[0][-1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _relative_to_start(df: pd.DataFrame, by: list[str], metrics: Sequence[str]) -> pd.DataFrame:
    """Each metric in percent of its value on the smallest gallery of its group ``by``."""
    df = df.sort_values("gallery_size")
    start = df.groupby(by)[list(metrics)].transform("first")
    return df.assign(**{m: (100 * df[m] / start[m]).replace([np.inf, -np.inf], np.nan) for m in metrics})


def gallery_curves(curves: pd.DataFrame, metrics: Sequence[str] = ("mAP", "rank1"),
                   published: pd.DataFrame | None = None, hue: str = "loss", relative: bool = False):
    """Metrics against the gallery's growth (gallery size / original gallery size, log axis): the reproduced
    runs as mean lines with seed bands; ``published`` (``paper.published("figure4")``: ``method``,
    ``gallery_size``, metrics) as dashed lines between its end points, on the same relative axis, in the
    colour of the reproduced loss it corresponds to (``FIGURE4_LOSSES``). ``relative``: every curve in percent
    of its own value on the original gallery, so that slopes compare across data sets and backbones."""
    if relative:
        curves = _relative_to_start(curves, [hue, "seed"], metrics)
        published = _relative_to_start(published, ["method"], metrics) if published is not None else None
    data = curves.assign(growth=curves["gallery_size"] / curves["gallery_size"].min())
    hues = list(data[hue].drop_duplicates())
    fig, axes = _panels(len(metrics))
    for ax, metric in zip(axes, metrics):
        for h, name in enumerate(hues):
            _band(ax, data[data[hue] == name], "growth", metric, f"C{h}", f"{loss_label(name)} (reproduced)")
        if published is not None:
            for method, points in published.groupby("method", sort=False):
                loss = FIGURE4_LOSSES.get(method)
                color = f"C{hues.index(loss)}" if loss in hues else "grey"
                growth = points["gallery_size"] / points["gallery_size"].min()
                ax.plot(growth, points[metric], linestyle="--", marker="s", color=color, alpha=0.6,
                        label=f"{method} (paper, Market-1501)")
        ax.set_xscale("log")
        ax.set_xlabel("gallery size / original gallery size")
        label = metric_label(metric)
        ax.set_ylabel(f"{label.split(' (')[0]}, % of the original gallery's" if relative else label)
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_hit_matrix(ax, correct: np.ndarray, row_labels: list[str]) -> None:
    """The ranked lists without images (real data sets): one row per query, green = correct, red = wrong."""
    ax.imshow(np.asarray(correct, dtype=float), cmap=ListedColormap([NEGATIVE, POSITIVE]), vmin=0, vmax=1,
              aspect="auto")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_xticks(range(correct.shape[1]), [str(r + 1) for r in range(correct.shape[1])], fontsize=8)
    ax.set_xlabel("rank")


def _identity_colours(labels) -> np.ndarray:
    palette = np.concatenate([matplotlib.colormaps[name](np.linspace(0, 1, 20))
                              for name in ("tab20", "tab20b", "tab20c")])
    _, codes = np.unique(np.asarray(labels), return_inverse=True)
    return palette[(codes * 7) % len(palette)]


def plot_embedding(ax, xy: np.ndarray, labels, title: str | None = None, thumbnails=None,
                   thumb_zoom: float = 0.35) -> None:
    """A 2-D embedding, points coloured by identity; with ``thumbnails`` (list of images, or None entries) the
    image is drawn at its point, framed in the identity's colour."""
    xy = np.asarray(xy)
    colours = _identity_colours(labels)
    ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=10, linewidths=0)
    if thumbnails is not None:
        from matplotlib.offsetbox import AnnotationBbox, OffsetImage
        for point, image, colour in zip(xy, thumbnails, colours):
            if image is not None:
                box = AnnotationBbox(OffsetImage(image, zoom=thumb_zoom), point, frameon=True, pad=0.1,
                                     bboxprops={"edgecolor": colour, "linewidth": 1.5})
                ax.add_artist(box)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_composition(curves: pd.DataFrame, reference: pd.DataFrame | None = None):
    """Support-set composition during training (``composition_history``; thin: every iteration, bold: epoch
    means) and, with ``reference`` (rows: model, columns as ``support_composition``), the same measured on
    test-set batches, as horizontal lines."""
    names = {"knn_without_positive": "share of anchors with no positive in the k-NN",
             "support_pos": "mean |S+| in the k-NN (before fallback)", "support_neg": "mean |S-| in the k-NN"}
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    per_epoch = curves.groupby("epoch").agg({"iteration": "max", **{c: "mean" for c in names}})
    for ax, (column, label) in zip(axes, names.items()):
        ax.plot(curves["iteration"], curves[column], lw=0.6, color="grey", alpha=0.7, label="training batch")
        ax.plot(per_epoch["iteration"], per_epoch[column], "o-", color="black", label="epoch mean")
        if reference is not None:
            for n, (model, values) in enumerate(reference.iterrows()):
                ax.axhline(values[column], ls=("--", "-.", ":")[n % 3], lw=1.4, color=f"C{n % 10}",
                           label=f"test batches: {model}")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("iteration")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def sweep_grid(results: pd.DataFrame, defaults: dict, noise: pd.DataFrame, labels: dict[str, str]):
    """:func:`sweep_curves` for every swept field of ``results`` (``Study.sweep`` rows; ``labels``: field ->
    axis label, in row order), one row of rank-1 and mAP panels each; the fields other than ``sn_k`` on a
    log axis."""
    fig, axes = plt.subplots(len(labels), 2, figsize=(9, 3.2 * len(labels)), squeeze=False)
    for row, (name, label) in zip(axes, labels.items()):
        sweep_curves(results[results["swept"] == name], name, default=defaults[name], log=name != "sn_k",
                     label=label, noise=noise, axes=row)
    fig.tight_layout()
    return fig


def tsne_grid(embedded: dict[str, np.ndarray], pools: dict, quality: pd.DataFrame):
    """A 2 x 2 grid of :func:`plot_embedding`, one per network of ``embedded`` (name -> 2-D points of its
    ``pools`` entry), titled with its silhouette and nearest-image score (``quality``, by ``network``)."""
    fig, axes = plt.subplots(2, 2, figsize=(13, 13))
    for ax, (name, xy) in zip(axes.flat, embedded.items()):
        q = quality.set_index("network").loc[name]
        plot_embedding(ax, xy, pools[name].pids, title=f"{name}\nsilhouette {q['silhouette']:.3f}   "
                                                        f"nearest image same identity {q['nn_same_identity']:.1%}")
    return fig


def hit_matrices(ranked: dict, chosen: pd.DataFrame):
    """:func:`plot_hit_matrix` of the ``chosen`` queries (``ranking.figure5_queries``) side by side, one panel
    per network of ``ranked`` (name -> ``RankedLists``)."""
    labels = query_labels(chosen)
    fig, axes = plt.subplots(1, len(ranked), figsize=(12, 0.5 * len(chosen) + 1.5), sharey=True)
    for ax, (name, lists) in zip(axes, ranked.items()):
        plot_hit_matrix(ax, lists.correct[chosen["query"]], labels)
        ax.set_title(name, fontsize=10)
    return fig


def query_labels(chosen: pd.DataFrame) -> list[str]:
    """``"query <q> (<kind>)"`` for each chosen query."""
    return [f"query {q} ({kind})" for q, kind in zip(chosen["query"], chosen["kind"])]


def lr_selection(selection: pd.DataFrame, floor: dict | None = None, metrics: Sequence[str] = ("rank1", "mAP")):
    """Validation metrics against the learning rate (log axis), one line per recipe (``select_rates`` rows): a
    star on the selected rate, a cross on a rate where a run collapsed, the untrained network (``floor``) as a
    dotted line. The width of the range where a line stays high is the recipe's stability. A table of fixed rates
    (``protocol.rate_table`` with no selection: no scores) shows each recipe's rate on the same axis."""
    if not set(metrics) <= set(selection.columns):
        return _fixed_rates(selection)
    fig, axes = _panels(len(metrics), width=5.0, height=3.8)
    for ax, metric in zip(axes, metrics):
        for i, (name, rows) in enumerate(selection.groupby("loss", sort=False)):
            rows = rows.sort_values("lr")
            ax.plot(rows["lr"], rows[metric], marker="o", color=f"C{i}", label=loss_label(name))
            chosen, bad = rows[rows["selected"]], rows[rows["collapsed"] > 0]
            ax.scatter(chosen["lr"], chosen[metric], marker="*", s=220, color=f"C{i}", edgecolor="black", zorder=3)
            ax.scatter(bad["lr"], bad[metric], marker="x", s=80, color="black", zorder=3)
        if floor is not None:
            ax.axhline(floor[metric], color="grey", linestyle=":", label="untrained network")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (Adam, with warm-up)")
        ax.set_ylabel(f"validation {metric_label(metric)}")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def pilot_curves(curves: pd.DataFrame, table: pd.DataFrame, budget: int, metric: str = "mAP"):
    """The pilot's validation ``metric`` against the iteration, one line per recipe (mean over its seeds), a dot
    where each recipe plateaued (``snlib.study.pilot``; open where it never did) and the chosen ``budget`` dashed.
    Without a pilot (empty tables) a note that the budget is fixed."""
    fig, ax = plt.subplots(figsize=(6.5, 4.0))
    if curves.empty:
        ax.text(0.5, 0.5, f"no pilot: the protocol's budget is fixed at {budget} iterations", ha="center",
                va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    plateaus = table.set_index("loss")
    for i, (name, rows) in enumerate(curves.groupby("loss", sort=False)):
        rows = rows.sort_values("iteration")
        ax.plot(rows["iteration"], rows[metric], color=f"C{i}", label=loss_label(name))
        row = plateaus.loc[name]
        ax.scatter([row["plateau"]], [row["value at plateau"]], s=60, color=f"C{i}" if row["plateaued"] else "white",
                   edgecolor=f"C{i}", zorder=3)
    ax.axvline(budget, color="grey", linestyle="--", label=f"budget {budget}")
    ax.set_xlabel("iteration (constant rate after the warm-up)")
    ax.set_ylabel(f"validation {metric_label(metric)}")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _fixed_rates(rates: pd.DataFrame):
    """One row per recipe (``loss, lr``): its fixed learning rate on a log axis (nothing was selected)."""
    fig, ax = plt.subplots(figsize=(6.0, 0.4 * len(rates) + 1.2))
    y = np.arange(len(rates))
    ax.scatter(rates["lr"], y, marker="*", s=160, color="C0", edgecolor="black")
    ax.set_yticks(y, [loss_label(name) for name in rates["loss"]])
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (Adam; fixed, not selected)")
    fig.tight_layout()
    return fig


def claims_forest(claims: pd.DataFrame, metric: str = "mAP"):
    """One row per claim on ``metric``: the difference a - b with the 95 % interval its verdict uses (thick, the
    widest: ``snlib.study.claims``) and the interval over queries alone (thin, black) where there is one, coloured
    by verdict (supported green, refuted red, unresolved grey); zero marked. Rows without an interval show the
    point only."""
    rows = claims[claims["metric"] == metric].iloc[::-1]
    colours = {"supported": POSITIVE, "refuted": NEGATIVE, "unresolved": "grey"}
    fig, ax = plt.subplots(figsize=(7.5, 0.38 * len(rows) + 1.2))
    y = np.arange(len(rows))
    for yi, row in zip(y, rows.itertuples()):
        colour = colours[row.verdict]
        if np.isfinite(row.ci_low):
            ax.plot([row.ci_low, row.ci_high], [yi, yi], color=colour, linewidth=2.5)
        if np.isfinite(row.query_ci_low):
            ax.plot([row.query_ci_low, row.query_ci_high], [yi, yi], color="black", linewidth=0.8)
        ax.plot(row.delta, yi, "o", color=colour)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, [f"{r.claim}" for r in rows.itertuples()], fontsize=8)
    ax.set_xlabel(f"a - b, {metric_label(metric)} (95 % interval: thick the verdict's, thin over queries only)")
    ax.set_title("claims: supported (green), refuted (red), unresolved (grey)", fontsize=9)
    fig.tight_layout()
    return fig
