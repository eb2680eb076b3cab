"""A frozen trunk and its cache: train a backbone from one of its stages on, on the cached output of the others.

``TrainConfig.train_from`` names the first trained stage of the backbone (``snlib.models.Backbone.stages``:
EfficientNet-Lite0 ``blocks.0`` ... ``blocks.6``, ``head``; ResNet-50 ``layer1`` ... ``layer4``). :func:`freeze`
fixes everything before it, the *trunk* (stem and earlier stages): no gradients, and every module of it in eval
mode in every phase (BatchNorm uses and keeps its running statistics; ``model.train()`` does not switch it back).
The optimiser then holds only what still trains.

The paper's only augmentation is the horizontal flip, so the trunk's output for a training image is one of two
tensors, ``trunk(x)`` or ``trunk(mirror(x))``. The trunk cache (``TrainConfig.trunk_cache``) computes both once per
image (batched, in the run's layout and precision, with a progress bar) and training feeds them to the remaining
stages (:class:`FromTrunk`). :class:`TrunkDataset` draws each sample's flip from torch's generator exactly as
``RandomHorizontalFlip`` does, so the batches (``PKSampler``) and flips are the uncached run's and so are its
losses, to float rounding (the trunk's convolutions ran on batches of another size). Test images (query, gallery,
distractors) are cached alike, their mirror only with ``eval_flip``. Stored as float32: the trunk's output exactly.

Footprint: ``4 * C * h * w`` bytes an image and view (a training image holds two). EfficientNet-Lite0, what the
cache holds for each ``train_from`` (the output of the stage before it):

==========  ================  ============  ==========
train_from  output (256x128)  256 x 128     128 x 64
==========  ================  ============  ==========
blocks.5    112 x 16 x 8      57.3 KB       14.3 KB
blocks.6    192 x 8 x 4       24.6 KB       6.1 KB
head        320 x 8 x 4       41.0 KB       10.2 KB
==========  ================  ============  ==========

(cuhk03p1's 7,239 training images with their mirrors from ``blocks.6`` at 256x128: 0.36 GB.)

Modes, keys and fingerprints as ``snlib.data.decoded``: ``"memory"`` keeps a cache in the process (least
recently used dropped) within ``decoded.memory_budget()``, and one larger than that goes to disk; ``"disk"``
writes a float32 ``.npy`` to ``<cache root>/trunk/`` as it is computed, memory-maps it and reuses it in later
processes. A cache is keyed by the image paths, input size, normalisation, backbone, stage, autocast precision,
whether it holds mirrors and a digest of the trunk's weights (so of the weights file, or of the seed of an
untrained network); its content by the image files' fingerprint: a changed image or setting rebuilds it, never
reuses it. Where it fits neither, the run computes the trunk at every step (the same run, slower; a line says so).
"""
from __future__ import annotations

import hashlib
import json
import types
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import settings
from .data import Sample, build_transforms
from .data.decoded import build_dataset, fingerprint, held, make_room, memory_budget, stored_array
from .errors import ConfigError
from .models import ReIDOutput, backbone, extract_features, unwrap
from .precision import Precision

#: Version of the cache content (part of the key: a change of how it is computed rebuilds every cache).
FORMAT = 1

_MEMORY: OrderedDict[str, tuple[str, torch.Tensor]] = OrderedDict()  # key -> (fingerprint, outputs), LRU order


def clear_memory() -> None:
    """Drop every ``"memory"`` trunk cache of this process."""
    _MEMORY.clear()


# ------------------------------------------------------------------------------------------- the frozen trunk


def split(model: nn.Module, stage: str) -> tuple[nn.Sequential, nn.Sequential]:
    """``(trunk, rest)`` of ``model``'s backbone cut before ``stage``: ``rest(trunk(x))`` is the pooled backbone
    feature. Both hold the model's own modules (nothing is copied)."""
    model = unwrap(model)
    spec = backbone(model.arch)
    if spec.parts is None or stage not in spec.stages:
        stages = ", ".join(spec.stages) or "none declared"
        raise ConfigError(f"train_from={stage!r} is not a stage of {model.arch} (its stages: {stages})")
    parts = spec.parts(model.backbone)
    cut = [name for name, _ in parts].index(stage)
    return nn.Sequential(*(m for _, m in parts[:cut])), nn.Sequential(*(m for _, m in parts[cut:]))


