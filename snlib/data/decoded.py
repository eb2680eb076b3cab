"""Decoded-image cache: every image decoded and resized ONCE to the run's input size, kept as one uint8 tensor.

The file path (:class:`~snlib.data.loaders.ImageDataset`) decodes a JPEG and resizes it with PIL each time a
sample is drawn. :class:`DecodedDataset` reads the same uint8 pixels from an ``(N, 3, H, W)`` tensor, built by the
same :func:`~snlib.data.base.read_image` and PIL resize (:func:`~snlib.data.transforms.resize_step`), and applies
the rest of the transform on tensors (flip, pad-crop, uint8 -> float / 255, normalise, random erasing: the same
torchvision objects, drawing torch's generator the same way), so its batches are bitwise the file path's.

Footprint: ``3 * H * W`` bytes an image: 98 KB at 256 x 128 (Market-1501: 12,936 training images 1.27 GB, 3,368
queries 0.33 GB, 19,732 gallery images 1.94 GB), 24 KB at the cpu preset's 128 x 64.

Modes (``TrainConfig.decoded_cache``):

* ``"off"``: the file path.
* ``"memory"``: built in this process and kept for later loaders of the same images (training epochs, periodic
  evaluations, later runs in the process) while all of them fit :func:`memory_budget` (a quarter of the machine's
  memory); the least recently used are dropped to make room, and a list of images that alone exceeds the budget
  uses the file path (a line says so).
* ``"disk"``: a ``.npy`` file in ``<cache root>/decoded/``, written as it is decoded (building needs no memory),
  memory-mapped when read (the OS page cache holds it) and reused by later processes; the file path (and a line)
  when the disk lacks the space.

A cache is keyed by its image paths and size, its content by the fingerprint of the files (each path with the
sha256 of its bytes): a changed, added or removed image gives another fingerprint and the cache is rebuilt, never
reused, while a data set placed again at the same path (copied or extracted anew: the same bytes, new
modification times) keeps its caches.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision import transforms as T
from tqdm.auto import tqdm

from .. import settings
from ..errors import DamagedFileError
from .base import CorruptImageError, Sample, read_image
from .loaders import ImageDataset
from .transforms import resize_step

MODES = ("off", "memory", "disk")
#: Share of the machine's memory the ``"memory"`` caches of a process may hold together.
MEMORY_FRACTION = 0.25
#: Seconds after which a partial cache file (``.<key>-*.npy.*.tmp``) nobody writes to is a killed build's, removed
#: when that cache is built again (a live build writes every batch; a killed one skips ``atomic_write``'s clean-up).
ABANDONED_S = 3600
#: Version of the cache content (part of the key: a change of how images are decoded rebuilds every cache).
FORMAT = 1

_MEMORY: OrderedDict[str, tuple[str, torch.Tensor]] = OrderedDict()  # key -> (fingerprint, pixels), LRU order
_FILE_DIGESTS: dict[tuple[str, int, int], str] = {}  # (path, byte size, mtime_ns) -> sha256 of the bytes


def image_nbytes(count: int, height: int, width: int) -> int:
    """Bytes of ``count`` decoded RGB images of ``height x width``."""
    return count * 3 * height * width


def memory_budget() -> int:
    """Bytes the ``"memory"`` caches may hold: :data:`MEMORY_FRACTION` of the machine's physical memory."""
    return int(MEMORY_FRACTION * os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def clear_memory() -> None:
    """Drop every ``"memory"`` cache of this process and the files' digests it remembers."""
    _MEMORY.clear()
    _FILE_DIGESTS.clear()


def cache_key(paths: Sequence[str], height: int, width: int) -> str:
    """Which cache: the image paths (hence the data root and the subset) and the size."""
    text = json.dumps([FORMAT, height, width, list(paths)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(paths: Sequence[str]) -> str:
    """What the cache holds: sha256 over every file's path and the sha256 of its bytes. Content, not modification
    times, so that the same files placed again at the same paths reuse the caches; a file is read again only
    when its size or modification time changed since this process last read it (a study's runs ask for the same
    images often)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path}\0{_file_digest(path)}\n".encode())
    return digest.hexdigest()


def _file_digest(path: str) -> str:
    try:
        stat = os.stat(path)
        stamp = (path, stat.st_size, stat.st_mtime_ns)
        if stamp not in _FILE_DIGESTS:
            _FILE_DIGESTS[stamp] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError as err:
        raise CorruptImageError(f"cannot read image {path}: {err}") from err
    return _FILE_DIGESTS[stamp]


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def _decoded_rows(paths: Sequence[str], height: int, width: int, desc: str):
    """``(3, height, width)`` uint8 arrays: each image as the file path has it before augmentation."""
    resize = resize_step(height, width)
    for path in tqdm(paths, desc=desc, unit="img", mininterval=1.0, dynamic_ncols=True):
        yield np.array(resize(read_image(path)), dtype=np.uint8).transpose(2, 0, 1)


def decode_images(paths: Sequence[str], height: int, width: int, desc: str = "decoding images") -> torch.Tensor:
    """The images of ``paths`` decoded and resized to ``height x width``: one uint8 tensor ``(N, 3, H, W)``."""
    pixels = torch.empty((len(paths), 3, height, width), dtype=torch.uint8)
    for row, image in zip(pixels, _decoded_rows(paths, height, width, desc)):
        row.copy_(torch.from_numpy(image))
    return pixels


def decoded_images(paths: Sequence[str], height: int, width: int, mode: str = "memory",
                   cache_dir: str | Path | None = None, desc: str = "images") -> torch.Tensor | None:
    """The uint8 ``(N, 3, height, width)`` pixels of ``paths`` from the cache of ``mode`` (module docstring),
    built when missing or stale; ``None`` for ``"off"`` or when the cache does not fit (the file path then).

    ``cache_dir`` (``"disk"``): the folder of the files, default ``<settings.cache_root()>/decoded``.
    """
    if mode not in MODES:
        raise ValueError(f"decoded_cache={mode!r} must be one of {', '.join(map(repr, MODES))}")
    paths = [str(path) for path in paths]
    if mode == "off" or not paths:
        return None
    key, content = cache_key(paths, height, width), fingerprint(paths)
    nbytes = image_nbytes(len(paths), height, width)
    label = f"{len(paths)} {desc} at {height}x{width} ({_gb(nbytes)})"
    if mode == "memory":
        return _from_memory(paths, height, width, key, content, nbytes, label)
    folder = Path(cache_dir) if cache_dir is not None else settings.cache_root() / "decoded"
    return _from_disk(paths, height, width, folder, key, content, label)


def _from_memory(paths, height, width, key, content, nbytes, label) -> torch.Tensor | None:
    pixels = held(_MEMORY, key, content)
    if pixels is not None:
        return pixels
    if not make_room(_MEMORY, nbytes):
        tqdm.write(f"decoded cache: {label} exceed the memory budget of {_gb(memory_budget())} (a quarter of this "
                   "machine's memory): reading the image files instead; decoded_cache='disk' memory-maps them")
        return None
    pixels = decode_images(paths, height, width, desc=f"decoding {label} into memory")
    _MEMORY[key] = (content, pixels)
    return pixels


def held(memory: OrderedDict, key: str, content: str) -> torch.Tensor | None:
    """The array ``memory`` (key -> (content fingerprint, array), least recently used first) holds for ``key``
    when it was made from ``content``, marked most recently used; else None."""
    entry = memory.pop(key, None)
    if entry is None or entry[0] != content:
        return None
    memory[key] = entry
    return entry[1]


def make_room(memory: OrderedDict, nbytes: int) -> bool:
    """Drop the least recently used arrays of ``memory`` until ``nbytes`` more fit :func:`memory_budget`; False
    (nothing dropped) when ``nbytes`` alone exceed it."""
    budget = memory_budget()
    if nbytes > budget:
        return False
    while memory and sum(t.numel() * t.element_size() for _, t in memory.values()) + nbytes > budget:
        memory.popitem(last=False)
    return True


def _from_disk(paths, height, width, folder: Path, key, content, label) -> torch.Tensor | None:
    shape = (len(paths), 3, height, width)
    return stored_array(folder, key, content, shape, np.uint8, "decoded cache", label, "reading the image files",
                        lambda: (row.tobytes() for row in _decoded_rows(paths, height, width,
                                                                        desc=f"decoding {label} into {folder}")))


def stored_array(folder: Path, key: str, content: str, shape: tuple[int, ...], dtype, cache: str, label: str,
                 fallback: str, rows: Callable) -> torch.Tensor | None:
    """The array of ``shape`` and ``dtype`` kept in ``<folder>/<key>-<content[:16]>.npy`` (``key``: what it holds,
    ``content``: the fingerprint of its sources), written once from ``rows()`` (:func:`atomic_write_npy`) when
    absent, a file of the same key with other content removed once the new one is complete (and a killed build's
    partial file, :data:`ABANDONED_S`); memory-mapped
    copy-on-write (the file is never changed). None, after saying so, when it does not fit the free disk (the
    caller then does ``fallback``). ``cache``, ``label``: the cache's name and what it holds, for the messages."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    path = folder / f"{key}-{content[:16]}.npy"
    if not path.is_file():
        stale = sorted(folder.glob(f"{key}-*.npy"))  # the same sources and settings, other file contents
        folder.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(folder).free
        if nbytes > free:
            tqdm.write(f"{cache}: {label} do not fit the {_gb(free)} free in {folder}: {fallback} instead")
            return None
        for left in folder.glob(f".{key}-*.npy.*.tmp"):
            if time.time() - left.stat().st_mtime > ABANDONED_S:
                left.unlink(missing_ok=True)
        if stale:
            tqdm.write(f"{cache}: the images of {stale[0].name} changed; rebuilding it")
        tqdm.write(f"{cache}: writing {label} into {folder}")
        atomic_write_npy(path, shape, rows, dtype=dtype)
        for old in stale:
            old.unlink(missing_ok=True)
    try:
        array = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise DamagedFileError(f"{cache} {path} cannot be read ({err}); delete it and it is rebuilt") from err
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise DamagedFileError(f"{cache} {path} holds {array.dtype} {array.shape}, not {np.dtype(dtype)} {shape}; "
                               "delete it and it is rebuilt")
    return torch.from_numpy(array)


def atomic_write_npy(path: Path, shape: tuple[int, ...], rows: Callable, dtype=np.uint8) -> None:
    """A ``.npy`` of ``shape`` and ``dtype`` (uint8 unless given) written from ``rows()`` (an iterable of bytes, in
    C order) through :func:`snlib.settings.atomic_write`, never held in memory as a whole."""
    dtype = np.dtype(dtype)
    expected = int(np.prod(shape)) * dtype.itemsize

    def write(fh):
        np.lib.format.write_array_header_1_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": shape})
        written = sum(fh.write(row) for row in rows())
        if written != expected:
            raise RuntimeError(f"{path}: wrote {written} bytes of data, expected {expected}")
    settings.atomic_write(path, write)


class UInt8ToFloat:
    """``ToTensor`` for uint8 tensors: ``float32 / 255``, the very operation ToTensor applies to a PIL image."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return image.to(dtype=torch.float32).div(255)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def tensor_transform(transform: T.Compose, height: int, width: int) -> T.Compose:
    """A :func:`~snlib.data.transforms.build_transforms` pipeline for decoded uint8 tensors: its resize (done when
    decoding; it must be to ``height x width``) dropped, ``ToTensor`` replaced by :class:`UInt8ToFloat`, every
    other step kept (the same objects, hence the same random draws)."""
    first = transform.transforms[0]
    if not isinstance(first, T.Resize) or tuple(first.size) != (height, width) or first.interpolation != \
            T.InterpolationMode.BILINEAR:
        raise ValueError(f"the transform must start with a bilinear resize to {height}x{width} (the decoded size), "
                         f"not {first}")
    steps = [UInt8ToFloat() if isinstance(step, T.ToTensor) else step for step in transform.transforms[1:]]
    return T.Compose(steps)


class DecodedDataset(torch.utils.data.Dataset):
    """``(image, pid, camid, index)`` for each sample, as :class:`~snlib.data.loaders.ImageDataset`, from decoded
    pixels (row ``i`` = ``samples[i]``); ``transform`` takes a uint8 ``(3, H, W)`` tensor
    (:func:`tensor_transform`)."""

    def __init__(self, samples: Sequence[Sample], pixels: torch.Tensor, transform: Callable | None = None):
        if pixels.dtype != torch.uint8 or pixels.dim() != 4 or len(pixels) != len(samples):
            raise ValueError(f"pixels {tuple(pixels.shape)} {pixels.dtype} must be uint8 (N, 3, H, W) with "
                             f"N = {len(samples)} samples")
        self.samples, self.pixels, self.transform = list(samples), pixels, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        _, pid, camid = self.samples[index]
        image = self.pixels[index]
        if self.transform is not None:
            image = self.transform(image)
        return image, pid, camid, index


def build_dataset(samples: Sequence[Sample], transform: T.Compose, height: int, width: int, mode: str = "memory",
                  cache_dir: str | Path | None = None, desc: str = "images") -> torch.utils.data.Dataset:
    """A :class:`DecodedDataset` over the decoded cache of ``mode`` (:func:`decoded_images`) with ``transform``
    (a :func:`~snlib.data.transforms.build_transforms` pipeline to ``height x width``) made for tensors; the file
    path (:class:`~snlib.data.loaders.ImageDataset`) for ``"off"`` or when the cache does not fit."""
    on_tensors = tensor_transform(transform, height, width) if mode != "off" else None
    pixels = decoded_images([sample.path for sample in samples], height, width, mode, cache_dir, desc)
    if pixels is None:
        return ImageDataset(samples, transform)
    return DecodedDataset(samples, pixels, on_tensors)
