"""snlib.data speed against references in the same run.

    .venv/bin/python benchmarks/bench_data.py [--images 600]

1. PKSampler at Market-1501 size (12,936 images of 751 identities, P=32, K=4): time per batch of indices,
   against torchreid 0.2.5's RandomIdentitySampler (loaded by file path). Both are far below a training
   step; the point is that sampling never shows up in a profile.
2. ImageDataset with the paper's train transform (256 x 128, flip) on synthetic images: images per second,
   against a bare loop of PIL decode + the same torchvision transform (the wrapper's overhead: ratio ~1).
3. generate_synthetic with the default config: total time and images per second, against JPEG-encoding
   the same number of random images of that size (the floor any generator pays).
"""
from __future__ import annotations

import argparse
import importlib.util
import io
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from snlib.data import ImageDataset, PKSampler, SyntheticConfig, build_transforms, generate_synthetic, load_dataset


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=600, help="images decoded in the loading benchmark")
    args = parser.parse_args()
    bench_sampler()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synthetic"
        bench_generation(root)
        bench_loading(load_dataset("market1501", root).train, args.images)


if __name__ == "__main__":
    main()
