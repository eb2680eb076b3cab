"""Training configurations: ``TrainConfig`` (every hyper-parameter of a run) and the presets.

* ``paper``: the recipe of the released code (ResNet-50 ImageNet, last stride 1, 256x128, flip only,
  P=32 x K=4, Adam 2e-4 / wd 5e-4, constant then exponential decay to 0.001x from epoch 76 of 150,
  SN alpha=50 k=10 lambda=0.1, L2-normalised features, Euclidean distance, no test-time flip). For a GPU.
  Precision and memory layout are a choice of the device, not part of the recipe (the released code ran in
  fp32): ``amp="auto"``, ``channels_last=None`` take the device's fastest (CUDA: bf16, channels-last; a CPU:
  the fastest measured variant, ``snlib.precision.CPU_STEP_SPEED``: bf16 + channels-last for ResNet-50 at 256x128
  where the CPU computes bf16 natively, else fp32 channels-last).
* ``cpu``: the same recipe scaled to a 2-core CPU: EfficientNet-Lite0 (ImageNet weights, with the normalisation
  they were trained with) at 128x64, its trunk frozen before ``CPU_TRAIN_FROM`` and cached in memory, P=16 x K=4,
  SN's k scaled with the batch (``batch_scaled_k``: 5 of 64 as the paper's 10 of 128), a few epochs (minutes a
  run; the protocol's budget is its pilot's, ``PROTOCOLS``).
* ``smoke``: seconds; EfficientNet-Lite0 with its ImageNet weights at 64x32 on a 16-identity synthetic set, the
  ``cpu`` preset's normalisation. For tests and notebooks under CI.

A run is identified by the hash of its configuration (``config_hash``): the fields that change what is
computed. Operational fields (worker count, device, checkpoint frequency, batch size of feature extraction)
are left out, so changing them reuses a cached run. ``data_root`` enters the hash in its portable form
(``settings.portable_path``), so the same run has the same hash from any folder and on any machine.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field

import torch

from . import settings
from .data import PAPER_MEAN, PAPER_STD, check_options
from .data.decoded import MODES as DECODED_CACHE_MODES
from .errors import ConfigError, did_you_mean
from .evaluation import METRICS
from .losses import loss_arguments
from .models import BACKBONES, EMBEDDING_HEADS, backbone

#: The paper's schedule: constant learning rate to epoch 76 of 150, then exponential decay to 0.001x.
PAPER_EPOCHS = 150
PAPER_DECAY_START = 76


def _operational(default, **kwargs):
    """A field that does not change the result (left out of the run hash)."""
    return field(default=default, metadata={"hash": False}, **kwargs)


def _added(default, **kwargs):
    """A field added after runs were cached: in the run hash only when it differs from ``default``, so that
    every configuration that existed before it keeps its hash (and its cached run)."""
    return field(default=default, metadata={"hash": "unless-default"}, **kwargs)


@dataclass
class TrainConfig:
    """Every hyper-parameter of a training run. Defaults are the paper's recipe (``paper`` preset)."""

    # data
    dataset: str = "market1501"
    data_root: str = "data/market1501"                    # relative: to the repository (settings.repo_path)
    dataset_options: dict = field(default_factory=dict)   # passed to snlib.data.load_dataset
    split: str = _added("test")                           # "test": train on train, score on query/gallery;
    #                                                       "val": train on the rest, score on the validation ids
    train_fraction: float = _added(1.0)                   # train on this nested share of the training ids
    height: int = 256
    width: int = 128
    flip: bool = True                                     # random horizontal flip (the paper's only augmentation)
    pad_crop: bool = False
    random_erasing: bool = False
    mean: tuple = PAPER_MEAN
    std: tuple = PAPER_STD
    # "explicit": mean / std as given; "backbone": the normalisation the backbone's pretrained weights were trained
    # with (snlib.models.Backbone: Lite0's TensorFlow weights 0.5 / 0.5, ResNet-50 ImageNet's, a timm model its
    # pretrained configuration's), written into mean / std, so that a run's config.json records what it used
    normalization: str = _added("explicit")
    p: int = 32                                           # identities per batch (whole batch, all ranks)
    k: int = 4                                            # images per identity
    # model
    model: str = "resnet50"
    pretrained: bool = True
    weights_path: str | None = None                       # local backbone weights (instead of downloading)
    last_stride: int = 1
    bnneck: bool = False
    embedding_head: str = _added("")                      # "trinet": TriNet's 1024-BN-ReLU-128 head (models)
    # the first trained stage of the backbone (snlib.models.Backbone.stages, e.g. "blocks.6" or "layer3"); every
    # stage before it is frozen (snlib.trunk: no gradients, BatchNorm in eval mode); "": end to end
    train_from: str = _added("")
    # loss (snlib.losses.build_loss spec); the options go to the terms that take them
    loss: str = "sn"
    sn_k: int = 10
    sn_alpha: float = 50.0
    sn_lambda: float = 0.1
    triplet_margin: float = 0.3
    label_smoothing: float = 0.0
    loss_options: dict = field(default_factory=dict)      # any other build_loss option
    sn_global: bool = False                               # DDP: SN neighbours from the batch of all ranks
    # optimisation
    lr: float = 2e-4
    weight_decay: float = 5e-4
    betas: tuple = (0.9, 0.999)
    epochs: int = PAPER_EPOCHS                            # one epoch = one pass over the identities
    decay_start_epoch: int | None = None                  # 1-based; None: round(76 / 150 * epochs)
    final_lr_factor: float = 1e-3
    warmup_epochs: int = 0                                # linear warm-up (per iteration) from warmup_factor
    warmup_factor: float = 0.01
    # a budget in iterations (the protocol's: the same number of updates for every loss and training-set size);
    # 0: the budget is ``epochs``. The schedule is then per iteration (engine.lr_factor).
    iterations: int = _added(0)
    warmup_iterations: int = _added(0)                    # linear warm-up over the first iterations
    warmup_share: float = _added(0.0)                     # ... or over this share of the run's iterations,
    #                                                       whichever is longer (Bag of Tricks: 10 of 120 epochs)
    eval_every_iterations: int = _added(0)                # evaluations during training, every N iterations
    # precision and layout (precision.resolve_precision): "auto" / None = the device's fastest
    amp: str = "auto"                                     # "off" | "bf16" | "fp16" (CUDA only) | "auto"
    channels_last: bool | None = None                     # None: on CUDA yes, on a CPU as measured fastest
    sync_bn: bool = False                                 # DDP only
    seed: int = 0
    deterministic: bool = True
    # evaluation (query vs gallery)
    eval_every: int = 0                                   # epochs between evaluations; 0: at the end only
    eval_flip: bool = False
    eval_metric: str = "euclidean"
    eval_rerank: bool = False
    # operational (not hashed)
    preset: str = _operational("")
    recipe: str = _operational("")                       # the snlib.recipes name that built it (a label)
    num_workers: int = _operational(8)                   # data-loading processes (GPU machines)
    eval_batch_size: int = _operational(128)
    checkpoint_every: int = _operational(1)
    device: str | None = _operational(None)
    # decoded-image cache (snlib.data.decoded): "off" | "memory" | "disk"; the same pixels, so not hashed;
    # "memory": the fastest measured for the cpu preset (benchmarks/bench_data.py --only epoch)
    decoded_cache: str = _operational("memory")
    # frozen-trunk cache (snlib.trunk): "off" | "memory" | "disk"; needs train_from; the trunk's output for every
    # image and its mirror computed once; training and evaluation equal the uncached frozen-trunk run to float
    # rounding (tests/test_trunk.py), so not hashed
    trunk_cache: str = _operational("off")

    def __post_init__(self):
        self.mean, self.std, self.betas = (tuple(v) if isinstance(v, list) else v
                                           for v in (self.mean, self.std, self.betas))
        if self.normalization == "backbone" and isinstance(self.model, str) and _known_model(self.model):
            spec = backbone(self.model)
            self.mean, self.std = spec.mean, spec.std
        # option dicts in their JSON form (tuples as lists), so a config equals itself read back from config.json
        for name in ("dataset_options", "loss_options"):
            try:
                setattr(self, name, json.loads(json.dumps(getattr(self, name))))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"invalid TrainConfig: {name} must hold only JSON values (numbers, strings, "
                                  f"lists, mappings): {exc}") from None
        self.validate()

    def validate(self) -> None:
        """Check every field before any work: a ``ConfigError`` names each wrong field and what it allows."""
        # a string or bool where a number belongs (lr="2e-4" from YAML 1.1) would fail obscurely below
        wrong = _type_problems(self)
        if wrong:
            raise ConfigError("invalid TrainConfig: " + "; ".join(wrong))
        problems = _value_problems(self)
        if self.p < 2 or self.k < 2:
            problems.append(f"p={self.p}, k={self.k}: a P x K batch needs p >= 2 identities and k >= 2 images")
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs} must be >= 1")
        if self.split not in SPLITS:
            problems.append(f"split={self.split!r} must be one of {', '.join(SPLITS)}")
        if not 0 < self.train_fraction <= 1:
            problems.append(f"train_fraction={self.train_fraction} must be in (0, 1]")
        for name in ("iterations", "warmup_iterations", "eval_every_iterations"):
            if getattr(self, name) < 0:
                problems.append(f"{name}={getattr(self, name)} must be >= 0")
        if (self.warmup_iterations or self.eval_every_iterations) and not self.iterations:
            problems.append("warmup_iterations and eval_every_iterations need an iteration budget (iterations > 0)")
        if self.decay_start_epoch is not None and not 1 <= self.decay_start_epoch:
            problems.append(f"decay_start_epoch={self.decay_start_epoch} must be >= 1 (1-based) or None")
        if not 0 < self.final_lr_factor <= 1:
            problems.append(f"final_lr_factor={self.final_lr_factor} must be in (0, 1]")
        if self.amp not in AMP_MODES:
            problems.append(f"amp={self.amp!r} must be one of {', '.join(AMP_MODES)}")
        if self.decoded_cache not in DECODED_CACHE_MODES:
            problems.append(f"decoded_cache={self.decoded_cache!r} must be one of {DECODED_CACHE_MODES}")
        problems += _trunk_problems(self)
        if problems:
            raise ConfigError("invalid TrainConfig: " + "; ".join(problems))
        # dataset_options: only what the data set's loader takes (e.g. no synthetic sizes for market1501)
        check_options(self.dataset, self.dataset_options)

    @property
    def label(self) -> str:
        """What the run trains, for tables and progress lines: its recipe (``snlib.recipes``), else its loss spec."""
        return self.recipe or self.loss

    @property
    def decay_start(self) -> int:
        """First (1-based) epoch of the decay: the paper's 76 of 150 scaled to ``epochs``, at least 2."""
        if self.decay_start_epoch is not None:
            return self.decay_start_epoch
        return max(2, round(PAPER_DECAY_START / PAPER_EPOCHS * self.epochs))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied; unknown names are an error listing the valid ones, and so is a ``mean`` /
        ``std`` other than the backbone's under ``normalization="backbone"`` (which would replace it silently)."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; valid: {names}")
        config = dataclasses.replace(self, **changes)
        ignored = [f"{name}={changes[name]!r}" for name in ("mean", "std") if name in changes
                   and config.normalization == "backbone"
                   and (tuple(changes[name]) if isinstance(changes[name], list) else changes[name]) != getattr(config,
                                                                                                               name)]
        if ignored:
            raise ConfigError(f"{', '.join(ignored)}: normalization='backbone' takes the backbone's mean / std "
                              f"({config.mean} / {config.std}); set normalization=explicit to give your own")
        return config

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls().replace(**data)

    def hashed_dict(self) -> dict:
        """The fields that define the result (the run hash covers these)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata.get("hash", True) is True
                or (f.metadata["hash"] == "unless-default" and getattr(self, f.name) != f.default)}
        # a relative data_root is repository-relative; stored portable: the same hash from any folder or machine
        data["data_root"] = settings.portable_path(settings.repo_path(self.data_root))
        return data


#: The backbones ``snlib.models.build_model`` knows by snlib's own name (any timm model name works too).
BUILTIN_MODELS = tuple(BACKBONES)
#: What a run is scored on (``split``): the test query/gallery, or the validation identities
#: (``snlib.data.validation_split``; hyper-parameters are chosen there).
SPLITS = ("test", "val")
#: Mixed-precision modes (``amp``).
AMP_MODES = ("off", "bf16", "fp16", "auto")
#: Where the input normalisation comes from (``normalization``).
NORMALIZATIONS = ("explicit", "backbone")
#: Trunk-cache modes (``trunk_cache``).
TRUNK_CACHE_MODES = ("off", "memory", "disk")

_TYPE_NAMES = {bool: "true or false", str: "a string", dict: "a mapping"}


def _type_problems(config: TrainConfig) -> list[str]:
    """Fields whose value is not of the field's type (``int | None`` allows None; tuples hold numbers)."""
    hints = typing.get_type_hints(type(config))
    problems = []
    for f in dataclasses.fields(config):
        value, allowed = getattr(config, f.name), typing.get_args(hints[f.name]) or (hints[f.name],)
        if value is None and type(None) in allowed:
            continue
        base = next(t for t in allowed if t is not type(None))
        if base in (int, float):
            if not _is_number(value):
                need = "a number"
            elif base is int and not isinstance(value, int):
                need = "an integer"
            elif not math.isfinite(value):
                need = "finite"
            else:
                continue
        elif base is tuple:
            if isinstance(value, tuple) and all(_is_number(v) and math.isfinite(v) for v in value):
                continue
            need = "a list of finite numbers"
        elif isinstance(value, base):
            continue
        else:
            need = _TYPE_NAMES[base]
        problems.append(f"{f.name}={value!r} must be {need}" + (" or None" if type(None) in allowed else ""))
    return problems


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _value_problems(c: TrainConfig) -> list[str]:
    """Fields (of the right type) whose value snlib cannot use, each with the values it allows."""
    checks = [
        ("height", c.height >= 16, "must be >= 16 pixels"),
        ("width", c.width >= 16, "must be >= 16 pixels"),
        ("mean", len(c.mean) == 3, "must hold 3 values (R, G, B)"),
        ("std", len(c.std) == 3 and all(v > 0 for v in c.std), "must hold 3 values (R, G, B), each > 0"),
        ("model", _known_model(c.model),
         f"must be one of {', '.join(BUILTIN_MODELS)} or a timm model name (timm.list_models() lists them)"),
        ("last_stride", c.last_stride in (1, 2), "must be 1 (the paper's) or 2"),
        ("sn_k", c.sn_k >= 1, "must be >= 1 (support neighbours per anchor)"),
        ("sn_alpha", c.sn_alpha > 0, "must be > 0"),
        ("sn_lambda", c.sn_lambda >= 0, "must be >= 0"),
        ("triplet_margin", c.triplet_margin >= 0, "must be >= 0"),
        ("label_smoothing", 0 <= c.label_smoothing < 1, "must be in [0, 1)"),
        ("lr", c.lr > 0, "must be > 0"),
        ("weight_decay", c.weight_decay >= 0, "must be >= 0"),
        ("betas", len(c.betas) == 2 and all(0 <= v < 1 for v in c.betas), "must hold 2 values, each in [0, 1)"),
        ("warmup_epochs", c.warmup_epochs >= 0, "must be >= 0"),
        ("warmup_factor", 0 < c.warmup_factor <= 1, "must be in (0, 1]"),
        ("warmup_share", 0 <= c.warmup_share < 1, "must be in [0, 1) (a share of the run's iterations)"),
        ("embedding_head", c.embedding_head in ("", *EMBEDDING_HEADS),
         f"must be '' (none) or one of {', '.join(EMBEDDING_HEADS)}"),
        ("seed", 0 <= c.seed < 2**32, "must be in [0, 2**32)"),
        ("eval_every", c.eval_every >= 0, "must be >= 0 (0: evaluate at the end only)"),
        ("eval_metric", c.eval_metric in METRICS, f"must be one of {', '.join(METRICS)}"),
        ("preset", c.preset in ("", *PRESETS), f"must be one of {', '.join(PRESETS)} or empty"),
        ("num_workers", c.num_workers >= 0, "must be >= 0"),
        ("eval_batch_size", c.eval_batch_size >= 1, "must be >= 1"),
        ("checkpoint_every", c.checkpoint_every >= 1, "must be >= 1 (epochs)"),
        ("device", c.device is None or _is_device(c.device), "must be None (automatic), cpu, cuda or cuda:N"),
    ]
    problems = [f"{name}={getattr(c, name)!r} {rule}" for name, ok, rule in checks if not ok]
    # the loss spec and its options: names and options checked through the registry, no loss built (a value a
    # term's constructor refuses, e.g. loss_options={"k": 0}, is refused when the run builds it, before training)
    for name, options in (("loss", {}), ("loss_options", c.loss_options)):
        try:
            loss_arguments(c.loss, **options)
        except (ValueError, TypeError) as exc:
            problems.append(f"{name}={getattr(c, name)!r}: {exc}")
            break
    return problems


