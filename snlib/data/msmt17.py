"""MSMT17 (Wei et al., CVPR 2018): 4,101 identities, 15 cameras, defined by list files.

``list_<split>.txt`` lines are ``<relative path> <identity>``; the camera is the third ``_`` field of
the file name (``0000_000_01_0303morning_0015_0.jpg``: camera 1). Train identities 0..1040, test
identities 0..3059 (their own numbering; identity 0 is a real person here, not a distractor).

The official training set (32,621 images) is ``list_train`` (30,248) plus ``list_val`` (2,373):
``include_val=True`` (default) reads both, ``False`` only ``list_train``.
"""
from __future__ import annotations

from pathlib import Path

from .base import DataNotFoundError, FileNameError, ReIDDataset, Sample, listing
from .sources import SOURCES

#: Release folder -> (train image folder, test image folder).
VERSIONS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2"),
            "MSMT17": ("train", "test")}
NUM_CAMS = 15


def read_list(list_path: Path, image_dir: Path) -> list[Sample]:
    """Samples of one list file; malformed lines and missing images are reported together."""
    samples, malformed, missing = [], [], []
    for number, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rel_path, pid = line.split()
            cam = int(Path(rel_path).name.split("_")[2])
            if not 1 <= cam <= NUM_CAMS:
                raise ValueError(f"camera {cam}")
            sample = Sample(str(image_dir / rel_path), int(pid), cam - 1)
        except (ValueError, IndexError):
            malformed.append(f"line {number}: {line!r}")
            continue
        if not Path(sample.path).is_file():
            missing.append(sample.path)
        samples.append(sample)
    if malformed:
        raise FileNameError(f"{list_path}: {len(malformed)} lines are not '<path> <identity>' with a camera "
                            f"1-{NUM_CAMS} in the name: {listing(malformed)}")
    if missing:
        raise DataNotFoundError(f"{list_path} lists {len(missing)} images that do not exist: {listing(missing)}")
    return samples


def find_release(root: str | Path) -> tuple[Path, str, str]:
    """The release folder (``root`` itself, ``root/<release>`` or ``root/msmt17/<release>``) and its image folders."""
    root = Path(root).expanduser()
    for version, (train_dir, test_dir) in VERSIONS.items():
        for folder in (root, root / version, root / "msmt17" / version):
            if (folder / train_dir).is_dir() and (folder / "list_train.txt").is_file():
                return folder.resolve(), train_dir, test_dir
    raise DataNotFoundError(f"no MSMT17 release (one of {sorted(VERSIONS)}) with list_train.txt under {root}.\n"
                            + SOURCES["msmt17"].help())


def load_msmt17(root: str | Path, include_val: bool = True) -> ReIDDataset:
    """MSMT17 from ``<root>/msmt17/MSMT17_V1`` (or V2, or the release folder itself)."""
    folder, train_dir, test_dir = find_release(root)
    train = read_list(folder / "list_train.txt", folder / train_dir)
    if include_val:
        train += read_list(folder / "list_val.txt", folder / train_dir)
    query = read_list(folder / "list_query.txt", folder / test_dir)
    gallery = read_list(folder / "list_gallery.txt", folder / test_dir)
    return ReIDDataset("msmt17", str(folder), train, query, gallery,
                       info={"release": folder.name, "include_val": include_val})
