"""CUHK03 (official HDF5 .mat, both protocols), CUHK01 and MSMT17 loaders on tiny fixtures in their real
structures: every extracted image, identity, camera and split checked."""
import os
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from _data_fixtures import image_bytes, write_images
from snlib.data import DataNotFoundError, FileNameError, load_dataset
from snlib.data.cuhk03 import image_name

# ------------------------------------------------------------------------------------------------ CUHK03
# persons per camera pair, and which of the 10 cells of each person hold an image (others are empty [])
CUHK03_CELLS = {
    (1, 1): [1, 2, 3, 6, 7],
    (1, 2): [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
    (1, 3): [2, 7, 8],
    (2, 1): [1, 6],
    (2, 2): [1, 3, 5, 6, 10],
}
NUM_SPLITS = 20


def _split_test_persons(split):
    """Official test persons of split ``split`` in the fixture: one or two (pair, person) per split."""
    persons = sorted(CUHK03_CELLS)
    return [persons[split % len(persons)]] + ([persons[(split + 2) % len(persons)]] if split % 2 else [])


def _pixels(boxes, pair, person, index):
    seed = (0 if boxes == "labeled" else 1000) + 100 * pair + 10 * person + index
    h, w = 6 + index, 4 + pair
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def make_cuhk03_mat(path: Path) -> None:
    """cuhk-03.mat as MATLAB v7.3 writes it: cell arrays are arrays of object references into #refs#."""
    with h5py.File(path, "w") as f:
        refs = f.create_group("#refs#")
        counter = iter(range(10 ** 6))

        def store(array):
            return refs.create_dataset(f"r{next(counter)}", data=array).ref

        def empty():
            ds = refs.create_dataset(f"r{next(counter)}", data=np.zeros(2, dtype=np.uint64))
            ds.attrs["MATLAB_empty"] = 1
            return ds.ref

        for boxes in ("labeled", "detected"):
            pair_refs = []
            for pair in (1, 2):
                persons = sorted(p for (q, p) in CUHK03_CELLS if q == pair)
                cells = np.empty((10, len(persons)), dtype=h5py.ref_dtype)  # MATLAB N x 10, transposed
                for col, person in enumerate(persons):
                    for index in range(1, 11):
                        filled = index in CUHK03_CELLS[(pair, person)]
                        cells[index - 1, col] = store(_pixels(boxes, pair, person, index).T) if filled else empty()
                pair_refs.append(store(cells))
            f.create_dataset(boxes, data=np.array([pair_refs], dtype=h5py.ref_dtype))
        tests = [store(np.array(_split_test_persons(s), dtype=float).T) for s in range(NUM_SPLITS)]
        f.create_dataset("testsets", data=np.array([tests], dtype=h5py.ref_dtype))


def _all_images():
    return sorted((pair, person, index) for (pair, person), cells in CUHK03_CELLS.items() for index in cells)


def make_new_protocol(path: Path) -> dict:
    """A 767/700-style split file: 1-based indices into filelist (train: pair 1, test: pair 2)."""
    names = [image_name(pair, person, 1 if index <= 5 else 2, index) for pair, person, index in _all_images()]
    labels = [1000 * pair + person for pair, person, _ in _all_images()]
    train = [i + 1 for i, (pair, *_) in enumerate(_all_images()) if pair == 1]
    test = [i + 1 for i, (pair, *_) in enumerate(_all_images()) if pair == 2]
    query = [i for i in test if names[i - 1].split("_")[2] == "1"]
    gallery = [i for i in test if i not in query]
    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name
    savemat(path, {"filelist": filelist, "labels": np.array(labels, float)[:, None],
                   "train_idx": np.array(train, float)[:, None], "query_idx": np.array(query, float)[:, None],
                   "gallery_idx": np.array(gallery, float)[:, None]})
    return {"names": names, "train": train, "query": query, "gallery": gallery}


@pytest.fixture
def cuhk03_root(tmp_path):
    release = tmp_path / "cuhk03" / "cuhk03_release"
    release.mkdir(parents=True)
    make_cuhk03_mat(release / "cuhk-03.mat")
    return tmp_path


@pytest.mark.parametrize("boxes", ["labeled", "detected"])
def test_cuhk03_extracts_every_box_losslessly(cuhk03_root, boxes):
    ds = load_dataset("cuhk03", cuhk03_root, boxes=boxes)
    folder = cuhk03_root / "cuhk03" / f"images_{boxes}"
    assert sorted(os.listdir(folder)) == sorted(image_name(p, q, 1 if i <= 5 else 2, i) for p, q, i in _all_images())
    for pair, person, index in _all_images():
        stored = np.asarray(Image.open(folder / image_name(pair, person, 1 if index <= 5 else 2, index)))
        np.testing.assert_array_equal(stored, _pixels(boxes, pair, person, index))
    assert ds.info == {"boxes": boxes, "protocol": "classic", "split_id": 0}


@pytest.mark.parametrize("split_id", [0, 1, 7, 19])
def test_cuhk03_classic_split_identities_and_cameras(cuhk03_root, split_id):
    ds = load_dataset("cuhk03", cuhk03_root, protocol="classic", split_id=split_id)
    test_pids = {1000 * pair + person for pair, person in _split_test_persons(split_id)}
    expected_test = sorted((1000 * pair + person, 2 * (pair - 1) + (0 if index <= 5 else 1))
                           for pair, person, index in _all_images() if 1000 * pair + person in test_pids)
    assert sorted((s.pid, s.camid) for s in ds.query) == expected_test
    assert ds.query == ds.gallery  # classic: every test image queries the other view
    train_pids = sorted({1000 * pair + person for pair, person in CUHK03_CELLS} - test_pids)
    assert ds.train_pid_map == {pid: label for label, pid in enumerate(train_pids)}
    assert ds.num_train_imgs == len(_all_images()) - len(expected_test)
    assert {s.camid for s in ds.train} <= {0, 1, 2, 3}


def test_cuhk03_extraction_runs_once(cuhk03_root):
    load_dataset("cuhk03", cuhk03_root)
    folder = cuhk03_root / "cuhk03" / "images_labeled"
    stamp = {name: (folder / name).stat().st_mtime_ns for name in os.listdir(folder)}
    load_dataset("cuhk03", cuhk03_root, split_id=3)
    assert {name: (folder / name).stat().st_mtime_ns for name in os.listdir(folder)} == stamp
    assert not [p for p in (cuhk03_root / "cuhk03").iterdir() if p.name.startswith(".")]  # no staging left


def test_cuhk03_new_protocol_from_split_file(cuhk03_root):
    split = make_new_protocol(cuhk03_root / "cuhk03" / "cuhk03_new_protocol_config_labeled.mat")
    ds = load_dataset("cuhk03", cuhk03_root, protocol="new")
    for key in ("query", "gallery"):
        assert [Path(s.path).name for s in getattr(ds, key)] == [split["names"][i - 1] for i in split[key]]
    assert [Path(s.path).name for s in ds.train] == [split["names"][i - 1] for i in split["train"]]
    assert ds.train_pid_map == {1001: 0, 1002: 1, 1003: 2}
    assert {(s.pid, s.camid) for s in ds.query} == {(2001, 2), (2002, 2)}
    assert {(s.pid, s.camid) for s in ds.gallery} == {(2001, 3), (2002, 3)}


def test_cuhk03_new_protocol_without_split_file(cuhk03_root):
    with pytest.raises(DataNotFoundError, match="(?s)cuhk03_new_protocol_config_detected.mat.*person-re-ranking"):
        load_dataset("cuhk03", cuhk03_root, boxes="detected", protocol="new")
    assert not (cuhk03_root / "cuhk03" / "images_detected").exists()  # failed before any extraction


def test_cuhk03_bad_options_and_files(cuhk03_root, tmp_path):
    with pytest.raises(ValueError, match="split_id=20 outside 0..19"):
        load_dataset("cuhk03", cuhk03_root, split_id=20)
    with pytest.raises(ValueError, match="boxes="):
        load_dataset("cuhk03", cuhk03_root, boxes="hand")
    (tmp_path / "v5").mkdir()
    savemat(tmp_path / "v5" / "cuhk-03.mat", {"labeled": np.zeros(3)})
    with pytest.raises(OSError, match="not a MATLAB v7.3"):
        load_dataset("cuhk03", tmp_path / "v5")
    assert not (tmp_path / "v5" / "images_labeled").exists()
    with pytest.raises(DataNotFoundError, match="cuhk-03.mat"):
        load_dataset("cuhk03", tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------ CUHK01
CUHK01_IDS = 12


def _write_cuhk01(campus: Path) -> None:
    write_images(campus, [f"{pid:04d}{index:03d}.png" for pid in range(1, CUHK01_IDS + 1) for index in range(1, 5)],
                 fmt="PNG")


def test_cuhk01_split_views_and_determinism(tmp_path):
    _write_cuhk01(tmp_path / "cuhk01" / "campus")
    ds = load_dataset("cuhk01", tmp_path, num_test_ids=3, split_id=2)
    test_pids = {s.pid for s in ds.query}
    assert len(test_pids) == 3 and {s.pid for s in ds.gallery} == test_pids
    assert {s.camid for s in ds.query} == {0} and {s.camid for s in ds.gallery} == {1}
    assert sorted(Path(s.path).name[4:] for s in ds.query if s.pid == min(test_pids)) == ["001.png", "002.png"]
    assert ds.num_train_pids == CUHK01_IDS - 3 and ds.num_train_imgs == 4 * (CUHK01_IDS - 3)
    assert not test_pids & set(ds.train_pid_map)
    again = load_dataset("cuhk01", tmp_path, num_test_ids=3, split_id=2)
    assert again.query == ds.query
    others = {frozenset(s.pid for s in load_dataset("cuhk01", tmp_path, num_test_ids=3, split_id=i).query)
              for i in range(10)}
    assert len(others) > 1


def test_cuhk01_unpacks_official_zip_and_checks_names(tmp_path):
    staging = tmp_path / "staging"
    _write_cuhk01(staging / "campus")
    (tmp_path / "cuhk01").mkdir()
    with zipfile.ZipFile(tmp_path / "cuhk01" / "CUHK01.zip", "w") as zf:
        for path in sorted((staging / "campus").iterdir()):
            zf.write(path, f"campus/{path.name}")
    ds = load_dataset("cuhk01", tmp_path, num_test_ids=2)
    assert ds.num_train_pids == CUHK01_IDS - 2
    (tmp_path / "cuhk01" / "campus" / "0001005.png").write_bytes(image_bytes(0, fmt="PNG"))
    with pytest.raises(FileNameError, match="0001005.png.*image index 5"):
        load_dataset("cuhk01", tmp_path)


# ------------------------------------------------------------------------------------------------ MSMT17
MSMT_LISTS = {
    "list_train.txt": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0000/0000_001_05_0303morning_0016_1.jpg", 0),
                       ("0001/0001_000_15_0303noon_0101_0.jpg", 1)],
    "list_val.txt": [("0002/0002_000_02_0303afternoon_0201_0.jpg", 2)],
    "list_query.txt": [("0000/0000_000_03_0303morning_0301_0.jpg", 0), ("0003/0003_000_07_0303noon_0302_0.jpg", 3)],
    "list_gallery.txt": [("0000/0000_001_04_0303noon_0303_0.jpg", 0), ("0003/0003_001_12_0303noon_0304_0.jpg", 3),
                         ("0003/0003_002_07_0303noon_0305_0.jpg", 3)],
}


def make_msmt17(release: Path, train_dir="train", test_dir="test") -> None:
    for list_name, rows in MSMT_LISTS.items():
        image_dir = release / (test_dir if list_name in ("list_query.txt", "list_gallery.txt") else train_dir)
        for rel, _ in rows:
            write_images(image_dir / Path(rel).parent, [Path(rel).name])
        (release / list_name).write_text("".join(f"{rel} {pid}\n" for rel, pid in rows))


@pytest.mark.parametrize("version,dirs", [("MSMT17_V1", ("train", "test")),
                                          ("MSMT17_V2", ("mask_train_v2", "mask_test_v2"))])
def test_msmt17_lists_identities_and_cameras(tmp_path, version, dirs):
    make_msmt17(tmp_path / "msmt17" / version, *dirs)
    ds = load_dataset("msmt17", tmp_path)
    assert sorted((s.pid, s.camid) for s in ds.query) == [(0, 2), (3, 6)]
    assert sorted((s.pid, s.camid) for s in ds.gallery) == [(0, 3), (3, 6), (3, 11)]
    assert sorted((s.pid, s.camid) for s in ds.train) == [(0, 0), (0, 4), (1, 14), (2, 1)]
    assert ds.num_query_pids == 2 and ds.num_gallery_pids == 2  # identity 0 is a person here
    assert all(Path(s.path).is_file() and dirs[1] in s.path for s in ds.query)
    assert load_dataset("msmt17", tmp_path / "msmt17" / version, include_val=False).num_train_imgs == 3


def test_msmt17_bad_lists(tmp_path):
    release = tmp_path / "MSMT17_V1"
    make_msmt17(release)
    with open(release / "list_query.txt", "a") as fh:
        fh.write("0004/0004_000_99_0303noon_0401_0.jpg 4\n")
    with pytest.raises(FileNameError, match="line 3"):
        load_dataset("msmt17", tmp_path)
    make_msmt17(release)
    with open(release / "list_gallery.txt", "a") as fh:
        fh.write("0009/0009_000_02_0303noon_0401_0.jpg 9\n")
    with pytest.raises(DataNotFoundError, match="1 images that do not exist"):
        load_dataset("msmt17", tmp_path)
    with pytest.raises(DataNotFoundError, match="MSMT17_V1"):
        load_dataset("msmt17", tmp_path / "elsewhere")
