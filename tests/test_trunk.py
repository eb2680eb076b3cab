"""snlib.trunk and the backbones' pretrained configuration: stages that compose to the network, the
normalisation each backbone's weights were trained with (what a run records), a frozen trunk (no gradients,
BatchNorm fixed in every phase, an optimiser of the trained parameters only, on both backbones), and the trunk
cache (the uncached frozen-trunk run's batches, flips and losses; rebuilt when an image or a setting changes;
refused with augmentations it cannot hold; exact resume; evaluation from the cache)."""
from __future__ import annotations

import importlib
import json
import math
import os
import sys
import types

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch.utils.data import default_collate

from snlib import engine, settings, trunk
from snlib.__main__ import main as cli
from snlib.data import PAPER_MEAN, PAPER_STD, Sample, decoded, load_dataset
from snlib.data.decoded import clear_memory as clear_decoded
from snlib.distributed import DistInfo
from snlib.errors import ConfigError
from snlib.models import BACKBONES, backbone, build_model, initial_model
from snlib.precision import resolve_precision
from snlib.presets import TrainConfig, config_hash, get_preset, parse_overrides
from snlib.runs import RESULT, RunFolder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """The smoke preset's synthetic set, generated once for the module."""
    root = tmp_path_factory.mktemp("data") / "synthetic-smoke"
    config = get_preset("smoke")
    load_dataset(config.dataset, root, **config.dataset_options)
    return str(root)


@pytest.fixture
def smoke(data_root, tmp_path, monkeypatch):
    """Smoke preset, 2 epochs of 4 iterations (p=4) at 32x16, from blocks.5 on; caches in a temporary folder."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    trunk.clear_memory()
    clear_decoded()
    yield get_preset("smoke", data_root=data_root, epochs=2, height=32, width=16, p=4, train_from="blocks.5")
    trunk.clear_memory()


def trunk_state(state: dict, stage: str, model: str = "efficientnet_lite0") -> dict:
    """The entries of a model state dict that belong to the trunk before ``stage``."""
    net = build_model(model, pretrained=False)
    frozen, _ = trunk.split(net, stage)
    names = {id(t): n for n, t in net.state_dict(keep_vars=True).items()}
    keys = {names[id(t)] for t in frozen.state_dict(keep_vars=True).values()}
    assert keys  # the trunk is not empty
    return {k: v for k, v in state.items() if k in keys}


def _trainer(config, tmp_path, name):
    """The engine's training state of ``config`` (model, optimiser, loaders), nothing trained."""
    folder = RunFolder(tmp_path / name)
    folder.create()
    return engine._Trainer(config, folder, DistInfo(), progress=False)


# ------------------------------------------------------------------------------------ backbones as data


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_stages_compose_to_the_network(name):
    spec = BACKBONES[name]
    torch.manual_seed(0)
    model = build_model(name, pretrained=False).eval()
    parts = spec.parts(model.backbone)
    assert [n for n, _ in parts] == ["stem", *spec.stages, "pool"]
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        composed = x
        for _, part in parts:
            composed = part(composed)
        torch.testing.assert_close(composed, model.backbone(x), rtol=0, atol=0)
        for stage in spec.stages:   # every cut gives the same network
            head, rest = trunk.split(model, stage)
            torch.testing.assert_close(rest(head(x)), model.backbone(x), rtol=0, atol=0)


def test_each_backbone_carries_the_normalisation_of_its_weights():
    import timm
    from torchvision.models import ResNet50_Weights

    lite0 = timm.models.get_pretrained_cfg("tf_efficientnet_lite0")   # the architecture of the packaged weights
    assert backbone("efficientnet_lite0").mean == tuple(lite0.mean) == (0.5, 0.5, 0.5)
    assert backbone("efficientnet_lite0").std == tuple(lite0.std) == (0.5, 0.5, 0.5)
    torchvision = ResNet50_Weights.IMAGENET1K_V1.transforms()
    assert backbone("resnet50").mean == tuple(torchvision.mean) and backbone("resnet50").std == tuple(torchvision.std)
    clip = timm.models.get_pretrained_cfg("vit_base_patch16_clip_224")   # a timm name: its pretrained config
    assert backbone("vit_base_patch16_clip_224").mean == tuple(clip.mean) != backbone("resnet50").mean


