"""A contact sheet of a data set: a few identities (rows) across its cameras (columns)."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
from PIL import Image, ImageDraw

from .base import ReIDDataset, read_image


def render_identity_sheet(dataset: ReIDDataset, num_ids: int = 6, subset: str = "test", seed: int = 0,
                          height: int = 128, width: int = 64, pad: int = 4) -> Image.Image:
    """A grid image: ``num_ids`` random identities of ``subset`` (``"train"`` or ``"test"``: query and
    gallery) as rows, one image per camera as columns (a grey cell where the camera never saw it).

    Row labels give the identity, column headers the camera. Deterministic for a given ``seed``.
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset={subset!r}; choose 'train' or 'test'")
    samples = dataset.train if subset == "train" else dataset.query + dataset.gallery
    excluded = set(dataset.junk_pids + dataset.distractor_pids) if subset == "test" else set()
    by_pid = defaultdict(lambda: defaultdict(list))
    for sample in samples:
        if sample.pid not in excluded:
            by_pid[sample.pid][sample.camid].append(sample)
    pids = sorted(by_pid)
    if not pids:
        raise ValueError(f"{dataset.name} has no {subset} identities to show")
    rng = np.random.default_rng(seed)
    chosen = sorted(int(p) for p in rng.choice(pids, size=min(num_ids, len(pids)), replace=False))
    cameras = sorted({s.camid for s in samples})
    label_w, header_h = 44, 16
    sheet = Image.new("RGB", (label_w + len(cameras) * (width + pad), header_h + len(chosen) * (height + pad)),
                      "white")
    draw = ImageDraw.Draw(sheet)
    for col, cam in enumerate(cameras):
        draw.text((label_w + col * (width + pad) + 4, 2), f"cam {cam + 1}", fill="black")
    for row, pid in enumerate(chosen):
        y = header_h + row * (height + pad)
        draw.text((4, y + height // 2 - 6), f"id {pid}", fill="black")
        for col, cam in enumerate(cameras):
            x = label_w + col * (width + pad)
            images = by_pid[pid].get(cam)
            if images:
                sheet.paste(read_image(images[0].path).resize((width, height)), (x, y))
            else:
                draw.rectangle([x, y, x + width - 1, y + height - 1], fill=(200, 200, 200))
    return sheet
