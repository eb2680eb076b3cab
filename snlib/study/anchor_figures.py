"""Drawing one anchor of the SN loss: its sets in 2-D (markers, threshold circle, squeeze pairs, descent
arrows), the radial pull / push of its neighbours, and the figures of notebook 07 built from them.

Markers: star the anchor; filled S+ (green) / S- (red) / fallback positive (orange); hollow outside the support
set; diamond the furthest positive (see :func:`_legend`).
"""
from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.lines import Line2D
from matplotlib.patches import Circle

from ..losses import SQUEEZE_READINGS
from .geometry import AnchorView, anchor_layout, anchor_view, radial_velocity, sn_gradients, squeeze_pairs
from .style import ANCHOR, FALLBACK, NEGATIVE, POSITIVE


def _point_colours(view: AnchorView, labels) -> list[str]:
    labels = np.asarray(labels)
    return [POSITIVE if labels[j] == view.label else NEGATIVE for j in range(len(labels))]


def _set_markers(ax, xy, view: AnchorView, labels, size: float = 60) -> None:
    """Filled: in S+ / S-; hollow: outside the support set; star: the anchor."""
    colours = _point_colours(view, labels)
    inside = np.zeros(len(xy), bool)
    inside[np.concatenate([view.positive, view.negative]).astype(int)] = True
    inside[view.anchor] = False
    outside = ~inside
    outside[view.anchor] = False
    ax.scatter(xy[outside, 0], xy[outside, 1], s=size, facecolors="white",
               edgecolors=[c for c, o in zip(colours, outside) if o], linewidths=1.5, zorder=3)
    fill = [FALLBACK if (view.fallback and j in view.positive) else colours[j] for j in np.flatnonzero(inside)]
    ax.scatter(xy[inside, 0], xy[inside, 1], s=size, c=fill, edgecolors="black", linewidths=0.6, zorder=4)
    ax.scatter(*xy[view.anchor], s=3 * size, marker="*", c=ANCHOR, edgecolors="black", linewidths=0.6, zorder=5)
    ax.scatter(*xy[view.furthest_positive], s=2.6 * size, marker="D", facecolors="none", edgecolors=POSITIVE,
               linewidths=1.2, zorder=4)


def _legend(ax) -> None:
    handles = [Line2D([], [], marker="*", ls="", ms=12, mfc=ANCHOR, mec="black", label="anchor"),
               Line2D([], [], marker="o", ls="", mfc=POSITIVE, mec="black", label="S+ (same identity, in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc=NEGATIVE, mec="black", label="S- (other identity, in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc=FALLBACK, mec="black", label="S+ fallback (no positive in k-NN)"),
               Line2D([], [], marker="o", ls="", mfc="white", mec=POSITIVE, label="same identity, outside"),
               Line2D([], [], marker="o", ls="", mfc="white", mec=NEGATIVE, label="other identity, outside"),
               Line2D([], [], marker="D", ls="", mfc="none", mec=POSITIVE, label="furthest positive"),
               Line2D([], [], ls="--", color="grey", label="threshold t_i"),
               Line2D([], [], ls=":", lw=2.5, color=FALLBACK, label="squeeze term")]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)


def _squeeze_lines(ax, xy, view: AnchorView) -> None:
    for a, b, sign in squeeze_pairs(view):
        ax.plot(*zip(xy[a], xy[b]), ls=":", lw=2.5, color=FALLBACK, zorder=2)
        ax.annotate("pull" if sign > 0 else "push", xy[b], textcoords="offset points", xytext=(6, -12),
                    fontsize=7, color=FALLBACK)


def draw_anchor(ax, xy, labels, view: AnchorView, grads=None, circle: bool = True, title: str | None = None,
                legend: bool = False, arrow_length: float = 0.25, offset: float = 0.0) -> None:
    """One anchor in 2-D: the sets (markers as :func:`_legend`), lines to the support neighbours, the threshold
    circle (``circle``: only where ``xy`` keeps the anchor's distances; radius t_i - ``offset``, the offset of
    :func:`anchor_layout`), the squeeze term's pairs, and ``-grads`` as arrows (the descent direction; the
    longest arrow is ``arrow_length`` of the plot's span)."""
    xy = np.asarray(xy, dtype=float)
    for j in np.concatenate([view.positive, view.negative]).astype(int):
        ax.plot(*zip(xy[view.anchor], xy[j]), lw=0.8, color="grey", alpha=0.6, zorder=1)
    if circle and math.isfinite(view.threshold):
        ax.add_patch(Circle(xy[view.anchor], view.threshold - offset, fill=False, ls="--", color="grey", zorder=1))
    _squeeze_lines(ax, xy, view)
    _set_markers(ax, xy, view, labels)
    if grads is not None:
        step = -np.asarray(grads, dtype=float)[:, :2]
        span = np.ptp(xy, axis=0).max() or 1.0
        length = np.linalg.norm(step, axis=1)
        shown = length > 0.01 * length.max()          # arrows under 1% of the longest would be dots
        if shown.any():
            step = step * (arrow_length * span / length.max())
            ax.quiver(xy[shown, 0], xy[shown, 1], step[shown, 0], step[shown, 1], angles="xy", scale_units="xy",
                      scale=1, width=0.004, color="black", alpha=0.8, zorder=6)
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    if legend:
        _legend(ax)