def test_normalization_backbone_resolves_mean_and_std_and_keeps_every_other_hash():
    cpu = get_preset("cpu")
    # the cpu and smoke presets take Lite0's own normalisation (TensorFlow weights: 0.5 / 0.5); the paper's stays
    assert (cpu.normalization, cpu.mean, cpu.std) == ("backbone", (0.5,) * 3, (0.5,) * 3)
    assert (get_preset("smoke").mean, get_preset("smoke").std) == ((0.5,) * 3, (0.5,) * 3)
    paper = get_preset("paper")
    assert (paper.normalization, paper.mean, paper.std) == ("explicit", PAPER_MEAN, PAPER_STD)
    published = cpu.replace(normalization="explicit", mean=PAPER_MEAN, std=PAPER_STD)   # the paper's mean / std
    assert config_hash(published) != config_hash(cpu)
    resnet = cpu.replace(model="resnet50", train_from="", trunk_cache="off")   # the backbone decides
    assert (resnet.mean, resnet.std) == (backbone("resnet50").mean, backbone("resnet50").std)
    assert TrainConfig.from_dict(json.loads(json.dumps(cpu.to_dict()))) == cpu   # config.json round trip
    assert parse_overrides(["normalization=backbone", "train_from=blocks.6", "trunk_cache=memory"]) == {
        "normalization": "backbone", "train_from": "blocks.6", "trunk_cache": "memory"}
    # operational: the trunk cache (it gives the uncached run); part of the run: the frozen trunk
    assert (cpu.train_from, cpu.trunk_cache) == ("blocks.6", "memory")
    end_to_end = cpu.replace(train_from="", trunk_cache="off")
    assert config_hash(end_to_end) != config_hash(cpu)
    assert config_hash(cpu.replace(trunk_cache="disk")) == config_hash(cpu.replace(trunk_cache="off")) \
        == config_hash(cpu)
    with pytest.raises(ConfigError, match="trunk_cache='memory' needs a frozen trunk"):
        cpu.replace(train_from="")
    with pytest.raises(ConfigError, match="normalization='timm' must be one of explicit, backbone"):
        cpu.replace(normalization="timm")


def test_a_run_records_the_normalisation_it_used(smoke, tmp_path, capsys):
    config = smoke.replace(epochs=1, train_from="", normalization="backbone")
    seen = []
    real = engine.build_transforms

    def spy(*args, **kwargs):
        seen.append((kwargs["mean"], kwargs["std"]))
        return real(*args, **kwargs)

    engine.build_transforms = spy
    try:
        run = engine.train(config, run_dir=tmp_path / "run", progress=False)
    finally:
        engine.build_transforms = real
    assert seen and set(seen) == {((0.5,) * 3, (0.5,) * 3)}              # what the images were normalised with
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["normalization"] == "backbone" and stored["mean"] == stored["std"] == [0.5] * 3
    result = json.loads((run.run_dir / RESULT).read_text())
    assert result["config"]["mean"] == [0.5] * 3
    # the command line: --set normalization=backbone
    capsys.readouterr()
    status = None
    try:
        cli(["train", "--preset", "smoke", "--set", "normalization=backbone", "--dry-run"])
    except SystemExit as exc:
        status = exc.code
    assert status in (None, 0)
    printed = json.loads(capsys.readouterr().out.split("\nhash ")[0])
    assert printed["mean"] == [0.5] * 3 and printed["normalization"] == "backbone"


# ---------------------------------------------------------------------------------------- frozen trunk


@pytest.mark.parametrize("name, stage", [("efficientnet_lite0", "blocks.5"), ("efficientnet_lite0", "head"),
                                         ("resnet50", "layer3")])
