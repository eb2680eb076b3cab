"""Layout and precision on the CPU (snlib.precision.resolve_precision): the measured table and its lookup, bf16 +
channels-last training that really runs in bf16 and resumes exactly, feature extraction in the same layout, and
(on a CUDA machine) the AMP paths."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from snlib import engine, precision
from snlib.engine import train
from snlib.precision import Precision, cpu_fastest, resolve_precision
from snlib.runs import CHECKPOINT, RESULT
from snlib.errors import ConfigError
from snlib.models import build_model, extract_features
from snlib.presets import get_preset

from test_engine import _assert_same_run, _Killed

CPU = torch.device("cpu")
#: A hand-made speed table: channels-last fp32 fastest, then NCHW bf16.
FIGURES = {(False, "off"): 1.0, (True, "off"): 3.0, (False, "bf16"): 2.0, (True, "bf16"): 0.5}


@pytest.fixture
def smoke(data_root, tmp_path, monkeypatch):
    """2 epochs of 4 iterations at 32x16 in bf16 + channels-last, run cache in a temporary folder."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    return get_preset("smoke", data_root=data_root, epochs=2, height=32, width=16, p=4, amp="bf16",
                      channels_last=True)


# ------------------------------------------------------------------------------------------ the table


def test_cpu_fastest_picks_the_fastest_allowed_variant_and_a_safe_default(monkeypatch):
    monkeypatch.setattr(precision, "CPU_STEP_SPEED", {("resnet50", 32, 16): FIGURES})
    assert cpu_fastest("resnet50", 32, 16) == (True, "off")
    assert cpu_fastest("resnet50", 32, 16, amps=("bf16",)) == (False, "bf16")
    assert cpu_fastest("resnet50", 32, 16, layouts=(True,)) == (True, "off")
    assert cpu_fastest("resnet50", 32, 16, amps=("bf16",), layouts=(True,)) == (True, "bf16")
    # not measured (another size, another model): full precision, NCHW, unless the config fixes them
    assert cpu_fastest("resnet50", 64, 32) == (False, "off")
    assert cpu_fastest("efficientnet_lite0", 32, 16) == (False, "off")
    assert cpu_fastest("efficientnet_lite0", 32, 16, amps=("bf16",), layouts=(True,)) == (True, "bf16")


def test_resolve_precision_on_the_cpu_follows_the_table(monkeypatch):
    monkeypatch.setattr(precision, "CPU_STEP_SPEED", {("resnet50", 256, 128): {**FIGURES, (True, "bf16"): 9.0}})
    paper = get_preset("paper")
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    assert resolve_precision(paper, CPU) == Precision(True, "bf16", "cpu: CPU_STEP_SPEED('resnet50', 256, 128)")
    assert resolve_precision(paper.replace(channels_last=False), CPU).amp == "bf16"
    assert resolve_precision(paper.replace(amp="off"), CPU).as_dict() == {
        "channels_last": True, "amp": "off", "precision_rule": "cpu: CPU_STEP_SPEED('resnet50', 256, 128)"}
    assert resolve_precision(paper.replace(height=128, width=64), CPU) == Precision(False, "off",
                                                                                    "cpu: not measured, safe default")
    assert resolve_precision(paper.replace(amp="bf16", channels_last=False), CPU).rule == "cpu: as configured"
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: False)  # emulated bf16: auto stays in fp32
    assert resolve_precision(paper, CPU) == Precision(True, "off", "cpu: CPU_STEP_SPEED('resnet50', 256, 128)")


def test_presets_use_the_measured_fastest_on_a_cpu(monkeypatch):
    cpu = get_preset("cpu")
    assert (cpu.channels_last, cpu.amp) == cpu_fastest(cpu.model, cpu.height, cpu.width) == (True, "off")
    monkeypatch.setattr(precision, "cpu_bf16_native", lambda: True)
    chosen = resolve_precision(get_preset("paper"), CPU)
    assert (chosen.channels_last, chosen.amp) == (True, "bf16")