def draw_radial(ax, velocity: np.ndarray, view: AnchorView, labels, top: int | None = None) -> None:
    """Bar chart of d D_{anchor,j}/dt for the anchor's support neighbours and positives (sorted by distance):
    below zero pulled in, above pushed out; bars coloured as the sets."""
    shown = np.unique(np.concatenate([view.neighbors, view.positive,
                                      np.flatnonzero(np.asarray(labels) == view.label)]).astype(int))
    shown = shown[shown != view.anchor]
    shown = shown[np.argsort(view.distances[shown], kind="stable")][:top]
    colours = _point_colours(view, labels)
    in_set = set(np.concatenate([view.positive, view.negative]).astype(int))
    fill = [to_rgba(colours[j], 1.0 if j in in_set else 0.3) for j in shown]
    ax.bar(range(len(shown)), velocity[shown], color=fill, edgecolor="black", linewidth=0.4)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(range(len(shown)), [f"{view.distances[j]:.2f}" for j in shown], rotation=90, fontsize=7)
    ax.set_xlabel("neighbour (labelled by its distance to the anchor)", fontsize=8)
    ax.set_ylabel("dD/dt  (<0 pulled in, >0 pushed out)", fontsize=8)


def toy_anchor(features, labels, view: AnchorView, options: dict):
    """Three panels of ``view`` in the plane of a 2-D batch: the sets; the descent direction of the anchor's
    loss; that of the batch loss (``options``: the loss's k, alpha, lam, normalize)."""
    xy = np.asarray(features)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.4))
    draw_anchor(axes[0], xy, labels, view, title=f"anchor {view.anchor}: k-NN, S+, S-, threshold t_i")
    draw_anchor(axes[1], xy, labels, view, grads=sn_gradients(features, labels, view.anchor, **options),
                title="descent direction -dL_i/df of this anchor's loss L_sep + lambda L_sqz")
    draw_anchor(axes[2], xy, labels, view, grads=sn_gradients(features, labels, None, **options),
                title=f"descent direction of the batch loss (mean over all {len(labels)} anchors)", legend=True)
    return fig


def squeeze_reading_panels(features, labels, anchor: int, options: dict):
    """One panel per squeeze reading: the descent direction of lambda L_sqz alone for ``anchor`` of a 2-D batch."""
    xy = np.asarray(features)
    fig, axes = plt.subplots(1, len(SQUEEZE_READINGS), figsize=(5.5 * len(SQUEEZE_READINGS), 5.2))
    for ax, reading in zip(axes, SQUEEZE_READINGS):
        grads = sn_gradients(features, labels, anchor, squeeze=reading, part="squeeze", **options)
        longest = np.linalg.norm(grads, axis=1).max()
        draw_anchor(ax, xy, labels, anchor_view(features, labels, anchor, squeeze=reading, **options), grads=grads,
                    title=f"squeeze={reading!r}: descent direction of lambda L_sqz\nlongest arrow |g| = {longest:.3f}")
    return fig


def fallback_anchor(features, labels, view: AnchorView, options: dict):
    """An anchor with no positive in its k-NN (a 2-D batch): its sets, and the descent direction of its loss."""
    xy = np.asarray(features)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    draw_anchor(axes[0], xy, labels, view, title=f"anchor {view.anchor}: no positive in its k-NN")
    draw_anchor(axes[1], xy, labels, view, grads=sn_gradients(features, labels, view.anchor, **options),
                title="descent direction of its loss", legend=True)
    return fig


def real_anchor(batches: dict, views: dict[str, list[AnchorView]], sn: dict):
    """One column per network (``batches``: name -> Pool of the batch; ``views``: its anchor's view first): the
    anchor-centred layout with the true distances (zoomed by ``view.zoom_offset``) above d D/dt of its
    neighbours; ``sn``: the loss's k, alpha, lam."""
    fig, axes = plt.subplots(2, len(batches), figsize=(15, 11), gridspec_kw={"height_ratios": [1.4, 1]})
    for column, (name, b) in enumerate(batches.items()):
        view = views[name][0]
        grads = sn_gradients(b.features, b.pids, view.anchor, **sn)
        offset = view.zoom_offset
        draw_anchor(axes[0, column], anchor_layout(b.features, view, offset=offset), b.pids, view, offset=offset,
                    legend=column == len(batches) - 1,
                    title=f"{name}: anchor {view.anchor}\nradius = distance to the anchor - {offset:.2f}")
        draw_radial(axes[1, column], radial_velocity(b.features, grads, view.anchor), view, b.pids, top=2 * sn["k"])
    return fig
