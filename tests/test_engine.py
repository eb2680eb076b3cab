"""snlib.engine and snlib.presets: schedule, presets, run cache, checkpoints (atomic, exact resume), every loss,
the command line, and that the loop learns (smoke preset, synthetic data)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from snlib import engine, settings
from snlib.__main__ import main as cli
from snlib.data import load_dataset
from snlib.data import Sample
from snlib.engine import TIMING_KEYS, evaluate_model, lr_factor, train
from snlib.models import build_model
from snlib.presets import TrainConfig, batch_scaled_k, config_hash, get_preset, parse_overrides
from snlib.runs import CHECKPOINT, MODEL, RESULT, atomic_save


def split_by_camera(samples: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Query / gallery split of one sample list (e.g. the training set): the first image of every
    (identity, camera) pair is a query, the rest is the gallery. Under the Market-1501 protocol a query is
    then matched against its identity's images of the other cameras."""
    seen, query, gallery = set(), [], []
    for sample in samples:
        key = (sample.pid, sample.camid)
        (gallery if key in seen else query).append(sample)
        seen.add(key)
    return query, gallery


@pytest.fixture
def smoke(data_root, tmp_path, monkeypatch):
    """The smoke configuration cut to 2 epochs of 4 iterations (p=4) at 32x16, run cache in a temporary folder."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    return get_preset("smoke", data_root=data_root, epochs=2, height=32, width=16, p=4)


# ------------------------------------------------------------------------------------------- schedule


def released_adjust_lr_exp(base_lr: float, ep: int, total_ep: int, start_decay_at_ep: int) -> float:
    """The released code's schedule, transcribed (``ep`` 1-based; constant before ``start_decay_at_ep``)."""
    if ep < start_decay_at_ep:
        return base_lr
    return base_lr * (0.001 ** (float(ep + 1 - start_decay_at_ep) / (total_ep + 1 - start_decay_at_ep)))


def test_schedule_is_the_released_code_at_the_paper_length():
    config = get_preset("paper")
    assert config.decay_start == 76
    for epoch in range(150):
        expected = released_adjust_lr_exp(2e-4, epoch + 1, 150, 76)
        assert math.isclose(config.lr * lr_factor(config, epoch), expected, rel_tol=1e-12), epoch
    assert lr_factor(config, 74) == 1.0 and lr_factor(config, 75) < 1.0
    assert math.isclose(lr_factor(config, 149), 1e-3)


@pytest.mark.parametrize("epochs, start", [(10, 5), (20, 10), (3, 2), (1, 2)])
def test_schedule_scales_to_the_run_length(epochs, start):
    config = get_preset("paper", epochs=epochs)
    assert config.decay_start == start  # round(76 / 150 * epochs), at least 2
    factors = [lr_factor(config, e) for e in range(epochs)]
    assert factors[0] == 1.0 and all(a >= b for a, b in zip(factors, factors[1:]))
    if epochs >= start:
        assert math.isclose(factors[-1], 1e-3)


def test_warmup_is_linear_per_iteration():
    config = get_preset("paper", warmup_epochs=2, warmup_factor=0.1)
    iters = 5
    factors = [lr_factor(config, e, i, iters) for e in range(3) for i in range(iters)]
    assert math.isclose(factors[0], 0.1 + 0.9 / 10)
    assert all(b > a for a, b in zip(factors[:9], factors[1:10]))
    assert factors[9] == 1.0 and factors[10:] == [1.0] * 5


# -------------------------------------------------------------------------------------------- presets


def test_paper_preset_is_the_recipe_of_the_paper():
    """Field by field, the "Training recipe of the released code" table of docs/paper.md (row names quoted)."""
    c = get_preset("paper")
    # "backbone": ResNet-50, ImageNet-pretrained, fc removed, last stride 1, GAP, 2048-d, no extra layer
    assert (c.model, c.pretrained, c.last_stride, c.bnneck) == ("resnet50", True, 1, False)
    # "input": 256x128 (h x w), random horizontal flip only, no random crop, no random erasing
    assert (c.height, c.width, c.flip, c.pad_crop, c.random_erasing) == (256, 128, True, False, False)
    # "normalisation": mean (0.486, 0.459, 0.408), std (0.229, 0.224, 0.225)
    assert c.mean == (0.486, 0.459, 0.408) and c.std == (0.229, 0.224, 0.225)
    # "batch": 32 identities x 4 images
    assert (c.p, c.k) == (32, 4)
    # "optimiser": Adam, lr 2e-4, weight decay 5e-4 (Adam's default betas)
    assert (c.lr, c.weight_decay, c.betas) == (2e-4, 5e-4, (0.9, 0.999))
    # "schedule": constant to epoch 76, then base * 0.001^((ep + 1 - 76) / (T + 1 - 76)), T = 150
    assert (c.epochs, c.decay_start, c.final_lr_factor, c.warmup_epochs) == (150, 76, 1e-3, 0)
    # "loss": SN, alpha 50, k 10, lambda 0.1 (no identification loss)
    assert (c.loss, c.sn_alpha, c.sn_k, c.sn_lambda) == ("sn", 50.0, 10, 0.1)
    # "test": L2-normalised 2048-d features, Euclidean distance, no flip (re-ranking only for its own rows)
    assert (c.eval_metric, c.eval_flip, c.eval_rerank) == ("euclidean", False, False)
    # precision and layout are a device choice, not part of the recipe (the released code ran in fp32): the
    # device's fastest (snlib.precision.resolve_precision; tests/test_engine_cpu_precision.py)
    assert (c.amp, c.channels_last) == ("auto", None) and c.dataset == "market1501"


