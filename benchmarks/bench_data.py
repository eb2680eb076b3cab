"""snlib.data speed against references in the same run.

    .venv/bin/python benchmarks/bench_data.py [--images 600]

1. PKSampler at Market-1501 size (12,936 images of 751 identities, P=32, K=4): time per batch of indices,
   against torchreid 0.2.5's RandomIdentitySampler (loaded by file path). Both are far below a training
   step; the point is that sampling never shows up in a profile.
2. ImageDataset with the paper's train transform (256 x 128, flip) on synthetic images: images per second,
   against a bare loop of PIL decode + the same torchvision transform (the wrapper's overhead: ratio ~1).
3. generate_synthetic with the default config: total time and images per second, against JPEG-encoding
   the same number of random images of that size (the floor any generator pays).
4. The data pipeline's share of a training epoch (the cpu preset trained end to end, ``bench_train.END_TO_END``,
   on that synthetic set, one epoch): the DataLoader iteration alone against the full epoch (forward, backward,
   Adam), and the test loaders alone against a whole evaluation, for each ``decoded_cache`` (off = the file path,
   memory, disk), with ratios against the file path, measured first and again last (the two show what the order
   alone changes). ``--only epoch`` runs this section alone.
5. The content fingerprint that keys the decoded and trunk caches (``snlib.data.decoded.fingerprint``: sha256 of
   every image's bytes, once a process; a later call stats the files only) against decoding the same images once
   at 128x64 (what a cache saves), page cache warm. ``--only fingerprint --data-root DIR`` measures a real data
   set's images (train, query, gallery) instead of the synthetic set's.
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from bench_train import END_TO_END
from snlib import distributed, engine, settings
from snlib.data import ImageDataset, PKSampler, SyntheticConfig, build_transforms, decoded, detect_dataset, \
    generate_synthetic, load_dataset
from snlib.presets import get_preset
from snlib.runs import RunFolder


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def torchreid_sampler_class():
    spec = importlib.util.find_spec("torchreid")
    if spec is None:
        raise SystemExit("torchreid (the reference) is not installed: pip install -e '.[test]'")
    path = Path(spec.submodule_search_locations[0]) / "reid" / "data" / "sampler.py"
    module_spec = importlib.util.spec_from_file_location("torchreid_sampler", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.RandomIdentitySampler


def bench_sampler() -> None:
    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(751), rng.multinomial(12936 - 751, np.full(751, 1 / 751)) + 1)
    ours = PKSampler(pids.tolist(), p=32, k=4)
    theirs = torchreid_sampler_class()([("", int(pid), 0, 0) for pid in pids], batch_size=128, num_instances=4)
    t_ours = timed(lambda: list(ours)) / ours.num_batches
    t_theirs = timed(lambda: list(theirs)) / (len(theirs) // 128)
    print(f"PKSampler  {1e3 * t_ours:7.3f} ms/batch   torchreid RandomIdentitySampler {1e3 * t_theirs:7.3f} ms/batch"
          f"   ratio {t_theirs / t_ours:5.2f}x")


def bench_loading(samples, count: int) -> None:
    samples = samples[:count]
    transform = build_transforms(256, 128, train=True)
    dataset = ImageDataset(samples, transform)

    def wrapped():
        for i in range(len(dataset)):
            dataset[i]

    def bare():
        for sample in samples:
            with Image.open(sample.path) as image:
                transform(image.convert("RGB"))

    t_ours, t_bare = timed(wrapped), timed(bare)
    print(f"ImageDataset {len(samples) / t_ours:7.0f} img/s   bare PIL + transform {len(samples) / t_bare:7.0f} img/s"
          f"   ratio {t_bare / t_ours:5.2f}x")


def bench_generation(root: Path) -> None:
    config = SyntheticConfig()
    start = time.perf_counter()
    generate_synthetic(root, config)
    t_gen = time.perf_counter() - start
    count = sum(1 for folder in ("bounding_box_train", "bounding_box_test", "query")
                for _ in (root / folder).iterdir())
    pixels = np.random.default_rng(0).integers(0, 256, (config.height, config.width, 3), dtype=np.uint8)

    def encode_only():
        for _ in range(count):
            Image.fromarray(pixels).save(io.BytesIO(), format="JPEG", quality=config.jpeg_quality)

    t_enc = timed(encode_only, repeat=1)
    print(f"generate_synthetic (default) {t_gen:6.1f} s, {count / t_gen:6.0f} img/s   JPEG encoding alone "
          f"{count / t_enc:6.0f} img/s   ratio {t_gen / t_enc:5.1f}x the floor")
    return root


def bench_epoch_share(root: Path, cache: Path) -> None:
    previous = os.environ.get(settings.CACHE_ENV)
    os.environ[settings.CACHE_ENV] = str(cache)  # the disk cache goes to the temporary folder
    # the file path first and again last: a difference between its two rows is the order's, not a cache's
    order = [("off", "off"), *((mode, mode) for mode in decoded.MODES if mode != "off"), ("off again", "off")]
    try:
        rows = {label: _epoch_share(get_preset("cpu", data_root=str(root), decoded_cache=mode, **END_TO_END),
                                    cache / label.replace(" ", "-"))
                for label, mode in order}
    finally:
        del os.environ[settings.CACHE_ENV]
        if previous is not None:
            os.environ[settings.CACHE_ENV] = previous
    base = rows["off"]
    print("cpu preset, one epoch (train) / one evaluation (query + gallery); data = the DataLoader iteration alone")
    for label, row in rows.items():
        print(f"  decoded_cache={label:<9}  build {row['build']:5.2f} s   train data {row['data']:5.2f} s of epoch "
              f"{row['epoch']:5.2f} s ({100 * row['data'] / row['epoch']:4.1f} %)   test data {row['test_data']:5.2f} s"
              f" of evaluation {row['eval']:5.2f} s ({100 * row['test_data'] / row['eval']:4.1f} %)   vs off: "
              f"data {base['data'] / row['data']:5.1f}x, epoch {base['epoch'] / row['epoch']:4.2f}x, "
              f"test data {base['test_data'] / row['test_data']:5.1f}x, evaluation {base['eval'] / row['eval']:4.2f}x")


def _epoch_share(config, run_dir: Path) -> dict:
    decoded.clear_memory()
    data = load_dataset(config.dataset, config.data_root, **config.dataset_options)
    start = time.perf_counter()  # the cache of the training images, built once (reused below)
    decoded.decoded_images([s.path for s in data.train], config.height, config.width, config.decoded_cache)
    build = time.perf_counter() - start
    trainer = engine._Trainer(config, RunFolder(run_dir), distributed.init_distributed(), progress=False)
    bar = tqdm(disable=True)
    trainer._train_epoch(bar)  # warm-up (first-call allocations, caches of the evaluation built below)
    engine.evaluate_model(trainer.model, data.query, data.gallery, config)
    device = torch.device("cpu")

    def test_data():
        for samples in (data.query, data.gallery):
            for _ in engine.eval_loader(samples, config, device):
                pass

    return {"build": build, "data": timed(lambda: [None for _ in trainer.train_loader()]),
            "epoch": timed(lambda: trainer._train_epoch(bar)), "test_data": timed(test_data),
            "eval": timed(lambda: engine.evaluate_model(trainer.model, data.query, data.gallery, config))}


def bench_fingerprint(dataset, label: str) -> None:
    paths = sorted({s.path for split in (dataset.train, dataset.query, dataset.gallery) for s in split})
    size = sum(len(Path(path).read_bytes()) for path in paths)   # also warms the page cache

    def first():
        decoded._FILE_DIGESTS.clear()   # as in a new process: every file hashed
        decoded.fingerprint(paths)

    def decode():
        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB").resize((64, 128), Image.BILINEAR)

    t_first, t_again, t_decode = timed(first), timed(lambda: decoded.fingerprint(paths)), timed(decode, repeat=1)
    print(f"fingerprint of {len(paths)} images ({size / 1e6:.1f} MB) of {label}: "
          f"first in a process {t_first:6.2f} s, again {1e3 * t_again:6.1f} ms (stat only)   decoding them at 128x64 "
          f"{t_decode:6.2f} s   first fingerprint / decoding {t_first / t_decode:5.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="images decoded in the loading benchmark")
    parser.add_argument("--only", choices=["epoch", "fingerprint"], help="run one section only")
    parser.add_argument("--data-root", help="--only fingerprint: a data set's folder (default: the synthetic set)")
    args = parser.parse_args()
    if args.data_root and args.only != "fingerprint":
        parser.error("--data-root is read by --only fingerprint alone")
    if args.data_root:
        root = settings.user_path(args.data_root)
        bench_fingerprint(load_dataset(detect_dataset(root), root), settings.portable_path(root))
        return
    if args.only is None:
        bench_sampler()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        if args.only is None:
            bench_generation(root)
            bench_loading(load_dataset("market1501", root).train, args.images)
        else:
            generate_synthetic(root, SyntheticConfig())
        if args.only in (None, "fingerprint"):
            bench_fingerprint(load_dataset("market1501", root), "the synthetic default")
        if args.only in (None, "epoch"):
            bench_epoch_share(root, Path(tmp) / "cache")


if __name__ == "__main__":
    main()