def _stay_in_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """``train()`` of a frozen module: eval mode, whatever is asked."""
    return nn.Module.train(module, False)


def freeze(model: nn.Module, stage: str) -> nn.Sequential:
    """Freeze the trunk of ``model`` before ``stage`` (module docstring) and return it."""
    trunk, _ = split(model, stage)
    trunk.requires_grad_(False)
    for module in trunk.modules():
        module.train = types.MethodType(_stay_in_eval, module)
    trunk.eval()
    return trunk


class FromTrunk(nn.Module):
    """``model``'s output (:class:`~snlib.models.ReIDOutput`) computed from its trunk's output: the backbone
    stages from ``stage`` on, then what follows the backbone."""

    def __init__(self, model: nn.Module, stage: str):
        super().__init__()
        self.model = unwrap(model)
        _, self.rest = split(self.model, stage)
        self.training = self.model.training  # the model's mode (restored by extract_features), not a fresh module's

    def forward(self, trunk_output: torch.Tensor) -> ReIDOutput:
        return self.model.from_features(self.rest(trunk_output))


# ---------------------------------------------------------------------------------------------- the cache


def cached(config) -> bool:
    """Whether ``config`` (a ``TrainConfig``) trains and evaluates from a trunk cache."""
    return bool(config.train_from) and config.trunk_cache != "off"


def weights_digest(trunk: nn.Module) -> str:
    """sha256 of the trunk's state (names, parameters and buffers, in the NCHW layout)."""
    digest = hashlib.sha256()
    for name, tensor in trunk.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def cache_key(paths: Sequence[str], config, digest: str, precision: Precision, mirror: bool) -> str:
    """Which cache (module docstring): images, size, normalisation, backbone, stage, precision, mirrors, weights."""
    text = json.dumps([FORMAT, list(paths), config.height, config.width, list(config.mean), list(config.std),
                       config.model, config.last_stride, config.train_from, precision.amp, mirror, digest])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@torch.no_grad()
def _output_shape(trunk: nn.Module, config, device: torch.device) -> tuple[int, ...]:
    probe = torch.zeros(1, 3, config.height, config.width, device=device)
    return tuple(trunk(probe).shape[1:])


def _identity(model: nn.Module, trunk: nn.Sequential, config, device: torch.device) -> tuple[str, tuple[int, ...]]:
    """``(weights_digest(trunk), output shape)`` at ``config``'s size, computed once per model as long as its trunk
    holds the same tensors unchanged (the same storage and in-place version counter: ``load_state_dict`` or any
    other in-place change computes them again). A run asks at every evaluation; the hash and the probe's pass
    through the trunk take longer than a whole step of the synthetic study's head-only runs."""
    stamp = (config.train_from, config.height, config.width, str(device),
             tuple((name, t.data_ptr(), t._version) for name, t in trunk.state_dict(keep_vars=True).items()))
    owner = unwrap(model)
    memo = owner.__dict__.get("_trunk_identity")
    if memo is None or memo[0] != stamp:
        memo = (stamp, weights_digest(trunk), _output_shape(trunk, config, device))
        owner.__dict__["_trunk_identity"] = memo
    return memo[1], memo[2]