def _trunk_problems(c: TrainConfig) -> list[str]:
    """``normalization``, ``train_from`` and ``trunk_cache``: known values, a stage of the model, and a cache only
    of what it can hold (the trunk's output for an image and its mirror: no other augmentation)."""
    problems = []
    if c.normalization not in NORMALIZATIONS:
        problems.append(f"normalization={c.normalization!r} must be one of {', '.join(NORMALIZATIONS)}")
    if c.trunk_cache not in TRUNK_CACHE_MODES:
        problems.append(f"trunk_cache={c.trunk_cache!r} must be one of {', '.join(TRUNK_CACHE_MODES)}")
    if c.train_from and _known_model(c.model):
        stages = backbone(c.model).stages
        if c.train_from not in stages:
            allowed = f"one of {', '.join(stages)} or empty (end to end)" if stages else \
                f"empty: {c.model} declares no stages (snlib.models.register_backbone)"
            problems.append(f"train_from={c.train_from!r} must be {allowed}")
    if c.trunk_cache != "off":
        if not c.train_from:
            problems.append(f"trunk_cache={c.trunk_cache!r} needs a frozen trunk (train_from=<stage>)")
        uncacheable = [name for name in ("pad_crop", "random_erasing") if getattr(c, name)]
        if uncacheable:
            problems.append(f"trunk_cache={c.trunk_cache!r} cannot hold {' and '.join(uncacheable)} (the cache holds "
                            "each image and its mirror only): set trunk_cache=off or " +
                            " and ".join(f"{name}=false" for name in uncacheable))
    return problems


