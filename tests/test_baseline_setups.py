"""The baselines as their sources set them up (issue 25): TriNet's embedding head (Hermans et al. 2017), Bag of
Tricks' BNNeck routing and warm-up (Luo et al. 2019, reid-strong-baseline), and the recipes that take them."""
from __future__ import annotations

import importlib
import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from snlib import engine, settings
from snlib.data import load_dataset
from snlib.errors import ConfigError
from snlib.models import CheckpointMismatchError, build_model, extract_features, load_model, model_checkpoint
from snlib.presets import PAPER_RATES, config_hash, get_preset
from snlib.recipes import BOT_FIELDS, RECIPES, TRINET_FIELDS, apply_recipe


@pytest.fixture
def smoke(data_root, tmp_path, monkeypatch):
    """The smoke configuration cut to 1 epoch of 4 iterations (p=4) at 32x16, run cache in a temporary folder."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    return get_preset("smoke", data_root=data_root, epochs=1, height=32, width=16, p=4)


def _lite0(**options):
    return build_model("efficientnet_lite0", pretrained=False, **options)


class _Spy:
    """Forward hooks that keep the inputs / outputs of named modules, call after call."""

    def __init__(self):
        self.seen: dict[str, list[torch.Tensor]] = {}

    def keep(self, name: str, value: torch.Tensor) -> None:
        self.seen.setdefault(name, []).append(value.detach().clone())

    def inputs(self, module: nn.Module, name: str) -> None:
        module.register_forward_hook(lambda m, args, out: self.keep(name, args[0]))

    def outputs(self, module: nn.Module, name: str) -> None:
        module.register_forward_hook(lambda m, args, out: self.keep(name, out))


def _train_spied(config, tmp_path, monkeypatch, spy_model, spy_loss):
    """Train ``config`` with ``spy_model(model)`` / ``spy_loss(loss)`` called on the engine's own model and loss."""
    build, make_loss = engine.build_model, engine.loss_from_config

    def built(**options):
        model = build(**options)
        spy_model(model)
        return model

    def made(*args, **kwargs):
        loss = make_loss(*args, **kwargs)
        spy_loss(loss)
        return loss

    monkeypatch.setattr(engine, "build_model", built)
    monkeypatch.setattr(engine, "loss_from_config", made)
    return engine.train(config, run_dir=tmp_path / "run", progress=False)


# ----------------------------------------------------------------------------------------- TriNet's head


def test_trinet_head_is_1024_bn_relu_128_initialised_as_the_authors_code():
    model = _lite0(embedding_head="trinet")
    first, norm, relu, last = model.head
    assert (first.in_features, first.out_features, first.bias) == (1280, 1024, None)
    assert isinstance(norm, nn.BatchNorm1d) and (norm.num_features, norm.eps, norm.momentum) == (1024, 1e-5, 0.1)
    assert norm.weight.requires_grad and norm.bias.requires_grad   # TF-slim batch_norm with scale and shift
    assert isinstance(relu, nn.ReLU) and (last.in_features, last.out_features) == (1024, 128)
    assert first.weight.abs().max() <= math.sqrt(6 / (1280 + 1024))            # Glorot uniform
    assert first.weight.std() > 0.8 * math.sqrt(2 / (1280 + 1024))
    assert torch.allclose(last.weight @ last.weight.T, torch.eye(128), atol=1e-5)  # orthogonal rows
    assert not last.bias.any()
    assert (model.backbone_dim, model.feat_dim) == (1280, 128)
    out = model(torch.randn(4, 3, 64, 32))
    assert out.features.shape == out.embedding.shape == (4, 128) and out.logits is None
    assert out.embedding is out.features   # no BNNeck: the test feature is the head's output


