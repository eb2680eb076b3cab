"""Re-ID data: real data sets in their official layouts, the synthetic default, PK sampling, transforms.

    load_dataset(name, root, **options) -> ReIDDataset       market1501, dukemtmc, cuhk03, cuhk01, msmt17, synthetic
    ImageDataset(samples, transform)                         (image, pid, camid, index)
    PKSampler(pids, p, k, seed, rank, world_size)            one pass over the identities per epoch
    build_transforms(...), build_loaders(dataset, ...)
    ensure_synthetic(root, SyntheticConfig(...))             the embedded default, generated on demand
"""
from .base import (CorruptImageError, DataNotFoundError, FileNameError, ReIDDataset, Sample, read_image, relabel,
                   verify_images)
from .baseline import color_histogram_baseline, color_histogram_features
from .sources import SOURCES, download
from .loaders import ImageDataset, Loaders, build_loaders
from .registry import LOADERS, load_dataset
from .sampler import PKSampler
from .sheet import render_identity_sheet
from .synthetic import SyntheticConfig, ensure_synthetic, generate_synthetic
from .transforms import IMAGENET_MEAN, IMAGENET_STD, PAPER_MEAN, PAPER_STD, build_transforms

__all__ = [
    "Sample", "ReIDDataset", "DataNotFoundError", "FileNameError", "CorruptImageError", "read_image", "relabel",
    "verify_images", "load_dataset", "LOADERS", "SOURCES", "download", "ImageDataset", "Loaders", "build_loaders",
    "PKSampler", "build_transforms", "PAPER_MEAN", "PAPER_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "SyntheticConfig", "ensure_synthetic", "generate_synthetic", "render_identity_sheet",
    "color_histogram_features", "color_histogram_baseline",
]
