"""CUHK03 (Li et al., CVPR 2014) from the official ``cuhk-03.mat``.

The file is MATLAB v7.3 (HDF5). ``labeled`` (hand-drawn boxes) and ``detected`` (DPM boxes) are 5-cell
arrays, one cell per camera pair, each an ``N_pair x 10`` cell array of ``H x W x 3`` uint8 images
(columns 1-5: first camera of the pair, 6-10: second; empty cells where a person has fewer images).
``testsets`` holds the 20 official test splits of the classic protocol, each a ``100 x 2`` table of
``[pair, person]``. HDF5 stores MATLAB arrays transposed, hence the ``.T`` below.

On first use the boxes are extracted to ``images_<boxes>/`` as lossless PNG named
``<pair>_<person:03d>_<view>_<index:02d>.png``, the names the 767/700 split files list.

Identities: ``pid = 1000 * pair + person`` (e.g. 3042), the same in both protocols. Cameras: the
physical camera, ``camid = 2 * (pair - 1) + (view - 1)`` in 0..9 (the two views of a pair are two
cameras; a same-identity, same-camera gallery image is never a match).

Protocols:
    ``classic`` (the paper's): official split ``split_id`` (0..19) of ``testsets``, 1,367 train and
        100 test identities; query = gallery = every test image (as torchreid and open-reid do: the
        evaluator removes the query's own camera, so each image is matched against the other view);
        scored with single-gallery-shot CMC (``snlib.evaluation.cuhk03_classic_cmc``).
    ``new`` (Zhong et al., CVPR 2017): 767 train / 700 test identities from
        ``cuhk03_new_protocol_config_<boxes>.mat`` (1-based ``train_idx``, ``query_idx``,
        ``gallery_idx`` into ``filelist``), scored with the Market-1501 protocol.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from .base import DataNotFoundError, ReIDDataset, Sample, listing, scan_folder
from .sources import SOURCES, find_or_unpack

MAT_NAME = "cuhk-03.mat"
BOXES = ("labeled", "detected")
PROTOCOLS = ("classic", "new")
IMAGE_NAME = re.compile(r"^(\d)_(\d{3})_([12])_(\d{2})\.png$")
IMAGES_PER_PERSON = 10  # cells per person: 5 per view
#: Folders under the user's root that may hold ``cuhk-03.mat``.
CANDIDATES = (".", "cuhk03_release", "cuhk03", "cuhk03/cuhk03_release")


def image_name(pair: int, person: int, view: int, index: int) -> str:
    """1-based pair, person, view (1, 2) and image index (1..10), as the split files spell them."""
    return f"{pair}_{person:03d}_{view}_{index:02d}.png"


def parse_image_name(name: str) -> tuple[int, int]:
    match = IMAGE_NAME.match(name)
    if match is None:
        raise ValueError("does not match")
    pair, person, view = (int(g) for g in match.groups()[:3])
    return 1000 * pair + person, 2 * (pair - 1) + (view - 1)


def _open_mat(mat_path: Path):
    import h5py

    try:
        return h5py.File(mat_path, "r")
    except OSError as err:
        raise OSError(f"{mat_path} is not a MATLAB v7.3 (HDF5) file as the official cuhk-03.mat is: {err}") from err


def extract_images(mat_path: Path, boxes: str, out_dir: Path) -> None:
    """Write every box of ``mat[boxes]`` to ``out_dir`` as PNG; nothing is done when ``out_dir`` exists.

    Extraction goes to a temporary folder renamed at the end, so an interrupted run leaves no partial
    folder behind.
    """
    if out_dir.is_dir():
        return
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        with _open_mat(mat_path) as mat:
            if boxes not in mat:
                raise KeyError(f"{mat_path} has no {boxes!r} cell array (keys: {sorted(mat.keys())})")
            pairs = [mat[ref][()] for ref in mat[boxes][()].ravel()]
            with tqdm(total=sum(cells.shape[1] for cells in pairs), desc=f"extracting CUHK03 {boxes}",
                      unit="person") as bar:
                for pair, cells in enumerate(pairs, start=1):
                    for person in range(1, cells.shape[1] + 1):
                        found = 0
                        for index in range(1, IMAGES_PER_PERSON + 1):
                            image = mat[cells[index - 1, person - 1]][()]
                            if image.ndim != 3:  # an empty cell
                                continue
                            view = 1 if index <= IMAGES_PER_PERSON // 2 else 2
                            Image.fromarray(np.ascontiguousarray(image.T)).save(
                                staging / image_name(pair, person, view, index))
                            found += 1
                        if not found:
                            raise ValueError(f"{mat_path}: person {person} of camera pair {pair} has no "
                                             f"{boxes} image; the file looks damaged")
                        bar.update()
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def classic_test_pids(mat_path: Path, split_id: int) -> set[int]:
    """The 100 test identities of official split ``split_id`` (``testsets``)."""
    with _open_mat(mat_path) as mat:
        refs = mat["testsets"][()].ravel()
        if not 0 <= split_id < len(refs):
            raise ValueError(f"split_id={split_id} outside 0..{len(refs) - 1} (the classic protocol's splits)")
        table = mat[refs[split_id]][()].T
    return {1000 * int(pair) + int(person) for pair, person in table}


def _new_protocol_lists(split_path: Path, by_name: dict[str, Sample]) -> dict[str, list[Sample]]:
    from scipy.io import loadmat

    config = loadmat(split_path)
    names = [str(np.ravel(entry)[0]) for entry in config["filelist"].ravel()]
    lists = {}
    for key in ("train", "query", "gallery"):
        picked = [names[i - 1] for i in config[f"{key}_idx"].ravel().astype(int)]
        missing = [name for name in picked if name not in by_name]
        if missing:
            raise DataNotFoundError(f"{split_path} lists {len(missing)} {key} images absent from the extracted "
                                    f"boxes: {listing(missing)}; is it the split file of these boxes?")
        lists[key] = [by_name[name] for name in picked]
    return lists


def load_cuhk03(root: str | Path, boxes: str = "labeled", protocol: str = "classic",
                split_id: int = 0) -> ReIDDataset:
    """CUHK03 with ``boxes`` in ``labeled``/``detected`` and ``protocol`` in ``classic``/``new``."""
    if boxes not in BOXES:
        raise ValueError(f"boxes={boxes!r}; choose one of {BOXES}")
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol={protocol!r}; choose one of {PROTOCOLS}")
    source = SOURCES["cuhk03"]
    mat_dir = find_or_unpack(root, source, CANDIDATES, (MAT_NAME,))
    mat_path = mat_dir / MAT_NAME
    data_dir = mat_dir.parent if mat_dir.name == "cuhk03_release" else mat_dir
    split_path = None
    if protocol == "new":
        split_name = f"cuhk03_new_protocol_config_{boxes}.mat"
        split_path = next((d / split_name for d in (data_dir, mat_dir) if (d / split_name).is_file()), None)
        if split_path is None:
            raise DataNotFoundError(f"protocol='new' needs {split_name} in {data_dir}.\n{source.help()}")
    image_dir = data_dir / f"images_{boxes}"
    extract_images(mat_path, boxes, image_dir)
    samples = scan_folder(image_dir, parse_image_name, "<pair>_<person:03d>_<view>_<index:02d>.png")
    info = {"boxes": boxes, "protocol": protocol}
    if split_path is not None:
        lists = _new_protocol_lists(split_path, {Path(s.path).name: s for s in samples})
        return ReIDDataset("cuhk03", str(data_dir), lists["train"], lists["query"], lists["gallery"], info=info)

    test_pids = classic_test_pids(mat_path, split_id)
    absent = sorted(test_pids - {s.pid for s in samples})
    if absent:
        raise ValueError(f"split {split_id} names identities without images: {listing(absent)}")
    test = [s for s in samples if s.pid in test_pids]
    train = [s for s in samples if s.pid not in test_pids]
    info["split_id"] = split_id
    return ReIDDataset("cuhk03", str(data_dir), train, query=test, gallery=list(test), info=info)