def test_cpu_and_smoke_presets_keep_the_recipe_but_scale_it():
    paper = get_preset("paper")
    for name in ("cpu", "smoke"):
        c = get_preset(name)
        assert c.model == "efficientnet_lite0" and c.dataset == "synthetic"
        assert (c.loss, c.sn_alpha, c.sn_lambda) == (paper.loss, 50.0, 0.1)
        # SN's k: the paper's 10 of 128 scaled to the cpu preset's batch of 64 (the smoke preset keeps 10)
        assert c.sn_k == (batch_scaled_k(c.p * c.k) if name == "cpu" else paper.sn_k) and batch_scaled_k(64) == 5
        # the normalisation Lite0's packaged (TensorFlow) weights were trained with, not the paper's ResNet values
        assert (c.normalization, c.mean, c.std) == ("backbone", (0.5,) * 3, (0.5,) * 3) != (paper.mean, paper.std)
        assert (c.flip, c.eval_flip, c.final_lr_factor) == (True, False, 1e-3)
        assert c.pretrained  # EfficientNet-Lite0's packaged ImageNet weights: no download


def test_config_hash_covers_results_not_operations():
    base = get_preset("smoke")
    assert config_hash(base) == config_hash(get_preset("smoke"))
    assert config_hash(base) == config_hash(base.replace(num_workers=7, device="cpu", checkpoint_every=3))
    assert config_hash(base) != config_hash(base.replace(lr=base.lr * 2))
    assert config_hash(base) != config_hash(base.replace(loss="triplet"))
    assert config_hash(base) != config_hash(base.replace(dataset_options={}))
    assert TrainConfig.from_dict(json.loads(json.dumps(base.to_dict()))) == base


def test_bad_configurations_and_overrides_are_explained():
    with pytest.raises(ValueError, match="unknown TrainConfig field.*'lrr'"):
        get_preset("smoke", lrr=1)
    with pytest.raises(ValueError, match="unknown preset 'gpu'"):
        get_preset("gpu")
    with pytest.raises(ValueError, match="amp='fp8'"):
        get_preset("paper", amp="fp8")
    with pytest.raises(ValueError, match="p=1"):
        get_preset("paper", p=1)
    with pytest.raises(ValueError, match="lr='2e-4' must be a number"):   # YAML 1.1 reads 2e-4 as a string
        get_preset("smoke", lr="2e-4")
    with pytest.raises(ValueError, match="epochs=True must be a number"):
        get_preset("smoke", epochs=True)
    assert parse_overrides(["lr=1e-3", "flip=false", "mean=0.5,0.5,0.5", "weights_path=none", "eval_every=2",
                            'dataset_options={"difficulty": 0.5}']) == {
        "lr": 1e-3, "flip": False, "mean": (0.5, 0.5, 0.5), "weights_path": None, "eval_every": 2,
        "dataset_options": {"difficulty": 0.5}}
    with pytest.raises(ValueError, match="cannot read as int"):
        parse_overrides(["epochs=ten"])
    with pytest.raises(ValueError, match="FIELD=VALUE"):
        parse_overrides(["epochs"])


# ---------------------------------------------------------------------------------------- checkpoints


def test_atomic_save_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    atomic_save({"x": torch.ones(3)}, path)
    real_save = torch.save

    def crash(obj, f, *args, **kwargs):
        real_save({"partial": torch.zeros(1)}, f)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"x": torch.zeros(3)}, path)
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind


def _comparable(history):
    """History without the timing columns; NaN made comparable."""
    return [{k: ("nan" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()
             if k not in TIMING_KEYS} for row in history]


def _assert_same_run(a: engine.RunResult, b: engine.RunResult):
    state_a = torch.load(a.model_path, weights_only=True)["state_dict"]
    state_b = torch.load(b.model_path, weights_only=True)["state_dict"]
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert _comparable(a.history) == _comparable(b.history)
    assert a.metrics == b.metrics


class _Killed(Exception):
    pass


def test_a_killed_and_resumed_run_equals_an_uninterrupted_one(smoke, tmp_path, monkeypatch):
    smoke = smoke.replace(eval_every=1)  # evaluations between epochs draw random numbers too
    reference = train(smoke, run_dir=tmp_path / "uninterrupted", progress=False)
    assert len(reference.history) == 2 * reference.extra["iters_per_epoch"]
    assert [e["epoch"] for e in reference.evaluations] == [1, 2]

    # killed after the checkpoint of epoch 1
    def kill_after_first(epoch, state):
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        train(smoke, run_dir=tmp_path / "killed", progress=False, on_epoch_end=kill_after_first)
    assert (tmp_path / "killed" / CHECKPOINT).is_file() and not (tmp_path / "killed" / RESULT).exists()
    resumed = train(smoke, run_dir=tmp_path / "killed", progress=False)
    assert resumed.extra["resumed"]
    _assert_same_run(reference, resumed)

    # killed in the middle of epoch 2: the partial epoch is redone from the checkpoint of epoch 1
    calls = {"n": 0}
    real_step = engine._Trainer._step

    def dying_step(self, *args):
        calls["n"] += 1
        if calls["n"] == self.iters_per_epoch + 2:
            raise _Killed
        return real_step(self, *args)

    monkeypatch.setattr(engine._Trainer, "_step", dying_step)
    with pytest.raises(_Killed):
        train(smoke, run_dir=tmp_path / "midway", progress=False)
    monkeypatch.setattr(engine._Trainer, "_step", real_step)
    _assert_same_run(reference, train(smoke, run_dir=tmp_path / "midway", progress=False))


def test_run_cache_trains_a_configuration_once(smoke, monkeypatch):
    first = train(smoke.replace(epochs=1), progress=False)
    run_dir = first.run_dir
    assert run_dir.parent == settings.cache_root() and run_dir.name == config_hash(smoke.replace(epochs=1))
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "history.csv", MODEL, RESULT}  # checkpoint gone
    assert set(first.metrics) == {"rank1", "rank5", "rank10", "mAP", "mINP"}

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run was trained again")

    monkeypatch.setattr(engine, "_Trainer", no_training)
    again = train(smoke.replace(epochs=1, num_workers=1), progress=False)  # operational change: same run
    assert again.from_cache and again.run_dir == run_dir and again.metrics == first.metrics
    assert _comparable(again.history) == _comparable(first.history)
    assert again.config == smoke.replace(epochs=1)
    model = again.load_model()
    assert model.arch == "efficientnet_lite0"


def test_checkpoint_of_another_configuration_is_refused(smoke, tmp_path):
    config = smoke.replace(epochs=1)
    run = train(config, run_dir=tmp_path / "a", progress=False)
    other = tmp_path / "b"
    other.mkdir()
    state = torch.load(run.model_path, weights_only=True)
    atomic_save({**state, "format": "snlib-train", "config_hash": "0" * 16}, other / CHECKPOINT)
    with pytest.raises(ValueError, match="belongs to another configuration"):
        train(config, run_dir=other, progress=False)


def test_a_diverging_loss_stops_with_the_checkpoint_intact(smoke, tmp_path, monkeypatch):
    config = smoke.replace(epochs=2)
    calls = {"n": 0}
    real_step = engine._Trainer._step

    def nan_in_epoch_two(self, images, pids, *rest):
        calls["n"] += 1
        if calls["n"] > self.iters_per_epoch:
            images = images * float("nan")
        return real_step(self, images, pids, *rest)

    monkeypatch.setattr(engine._Trainer, "_step", nan_in_epoch_two)
    with pytest.raises(FloatingPointError, match="epoch 2, iteration 1"):
        train(config, run_dir=tmp_path / "run", progress=False)
    state = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert state["epoch"] == 1 and all(math.isfinite(row["loss"]) for row in state["history"])


# ----------------------------------------------------------------------------------------- every loss