def test_no_head_keeps_the_architecture_and_checkpoints_of_before():
    model = _lite0()
    assert model.head is None and "embedding_head" not in model.config and model.feat_dim == 1280
    assert not any(key.startswith("head.") for key in model.state_dict())
    with_bnneck = _lite0(embedding_head="trinet", bnneck=True, num_classes=5)
    assert with_bnneck.bottleneck.num_features == 128 and with_bnneck.classifier.in_features == 128
    with pytest.raises(ValueError, match="unknown embedding_head 'fc'.*'trinet'"):
        _lite0(embedding_head="fc")


def test_a_checkpoint_saves_and_loads_the_head(tmp_path):
    torch.manual_seed(0)
    model = _lite0(embedding_head="trinet").eval()
    with torch.no_grad():
        model.head[1].running_mean.uniform_(-1, 1)   # a trained state, not the initial one
        model.head[3].bias.uniform_(-1, 1)
    torch.save(model_checkpoint(model), tmp_path / "model.pt")
    loaded = load_model(tmp_path / "model.pt").eval()
    assert loaded.config["embedding_head"] == "trinet"
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x).embedding, model(x).embedding)
    from snlib.models import load_model_weights
    with pytest.raises(CheckpointMismatchError, match="embedding_head: checkpoint 'trinet' vs model None"):
        load_model_weights(_lite0(), model_checkpoint(model))