@torch.no_grad()
def _trunk_batches(trunk: nn.Module, samples: Sequence[Sample], config, device: torch.device,
                   precision: Precision, mirror: bool, workers: int, desc: str):
    """float32 ``(B, views, C, h, w)`` CPU tensors: the trunk's output for each batch of ``samples`` (test
    transform: resize, normalise) and, with ``mirror``, for its mirror image."""
    transform = build_transforms(config.height, config.width, train=False, mean=config.mean, std=config.std)
    pixels = "disk" if config.decoded_cache == "disk" else "off"  # the pixels are needed once: not kept in memory
    images = build_dataset(samples, transform, config.height, config.width, pixels, desc=desc)
    loader = torch.utils.data.DataLoader(images, batch_size=config.eval_batch_size, num_workers=workers,
                                         generator=torch.Generator().manual_seed(0))  # draws nothing from torch's
    if precision.channels_last:
        trunk.to(memory_format=torch.channels_last)
    for batch, *_ in tqdm(loader, desc=f"trunk cache: {desc}", unit="batch", mininterval=2.0, dynamic_ncols=True):
        batch = batch.to(device, non_blocking=True)
        views = []
        for view in (batch, batch.flip(3)) if mirror else (batch,):
            if precision.channels_last:
                view = view.contiguous(memory_format=torch.channels_last)
            with precision.autocast(device):
                views.append(trunk(view).float())
        yield torch.stack(views, dim=1).cpu().contiguous()


def _gb(nbytes: int) -> str:
    return f"{nbytes / 1e9:.2f} GB"


def trunk_outputs(model: nn.Module, samples: Sequence[Sample], config, device: torch.device, precision: Precision,
                  mirror: bool, workers: int = 0, cache_dir: str | Path | None = None,
                  desc: str = "images") -> torch.Tensor | None:
    """float32 ``(N, views, C, h, w)``: the output of ``model``'s trunk before ``config.train_from`` for each of
    ``samples`` (view 0) and its mirror (view 1, with ``mirror``), from the cache of ``config.trunk_cache``
    (module docstring), built when missing or stale; ``None`` when it fits neither memory nor disk.

    ``cache_dir``: the folder of ``"disk"`` caches, default ``<settings.cache_root()>/trunk``.
    """
    paths = [str(s.path) for s in samples]
    trunk, _ = split(model, config.train_from)
    modes = [m.training for m in trunk.modules()]
    trunk.eval()
    try:
        digest, output_shape = _identity(model, trunk, config, device)
        key, content = cache_key(paths, config, digest, precision, mirror), fingerprint(paths)
        shape = (len(paths), 2 if mirror else 1, *output_shape)
        nbytes = 4 * int(np.prod(shape))
        label = (f"{len(paths)} {desc}{' and mirrors' if mirror else ''} to {config.train_from} at {config.height}x"
                 f"{config.width} ({_gb(nbytes)}, {nbytes / max(1, len(paths)) / 1e3:.1f} KB an image)")
        batches = lambda: _trunk_batches(trunk, samples, config, device, precision, mirror, workers, desc)  # noqa: E731
        if config.trunk_cache == "memory":
            outputs = _from_memory(key, content, shape, nbytes, label, batches)
            if outputs is not None:
                return outputs
        folder = Path(cache_dir) if cache_dir is not None else settings.cache_root() / "trunk"
        return _from_disk(folder, key, content, shape, label, batches)
    finally:
        for module, training in zip(trunk.modules(), modes):
            module.training = training


def _from_memory(key, content, shape, nbytes, label, batches) -> torch.Tensor | None:
    outputs = held(_MEMORY, key, content)
    if outputs is not None:
        return outputs
    if not make_room(_MEMORY, nbytes):
        tqdm.write(f"trunk cache: {label} exceed the memory budget of {_gb(memory_budget())} (a quarter of this "
                   "machine's memory): on disk instead")
        return None
    tqdm.write(f"trunk cache: computing {label} into memory")
    outputs, row = torch.empty(shape, dtype=torch.float32), 0
    for batch in batches():
        outputs[row:row + len(batch)] = batch
        row += len(batch)
    _MEMORY[key] = (content, outputs)
    return outputs


def _from_disk(folder: Path, key, content, shape, label, batches) -> torch.Tensor | None:
    return stored_array(folder, key, content, shape, np.float32, "trunk cache", label,
                        "computing the trunk at every step", lambda: (batch.numpy().tobytes() for batch in batches()))