def test_a_frozen_trunk_stays_fixed_in_every_phase(name, stage):
    torch.manual_seed(0)
    model = build_model(name, pretrained=False, num_classes=4)
    frozen = trunk.freeze(model, stage)
    _, rest = trunk.split(model, stage)
    assert all(not p.requires_grad for p in frozen.parameters())
    assert all(p.requires_grad for p in rest.parameters()) and model.classifier.weight.requires_grad
    before = {k: v.clone() for k, v in frozen.state_dict().items()}
    rest_before = {k: v.clone() for k, v in rest.state_dict().items() if "running_mean" in k}
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained, lr=1e-2)
    x, labels = torch.randn(8, 3, 64, 32), torch.arange(4).repeat_interleave(2)
    for _ in range(2):
        model.train()
        assert all(not m.training for m in frozen.modules())             # train() does not switch them back
        assert all(m.training for m in rest.modules())
        loss = torch.nn.functional.cross_entropy(model(x).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is None for p in frozen.parameters())
        optimizer.step()
    model.eval()
    model.train(True)
    assert all(not m.training for m in frozen.modules())
    for key, value in frozen.state_dict().items():                      # weights and BatchNorm statistics
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, rest_before[k]) for k, v in rest.state_dict().items() if k in rest_before)


def test_a_frozen_run_trains_only_what_follows_the_trunk(smoke, tmp_path):
    run = engine.train(smoke.replace(epochs=1), run_dir=tmp_path / "run", progress=False)
    start = initial_model(smoke).state_dict()
    end = torch.load(run.model_path, weights_only=True)["state_dict"]
    for key, value in trunk_state(end, "blocks.5").items():
        assert torch.equal(value, start[key]), key                      # weights and BatchNorm statistics
    head = [k for k in end if k.startswith("backbone.conv_head")]
    assert head and not any(torch.equal(end[k], start[k]) for k in head)
    trainer = _trainer(smoke, tmp_path, "trainer")   # the optimiser holds exactly what follows the trunk
    _, rest = trunk.split(trainer.model, "blocks.5")
    held = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in held} == {id(p) for p in rest.parameters()} and len(held) == len(set(map(id, held)))


# ------------------------------------------------------------------------------------------ the cache


def test_cached_batches_and_flips_are_the_uncached_ones(smoke, tmp_path):
    plain = _trainer(smoke, tmp_path, "plain")
    cached = _trainer(smoke.replace(trunk_cache="memory"), tmp_path, "cached")
    assert isinstance(cached.train_set, trunk.TrunkDataset) and not isinstance(plain.train_set, trunk.TrunkDataset)
    frozen, _ = trunk.split(plain.model, "blocks.5")
    flips = 0
    for epoch in range(2):
        plain.epoch = cached.epoch = epoch
        torch.manual_seed(epoch)
        images = list(plain.train_loader())
        torch.manual_seed(epoch)
        outputs = list(cached.train_loader())
        assert len(images) == len(outputs) == plain.iters_per_epoch
        for (x, pids, camids, index), (t, cpids, ccamids, cindex) in zip(images, outputs):
            assert torch.equal(index, cindex) and torch.equal(pids, cpids) and torch.equal(camids, ccamids)
            with torch.no_grad():
                expected = frozen(x.contiguous(memory_format=torch.channels_last))
            torch.testing.assert_close(t, expected, rtol=1e-4, atol=1e-4)
            # t is exactly one view of its image, the one the uncached image matched (trunk(x) above)
            views = cached.train_set.outputs[cindex]
            flipped = (t - views[:, 1]).abs().flatten(1).amax(1) == 0
            unflipped = (t - views[:, 0]).abs().flatten(1).amax(1) == 0
            assert torch.all(flipped ^ unflipped)
            flips += int(flipped.sum())
    assert 0 < flips < 2 * plain.iters_per_epoch * len(index)              # both decisions occur


@pytest.mark.parametrize("flip", [True, False])
def test_a_batch_fetched_at_once_is_its_samples_fetched_one_by_one(flip):
    samples = [Sample(f"{i}.png", i % 7, i % 3) for i in range(300)]
    data = trunk.TrunkDataset(samples, torch.randn(300, 2, 3, 2, 1), flip)
    for size in (1, 7, 64, 128, 256):
        indices = torch.randperm(300, generator=torch.Generator().manual_seed(size))[:size].tolist()
        torch.manual_seed(size)
        one_by_one = default_collate([data[i] for i in indices])
        after = torch.rand(1)
        torch.manual_seed(size)
        at_once = data.collate(data.__getitems__(indices))
        assert len(at_once) == 4 and all(torch.equal(a, b) for a, b in zip(one_by_one, at_once))
        assert torch.equal(torch.rand(1), after)                        # the generator moved on alike
    views = (at_once[0] == data.outputs[at_once[3], 1]).flatten(1).all(1)
    assert 0 < int(views.sum()) < size if flip else not views.any()     # both decisions occur with flips


