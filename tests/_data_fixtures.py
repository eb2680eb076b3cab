"""Tiny data sets in the official layouts and naming schemes, written into a temporary folder."""
from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SHARED_CUHK03P1 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cuhk03p1"


def image_bytes(seed: int, size=(8, 16), fmt="JPEG") -> bytes:
    """A small random image (width x height ``size``) encoded as ``fmt``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_images(folder: Path, names, fmt="JPEG") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / name).write_bytes(image_bytes(zlib.crc32(name.encode()) + i, fmt=fmt))


# Market-1501: (folder, file name, expected pid, expected 0-based camid)
MARKET_FILES = [
    ("bounding_box_train", "0002_c1s1_000451_03.jpg", 2, 0),
    ("bounding_box_train", "0002_c2s1_000551_01.jpg", 2, 1),
    ("bounding_box_train", "0007_c3s1_000801_01.jpg", 7, 2),
    ("bounding_box_train", "0007_c6s2_001001_02.jpg", 7, 5),
    ("bounding_box_train", "1500_c4s3_012345_00.jpg", 1500, 3),
    ("query", "0001_c1s1_001051_00.jpg", 1, 0),
    ("query", "0001_c5s1_002051_00.jpg", 1, 4),
    ("query", "0003_c2s1_000301_00.jpg", 3, 1),
    ("bounding_box_test", "0001_c1s1_001101_01.jpg", 1, 0),
    ("bounding_box_test", "0001_c3s1_001201_02.jpg", 1, 2),
    ("bounding_box_test", "0003_c4s2_000401_01.jpg", 3, 3),
    ("bounding_box_test", "0003_c2s1_000351_01.jpg", 3, 1),
    ("bounding_box_test", "0000_c1s1_000151_01.jpg", 0, 0),
    ("bounding_box_test", "0000_c6s1_000376_03.jpg", 0, 5),
    ("bounding_box_test", "-1_c1s1_000401_03.jpg", -1, 0),
    ("bounding_box_test", "-1_c2s1_000551_02.jpg", -1, 1),
    ("bounding_box_test", "-1_c5s1_000601_01.jpg", -1, 4),
]
# gt_bbox: hand-drawn boxes; the multi-query set keeps those of a query's (identity, camera)
MARKET_GT_BBOX = [
    ("0001_c1s1_001051_00.jpg", True), ("0001_c1s1_009376_00.jpg", True), ("0001_c5s1_002076_00.jpg", True),
    ("0001_c2s1_001976_00.jpg", False), ("0003_c2s1_000301_00.jpg", True), ("0002_c1s1_000451_00.jpg", False),
]


def make_market(data_dir: Path, gt_bbox: bool = True, extras=True) -> Path:
    """Market-1501 layout in ``data_dir``, with the Thumbs.db files the official archive ships."""
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        write_images(data_dir / folder, [name for f, name, *_ in MARKET_FILES if f == folder])
        if extras:
            (data_dir / folder / "Thumbs.db").write_bytes(b"\x00thumbs")
    if gt_bbox:
        write_images(data_dir / "gt_bbox", [name for name, _ in MARKET_GT_BBOX])
        (data_dir / "gt_query").mkdir()
        (data_dir / "gt_query" / "0001_c1s1_001051_00_good.mat").write_bytes(b"MATLAB")
    if extras:
        (data_dir / "readme.txt").write_text("research use only")
    return data_dir


DUKE_FILES = [
    ("bounding_box_train", "0001_c2_f0046182.jpg", 1, 1),
    ("bounding_box_train", "0001_c5_f0051341.jpg", 1, 4),
    ("bounding_box_train", "0005_c8_f0155912.jpg", 5, 7),
    ("query", "0005_c2_f0046985.jpg", 5, 1),
    ("bounding_box_test", "0005_c1_f0045236.jpg", 5, 0),
    ("bounding_box_test", "7140_c7_f0160734.jpg", 7140, 6),
]


def make_duke(data_dir: Path) -> Path:
    for folder in ("bounding_box_train", "query", "bounding_box_test"):
        write_images(data_dir / folder, [name for f, name, *_ in DUKE_FILES if f == folder])
    return data_dir


def smoke_set(folder: Path) -> str:
    """The smoke preset's synthetic set generated into ``folder`` (a module fixture's temporary folder)."""
    from snlib.data import load_dataset
    from snlib.presets import get_preset

    config = get_preset("smoke")
    load_dataset(config.dataset, folder / "synthetic-smoke", **config.dataset_options)
    return str(folder / "synthetic-smoke")
