"""Data safety: the data set of a --data-root is detected (or refused), synthetic sets never share or delete a
folder, the run hash does not depend on the working folder, loader options are checked, and broken images are
found before training."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import snlib.reproduce
from _data_fixtures import make_duke, make_market, write_images
from snlib import engine, runs, settings
from snlib.__main__ import main as cli
from snlib.data import (CorruptImageError, DataNotFoundError, check_files, check_options, detect_dataset,
                        load_dataset)
from snlib.data.synthetic import (CONFIG_FILE, SyntheticConfig, SyntheticFolderError, ensure_synthetic,
                                  generate_synthetic, synthetic_root)
from snlib.errors import ConfigError
from snlib.presets import config_hash, get_preset

TINY = dict(num_train_ids=3, num_test_ids=3, num_cameras=2, images_per_camera=2, num_distractors=1, num_junk=1,
            height=32, width=16)
#: The smoke preset cut to seconds on the Market fixture (3 train identities).
SMALL = ["--epochs", "1", "--set", "p=2", "--set", "k=2", "--set", "height=32", "--set", "width=16"]


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


@pytest.fixture
def market(tmp_path):
    return make_market(tmp_path / "Market-1501-v15.09.15")


# ----------------------------------------------------------------------------------------- 1. detection
def _cuhk03(root):
    (root / "cuhk03_release").mkdir(parents=True)
    (root / "cuhk03_release" / "cuhk-03.mat").write_bytes(b"HDF")


def _cuhk01(root):
    write_images(root / "campus", ["0001001.png"], fmt="PNG")


def _msmt17(root):
    release = root / "MSMT17_V1"
    write_images(release / "train" / "0000", ["0000_000_01_0303morning_0015_0.jpg"])
    (release / "list_train.txt").write_text("0000/0000_000_01_0303morning_0015_0.jpg 0\n")


@pytest.mark.parametrize("name, make", [
    ("market1501", make_market), ("dukemtmc", make_duke), ("cuhk03", _cuhk03), ("cuhk01", _cuhk01),
    ("msmt17", _msmt17), ("synthetic", lambda root: generate_synthetic(root, SyntheticConfig(**TINY)))])
def test_each_layout_is_detected_in_its_folder_and_a_parent(tmp_path, name, make):
    make(tmp_path / "set")
    assert detect_dataset(tmp_path / "set") == name
    if name in ("market1501", "cuhk03"):  # a parent the loader accepts (data/market1501/..., data/cuhk03/...)
        os.rename(tmp_path / "set", tmp_path / name)
        assert detect_dataset(tmp_path) == name


def test_an_unknown_folder_is_refused_listing_what_was_looked_for(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "NOTES.txt").write_text("mine")
    for root, state in ((tmp_path / "photos", "no known layout"), (tmp_path / "absent", "does not exist")):
        with pytest.raises(DataNotFoundError) as err:
            detect_dataset(root)
        message = str(err.value)
        assert state in message and "bounding_box_train/" in message and "cuhk-03.mat" in message
        assert all(name in message for name in ("market1501", "dukemtmc", "cuhk01", "msmt17", "synthetic"))
    make_market(tmp_path / "both" / "market1501")
    make_duke(tmp_path / "both" / "DukeMTMC-reID")
    with pytest.raises(ConfigError, match="several data sets .market1501, dukemtmc."):
        detect_dataset(tmp_path / "both")


def test_train_detects_market_and_writes_nothing_into_it(market, tmp_path, capsys):
    before = _listing(market)
    cli(["train", "--preset", "smoke", "--data-root", str(market), *SMALL, "--cache-root", str(tmp_path / "cache"),
         "--no-progress"])
    out = capsys.readouterr().out
    assert _listing(market) == before
    shown = settings.portable_path(market)  # absolute: pytest's folder lies outside the repository
    assert f"data: market1501 at {shown} (3 train ids, 5 train images, 3 queries, 9 gallery" in out
    (run,) = (tmp_path / "cache").iterdir()
    result = json.loads((run / runs.RESULT).read_text())
    assert (result["dataset"], result["data_root"]) == ("market1501", shown)
    assert result["config"]["dataset"] == "market1501" and result["config"]["dataset_options"] == {}


def test_evaluate_and_reproduce_detect_the_data_set(market, capsys, monkeypatch):
    cli(["evaluate", "--initial", "--preset", "smoke", "--data-root", str(market), "--set", "height=32",
         "--set", "width=16"])
    assert "on market1501 (3 queries, 9 gallery images" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(snlib.reproduce, "run_reproduction", lambda *args, **kwargs: calls.append(args[:3]))
    cli(["reproduce", "--preset", "smoke", "--data-root", str(market)])
    cli(["reproduce", "--preset", "smoke"])
    assert calls == [("smoke", "market1501", str(market)), ("smoke", "synthetic", str(settings.data_dir()))]


# ------------------------------------------------------------------------------------ 2. nothing deleted
def test_the_generator_never_deletes_a_foreign_file(tmp_path):
    config = SyntheticConfig(**TINY)
    target = synthetic_root(tmp_path, config)
    target.mkdir()
    (target / "NOTES.txt").write_text("mine")
    with pytest.raises(SyntheticFolderError, match=r"holds no synthetic.json \(NOTES.txt\)"):
        ensure_synthetic(tmp_path, config)
    assert (target / "NOTES.txt").read_text() == "mine" and os.listdir(target) == ["NOTES.txt"]


def test_a_set_of_another_config_is_kept_and_named(tmp_path):
    folder = generate_synthetic(tmp_path / "mine", SyntheticConfig(**TINY))
    before = _listing(folder)
    with pytest.raises(SyntheticFolderError, match=r"another configuration \(num_test_ids: 3 there, 4 asked\)"):
        ensure_synthetic(folder, SyntheticConfig(**TINY), num_test_ids=4)
    assert _listing(folder) == before and json.loads((folder / CONFIG_FILE).read_text())["num_test_ids"] == 3


def test_smoke_and_cpu_presets_get_different_synthetic_folders():
    smoke, cpu = get_preset("smoke"), get_preset("cpu")
    assert smoke.data_root == cpu.data_root == "data"
    folders = {synthetic_root(settings.repo_path(c.data_root), SyntheticConfig(**c.dataset_options))
               for c in (smoke, cpu)}
    assert len(folders) == 2 and all(f.parent == settings.data_dir().resolve() for f in folders)
    assert all(f.name.startswith("synthetic-") and len(f.name) == len("synthetic-") + 8 for f in folders)


# ---------------------------------------------------------------------------------------- 3. the run hash
def test_the_hash_does_not_depend_on_the_working_folder(tmp_path, monkeypatch):
    config = get_preset("smoke")
    hashes = []
    for cwd in (tmp_path, settings.repo_root() / "snlib"):
        monkeypatch.chdir(cwd)
        hashes.append(config_hash(config))
        assert config.hashed_dict()["data_root"] == "data"
    absolute = config.replace(data_root=str(settings.repo_root() / "data"))
    assert hashes[0] == hashes[1] == config_hash(absolute)
    assert config_hash(config.replace(data_root="data/other")) != hashes[0]


# -------------------------------------------------------------------------------------- 4. loader options
def test_loader_options_are_checked_before_any_work(market):
    with pytest.raises(ConfigError, match=r"'market1501' takes no option num_cameras, num_train_ids.*accepts: "
                                          r"keep_junk, multi_query, distractors_500k"):
        get_preset("smoke").replace(dataset="market1501", dataset_options={"num_train_ids": 3, "num_cameras": 2})
    with pytest.raises(ConfigError, match="'cuhk03' takes no option box.*boxes, protocol, split_id"):
        load_dataset("cuhk03", market, box="labeled")
    with pytest.raises(ConfigError, match="synthetic' takes no option colour.*num_train_ids"):
        check_options("synthetic", {"colour": 1})
    check_options("synthetic", {"num_train_ids": 3})


# --------------------------------------------------------------------------------------- 5. pre-flight
def test_a_zero_byte_gallery_image_fails_before_training_and_in_verify(market, tmp_path, capsys):
    empty = market / "bounding_box_test" / "0003_c4s2_000401_01.jpg"
    empty.write_bytes(b"")
    config = get_preset("smoke", dataset="market1501", data_root=str(market), dataset_options={}, epochs=1,
                        p=2, k=2, height=32, width=16)
    epochs = []
    with pytest.raises(CorruptImageError) as err:
        engine.train(config, cache_root=tmp_path / "cache", on_epoch_end=lambda epoch, state: epochs.append(epoch))
    # 5 train + 3 query + 9 gallery + 4 multi-query (gt_bbox) files
    assert "1 of 21 files" in str(err.value) and f"{empty} (gallery:" in str(err.value)
    assert epochs == [] and not list((tmp_path / "cache").rglob(runs.CHECKPOINT))
    with pytest.raises(CorruptImageError, match="1 not readable as images: .*0003_c4s2_000401_01.jpg"):
        cli(["verify", "--dataset", "market1501", "--data-root", str(market), "--debug"])
    with pytest.raises(SystemExit):
        cli(["verify", "--data-root", str(market)])
    assert str(empty) in capsys.readouterr().err
    empty.unlink()
    cli(["verify", "--data-root", str(market), "--decode"])
    assert f"market1501 at {market}: 20 images, all decoded" in capsys.readouterr().out


def test_missing_and_broken_files_are_reported_together(market):
    dataset = load_dataset("market1501", market)
    (market / "query" / "0001_c5s1_002051_00.jpg").unlink()
    (market / "bounding_box_train" / "0007_c3s1_000801_01.jpg").write_bytes(b"not an image")
    with pytest.raises(DataNotFoundError) as err:
        check_files(dataset)
    message = str(err.value)
    assert "2 of 21 files" in message and "1 missing: " in message and "0001_c5s1_002051_00.jpg (query)" in message
    assert "1 not readable as images: " in message and "0007_c3s1_000801_01.jpg (train:" in message


def test_verify_reads_a_synthetic_folder_as_it_is(tmp_path, capsys):
    folder = generate_synthetic(tmp_path / "set", SyntheticConfig(**TINY))
    before = _listing(tmp_path)
    cli(["verify", "--data-root", str(folder), "--decode"])
    assert "all decoded" in capsys.readouterr().out and _listing(tmp_path) == before
