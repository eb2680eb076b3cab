"""Training configurations: ``TrainConfig`` (every hyper-parameter of a run) and the presets.

* ``paper``: the recipe of the released code (ResNet-50 ImageNet, last stride 1, 256x128, flip only,
  P=32 x K=4, Adam 2e-4 / wd 5e-4, constant then exponential decay to 0.001x from epoch 76 of 150,
  SN alpha=50 k=10 lambda=0.1, L2-normalised features, Euclidean distance, no test-time flip). For a GPU.
* ``cpu``: the same recipe scaled to a 2-core CPU: EfficientNet-Lite0 (ImageNet weights) at 128x64,
  P=16 x K=4, a few epochs (minutes a run).
* ``smoke``: seconds; a tiny untrained EfficientNet-Lite0 on a tiny synthetic set. For tests and notebooks
  under CI.

A run is identified by the hash of its configuration (``config_hash``): the fields that change what is
computed. Operational fields (worker count, device, checkpoint frequency, batch size of feature extraction)
are left out, so changing them reuses a cached run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .data import PAPER_MEAN, PAPER_STD

#: The paper's schedule: constant learning rate to epoch 76 of 150, then exponential decay to 0.001x.
PAPER_EPOCHS = 150
PAPER_DECAY_START = 76


def _operational(default, **kwargs):
    """A field that does not change the result (left out of the run hash)."""
    return field(default=default, metadata={"hash": False}, **kwargs)


@dataclass
class TrainConfig:
    """Every hyper-parameter of a training run. Defaults are the paper's recipe (``paper`` preset)."""

    # data
    dataset: str = "market1501"
    data_root: str = "data/market1501"
    dataset_options: dict = field(default_factory=dict)   # passed to snlib.data.load_dataset
    height: int = 256
    width: int = 128
    flip: bool = True                                     # random horizontal flip (the paper's only augmentation)
    pad_crop: bool = False
    random_erasing: bool = False
    mean: tuple = PAPER_MEAN
    std: tuple = PAPER_STD
    p: int = 32                                           # identities per batch (whole batch, all ranks)
    k: int = 4                                            # images per identity
    # model
    model: str = "resnet50"
    pretrained: bool = True
    weights_path: str | None = None                       # local backbone weights (instead of downloading)
    last_stride: int = 1
    bnneck: bool = False
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
    amp: str = "off"                                      # "off" | "bf16" | "fp16" | "auto" (CUDA only)
    channels_last: bool = True                            # CUDA only
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
    num_workers: int = _operational(8)                   # data-loading processes (GPU machines)
    eval_batch_size: int = _operational(128)
    checkpoint_every: int = _operational(1)
    device: str | None = _operational(None)

    def __post_init__(self):
        self.mean, self.std, self.betas = tuple(self.mean), tuple(self.std), tuple(self.betas)
        # option dicts in their JSON form (tuples as lists), so a config equals itself read back from config.json
        self.dataset_options = json.loads(json.dumps(self.dataset_options))
        self.loss_options = json.loads(json.dumps(self.loss_options))
        self.validate()

    def validate(self) -> None:
        # a string or bool where a number belongs (lr="2e-4" from YAML 1.1) would fail obscurely below
        hints = typing.get_type_hints(type(self))
        numbers = [f.name for f in dataclasses.fields(self) if hints[f.name] in (int, float)]
        wrong = [f"{name}={value!r} must be a number" for name in numbers
                 if isinstance(value := getattr(self, name), bool) or not isinstance(value, (int, float))]
        if wrong:
            raise ValueError("invalid TrainConfig: " + "; ".join(wrong))
        problems = []
        if self.p < 2 or self.k < 2:
            problems.append(f"p={self.p}, k={self.k}: a P x K batch needs p >= 2 identities and k >= 2 images")
        if self.epochs < 1:
            problems.append(f"epochs={self.epochs} must be >= 1")
        if self.decay_start_epoch is not None and not 1 <= self.decay_start_epoch:
            problems.append(f"decay_start_epoch={self.decay_start_epoch} must be >= 1 (1-based) or None")
        if not 0 < self.final_lr_factor <= 1:
            problems.append(f"final_lr_factor={self.final_lr_factor} must be in (0, 1]")
        if self.amp not in ("off", "bf16", "fp16", "auto"):
            problems.append(f"amp={self.amp!r} must be 'off', 'bf16', 'fp16' or 'auto'")
        if self.lr <= 0 or self.weight_decay < 0:
            problems.append(f"lr={self.lr} must be > 0 and weight_decay={self.weight_decay} >= 0")
        if self.eval_every < 0 or self.checkpoint_every < 1 or self.warmup_epochs < 0:
            problems.append("eval_every and warmup_epochs must be >= 0, checkpoint_every >= 1")
        if problems:
            raise ValueError("invalid TrainConfig: " + "; ".join(problems))

    @property
    def decay_start(self) -> int:
        """First (1-based) epoch of the decay: the paper's 76 of 150 scaled to ``epochs``, at least 2."""
        if self.decay_start_epoch is not None:
            return self.decay_start_epoch
        return max(2, round(PAPER_DECAY_START / PAPER_EPOCHS * self.epochs))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with ``changes`` applied; unknown names are an error listing the valid ones."""
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {unknown}; valid: {names}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        return cls().replace(**data)

    def hashed_dict(self) -> dict:
        """The fields that define the result (the run hash covers these)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.metadata.get("hash", True)}
        data["data_root"] = str(Path(self.data_root).expanduser().resolve())
        return data


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


def _cpu() -> TrainConfig:
    return TrainConfig(preset="cpu", dataset="synthetic", data_root="data/synthetic", model="efficientnet_lite0",
                       height=128, width=64, p=16, k=4, epochs=12, lr=1e-3, eval_every=4, num_workers=0,
                       eval_batch_size=256)


def _smoke() -> TrainConfig:
    return TrainConfig(preset="smoke", dataset="synthetic", data_root="data/synthetic-smoke",
                       dataset_options=dict(SMOKE_SYNTHETIC), model="efficientnet_lite0",
                       height=64, width=32, p=16, k=4, epochs=40, lr=1e-3, num_workers=0, eval_batch_size=256)


PRESETS = {"smoke": _smoke, "cpu": _cpu, "paper": _paper}


def get_preset(name: str, **overrides) -> TrainConfig:
    """The preset ``name`` (``smoke``, ``cpu``, ``paper``) with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]().replace(**overrides)


def parse_overrides(items: list[str], target: type = TrainConfig) -> dict:
    """``["lr=1e-3", "flip=false", "mean=0.5,0.5,0.5"]`` -> typed values of ``target``'s dataclass fields
    (command line ``--set``)."""
    types = typing.get_type_hints(target)
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or name not in types:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}")
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
        raise ValueError(f"--set {name}={text!r}: cannot read as {getattr(base, '__name__', base)}") from None
    raise ValueError(f"--set {name}: unsupported field type {hint}")
