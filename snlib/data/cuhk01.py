"""CUHK01 (Li et al., ACCV 2012): 971 identities, two camera views, two images per view.

Files ``campus/NNNNIII.png``: identity ``NNNN`` (1..971), image ``III`` (001, 002: camera A; 003, 004:
camera B). camid 0 = camera A, 1 = camera B.

Protocol (the paper's, after Ahmed et al. 2015): ``num_test_ids`` = 100 test identities, the other 871
train; ten random splits drawn from ``seed`` (``split_id`` picks one); query = the test images of
camera A, gallery = those of camera B.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from .base import ReIDDataset, scan_folder
from .sources import SOURCES, find_or_unpack

IMAGE_NAME = re.compile(r"^(\d{4})(\d{3})\.png$")
NUM_SPLITS = 10
#: Folders under the user's root that may hold ``campus/``.
CANDIDATES = (".", "cuhk01")


def parse_image_name(name: str) -> tuple[int, int]:
    match = IMAGE_NAME.match(name)
    if match is None:
        raise ValueError("does not match")
    pid, index = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= 4:
        raise ValueError(f"image index {index} outside 1..4")
    return pid, (index - 1) // 2


def pick_test_identities(pids: list[int], num_test_ids: int, split_id: int, seed: int) -> set[int]:
    """Split ``split_id`` of ``NUM_SPLITS`` random draws of ``num_test_ids`` identities (deterministic)."""
    if not 0 <= split_id < NUM_SPLITS:
        raise ValueError(f"split_id={split_id} outside 0..{NUM_SPLITS - 1}")
    if not 0 < num_test_ids < len(pids):
        raise ValueError(f"num_test_ids={num_test_ids} must be in 1..{len(pids) - 1}")
    rng = np.random.default_rng(seed)
    draws = [rng.permutation(sorted(pids))[:num_test_ids] for _ in range(NUM_SPLITS)]
    return {int(pid) for pid in draws[split_id]}


def load_cuhk01(root: str | Path, split_id: int = 0, num_test_ids: int = 100, seed: int = 0) -> ReIDDataset:
    """CUHK01 with ``num_test_ids`` test identities (100 in the paper: 871 / 100)."""
    data_dir = find_or_unpack(root, SOURCES["cuhk01"], CANDIDATES, ("campus",))
    samples = scan_folder(data_dir / "campus", parse_image_name, "NNNNIII.png (identity, image 001-004)")
    test_pids = pick_test_identities(sorted({s.pid for s in samples}), num_test_ids, split_id, seed)
    train = [s for s in samples if s.pid not in test_pids]
    query = [s for s in samples if s.pid in test_pids and s.camid == 0]
    gallery = [s for s in samples if s.pid in test_pids and s.camid == 1]
    info = {"split_id": split_id, "num_test_ids": num_test_ids, "seed": seed}
    return ReIDDataset("cuhk01", str(data_dir), train, query, gallery, info=info)
