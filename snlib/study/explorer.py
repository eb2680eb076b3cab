"""The support-neighbour explorer (notebook 11): one test-set P x K batch, ipywidgets for the network, anchor,
k, alpha, lambda and squeeze reading; :meth:`~SupportNeighborExplorer.state` is plain data (tested),
:meth:`~SupportNeighborExplorer.render` draws it, :meth:`~SupportNeighborExplorer.widget` wires the controls."""
from __future__ import annotations

import html
import io
import traceback

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import settings
from ..losses import SQUEEZE_READINGS
from .anchor_figures import draw_anchor, draw_radial
from .geometry import anchor_layout, anchor_view, radial_velocity, sn_gradients
from .images import draw_cell, load_images, ranked_rows, support_rows
from .pools import BeforeAfter, Pool
from .ranking import ranked_lists


class SupportNeighborExplorer:
    """Interactive view of one test-set P x K batch: pick a model (e.g. before / after training), an anchor,
    k, alpha, lambda and the squeeze reading; see the sets (anchor-centred layout with the true distances),
    the radial pull / push of every neighbour under gradient descent, the anchor's terms and its ranked list
    over the whole test pool.

    ``pools``: model name -> :class:`~snlib.study.pools.Pool` (same images in the same order, features of that model);
    ``batch``: indices into the pool; ``images``: one image per pool entry, or None (real data sets: no
    images are drawn). :meth:`state` is plain data (tested), :meth:`render` draws it, :meth:`widget` wires
    ipywidgets to :meth:`render`.
    """

    def __init__(self, pools: dict[str, Pool], batch, images: list[np.ndarray] | None = None, topk: int = 10,
                 anchor: int = 0, k: int = 10, alpha: float = 50.0, lam: float = 0.1, squeeze: str = "released"):
        if not pools:
            raise ValueError("pools is empty: pass at least one model's test pool")
        sizes = {name: len(pool.pids) for name, pool in pools.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"the pools hold different test sets ({sizes}); extract them from the same data set")
        self.pools, self.batch, self.images, self.topk = pools, np.asarray(batch), images, topk
        self.defaults = {"model": next(iter(pools)), "anchor": anchor, "k": k, "alpha": alpha, "lam": lam,
                         "squeeze": squeeze}

    @classmethod
    def of(cls, pair: BeforeAfter, show_images: bool) -> "SupportNeighborExplorer":
        """The explorer of ``pair``'s batch with the run's k, alpha and lambda, the trained network first (the
        default); images only where ``show_images`` (the synthetic data set)."""
        pools = dict(reversed(pair.pools.items()))
        images = load_images(next(iter(pools.values())).samples) if show_images else None
        return cls(pools, pair.batch, images, **pair.sn)

    def state(self, model: str, anchor: int, k: int, alpha: float, lam: float, squeeze: str) -> dict:
        """Everything one rendering shows, for anchor number ``anchor`` of the batch."""
        pool = self.pools[model]
        features = pool.features[torch.as_tensor(self.batch)].double()
        labels = torch.as_tensor(pool.pids[self.batch])
        view = anchor_view(features, labels, anchor, k, alpha, lam, squeeze)
        grads = sn_gradients(features, labels, anchor, k, alpha, lam, squeeze)
        query = self.batch[anchor]
        ranked = ranked_lists(pool.features[[query]], pool.features, pool.pids[[query]], pool.pids,
                              pool.camids[[query]], pool.camids, topk=self.topk)
        return {"view": view, "layout": anchor_layout(features, view, offset=view.zoom_offset),
                "labels": labels.numpy(), "velocity": radial_velocity(features, grads, anchor), "ranked": ranked,
                "query": int(query)}

    def summary(self, state: dict, k: int, alpha: float, lam: float, squeeze: str) -> str:
        """The text of one rendering: the settings, the anchor's terms and its ranked list's hits (+ / -)."""
        terms = "\n".join(f"{name:>24s}  {value:.4g}" for name, value in state["view"].terms().items())
        hits = "".join("+" if c else "-" for c in state["ranked"].correct[0])
        return (f"k={k}  alpha={alpha:g}  lambda={lam:g}\nsqueeze={squeeze}\n\n{terms}\n\n"
                f"top-{self.topk} over the test set:\n{hits}")

    def render(self, model: str, anchor: int, k: int, alpha: float, lam: float, squeeze: str,
               state: dict | None = None):
        """Draw :meth:`state` (2-D sets, radial pull / push, terms; images only when ``images`` is given);
        ``state``: that state when already computed."""
        s = state if state is not None else self.state(model, anchor, k, alpha, lam, squeeze)
        view = s["view"]
        with_images = self.images is not None
        fig = plt.figure(figsize=(14, 10 if with_images else 4.6))
        grid = fig.add_gridspec(3 if with_images else 1, 3, height_ratios=[2.6, 1, 1] if with_images else None,
                                hspace=0.55, wspace=0.3)
        draw_anchor(fig.add_subplot(grid[0, 0]), s["layout"], s["labels"], view, offset=view.zoom_offset,
                    title=f"{model}: anchor {anchor} (identity {view.label})\n"
                          f"radius = distance to the anchor - {view.zoom_offset:.2f}")
        draw_radial(fig.add_subplot(grid[0, 1]), s["velocity"], view, s["labels"], top=2 * k)
        text = fig.add_subplot(grid[0, 2])
        text.axis("off")
        text.text(0, 0.95, self.summary(s, k, alpha, lam, squeeze), family="monospace", fontsize=8, va="top")
        if with_images:
            batch_images = [self.images[i] for i in self.batch]
            rows = {"support set": support_rows(view, batch_images),
                    "ranked list": ranked_rows(s["ranked"], [0], [self.images[s["query"]]], self.images)[0]}
            for row, (label, cells) in enumerate(rows.items(), start=1):
                sub = grid[row, :].subgridspec(1, max(len(cells), self.topk + 1))
                for c, cell in enumerate(cells):
                    draw_cell(fig.add_subplot(sub[0, c]), *cell)
                fig.axes[-len(cells)].set_ylabel(label, fontsize=8)
        return fig

    def widget(self):
        """ipywidgets controls wired to :meth:`render` (JupyterLab); returns the widget box.

        Each change redraws into an ``Image`` widget (the figure's PNG) and an ``HTML`` widget (the printed
        terms), both updated through their model state: an ``Output`` widget's captured output can be lost
        when the kernel answers before the front end has hooked the capture (ipywidgets issue #3260). An error
        in a redraw is shown in the text, not lost in the kernel's log.

        In a batch run (``make reproduce`` sets ``SNLIB_BATCH=1``) no widget is built and ``None`` is returned:
        papermill waits forever on an ipywidgets interactive output (papermill issue #723)."""
        if settings.batch_mode():
            print(f"{settings.BATCH_ENV}=1 (batch run): the widget is built when the notebook runs in JupyterLab; "
                  "the static rendering below stands in for it")
            return None
        import ipywidgets as w
        d = self.defaults
        controls = {
            "model": w.Dropdown(options=list(self.pools), value=d["model"], description="model"),
            "anchor": w.IntSlider(value=d["anchor"], min=0, max=len(self.batch) - 1, description="anchor"),
            "k": w.IntSlider(value=d["k"], min=1, max=len(self.batch) - 1, description="k"),
            "alpha": w.FloatLogSlider(value=d["alpha"], base=10, min=0, max=2.5, description="alpha"),
            "lam": w.FloatLogSlider(value=d["lam"], base=10, min=-4, max=1, description="lambda"),
            "squeeze": w.Dropdown(options=list(SQUEEZE_READINGS), value=d["squeeze"], description="squeeze"),
        }
        text, figure = w.HTML(), w.Image(format="png")

        def redraw(_change=None):
            values = {name: control.value for name, control in controls.items()}
            try:
                state = self.state(**values)
                text.value = f"<pre>{html.escape(self.caption(**values, state=state))}</pre>"
                figure.value = png_bytes(self.render(**values, state=state))
            except Exception:   # shown where the user looks; the kernel would only log it
                text.value = f"<pre>{html.escape(traceback.format_exc())}</pre>"

        for control in controls.values():
            control.observe(redraw, names="value")
        redraw()
        row = list(controls.values())
        return w.VBox([w.HBox(row[:3]), w.HBox(row[3:]), text, figure])

    def caption(self, model: str, anchor: int, k: int, alpha: float, lam: float, squeeze: str,
                state: dict | None = None) -> str:
        """The widget's text: the model, the anchor and its identity, then :meth:`summary`."""
        s = state if state is not None else self.state(model, anchor, k, alpha, lam, squeeze)
        return f"{model}: anchor {anchor} (identity {s['view'].label})\n" + self.summary(s, k, alpha, lam, squeeze)


def png_bytes(fig, dpi: int = 90) -> bytes:
    """``fig`` as PNG bytes; the figure is closed."""
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
        return buffer.getvalue()
    finally:
        plt.close(fig)