def test_the_trunk_is_hashed_once_while_its_weights_stay(smoke, data_root, monkeypatch):
    config, device = smoke.replace(trunk_cache="memory"), torch.device("cpu")
    precision = resolve_precision(config, device, training=False)
    samples = load_dataset(config.dataset, data_root, **config.dataset_options).gallery[:4]
    model = initial_model(config)
    trunk.freeze(model, config.train_from)
    hashed, real = [], trunk.weights_digest
    monkeypatch.setattr(trunk, "weights_digest", lambda t: hashed.append(1) or real(t))

    def outputs():
        return trunk.trunk_outputs(model, samples, config, device, precision, mirror=False).clone()

    first = outputs()
    assert torch.equal(outputs(), first) and torch.equal(outputs(), first) and hashed == [1]
    with torch.no_grad():                                                # weights changed in place: hashed again
        next(trunk.split(model, config.train_from)[0].parameters()).mul_(0.5)
    changed = outputs()
    assert len(hashed) == 2 and not torch.allclose(changed, first, rtol=1e-2, atol=1e-2)
    model.load_state_dict(initial_model(config).state_dict())           # the first weights again: their cache
    again = outputs()
    assert torch.equal(again, first) and len(hashed) == 3


def test_cached_and_uncached_frozen_runs_give_the_same_losses(smoke, tmp_path):
    plain = engine.train(smoke, run_dir=tmp_path / "plain", progress=False)
    cached = engine.train(smoke.replace(trunk_cache="memory"), run_dir=tmp_path / "cached", progress=False)
    assert len(plain.history) == len(cached.history) == 8
    for a, b in zip(plain.history[:4], cached.history[:4]):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-4), (a["loss"], b["loss"])
    for a, b in zip(plain.history, cached.history):
        assert math.isclose(a["loss"], b["loss"], rel_tol=1e-3)
    for metric in ("rank1", "mAP"):
        assert math.isclose(plain.metrics[metric], cached.metrics[metric], abs_tol=1e-6)


def test_a_cache_that_fits_nowhere_trains_the_frozen_run_from_the_images(smoke, tmp_path, monkeypatch, capsys):
    """No memory budget and no free disk: the run says so, computes the trunk at every step (the trunk still
    frozen) and gives the uncached frozen run's losses and scores."""
    plain = engine.train(smoke, run_dir=tmp_path / "plain", progress=False)
    monkeypatch.setattr(decoded, "memory_budget", lambda: 0)
    monkeypatch.setattr(decoded.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=0))
    capsys.readouterr()
    fallback = engine.train(smoke.replace(trunk_cache="memory"), run_dir=tmp_path / "fallback", progress=False)
    captured = capsys.readouterr()
    said = captured.out + captured.err
    assert "exceed the memory budget" in said and "computing the trunk at every step" in said
    assert [row["loss"] for row in fallback.history] == pytest.approx([row["loss"] for row in plain.history], rel=1e-6)
    for metric in ("rank1", "mAP"):
        assert fallback.metrics[metric] == pytest.approx(plain.metrics[metric], abs=1e-6)