class TrunkDataset(torch.utils.data.Dataset):
    """``(trunk output, pid, camid, index)`` of each sample (row ``i`` of ``outputs`` = ``samples[i]``): the
    image's (view 0), or with ``flip`` its mirror's (view 1) with probability 1/2, drawn from torch's generator
    as ``torchvision.transforms.RandomHorizontalFlip`` draws it (one ``torch.rand(1)`` a sample).

    A loader fetches a whole batch at once (:meth:`__getitems__`, which torch's ``DataLoader`` calls instead of
    ``__getitem__`` for each index, then :meth:`collate`): one ``torch.rand(B)``, which draws what ``B`` calls of
    ``torch.rand(1)`` draw (tested), so the flips are the per-sample ones, and one gather instead of ``B`` copies
    (written for the head-only runs of the synthetic study, whose steps take milliseconds)."""

    def __init__(self, samples: Sequence[Sample], outputs: torch.Tensor, flip: bool):
        if outputs.dim() != 5 or len(outputs) != len(samples) or outputs.shape[1] < (2 if flip else 1):
            raise ValueError(f"outputs {tuple(outputs.shape)} must be (N, views, C, h, w) with N = {len(samples)} "
                             f"samples{' and 2 views (flip)' if flip else ''}")
        self.samples, self.outputs, self.flip = list(samples), outputs, flip
        self.pids = torch.tensor([s.pid for s in self.samples], dtype=torch.long)
        self.camids = torch.tensor([s.camid for s in self.samples], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        _, pid, camid = self.samples[index]
        view = 1 if self.flip and torch.rand(1) < 0.5 else 0
        return self.outputs[index, view], pid, camid, index

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """The batch of ``indices``: ``(outputs (B, C, h, w), pids, camids, indices)``, as the default collation of
        ``__getitem__`` for each gives it."""
        index = torch.as_tensor(indices, dtype=torch.long)
        views = ((torch.rand(len(index)) < 0.5).long() if self.flip
                 else torch.zeros(len(index), dtype=torch.long))
        return self.outputs[index, views], self.pids[index], self.camids[index], index

    @staticmethod
    def collate(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The loader's ``collate_fn``: :meth:`__getitems__` already gives the batch."""
        return batch


def training_set(model: nn.Module, samples: Sequence[Sample], config, device: torch.device, precision: Precision,
                 workers: int = 0) -> TrunkDataset | None:
    """The training images of a cached run as trunk outputs (with their mirrors when ``config.flip``); ``None``
    when the cache fits neither memory nor disk."""
    outputs = trunk_outputs(model, samples, config, device, precision, mirror=config.flip, workers=workers,
                            desc="training images")
    return None if outputs is None else TrunkDataset(samples, outputs, config.flip)


def test_features(model: nn.Module, samples: Sequence[Sample], config, device: torch.device, precision: Precision,
                  workers: int = 0, desc: str = "features") -> tuple[torch.Tensor, np.ndarray, np.ndarray] | None:
    """What ``snlib.models.extract_features`` gives for ``samples`` (L2-normalised embeddings, averaged with the
    mirror's under ``config.eval_flip``), computed from the trunk cache; ``None`` when the cache does not fit."""
    outputs = trunk_outputs(model, samples, config, device, precision, mirror=config.eval_flip, workers=workers,
                            desc=desc)
    if outputs is None:
        return None
    head = FromTrunk(model, config.train_from)

    def embed(view: int):
        views = TrunkDataset(samples, outputs[:, view:view + 1], flip=False)
        loader = torch.utils.data.DataLoader(views, batch_size=config.eval_batch_size, collate_fn=views.collate)
        return extract_features(head, loader, device, normalize=False, desc=desc,
                                channels_last=precision.channels_last, amp_dtype=precision.dtype)

    features, pids, camids = embed(0)
    if config.eval_flip:
        features = (features + embed(1)[0]) / 2
    return F.normalize(features, dim=1), pids, camids