def test_the_loss_and_the_test_see_the_heads_128d_output(smoke, tmp_path, monkeypatch):
    spy = _Spy()
    config = apply_recipe(smoke, "triplet")
    assert config.embedding_head == "trinet" and config.loss == "triplet-soft"
    run = _train_spied(config, tmp_path, monkeypatch, lambda model: spy.outputs(model.head, "head"),
                       lambda loss: spy.inputs(loss.terms["triplet-soft"], "loss"))
    assert len(spy.seen["loss"]) == len(run.history) == 4
    for head_out, loss_in in zip(spy.seen["head"], spy.seen["loss"]):   # training forwards only (before eval)
        assert loss_in.shape == (16, 128) and torch.equal(loss_in, head_out.float())
    model = run.load_model().eval()
    data = engine.run_dataset(config)
    loader = engine.eval_loader(data.query, config, torch.device("cpu"))
    features, _, _ = extract_features(model, loader)
    images = torch.cat([batch[0] for batch in loader])
    with torch.no_grad():
        expected = F.normalize(model.head(model.backbone(images)), dim=1)
    assert features.shape == (len(data.query), 128)
    torch.testing.assert_close(features, expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------------------- Bag of Tricks


def test_bot_routes_the_triplet_before_the_bnneck_and_classifier_and_test_after(smoke, tmp_path, monkeypatch):
    spy = _Spy()

    def spy_model(model):
        spy.outputs(model.backbone, "pooled")
        spy.inputs(model.bottleneck, "bn_in")
        spy.outputs(model.bottleneck, "bn_out")

    def spy_loss(loss):
        spy.inputs(loss.terms["triplet"], "triplet")
        spy.inputs(loss.terms["ce"], "ce")

    config = apply_recipe(smoke, "bot")
    assert {k: getattr(config, k) for k in BOT_FIELDS} == BOT_FIELDS
    run = _train_spied(config, tmp_path, monkeypatch, spy_model, spy_loss)
    model = run.load_model()
    steps = len(run.history)
    assert len(spy.seen["triplet"]) == len(spy.seen["ce"]) == steps == 4
    for t in range(steps):
        pooled, after = spy.seen["pooled"][t], spy.seen["bn_out"][t]
        assert torch.equal(spy.seen["triplet"][t], pooled)         # the triplet: the features before the BNNeck
        assert torch.equal(spy.seen["bn_in"][t], pooled)
        assert not torch.allclose(after, pooled)
    assert spy.seen["ce"][0].shape == (16, model.classifier.out_features)   # logits (next test: of what)
    model.eval()
    data = engine.run_dataset(config)
    loader = engine.eval_loader(data.query, config, torch.device("cpu"))
    features, _, _ = extract_features(model, loader)
    images = torch.cat([batch[0] for batch in loader])
    with torch.no_grad():
        pooled = model.backbone(images)
        after = F.normalize(model.bottleneck(pooled), dim=1)   # running statistics, no shift (bias frozen at 0)
    torch.testing.assert_close(features, after, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(features, F.normalize(pooled, dim=1), atol=1e-3)
    assert not model.bottleneck.bias.requires_grad and not model.bottleneck.bias.any()


def test_bot_classifier_is_fed_the_bnneck_output(smoke, tmp_path, monkeypatch):
    spy = _Spy()

    def spy_model(model):   # the classifier is attached after the model is built: read it at each forward
        spy.outputs(model.bottleneck, "bn_out")

        def fed(module, args, out):
            with torch.no_grad():
                spy.keep("logits", out.logits)
                spy.keep("from_bn", module.classifier(spy.seen["bn_out"][-1]))
        model.register_forward_hook(fed)

    _train_spied(apply_recipe(smoke, "bot"), tmp_path, monkeypatch, spy_model,
                 lambda loss: spy.inputs(loss.terms["ce"], "ce"))
    assert len(spy.seen["ce"]) == 4
    for logits, from_bn, ce_in in zip(spy.seen["logits"], spy.seen["from_bn"], spy.seen["ce"]):
        assert torch.equal(logits, from_bn) and torch.equal(ce_in, logits.float())


def _released_warmup(epoch: int, warmup_factor: float = 0.01, warmup_iters: int = 10) -> float:
    """reid-strong-baseline's ``WarmupMultiStepLR`` warm-up (solver/lr_scheduler.py), transcribed: the factor at
    ``last_epoch`` (stepped at the start of every epoch, so 1 in the first epoch, 10 in the eleventh)."""
    if epoch >= warmup_iters:
        return 1.0
    alpha = epoch / warmup_iters
    return warmup_factor * (1 - alpha) + alpha


def test_warmup_share_is_bag_of_tricks_warmup_at_one_iteration_per_epoch():
    config = get_preset("smoke", epochs=120, decay_start_epoch=120, **BOT_FIELDS)
    assert engine.warmup_length(config) == 10
    for epoch in range(15):
        assert engine.lr_factor(config, epoch) == pytest.approx(_released_warmup(epoch + 1))
    # the same share of an iteration budget, and the longer warm-up wins
    budget = get_preset("smoke", iterations=1200, warmup_iterations=50, warmup_share=10 / 120)
    assert engine.warmup_length(budget) == 100
    assert engine.warmup_length(budget.replace(warmup_iterations=120)) == 120
    assert engine.lr_factor(budget, 0, 49) == pytest.approx(0.01 + 0.99 * 50 / 100)
    assert engine.lr_factor(budget, 0, 99) == engine.lr_factor(budget.replace(warmup_share=0.0), 0, 99) == 1.0
    # with several iterations per epoch, the share counts iterations
    per_epoch = get_preset("smoke", epochs=12, decay_start_epoch=12, warmup_share=0.25)
    assert engine.warmup_length(per_epoch, iters_per_epoch=4) == 12
    assert engine.lr_factor(per_epoch, 1, 1, iters_per_epoch=4) == pytest.approx(0.01 + 0.99 * 6 / 12)


def test_the_triplet_and_bot_recipes_take_their_sources_fields():
    base = get_preset("cpu")
    assert TRINET_FIELDS == {"embedding_head": "trinet"}
    assert BOT_FIELDS == {"triplet_margin": 0.3, "label_smoothing": 0.1, "bnneck": True, "warmup_share": 10 / 120}
    assert RECIPES["triplet"].fields == TRINET_FIELDS and RECIPES["bot"].fields == BOT_FIELDS
    for name, fields in (("triplet", TRINET_FIELDS), ("bot", BOT_FIELDS)):
        config = apply_recipe(base, name)
        assert {k: getattr(config, k) for k in fields} == fields and not set(fields) & {"loss", "recipe"}
        # the fields change what is computed: without them (the version-1 recipe) the hash differs
        before = config.replace(**{k: getattr(base, k) for k in fields})
        assert config_hash(before) != config_hash(config)
    # the other recipes keep the pooled features and the shared warm-up
    for name in set(RECIPES) - {"triplet", "bot"}:
        config = apply_recipe(base, name)
        assert config.embedding_head == "" and config.warmup_share == 0.0
    # what each trains and tests on, as the tables say
    assert "TriNet head" in RECIPES["triplet"].trains_on and "TriNet head" in RECIPES["triplet"].tests_on
    assert "before the BNNeck" in RECIPES["bot"].trains_on and "after the BNNeck" in RECIPES["bot"].tests_on
    with pytest.raises(ConfigError, match="embedding_head='fc' must be '' \\(none\\) or one of trinet"):
        base.replace(embedding_head="fc")
    with pytest.raises(ConfigError, match="warmup_share=1.5 must be in \\[0, 1\\)"):
        base.replace(warmup_share=1.5)


# ------------------------------------------------------------------------------------- the baselines check


def test_the_baselines_check_trains_each_recipe_with_its_papers_setup_and_resumes(data_root, tmp_path, monkeypatch):
    """benchmarks/baselines_check.py on the smoke set: 3 recipes x 2 rates, 4 iterations scored every 2; TriNet's
    head for ``triplet``, Bag of Tricks' fields for ``bot``; the second call trains nothing and writes the same
    table; the untrained floor is the network every recipe starts from."""
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(settings.repo_root() / "benchmarks"))
    check = importlib.import_module("baselines_check")
    argv = ["--preset", "smoke", "--data-root", data_root, "--iterations", "4", "--eval-every", "2",
            "--recipes", "sn", "triplet", "bot", "--rate-steps", "1", "3", "--size", "32x16", "--set", "p=4",
            "--output", str(tmp_path / "out"), "--records", str(tmp_path / "records")]
    table = check.main(argv)
    assert len(table) == 6 and table.groupby("recipe")["rate step"].apply(sorted).tolist() == [[1, 3]] * 3
    assert set(table["collapsed (rule)"]) <= {"yes", "no"} and set(table["above untrained"]) <= {"yes", "no"}
    stored = {json.loads(p.read_text())["config"]["recipe"]: json.loads(p.read_text())
              for p in (tmp_path / "records").glob("*.json")}
    assert stored["triplet"]["config"]["embedding_head"] == "trinet"
    assert {k: stored["bot"]["config"][k] for k in BOT_FIELDS} == BOT_FIELDS
    assert stored["sn"]["config"]["embedding_head"] == "" and stored["sn"]["config"]["train_from"] == "blocks.6"
    assert stored["sn"]["config"]["sn_k"] == 10   # fixed as its committed runs were made, whatever the preset's k
    assert [e["iteration"] for e in stored["sn"]["evaluations"]] == [2, 4]
    assert any(column in stored["triplet"]["history"][-1] for column in ("hard_gap", "pair_dist"))
    literature = table[table["rate step"] == 1].set_index("recipe")["lr"]
    assert literature.to_dict() == {r: PAPER_RATES[r][0] for r in ("sn", "triplet", "bot")}
    assert (tmp_path / "out" / "baselines_check.png").stat().st_size > 0
    text = (tmp_path / "out" / "baselines_check.md").read_text()
    assert text.startswith("`python benchmarks/baselines_check.py") and "Untrained network" in text
    monkeypatch.setattr(sys.modules["trunk_check"], "train", lambda *a, **k: pytest.fail("a recorded run was trained"))
    assert check.main(argv).equals(table)
    del sys.modules["baselines_check"], sys.modules["trunk_check"]
