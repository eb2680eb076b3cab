"""snlib.data.decoded: the decoded-image cache gives the file path's batches (bitwise, with and without
augmentation), is rebuilt when stale, round-trips on disk, falls back when it does not fit; training with it
equals training without."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from _data_fixtures import image_bytes, make_market
from snlib.data import ImageDataset, PKSampler, build_transforms, load_dataset
from snlib.data import decoded
from snlib.data.decoded import DecodedDataset, build_dataset, decoded_images, tensor_transform
from snlib.errors import ConfigError
from snlib.presets import TrainConfig, get_preset


@pytest.fixture
def market(tmp_path):
    decoded.clear_memory()
    yield load_dataset("market1501", make_market(tmp_path / "m", gt_bbox=False))
    decoded.clear_memory()


def pil_oracle(path, height, width) -> np.ndarray:
    """PIL alone: decode, RGB, bilinear resize; (3, H, W) uint8."""
    with Image.open(path) as image:
        resized = image.convert("RGB").resize((width, height), Image.BILINEAR)
    return np.asarray(resized).transpose(2, 0, 1)


def replace_image(path, seed: int) -> None:
    """Overwrite an image with other pixels (a later mtime, whatever the file system's time resolution)."""
    before = os.stat(path).st_mtime_ns
    with open(path, "wb") as fh:
        fh.write(image_bytes(seed))
    os.utime(path, ns=(before + 10**9, before + 10**9))


def batches(dataset, sampler, seed, workers=0):
    torch.manual_seed(seed)  # workers=0: augmentation draws torch's global generator
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, sampler=sampler, num_workers=workers,
                                         generator=torch.Generator().manual_seed(seed))
    return list(loader)


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_pixels_and_test_batches_are_the_file_paths(market, mode, tmp_path):
    paths = [s.path for s in market.gallery]
    pixels = decoded_images(paths, 32, 16, mode, cache_dir=tmp_path / "decoded")
    assert pixels.dtype == torch.uint8 and pixels.shape == (len(paths), 3, 32, 16)
    np.testing.assert_array_equal(pixels.numpy(), np.stack([pil_oracle(p, 32, 16) for p in paths]))
    tf = build_transforms(32, 16, train=False)
    cached = build_dataset(market.gallery, tf, 32, 16, mode, cache_dir=tmp_path / "decoded")
    assert isinstance(cached, DecodedDataset)
    files = ImageDataset(market.gallery, tf)
    for i in range(len(files)):
        image, *rest = cached[i]
        expected, *expected_rest = files[i]
        assert torch.equal(image, expected) and rest == expected_rest == [*market.gallery[i][1:], i]


@pytest.mark.parametrize("workers", [0, 1])
def test_augmented_batches_equal_the_file_path_with_the_same_seed(market, workers):
    tf = build_transforms(32, 16, train=True, flip=True, pad_crop=True, random_erasing=True, erasing_p=0.5)
    samples = market.gallery + market.query  # 13 images of 4 identities (junk and distractors included)
    sampler = PKSampler([s.pid for s in samples], p=2, k=2, seed=0)
    cached = build_dataset(samples, tf, 32, 16, "memory")
    files, fast = batches(ImageDataset(samples, tf), sampler, 3, workers), batches(cached, sampler, 3, workers)
    assert len(files) == len(fast) >= 2
    for (a, *meta_a), (b, *meta_b) in zip(files, fast):
        assert torch.equal(a, b) and all(torch.equal(x, y) for x, y in zip(meta_a, meta_b))
    plain = batches(build_dataset(samples, build_transforms(32, 16, train=False), 32, 16, "memory"), sampler, 3)
    assert not torch.equal(plain[0][0], fast[0][0])  # the augmentation did change the batch
    assert not torch.equal(batches(cached, sampler, 4, workers)[0][0], fast[0][0])  # and follows the seed


def test_memory_cache_is_reused_until_an_image_or_the_size_changes(market):
    paths = [s.path for s in market.train]
    first = decoded_images(paths, 32, 16, "memory")
    assert decoded_images(paths, 32, 16, "memory") is first  # reused, not rebuilt
    replace_image(paths[2], seed=999)
    rebuilt = decoded_images(paths, 32, 16, "memory")
    assert rebuilt is not first and not torch.equal(rebuilt[2], first[2])
    np.testing.assert_array_equal(rebuilt[2].numpy(), pil_oracle(paths[2], 32, 16))  # the new pixels
    assert torch.equal(rebuilt[[0, 1, 3, 4]], first[[0, 1, 3, 4]])
    other = decoded_images(paths, 24, 12, "memory")
    np.testing.assert_array_equal(other.numpy(), np.stack([pil_oracle(p, 24, 12) for p in paths]))


def test_disk_cache_round_trips_and_is_rebuilt_when_stale(market, tmp_path, monkeypatch):
    folder, paths = tmp_path / "decoded", [s.path for s in market.train]
    first = decoded_images(paths, 32, 16, "disk", cache_dir=folder)
    (file,) = folder.glob("*.npy")
    np.testing.assert_array_equal(np.load(file, allow_pickle=False), np.stack([pil_oracle(p, 32, 16) for p in paths]))

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(decoded, "_decoded_rows", no_decoding)
        assert torch.equal(decoded_images(paths, 32, 16, "disk", cache_dir=folder), first)  # read back, not rebuilt
    replace_image(paths[0], seed=1234)
    rebuilt = decoded_images(paths, 32, 16, "disk", cache_dir=folder)
    np.testing.assert_array_equal(rebuilt[0].numpy(), pil_oracle(paths[0], 32, 16))
    assert not torch.equal(rebuilt[0], first[0])
    assert [p.name for p in folder.glob("*.npy")] != [file.name] and len(list(folder.glob("*.npy"))) == 1
    decoded_images(paths, 24, 12, "disk", cache_dir=folder)  # another size: another file, the first kept
    assert len(list(folder.glob("*.npy"))) == 2


