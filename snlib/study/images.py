"""Figures of person images: support sets, ranked lists and t-SNE thumbnails, drawn for the synthetic data set
only (:func:`images_allowed`): the real re-ID data sets are for research use and their images must not appear in
published figures. Each cell is an image framed in its set's colour with a caption ("+" / "-" and a distance).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..data import Sample, read_image
from .figures import plot_embedding, query_labels
from .geometry import AnchorView
from .pools import BEFORE, Pool
from .ranking import RankedLists
from .style import ANCHOR, FALLBACK, NEGATIVE, POSITIVE
from ..data import images_allowed


def load_images(samples: list[Sample]) -> list[np.ndarray]:
    """The images of ``samples`` as RGB arrays (for the synthetic data set only: see :func:`images_allowed`)."""
    return [np.asarray(read_image(s.path)) for s in samples]


def identity_thumbnails(pool: Pool, max_ids: int = 40) -> list[np.ndarray | None]:
    """One image per identity (its first in the pool) for the first ``max_ids`` identities in pool order,
    None for every other point: thumbnails for :func:`plot_embedding` that do not bury the plot."""
    _, first = np.unique(pool.pids, return_index=True)
    shown = np.sort(first)[:max_ids]
    thumbnails: list[np.ndarray | None] = [None] * len(pool.pids)
    for index, image in zip(shown, load_images([pool.samples[i] for i in shown])):
        thumbnails[index] = image
    return thumbnails


def draw_cell(ax, image: np.ndarray, caption: str, colour: str) -> None:
    """An image with a thick frame in ``colour`` and ``caption`` under it."""
    ax.imshow(image)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(3)
    ax.set_xlabel(caption, fontsize=7, labelpad=2)


def plot_image_rows(rows: list[list[tuple[np.ndarray, str, str]]], row_titles: list[str] | None = None,
                    cell: float = 0.9, title: str | None = None):
    """A figure of image rows; each cell ``(image, caption, frame colour)``, a thick frame in that colour and
    the caption under the image. Rows may differ in length."""
    cols = max(len(r) for r in rows)
    height = rows[0][0][0].shape[0] / rows[0][0][0].shape[1]
    fig, axes = plt.subplots(len(rows), cols, figsize=(cell * cols, cell * height * len(rows) * 1.2),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(row):
                ax.axis("off")
                continue
            draw_cell(ax, *row[c])
        if row_titles:
            axes[r][0].set_ylabel(row_titles[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def support_rows(view: AnchorView, images: list[np.ndarray]) -> list[tuple[np.ndarray, str, str]]:
    """One image row: the anchor, then its support neighbours by distance (S+ green "+", S- red "-", a
    fallback positive orange "+fb")."""
    row = [(images[view.anchor], "anchor", ANCHOR)]
    positives = set(view.positive.tolist())
    for j in sorted(set(view.neighbors.tolist()) | positives, key=lambda j: view.distances[j]):
        if j in positives:
            mark, colour = ("+fb", FALLBACK) if view.fallback else ("+", POSITIVE)
        else:
            mark, colour = "-", NEGATIVE
        row.append((images[j], f"{mark} {view.distances[j]:.2f}", colour))
    return row


def ranked_rows(ranked: RankedLists, queries, query_images, gallery_images) -> list[list]:
    """Image rows for :func:`plot_image_rows`: each query, then its top-k (correct green "+", wrong red "-",
    with the distance)."""
    rows = []
    for q in queries:
        row = [(query_images[q], "query", ANCHOR)]
        for g, d, ok in zip(ranked.index[q], ranked.distance[q], ranked.correct[q]):
            if g >= 0:
                row.append((gallery_images[g], f"{'+' if ok else '-'} {d:.2f}", POSITIVE if ok else NEGATIVE))
        rows.append(row)
    return rows


def _may_draw(study, instead: str) -> bool:
    """True where ``study``'s images may be drawn; else prints why they are not and where to look ``instead``."""
    if images_allowed(study.dataset_name):
        return True
    print(f"{study.dataset_name}: person images are not drawn (research-only images); {instead}")
    return False


def support_set_figures(study, batch: Pool, views: dict[str, list[AnchorView]]) -> None:
    """Per network of ``views``, the image rows of its anchors' support sets (images of ``batch``), saved as
    ``support_sets_before`` / ``support_sets_after``."""
    if not _may_draw(study, "the table above holds the sets' numbers"):
        return
    images = load_images(batch.samples)
    for name, vs in views.items():
        fig = plot_image_rows([support_rows(v, images) for v in vs], [f"anchor {v.anchor}" for v in vs],
                              title=f"{name}: anchor (blue), S+ (green +), S- (red -), fallback positive (orange +fb)")
        study.save_figure(fig, "support_sets_" + ("before" if name == BEFORE else "after"))


def ranked_list_figures(study, runs: dict, ranked: dict[str, RankedLists], chosen) -> None:
    """Per network, the ``chosen`` queries' top-k as image rows, saved as ``figure5_ranked_lists_<recipe>``."""
    if not _may_draw(study, "see the hit matrix above"):
        return
    query_images, gallery_images = load_images(study.data.query), load_images(study.data.gallery)
    for name, lists in ranked.items():
        rows = ranked_rows(lists, chosen["query"], query_images, gallery_images)
        fig = plot_image_rows(rows, query_labels(chosen), title=f"{name}: top-{lists.index.shape[1]} (green + "
                                                                "correct, red - wrong; caption: distance)")
        study.save_figure(fig, f"figure5_ranked_lists_{runs[name].config.label}")


def tsne_thumbnails(study, embedded: dict[str, np.ndarray], pools: dict[str, Pool], names, max_ids: int = 40) -> None:
    """The embeddings of ``names`` with one image of each of ``max_ids`` identities, saved as
    ``figure6_tsne_thumbnails``."""
    if not _may_draw(study, "see the point plots above"):
        return
    fig, axes = plt.subplots(1, len(names), figsize=(10 * len(names), 10))
    for ax, name in zip(axes, names):
        plot_embedding(ax, embedded[name], pools[name].pids, title=f"{name}: one image of each of {max_ids} identities",
                       thumbnails=identity_thumbnails(pools[name], max_ids=max_ids))
    study.save_figure(fig, "figure6_tsne_thumbnails")
