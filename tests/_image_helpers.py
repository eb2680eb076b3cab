"""Image helpers used only by the tests: a contact sheet of a data set and a colour-histogram retrieval baseline
(what a data set gives away without learning; test_data_synthetic.py checks the synthetic cameras defeat it)."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from tqdm.auto import tqdm

from snlib.data import ReIDDataset, Sample, read_image
from snlib.evaluation import evaluate_features


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


def color_histogram_features(samples: Sequence[Sample], bins: int = 8, stripes: int = 1, space: str = "rgb",
                             height: int = 128, width: int = 64) -> np.ndarray:
    """``(len(samples), stripes * bins**3)`` float32 features, unit L2 norm: a joint colour histogram (``bins``
    per channel, RGB or HSV) of each of ``stripes`` horizontal stripes, L1-normalised, square-rooted (Euclidean
    distance is then the Hellinger distance) and concatenated."""
    if space not in ("rgb", "hsv"):
        raise ValueError(f"space={space!r}; choose 'rgb' or 'hsv'")
    features = np.zeros((len(samples), stripes, bins ** 3), dtype=np.float32)
    for i, sample in enumerate(tqdm(samples, desc="colour histograms", unit="img", leave=False)):
        image = read_image(sample.path).resize((width, height))
        codes = np.asarray(image.convert("HSV") if space == "hsv" else image, dtype=np.int64) * bins // 256
        flat = (codes[..., 0] * bins + codes[..., 1]) * bins + codes[..., 2]
        for s, rows in enumerate(np.array_split(flat, stripes, axis=0)):
            features[i, s] = np.bincount(rows.ravel(), minlength=bins ** 3)
    features /= features.sum(axis=2, keepdims=True)
    return np.sqrt(features).reshape(len(samples), -1) / np.sqrt(stripes)


def color_histogram_baseline(dataset: ReIDDataset, bins: int = 8, stripes: int = 1, space: str = "rgb"):
    """Rank the gallery by colour-histogram distance; returns :class:`snlib.evaluation.RankResult`."""
    qf, gf = (color_histogram_features(samples, bins, stripes, space) for samples in (dataset.query, dataset.gallery))
    ids = [np.array([getattr(s, key) for s in samples]) for key in ("pid", "camid")
           for samples in (dataset.query, dataset.gallery)]
    q_pids, g_pids, q_camids, g_camids = ids
    return evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids, normalize=False)