def _known_model(name: str) -> bool:
    if name in BUILTIN_MODELS:
        return True
    import timm  # only for other names: importing timm takes a second

    return timm.is_model(name)


def _is_device(name: str) -> bool:
    try:
        torch.device(name)
    except RuntimeError:
        return False
    return True


def config_hash(config: TrainConfig, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``config.hashed_dict()`` (first ``length`` hex digits)."""
    text = json.dumps(config.hashed_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


# ------------------------------------------------------------------------------------------------- presets

#: The synthetic set of the ``smoke`` preset (snlib.data.synthetic.SyntheticConfig options).
#: 16 training identities, all in every batch (p=16), so that a few dozen iterations separate them.
SMOKE_SYNTHETIC = {"num_train_ids": 16, "num_test_ids": 16, "num_cameras": 2, "images_per_camera": (2, 3),
                   "height": 64, "width": 32, "difficulty": 0.5, "num_distractors": 5, "num_junk": 2}


def _paper() -> TrainConfig:
    return TrainConfig(preset="paper")


def batch_scaled_k(batch: int) -> int:
    """The paper's share of the batch as SN's support neighbours, k = 10 of 128 (``TrainConfig``'s defaults, the
    paper's), at a batch of ``batch`` images (rounded half up, at least 1): 5 at the cpu preset's 64."""
    return max(1, int(TrainConfig.sn_k * batch / (TrainConfig.p * TrainConfig.k) + 0.5))


#: The cpu preset's first trained stage of EfficientNet-Lite0 (``TrainConfig.train_from``): every stage before it
#: is frozen and its output cached (``trunk_cache="memory"``). The trunk check decides it
#: (``benchmarks/trunk_check.py``, written to ``results/cpu/cuhk03p1/trunk_check.md``: what freezing costs against
#: end to end, and whether the losses keep their ordering); ``blocks.6`` is the stage it was run for first.
CPU_TRAIN_FROM = "blocks.6"


def _cpu() -> TrainConfig:
    # channels_last / amp: precision.CPU_STEP_SPEED's fastest for Lite0 at 128x64 (fp32, channels-last), fixed so
    # that the preset computes the same on any device
    return TrainConfig(preset="cpu", dataset="synthetic", data_root="data", model="efficientnet_lite0",
                       normalization="backbone", train_from=CPU_TRAIN_FROM, trunk_cache="memory",
                       height=128, width=64, p=16, k=4, sn_k=batch_scaled_k(16 * 4), epochs=12, lr=1e-3,
                       eval_every=4, num_workers=0, eval_batch_size=256, channels_last=True, amp="off")


def _smoke() -> TrainConfig:
    return TrainConfig(preset="smoke", dataset="synthetic", data_root="data",
                       dataset_options=dict(SMOKE_SYNTHETIC), model="efficientnet_lite0", normalization="backbone",
                       height=64, width=32, p=16, k=4, epochs=40, lr=1e-3, num_workers=0, eval_batch_size=256)


PRESETS = {"smoke": _smoke, "cpu": _cpu, "paper": _paper}

#: The literature's learning rates of the paper preset's recipes (Adam, ResNet-50, P x K batches), with their
#: source. contrastive: no re-ID paper trains this loss (Hadsell et al. 2006, normalised features, margin 1) on
#: ResNet-50 with P x K batches, so it takes the Adam rate of the other verification loss on that backbone and
#: batch, TriNet's 3e-4. triplet-0.3: the authors' code base trains its triplet baseline as it trains SN. The losses
#: after SN (``snlib.recipes.LATER``) were not published with Adam on ResNet-50 at P x K re-ID batches: the pair
#: losses (circle, ms, supcon) take TriNet's 3e-4 as contrastive does; the margin softmaxes (arcface, cosface) take
#: the rate fast-reid trains its margin-softmax heads at on ResNet-50 (configs/Base-SBS.yml: Adam 3.5e-4).
PAPER_RATES = {
    "sn": (2e-4, "the paper (Adam 2e-4)"),
    "ce": (3e-4, "torchreid's softmax baseline (Adam 3e-4)"),
    "triplet": (3e-4, "Hermans et al. 2017, TriNet (Adam 3e-4)"),
    "triplet-0.3": (2e-4, "the authors' code base (its triplet baseline, as SN: Adam 2e-4)"),
    "bot": (3.5e-4, "Luo et al. 2019, Bag of Tricks (Adam 3.5e-4)"),
    "contrastive": (3e-4, "none published for this loss on ResNet-50: TriNet's Adam 3e-4 (the verification loss)"),
    "circle": (3e-4, "none published for the pair-wise Circle loss on ResNet-50 with Adam: TriNet's Adam 3e-4 "
                     "(the verification loss)"),
    "ms": (3e-4, "none published for re-ID: the authors' code trains BN-Inception on CUB at Adam 3e-5, batch 80; "
                 "TriNet's Adam 3e-4 (the verification loss)"),
    "supcon": (3e-4, "none published for this backbone and batch: the paper trains with SGD/LARS at batches of "
                     "thousands; TriNet's Adam 3e-4 (the verification loss)"),
    "arcface": (3.5e-4, "none published for re-ID with Adam (the paper: SGD 0.1, faces): fast-reid's margin-softmax "
                        "heads on ResNet-50 (Base-SBS: Adam 3.5e-4)"),
    "cosface": (3.5e-4, "none published for re-ID with Adam (the paper: SGD, faces): fast-reid's margin-softmax "
                        "heads on ResNet-50 (Base-SBS: Adam 3.5e-4)"),
}

#: The version of the study protocol (``snlib.study.protocol``) whose records a study writes and reads: raised when
#: a change alters what a record holds or how a study selects, trains or scores its runs without changing the runs'
#: configuration hashes, so that no table mixes records of two protocols (``snlib.records.check_protocol_version``).
#: Every record written before versions, the published cuhk03p1 study's included, is of version 1. A preset's
#: ``PROTOCOLS`` entry raises its own (``"version": 2``) when only that preset's protocol changes: the ``cpu``
#: preset's is version 2 (the converged protocol), the ``paper`` and ``smoke`` presets' keep this one.
PROTOCOL_VERSION = 1

#: The study protocol's sizes per preset (``snlib.study.protocol.Protocol`` fields; a field not given takes the
#: Protocol's default). Resolved for a data set by ``snlib.study.plans.study_protocol``: ``on_synthetic`` adds
#: fields on the synthetic set only; ``epochs`` is a budget in passes over the training identities (the iterations
#: follow from the data set: ``plans.epoch_iterations``); ``rates`` fixes every recipe's learning rate (no
#: selection); the distractors, unless given, are all of the data set's own (or of its training images).
#: A notebook's ``protocol_sizes`` parameter (``--param protocol_sizes='{iterations: 50}'``) changes any of them.
PROTOCOLS = {
    # every code path in seconds: three recipes, two rates, a 4-identity batch, a few iterations
    "smoke": {"selection": ("sn", "triplet", "ce"), "family": ("sep",), "lrs": (1e-3, 2e-3), "iterations": 12,
              "seeds": (0, 1), "long_factor": 2, "evaluations": 3, "fractions": (0.5, 1.0),
              "convergence_losses": ("sn", "triplet"), "convergence_seeds": (0, 1), "num_distractors": 20,
              "overrides": {"p": 4}},
    # version 2, "the verdicts at convergence": the budget chosen by a pilot (at most 2000 iterations, 2 seeds,
    # scored 20 times on validation, at 3x the literature's rates: snlib.study.pilot), rates selected on the
    # validation identities over a grid wide at both ends with 2 selection seeds, refined once around each
    # recipe's best rate (the midpoints to its neighbours: added after cuhk03p1's hard-margin triplet, whose pilot
    # at 6e-4 scored twice its best grid rate; the records stay valid, so the version does not change), 5 final
    # seeds, long runs at 2x the budget with 2 seeds, convergence curves with 3 seeds. On the synthetic set (make
    # reproduce's default) every run trains only the head (train_from="head": the 1x1 conv to 1280, its BatchNorm,
    # the classifier) on a cached 64x32 trunk (about 60 iterations a second against about 10 from blocks.6: from no
    # records, 68 min here with the later losses, README), a pilot of at most 600 iterations, with 3000 generated
    # distractors. (Version 1, the published 100-iteration cuhk03p1 study and the superseded version-1 synthetic
    # runs: the Protocol's defaults otherwise.)
    "cpu": {"version": 2, "pilot_iterations": 2000, "pilot_seeds": (0, 1), "pilot_evaluations": 20,
            "pilot_rate_factor": 3.0,
            "lrs": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "refinements": 1, "selection_seeds": (0, 1),
            "seeds": (0, 1, 2, 3, 4), "long_factor": 2, "long_seeds": (0, 1), "convergence_seeds": (0, 1, 2),
            "on_synthetic": {"pilot_iterations": 600, "num_distractors": 3000,
                             "overrides": {"height": 64, "width": 32, "train_from": "head"}}},
    # the paper's budget (150 epochs at P=32 x K=4: 3450 iterations on Market-1501's 751 identities) and schedule
    # shape, every recipe at its literature rate, 3 seeds
    "paper": {"epochs": PAPER_EPOCHS, "seeds": (0, 1, 2),
              "rates": {name: lr for name, (lr, _) in PAPER_RATES.items()},
              "rate_sources": {name: source for name, (_, source) in PAPER_RATES.items()},
              "on_synthetic": {"num_distractors": 3000}},
}


def get_preset(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` (``smoke``, ``cpu``, ``paper``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]().replace(**overrides)


def parse_overrides(items: list[str], target: type = TrainConfig) -> dict:
    """``["lr=1e-3", "flip=false", "mean=0.5,0.5,0.5"]`` -> typed values of ``target``'s dataclass fields
    (command line ``--set``)."""
    types = typing.get_type_hints(target)
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in types:
            hint = did_you_mean(name, types) if sep else ""
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE{hint} with FIELD one of {sorted(types)}")
        out[name] = _parse_value(text, types[name], name)
    return out


def _parse_value(text: str, hint, name: str):
    if text.lower() in ("none", "null") and type(None) in typing.get_args(hint):
        return None
    base = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
    try:
        if base is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if base in (int, float, str):
            return base(text)
        if base is tuple:
            return tuple(float(v) for v in text.split(","))
        if base is dict:
            return json.loads(text)
    except (ValueError, json.JSONDecodeError):
        raise ConfigError(f"--set {name}={text!r}: cannot read as {getattr(base, '__name__', base)}") from None
    raise ConfigError(f"--set {name}: unsupported field type {hint}")
