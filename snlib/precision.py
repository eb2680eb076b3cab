"""Memory layout and autocast precision of a run on its device (``resolve_precision``): on a CUDA device bf16
(else fp16) and channels-last; on the CPU the fastest variant measured on this machine (:data:`CPU_STEP_SPEED`),
bf16 only where the CPU computes it natively."""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .errors import ConfigError
from .presets import TrainConfig

#: Images per second of one training step on a CPU (forward, SN loss, backward, Adam on random images; median of
#: 5 steps after 1 warm-up, each variant in a fresh process; 2 threads of an AMD EPYC with AVX512-BF16 and AMX;
#: torch 2.14.1), per (model, height, width) and (channels_last, amp). ``amp="auto"`` / ``channels_last=None``
#: take the fastest variant allowed; a model or size not measured here gets full precision in the NCHW layout.
#: Measured 2026-12-01 by ``flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bench_train.py`` (it prints
#: these entries; record: results/benchmarks/bench_train_cpu.md; batches: efficientnet_lite0 64 = P=16 x K=4,
#: resnet50 (last stride 1) 16 = P=4 x K=4). Ratios to NCHW fp32: Lite0 128x64 channels-last 1.66x (bf16 1.11x,
#: bf16 + channels-last 1.41x); ResNet-50 256x128 bf16 + channels-last 2.22x (channels-last alone 1.10x);
#: ResNet-50 128x64 bf16 + channels-last 1.77x, bf16 1.68x (within noise of each other).
CPU_STEP_SPEED: dict[tuple[str, int, int], dict[tuple[bool, str], float]] = {
    ("efficientnet_lite0", 64, 32): {(False, "off"): 97.1, (True, "off"): 312.2,
                                     (False, "bf16"): 97.4, (True, "bf16"): 136.7},
    ("efficientnet_lite0", 128, 64): {(False, "off"): 55.5, (True, "off"): 92.0,
                                      (False, "bf16"): 61.7, (True, "bf16"): 78.4},
    ("resnet50", 256, 128): {(False, "off"): 5.0, (True, "off"): 5.6, (False, "bf16"): 8.1, (True, "bf16"): 11.1},
    ("resnet50", 128, 64): {(False, "off"): 17.4, (True, "off"): 18.1, (False, "bf16"): 29.3, (True, "bf16"): 30.8},
}


def cpu_fastest(model: str, height: int, width: int, amps: tuple[str, ...] = ("off", "bf16"),
                layouts: tuple[bool, ...] = (False, True)) -> tuple[bool, str]:
    """``(channels_last, amp)``: the fastest of the allowed variants in :data:`CPU_STEP_SPEED`; for a model or
    size not in the table, full precision and NCHW where allowed (the safe default)."""
    measured = CPU_STEP_SPEED.get((model, height, width))
    if measured is None:
        return (False if False in layouts else layouts[0]), ("off" if "off" in amps else amps[0])
    return max(((cl, amp) for cl in layouts for amp in amps), key=lambda variant: measured[variant])


def cpu_bf16_native() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated, slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class Precision:
    """The memory layout and autocast precision a run uses on its device (``resolve_precision``)."""

    channels_last: bool
    amp: str            # "off" | "bf16" | "fp16"
    rule: str           # how they were chosen (recorded in result.json's extra)

    @property
    def dtype(self) -> torch.dtype | None:
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]

    def autocast(self, device: torch.device):
        """``torch.autocast`` to ``dtype`` on ``device`` (a no-op context in full precision)."""
        return nullcontext() if self.dtype is None else torch.autocast(device.type, dtype=self.dtype)

    def as_dict(self) -> dict:
        return {"channels_last": self.channels_last, "amp": self.amp, "precision_rule": self.rule}


def resolve_precision(config: TrainConfig, device: torch.device, training: bool = True) -> Precision:
    """``config.amp`` and ``config.channels_last`` on ``device``.

    CUDA: ``amp="auto"`` is bf16 where supported, else fp16; ``channels_last=None`` is channels-last. CPU:
    ``"auto"`` / ``None`` take the fastest measured variant (``cpu_fastest``; bf16 only where the CPU computes
    it natively); ``amp="fp16"`` is refused for training (a ``ConfigError``; on a CPU use bf16 or auto) and
    falls back to full precision for evaluation (a run trained on a GPU, evaluated on a CPU). Other devices:
    full precision.
    """
    if device.type == "cuda":
        amp = config.amp
        if amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Precision(config.channels_last is not False, amp, "cuda")
    if config.amp == "fp16":
        if training:
            raise ConfigError(f"amp='fp16' needs a CUDA device, this run is on {device}: fp16 autocast (with its "
                              "gradient scaler) is CUDA-only; on a CPU use --set amp=bf16 or amp=auto")
        fallback = resolve_precision(config.replace(amp="off"), device)
        return Precision(fallback.channels_last, "off", f"{device.type}: fp16 is CUDA-only, evaluated in fp32")
    if device.type != "cpu":
        if config.amp == "bf16":
            raise ConfigError(f"amp='bf16' is supported on CUDA and the CPU, not on {device}; use amp='off'")
        return Precision(bool(config.channels_last), "off", f"{device.type}: full precision")
    amps = (config.amp,) if config.amp != "auto" else ("off", "bf16") if cpu_bf16_native() else ("off",)
    layouts = (False, True) if config.channels_last is None else (config.channels_last,)
    channels_last, amp = cpu_fastest(config.model, config.height, config.width, amps, layouts)
    key = (config.model, config.height, config.width)
    rule = f"cpu: CPU_STEP_SPEED{key}" if key in CPU_STEP_SPEED else "cpu: not measured, safe default"
    if len(amps) == 1 and len(layouts) == 1:
        rule = "cpu: as configured"
    return Precision(channels_last, amp, rule)