def test_resolve_precision_on_cuda_and_fp16_on_the_cpu(monkeypatch, data_root, tmp_path):
    paper, cuda = get_preset("paper"), torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision(paper, cuda) == Precision(True, "bf16", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision(paper, cuda).amp == "fp16"
    assert resolve_precision(paper.replace(channels_last=False, amp="off"), cuda) == Precision(False, "off", "cuda")
    # fp16 on the CPU: refused before any work (the data set is not even generated) ...
    missing = tmp_path / "never-generated"
    with pytest.raises(ConfigError, match="amp='fp16' needs a CUDA device.*amp=bf16"):
        train(get_preset("smoke", data_root=str(missing), amp="fp16"), run_dir=tmp_path / "run", progress=False)
    assert not missing.exists()
    # ... but a run trained in fp16 on a GPU is evaluated on a CPU in fp32
    assert resolve_precision(paper.replace(amp="fp16"), CPU, training=False).amp == "off"


# ------------------------------------------------------------------------------------ bf16 training


def _first_conv(model: nn.Module) -> nn.Conv2d:
    return next(m for m in model.modules() if isinstance(m, nn.Conv2d))


def test_bf16_channels_last_training_runs_in_bf16_with_float32_weights(smoke, tmp_path, monkeypatch):
    seen = []
    real_build = engine.build_model

    def build_and_watch(*args, **kwargs):
        model = real_build(*args, **kwargs)

        def hook(module, inputs, output):
            seen.append((module.training, output.dtype, module.weight.dtype,
                         inputs[0].is_contiguous(memory_format=torch.channels_last) and not inputs[0].is_contiguous()))
        _first_conv(model).register_forward_hook(hook)
        return model

    monkeypatch.setattr(engine, "build_model", build_and_watch)
    run = train(smoke.replace(epochs=1), run_dir=tmp_path / "run", progress=False)
    training = {s[1:] for s in seen if s[0]}
    evaluation = {s[1:] for s in seen if not s[0]}
    # training and evaluation alike: bf16 activations, float32 weights, channels-last inputs
    assert training == evaluation == {(torch.bfloat16, torch.float32, True)}
    assert len([s for s in seen if s[0]]) == run.extra["iters_per_epoch"]
    state = torch.load(run.model_path, weights_only=True)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
    recorded = json.loads((run.run_dir / RESULT).read_text())["extra"]
    assert (recorded["channels_last"], recorded["amp"], recorded["precision_rule"]) == (True, "bf16",
                                                                                       "cpu: as configured")
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in run.history)


def test_a_killed_and_resumed_bf16_run_equals_an_uninterrupted_one(smoke, tmp_path):
    reference = train(smoke, run_dir=tmp_path / "uninterrupted", progress=False)

    def kill_after_first(epoch, state):
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(smoke, run_dir=tmp_path / "killed", progress=False, on_epoch_end=kill_after_first)
    assert (tmp_path / "killed" / CHECKPOINT).is_file()
    resumed = train(smoke, run_dir=tmp_path / "killed", progress=False)
    assert resumed.extra["resumed"] and resumed.extra["amp"] == "bf16"
    _assert_same_run(reference, resumed)


# ------------------------------------------------------------------------------------ feature extraction


def test_extract_features_in_the_training_layout_and_precision():
    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", pretrained=False)
    images = torch.randn(6, 3, 64, 32)
    loader = [(images[:4], [0, 0, 1, 1], [0, 1, 0, 1]), (images[4:], [2, 2], [0, 1])]
    reference, pids, camids = extract_features(model, loader, CPU, flip=True)
    layout, _, _ = extract_features(model, loader, CPU, flip=True, channels_last=True)
    bf16, pids2, _ = extract_features(model, loader, CPU, flip=True, channels_last=True, amp_dtype=torch.bfloat16)
    assert reference.dtype == layout.dtype == bf16.dtype == torch.float32
    assert list(pids) == list(pids2) == [0, 0, 1, 1, 2, 2] and list(camids) == [0, 1, 0, 1, 0, 1]
    torch.testing.assert_close(layout, reference, atol=1e-5, rtol=1e-4)
    cosine = (bf16 * reference).sum(dim=1)  # unit vectors
    assert cosine.min() > 0.98, cosine
    assert not torch.equal(bf16, reference)  # it did run in bf16


# ----------------------------------------------------------------------------------------- on CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_amp_training(smoke, tmp_path, amp):
    run = train(smoke.replace(amp=amp, device="cuda", epochs=1), run_dir=tmp_path / "run", progress=False)
    assert (run.extra["amp"], run.extra["channels_last"]) == (amp, True)
    assert all(torch.isfinite(torch.tensor(row["loss"])) for row in run.history)
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float32}
