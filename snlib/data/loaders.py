"""Torch datasets and loaders over lists of :class:`~snlib.data.base.Sample`."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from .base import ReIDDataset, Sample, read_image
from .sampler import PKSampler
from .transforms import build_transforms


class ImageDataset(torch.utils.data.Dataset):
    """``(image, pid, camid, index)`` for each sample; a file that cannot be decoded raises
    :class:`~snlib.data.base.CorruptImageError` naming its path (never a silently wrong batch)."""

    def __init__(self, samples: Sequence[Sample], transform: Callable | None = None):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, pid, camid = self.samples[index]
        image = read_image(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid, index


class Loaders(NamedTuple):
    train: torch.utils.data.DataLoader   # P x K batches; call train.sampler.set_epoch(epoch) every epoch
    query: torch.utils.data.DataLoader
    gallery: torch.utils.data.DataLoader


def build_loaders(dataset: ReIDDataset, height: int = 256, width: int = 128, p: int = 32, k: int = 4,
                  batch_size_test: int = 128, workers: int = 2, seed: int = 0, rank: int = 0,
                  world_size: int = 1, **transform_options) -> Loaders:
    """Train loader (PK batches, augmentation of :func:`build_transforms`), query and gallery loaders.

    ``transform_options`` go to :func:`build_transforms` (``flip``, ``pad_crop``, ``random_erasing``,
    ``mean``, ``std``); the test loaders use the same size and normalisation without augmentation.
    Sampling is seeded by ``seed`` (and the epoch); augmentation too when ``workers > 0`` (each worker's
    torch seed comes from the loader's generator, seeded with ``seed``); with ``workers=0`` it follows
    torch's global generator (``torch.manual_seed``).
    """
    sampler = PKSampler([s.pid for s in dataset.train], p=p, k=k, seed=seed, rank=rank, world_size=world_size)
    train_tf = build_transforms(height, width, train=True, **transform_options)
    norm = {key: transform_options[key] for key in ("mean", "std") if key in transform_options}
    test_tf = build_transforms(height, width, train=False, **norm)
    common = dict(num_workers=workers, pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)
    train = torch.utils.data.DataLoader(ImageDataset(dataset.train, train_tf), batch_size=p * k // world_size,
                                        sampler=sampler, drop_last=True,
                                        generator=torch.Generator().manual_seed(seed), **common)
    query, gallery = (torch.utils.data.DataLoader(ImageDataset(samples, test_tf), batch_size=batch_size_test,
                                                  shuffle=False, **common)
                      for samples in (dataset.query, dataset.gallery))
    return Loaders(train, query, gallery)