@pytest.mark.parametrize("mode", ["memory", "disk"])
def test_a_changed_image_or_setting_rebuilds_the_cache(smoke, tmp_path, mode, data_root):
    config = smoke.replace(trunk_cache=mode)
    device = torch.device("cpu")
    precision = resolve_precision(config, device, training=False)
    samples = load_dataset(config.dataset, data_root, **config.dataset_options).gallery[:6]
    copies = []
    for i, sample in enumerate(samples):   # a private copy of the images, to change one
        path = tmp_path / "images" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.open(sample.path).save(path)
        copies.append(sample._replace(path=str(path)))
    model = initial_model(config)
    trunk.freeze(model, config.train_from)
    model.eval()   # the oracle below cuts the network elsewhere too
    cache_dir = tmp_path / "trunk"

    def outputs(cfg, items):
        return trunk.trunk_outputs(model, items, cfg, device, precision, mirror=True, cache_dir=cache_dir).clone()

    def fresh(cfg, items, net=model):   # the oracle: the trunk on the images, no cache
        frozen, _ = trunk.split(net, cfg.train_from)
        tf = engine.build_transforms(cfg.height, cfg.width, train=False, mean=cfg.mean, std=cfg.std)
        x = torch.stack([tf(Image.open(s.path).convert("RGB")) for s in items])
        with torch.no_grad():
            return torch.stack([frozen(x), frozen(x.flip(3))], dim=1)

    first = outputs(config, copies)
    torch.testing.assert_close(first, fresh(config, copies), rtol=1e-4, atol=1e-4)
    calls = []
    real = trunk._trunk_batches
    trunk._trunk_batches = lambda *a, **k: calls.append(1) or real(*a, **k)
    try:
        assert torch.equal(outputs(config, copies), first) and not calls   # reused, not recomputed
        stat = os.stat(copies[2].path)
        pixels = np.asarray(Image.open(copies[2].path)).copy()
        pixels[:, :pixels.shape[1] // 2] = 255 - pixels[:, :pixels.shape[1] // 2]
        Image.fromarray(pixels).save(copies[2].path)
        os.utime(copies[2].path, ns=(stat.st_mtime_ns + 10**9, stat.st_mtime_ns + 10**9))
        changed = outputs(config, copies)
        assert calls == [1]
        torch.testing.assert_close(changed, fresh(config, copies), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(changed[2], first[2], rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(changed[0], first[0])
        if mode == "disk":
            assert len(list(cache_dir.glob("*.npy"))) == 1                  # the stale file is gone
        for setting in (dict(normalization="explicit", mean=PAPER_MEAN, std=PAPER_STD), dict(train_from="blocks.6"),
                        dict(height=64, width=32)):
            other = config.replace(**setting)
            torch.testing.assert_close(outputs(other, copies), fresh(other, copies), rtol=1e-4, atol=1e-4)
        assert len(calls) == 4
        # other trunk weights under the same configuration (another seed's or another weights file's network)
        other_net = initial_model(config)
        trunk.freeze(other_net, config.train_from)
        other_net.eval()
        with torch.no_grad():
            next(trunk.split(other_net, config.train_from)[0].parameters()).mul_(0.5)
        theirs = trunk.trunk_outputs(other_net, copies, config, device, precision, mirror=True, cache_dir=cache_dir)
        assert len(calls) == 5 and not torch.allclose(theirs, first, rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(theirs, fresh(config, copies, other_net), rtol=1e-4, atol=1e-4)
        # without the mirrors: its own entry, view 0 of the oracle
        alone = trunk.trunk_outputs(model, copies, config, device, precision, mirror=False, cache_dir=cache_dir)
        assert len(calls) == 6 and alone.shape[1] == 1
        torch.testing.assert_close(alone[:, 0], fresh(config, copies)[:, 0], rtol=1e-4, atol=1e-4)
    finally:
        trunk._trunk_batches = real


@pytest.mark.parametrize("option", ["pad_crop", "random_erasing"])
def test_augmentations_a_cache_cannot_hold_are_refused_before_any_work(smoke, option, tmp_path, capsys,
                                                                       monkeypatch):
    with pytest.raises(ConfigError, match=f"trunk_cache='memory' cannot hold {option}"):
        smoke.replace(trunk_cache="memory", **{option: True})
    monkeypatch.setattr(engine, "run_dataset", lambda *a: pytest.fail("work started"))
    with pytest.raises(SystemExit) as exit_info:
        cli(["train", "--preset", "smoke", "--set", "train_from=blocks.6", "--set", "trunk_cache=memory",
             "--set", f"{option}=true", "--cache-root", str(tmp_path / "c")])
    assert exit_info.value.code == 2
    assert f"cannot hold {option}" in capsys.readouterr().err and not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="needs a frozen trunk"):
        smoke.replace(train_from="", trunk_cache="disk")


class _Killed(Exception):
    pass


def test_resume_of_a_cached_run_equals_the_uninterrupted_run(smoke, tmp_path):
    config = smoke.replace(trunk_cache="memory", eval_every=1)
    reference = engine.train(config, run_dir=tmp_path / "whole", progress=False)

    def kill_after_first(epoch, state):
        if epoch == 1:
            raise _Killed

    with pytest.raises(_Killed):
        engine.train(config, run_dir=tmp_path / "killed", progress=False, on_epoch_end=kill_after_first)
    trunk.clear_memory()   # a new process: the cache is computed again
    resumed = engine.train(config, run_dir=tmp_path / "killed", progress=False)
    assert resumed.extra["resumed"]
    a = torch.load(reference.model_path, weights_only=True)["state_dict"]
    b = torch.load(resumed.model_path, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    strip = [{k: v for k, v in row.items() if k not in engine.TIMING_KEYS} for row in reference.history]
    assert strip == [{k: v for k, v in row.items() if k not in engine.TIMING_KEYS} for row in resumed.history]
    assert reference.metrics == resumed.metrics


@pytest.mark.parametrize("eval_flip", [False, True])
def test_test_features_from_the_cache_are_the_images(smoke, data_root, eval_flip):
    config = smoke.replace(eval_flip=eval_flip, train_from="blocks.6")
    model = initial_model(config)
    samples = load_dataset(config.dataset, data_root, **config.dataset_options).query
    device = torch.device("cpu")
    calls = []
    real = trunk.trunk_outputs
    trunk.trunk_outputs = lambda *a, **k: calls.append(k["mirror"]) or real(*a, **k)
    try:
        plain = engine.test_features(model, samples, config, device)
        cached = engine.test_features(model, samples, config.replace(trunk_cache="memory"), device)
    finally:
        trunk.trunk_outputs = real
    assert calls == [eval_flip]
    torch.testing.assert_close(cached[0], plain[0], rtol=1e-4, atol=1e-5)
    assert np.array_equal(cached[1], plain[1]) and np.array_equal(cached[2], plain[2])


def _tiny_trunk_check(data_root, tmp_path, monkeypatch):
    """benchmarks/trunk_check.py imported, and its arguments on the smoke set: 2 losses, a 2-rate grid, 2 seeds, 3
    iterations, sizes 32x16 / 48x24, run cache, table and records in ``tmp_path``."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(settings.repo_root() / "benchmarks"))
    argv = ["--preset", "smoke", "--data-root", data_root, "--iterations", "3", "--losses", "sn", "contrastive",
            "--lrs", "1e-3", "3e-3", "--seeds", "0", "1", "--sizes", "32x16", "48x24", "--set", "p=4",
            "--output", str(tmp_path / "out"), "--records", str(tmp_path / "records")]
    return importlib.import_module("trunk_check"), argv


def test_the_trunk_check_runs_records_and_resumes_on_tiny_data(data_root, tmp_path, monkeypatch):
    """benchmarks/trunk_check.py on the smoke set: 5 variants x 2 losses, a 2-rate grid, 2 seeds, 3 iterations;
    the second call trains nothing (records) and writes the same table."""
    check, argv = _tiny_trunk_check(data_root, tmp_path, monkeypatch)
    table = check.main(argv)
    runs = pd.read_csv(tmp_path / "out" / "trunk_check_runs.csv")
    assert len(runs) == 5 * 2 * 3 and set(runs["variant"]) == {"end to end 32x16", "blocks.5 32x16",
                                                                "blocks.6 32x16", "blocks.5 48x24", "blocks.6 48x24"}
    assert len(list((tmp_path / "records").glob("*.json"))) == 5 * 2 * 3
    for (variant, loss), group in runs.groupby(["variant", "loss"]):   # the other seed at the selected rate
        grid = group[group["selection"]]
        best = grid.sort_values(["mAP", "lr"], ascending=[False, True]).iloc[0]
        assert group[~group["selection"]]["lr"].tolist() == [best["lr"]]
    stored = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert stored["config"]["normalization"] == "backbone" and stored["config"]["split"] == "val"
    assert len(table) == 10 and set(table["as end to end"]) <= {"yes", "no"}
    assert set(table["at the grid's edge"]) == {"yes"}                      # a grid of two rates is all edge
    assert (tmp_path / "out" / "trunk_check.md").read_text().startswith("`python benchmarks/trunk_check.py")
    monkeypatch.setattr(check, "train", lambda *a, **k: pytest.fail("a recorded run was trained again"))
    again = check.main(argv)
    assert again.equals(table)
    del sys.modules["trunk_check"]



def test_the_trunk_check_tables_what_has_landed_without_training(data_root, tmp_path, monkeypatch):
    """``--landed``: the table of the variants recorded so far (a partial table, so headed), nothing trained; the
    ordering is compared with end to end only once end to end is recorded."""
    check, argv = _tiny_trunk_check(data_root, tmp_path, monkeypatch)
    check.main(argv + ["--train-only", "blocks.6 32x16"])
    assert not (tmp_path / "out").exists()                                  # --train-only writes no table
    monkeypatch.setattr(check, "train", lambda *a, **k: pytest.fail("--landed trained a run"))
    table = check.main(argv + ["--landed"])
    assert set(table["variant"]) == {"blocks.6 32x16"} and set(table["loss"]) == {"sn", "contrastive"}
    assert set(table["as end to end"]) == {"n/a"}
    assert "**Partial: the runs recorded so far**" in (tmp_path / "out" / "trunk_check.md").read_text()
    monkeypatch.undo()
    check, argv = _tiny_trunk_check(data_root, tmp_path, monkeypatch)
    check.main(argv + ["--train-only", "end to end 32x16", "--losses", "sn"])  # end to end: one loss of two so far
    monkeypatch.setattr(check, "train", lambda *a, **k: pytest.fail("--landed trained a run"))
    table = check.main(argv + ["--landed"]).set_index(["variant", "loss"])
    assert table.loc[("end to end 32x16", "sn"), "as end to end"] == "yes"
    assert set(table.loc["blocks.6 32x16", "as end to end"]) == {"n/a"}     # not compared with a part of the losses
    del sys.modules["trunk_check"]


class _Captured(Exception):
    pass


def test_the_data_path_benchmarks_train_the_whole_network(monkeypatch, tmp_path):
    """Channels-last and the decoded-image cache act only where images go through the whole network, so the
    benchmarks that measure them (bench_train's ``cpu`` row and end-to-end comparison, bench_data's epoch share,
    cpu_parity) run the ``cpu`` preset end to end, whatever frozen trunk the preset itself has."""
    monkeypatch.syspath_prepend(str(settings.repo_root() / "benchmarks"))
    bench_train = importlib.import_module("bench_train")
    assert get_preset("cpu").train_from != ""      # else this test checks nothing
    seen = []

    def capture(config, *args, **kwargs):
        seen.append(config)
        raise _Captured

    args = types.SimpleNamespace(paper_batch=None, models=["cpu"], also=[], size=None)
    [(_, config)] = bench_train.model_rows(args, cuda=False)
    seen.append(config)
    monkeypatch.setattr(bench_train, "train", capture)
    with pytest.raises(_Captured):
        bench_train._end_to_end_worker({}, 1)
    bench_data = importlib.import_module("bench_data")
    monkeypatch.setattr(bench_data, "_epoch_share", capture)
    with pytest.raises(_Captured):
        bench_data.bench_epoch_share(tmp_path / "data", tmp_path / "cache")
    cpu_parity = importlib.import_module("cpu_parity")
    monkeypatch.setattr(cpu_parity, "train", capture)
    with pytest.raises(_Captured):
        cpu_parity.run_all(["sn"], [0], 1)
    assert len(seen) == 4
    for config in seen:
        assert (config.preset, config.train_from, config.trunk_cache) == ("cpu", "", "off")
    for name in ("bench_train", "bench_data", "cpu_parity"):
        del sys.modules[name]