@pytest.mark.parametrize("spec, parts", [
    ("triplet", {"triplet"}),
    ("ce", {"ce", "ce/accuracy"}),
    ("sn-paper+0.5*ce+0.001*center", {"sn-paper", "sn-paper/squeeze", "ce", "center"}),
])
def test_every_loss_trains_through_the_same_loop(smoke, tmp_path, spec, parts):
    run = train(smoke.replace(loss=spec, epochs=1), run_dir=tmp_path / "run", progress=False)
    history = run.history_frame()
    assert parts <= set(history.columns) and {"lr", "loss", "images_per_s"} <= set(history.columns)
    assert np.isfinite(history["loss"]).all()
    if "+" in spec:   # the logged total is the weighted sum of the logged (unweighted) terms, every iteration
        expected = history["sn-paper"] + 0.5 * history["ce"] + 0.001 * history["center"]
        np.testing.assert_allclose(history["loss"], expected, rtol=1e-5, atol=1e-6)
    model = run.load_model()
    num_ids = load_dataset("synthetic", smoke.data_root, **smoke.dataset_options).num_train_pids
    assert (model.classifier is not None) == ("ce" in [term.split("*")[-1] for term in spec.split("+")])
    if model.classifier is not None:
        assert model.classifier.out_features == num_ids
    assert 0 <= run.metrics["mAP"] <= 100


# -------------------------------------------------------------------------------------- command line


def test_command_line_train_and_evaluate(data_root, tmp_path, capsys):
    args = ["--preset", "smoke", "--data-root", data_root, "--epochs", "1", "--loss", "triplet",
            "--set", "height=32", "--set", "width=16", "--set", "p=4"]
    cli(["train", *args, "--cache-root", str(tmp_path / "cache"), "--no-progress"])
    out = capsys.readouterr().out
    run_dir = tmp_path / "cache" / out.split("run ")[1].split(" ")[0].split("/")[-1]
    assert (run_dir / MODEL).is_file() and "rank1" in out
    trained = json.loads(out[out.index("{"):])
    cli(["evaluate", str(run_dir), "--data-root", data_root, "--dataset", "synthetic"])
    evaluated = capsys.readouterr().out
    # preprocessing and the synthetic set's options come from the run's config.json
    assert json.loads(evaluated[evaluated.index("{"):]) == trained
    with pytest.raises(SystemExit):
        cli(["train", "--preset", "nope"])


def test_command_line_evaluates_the_model_before_training(data_root, capsys):
    """``evaluate --initial``: the preset's model as training would start it (seeded), no checkpoint needed."""
    config = get_preset("smoke", data_root=data_root, height=32, width=16)
    cli(["evaluate", "--initial", "--preset", "smoke", "--data-root", data_root, "--dataset", "synthetic",
         "--set", "height=32", "--set", "width=16"])
    out = capsys.readouterr().out
    assert "before re-ID training" in out
    torch.manual_seed(config.seed)
    model = build_model(config.model, pretrained=config.pretrained, last_stride=config.last_stride)
    data = load_dataset("synthetic", data_root, **config.dataset_options)
    expected = evaluate_model(model, data.query, data.gallery, config, "cpu").as_dict()
    assert json.loads(out[out.index("{"):]) == pytest.approx(expected)
    for both_or_neither in (["evaluate", "--data-root", data_root], ["evaluate", "x", "--initial"]):
        with pytest.raises(SystemExit) as info:  # an expected error: one line on stderr, exit status 2
            cli(both_or_neither)
        assert info.value.code == 2 and "either a run folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the loop learns


@pytest.mark.slow
def test_smoke_preset_learns_its_training_identities(smoke):
    """Train on the synthetic training identities; rank them against themselves across cameras (first image of
    each identity-camera pair as query, Market-1501 protocol): near-perfect after training, poor before."""
    config = get_preset("smoke", data_root=smoke.data_root)
    dataset = load_dataset(config.dataset, config.data_root, **config.dataset_options)
    query, gallery = split_by_camera(dataset.train)
    torch.manual_seed(0)
    before = evaluate_model(build_model(config.model, pretrained=config.pretrained), query, gallery, config, "cpu")
    run = train(config, progress=False)
    after = evaluate_model(run.load_model(), query, gallery, config, "cpu")
    assert after.rank(1) >= 0.9, after.as_dict()
    assert before.rank(1) < 0.7, before.as_dict()
    assert run.history_frame().groupby("epoch")["loss"].mean().iloc[-1] < run.history[0]["loss"]


def test_batch_runs_print_one_line_per_epoch_instead_of_a_bar(smoke, capsys):
    """``snlib reproduce`` relays these lines from the kernels: which run trains, and how far it is."""
    with settings.batch_run():
        train(smoke)
    out, err = capsys.readouterr()
    name = f"[snlib] training {smoke.loss} seed {smoke.seed} ({config_hash(smoke)})"
    assert [line for line in out.splitlines() if line.startswith("[snlib]")][:3] == [
        f"{name}: 2 epochs, 8 iterations", *[line for line in out.splitlines() if line.startswith(f"{name}: epoch ")]]
    assert [line.split(",")[0] for line in out.splitlines() if line.startswith(f"{name}: epoch ")] == \
        [f"{name}: epoch 1/2", f"{name}: epoch 2/2"]
    assert f"train {smoke.loss}" not in err  # no progress bar