def test_the_fingerprint_is_the_bytes_not_the_modification_times(market, tmp_path, monkeypatch):
    """A data set placed again at the same paths (the same bytes, new times) keeps its cache; other bytes of the
    same size and time rebuild it."""
    folder, paths = tmp_path / "decoded", [s.path for s in market.train]
    first = decoded_images(paths, 32, 16, "disk", cache_dir=folder)
    for path in paths:
        before = os.stat(path).st_mtime_ns
        os.utime(path, ns=(before + 10**9, before + 10**9))
    decoded.clear_memory()  # as a new process

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")

    with monkeypatch.context() as patch:
        patch.setattr(decoded, "_decoded_rows", no_decoding)
        assert torch.equal(decoded_images(paths, 32, 16, "disk", cache_dir=folder), first)
        stat, data = os.stat(paths[1]), bytearray(open(paths[1], "rb").read())
        data[len(data) // 2] ^= 0xFF
        with open(paths[1], "wb") as fh:
            fh.write(data)
        os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert os.stat(paths[1]).st_size == stat.st_size
        decoded.clear_memory()
        with pytest.raises(AssertionError, match="decoded again"):
            decoded_images(paths, 32, 16, "disk", cache_dir=folder)


def test_a_killed_builds_partial_file_is_removed_when_the_cache_is_built(market, tmp_path):
    """A partial file nobody has written to for ABANDONED_S goes; a recent one (a build under way) stays."""
    folder, paths = tmp_path / "decoded", [s.path for s in market.train]
    key = decoded.cache_key(paths, 32, 16)
    folder.mkdir()
    old, live = folder / f".{key}-0123456789abcdef.npy.killed.tmp", folder / f".{key}-fedcba9876543210.npy.live.tmp"
    other = folder / ".0000000000000000-0123456789abcdef.npy.killed.tmp"   # another cache's
    for file in (old, live, other):
        file.write_bytes(b"partial")
    past = time.time() - decoded.ABANDONED_S - 60
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    decoded_images(paths, 32, 16, "disk", cache_dir=folder)
    assert not old.exists() and live.exists() and other.exists()


def test_a_damaged_disk_cache_is_an_error_naming_it(market, tmp_path):
    folder, paths = tmp_path / "decoded", [s.path for s in market.train]
    decoded_images(paths, 32, 16, "disk", cache_dir=folder)
    (file,) = folder.glob("*.npy")
    file.write_bytes(file.read_bytes()[:200])
    with pytest.raises(OSError, match=f"{file.name}.*delete it"):
        decoded_images(paths, 32, 16, "disk", cache_dir=folder)


def test_memory_budget_evicts_then_falls_back_to_the_files(market, monkeypatch, capsys):
    one = decoded.image_nbytes(len(market.train), 32, 16)
    monkeypatch.setattr(decoded, "memory_budget", lambda: one + 100)
    train_paths, query_paths = [s.path for s in market.train], [s.path for s in market.query]
    first = decoded_images(train_paths, 32, 16, "memory")
    decoded_images(query_paths, 32, 16, "memory")  # 3 more images do not fit beside the 5: the 5 are dropped
    assert decoded_images(train_paths, 32, 16, "memory") is not first
    decoded.clear_memory()
    monkeypatch.setattr(decoded, "memory_budget", lambda: one - 1)
    dataset = build_dataset(market.train, build_transforms(32, 16, train=False), 32, 16, "memory")
    assert isinstance(dataset, ImageDataset)
    assert "exceed the memory budget" in capsys.readouterr().out


def test_bad_mode_size_or_missing_image_is_refused_before_decoding(market, tmp_path):
    with pytest.raises(ValueError, match="decoded_cache='ram' must be one of 'off', 'memory', 'disk'"):
        decoded_images([market.train[0].path], 32, 16, "ram")
    with pytest.raises(ConfigError, match="decoded_cache='ram'"):
        TrainConfig(decoded_cache="ram")
    with pytest.raises(ValueError, match="resize to 24x12"):
        tensor_transform(build_transforms(32, 16), 24, 12)
    missing = str(tmp_path / "missing.jpg")
    with pytest.raises(OSError, match="missing.jpg"):
        decoded_images([market.train[0].path, missing], 32, 16, "memory")
    assert build_dataset(market.train, build_transforms(32, 16), 32, 16, "off").__class__ is ImageDataset


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    config = get_preset("smoke")
    load_dataset(config.dataset, root, **config.dataset_options)
    return str(root)


def test_training_with_the_cache_equals_training_without(smoke_root, tmp_path, monkeypatch):
    from snlib.engine import TIMING_KEYS, train

    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    config = get_preset("smoke", data_root=smoke_root, epochs=1, height=32, width=16, p=4)
    runs = {mode: train(config.replace(decoded_cache=mode), run_dir=tmp_path / mode, progress=False)
            for mode in ("off", "memory", "disk")}
    assert list((tmp_path / "cache" / "decoded").glob("*.npy"))  # the disk run did use its files
    assert any(pixels.shape[2:] == (32, 16) for _, pixels in decoded._MEMORY.values())  # and the memory run
    strip = [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in runs["off"].history]
    assert len(strip) >= 2
    for mode in ("memory", "disk"):
        assert [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in runs[mode].history] == strip
        assert runs[mode].metrics == runs["off"].metrics
