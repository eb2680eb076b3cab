"""Re-ID data: real data sets in their official layouts, the synthetic default, PK sampling, transforms.

    load_dataset(name, root, **options) -> ReIDDataset       market1501, dukemtmc, cuhk03, cuhk01, msmt17, synthetic
    dataset_spec(name) -> DatasetSpec                        loader, source, images_allowed, distractors
    detect_dataset(root) -> name, check_options(name, options), check_files(dataset)   before any work
    ImageDataset(samples, transform)                         (image, pid, camid, index)
    PKSampler(pids, p, k, seed, rank, world_size)            one pass over the identities per epoch
    sample_pk_batch(pids, p, k, seed)                        one P x K batch of a test set (figures)
    build_transforms(...), build_loaders(dataset, ...)
    ensure_synthetic(root, SyntheticConfig(...))             the embedded default, in root/synthetic-<tag>
    validation_split(dataset), train_share(dataset, f)       held-out identities, nested training shares
"""
from .base import (CorruptImageError, DataNotFoundError, FileNameError, ReIDDataset, Sample, check_files, read_image,
                   relabel, verify_images)
from .sources import SOURCES, download
from .loaders import ImageDataset, Loaders, build_loaders
from .registry import DATASETS, DatasetSpec, check_options, dataset_spec, detect_dataset, images_allowed, load_dataset
from .sampler import PKSampler, sample_pk_batch
from .synthetic import SyntheticConfig, ensure_synthetic, generate_synthetic
from .validation import train_share, validation_split
from .transforms import IMAGENET_MEAN, IMAGENET_STD, PAPER_MEAN, PAPER_STD, build_transforms

__all__ = [
    "Sample", "ReIDDataset", "DataNotFoundError", "FileNameError", "CorruptImageError", "read_image", "relabel",
    "verify_images", "check_files", "load_dataset", "detect_dataset", "check_options", "DATASETS", "DatasetSpec",
    "dataset_spec", "images_allowed", "SOURCES",
    "download", "ImageDataset", "Loaders", "build_loaders",
    "PKSampler", "sample_pk_batch", "build_transforms", "PAPER_MEAN", "PAPER_STD", "IMAGENET_MEAN", "IMAGENET_STD",
    "SyntheticConfig", "ensure_synthetic", "generate_synthetic", "validation_split", "train_share",
]
