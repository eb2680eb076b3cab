"""The losses after SN (issue 29): Circle, multi-similarity (with its miner), SupCon, ArcFace and CosFace as recipes.
Each equals PML's own loss object called on the same batch and an independent plain-loop oracle of its paper's
equation (float64, values and gradients); the margin softmaxes' class weights are trained by the engine's
optimiser; a few smoke iterations train; the later-loss claims of ``snlib.study.later`` from hand-made records (no
training), their plan and their entry in ``snlib reproduce --plan``."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from _loss_fixtures import clustered_batch
from snlib import engine, reproduce_plan
from snlib.__main__ import main as cli
from snlib.distributed import DistInfo
from snlib.errors import ConfigError
from snlib.losses import (ArcFaceLoss, CircleLoss, CosFaceLoss, MultiSimilarityLoss, SupConLoss, build_loss,
                          loss_from_config)
from snlib.presets import PAPER_RATES, config_hash, get_preset
from snlib.recipes import BASELINES, LATER, RECIPES, apply_recipe
from snlib.records import RunRecord, write_record
from snlib.runs import RunFolder
from snlib.study import later, plans
from snlib.study.claims import COLUMNS
from snlib.study.protocol import Protocol, rate_table
from snlib.study.study import open_study

CLASSES = {"circle": CircleLoss, "ms": MultiSimilarityLoss, "supcon": SupConLoss, "arcface": ArcFaceLoss,
           "cosface": CosFaceLoss}


def _batch(seed: int):
    """A float64 batch of 7 identities (1 to 4 images each), labels relabelled 0..6 (the margin softmaxes need
    class indices), a spread that leaves hard pairs."""
    features, labels = clustered_batch(seed, num_ids=7, dim=8, max_images=4, spread=0.6)
    return features, torch.unique(labels, return_inverse=True)[1]


def _value_and_grad(fn, features, labels):
    x = features.clone().requires_grad_(True)
    value = fn(x, labels)
    value.backward()
    return value.detach(), x.grad


# ------------------------------------------------------------------------------------ oracles: the papers' equations

def _cosines(x):
    x = x / x.norm(dim=1, keepdim=True)
    return x @ x.T


def circle_oracle(x, labels, m=0.25, gamma=128.0):
    """Sun et al. 2020, Eq. 4 with the optima O_p = 1 + m, O_n = -m and margins D_p = 1 - m, D_n = m (weights
    a_p, a_n without gradient), per anchor; mean over the anchors with a positive and a negative."""
    s = _cosines(x)
    terms = []
    for i in range(len(labels)):
        pos = [j for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg = [j for j in range(len(labels)) if labels[j] != labels[i]]
        if not pos or not neg:
            continue
        lp = torch.stack([-gamma * torch.relu(1 + m - s[i, j].detach()) * (s[i, j] - (1 - m)) for j in pos])
        ln = torch.stack([gamma * torch.relu(s[i, j].detach() + m) * (s[i, j] - m) for j in neg])
        terms.append(F.softplus(torch.logsumexp(lp, 0) + torch.logsumexp(ln, 0)))
    return torch.stack(terms).mean()


def ms_oracle(x, labels, alpha=2.0, beta=50.0, lam=0.5, epsilon=0.1):
    """The authors' loop (research-ms-loss, ``ms_loss.py``): mining of each anchor's pairs with ``epsilon``, then
    their weighting; an anchor with no mined pair counts 0 in the mean over the batch."""
    s = _cosines(x)
    terms = []
    for i in range(len(labels)):
        pos_all = [s[i, j] for j in range(len(labels)) if j != i and labels[j] == labels[i]]
        neg_all = [s[i, j] for j in range(len(labels)) if labels[j] != labels[i]]
        if not pos_all or not neg_all:
            continue
        hardest_pos, hardest_neg = min(p.item() for p in pos_all), max(n.item() for n in neg_all)
        neg = [n for n in neg_all if n.item() + epsilon > hardest_pos]
        pos = [p for p in pos_all if p.item() - epsilon < hardest_neg]
        if not pos or not neg:
            continue
        terms.append(torch.log(1 + torch.stack([torch.exp(-alpha * (p - lam)) for p in pos]).sum()) / alpha
                     + torch.log(1 + torch.stack([torch.exp(beta * (n - lam)) for n in neg]).sum()) / beta)
    return torch.stack(terms).sum() / len(labels)


def supcon_oracle(x, labels, t=0.1):
    """Khosla et al. 2020, Eq. 2 (L_out): mean over the anchors that have a positive."""
    s = _cosines(x) / t
    terms = []
    for i in range(len(labels)):
        others = [a for a in range(len(labels)) if a != i]
        pos = [p for p in others if labels[p] == labels[i]]
        if not pos:
            continue
        log_den = torch.logsumexp(torch.stack([s[i, a] for a in others]), 0)
        terms.append(-torch.stack([s[i, p] - log_den for p in pos]).mean())
    return torch.stack(terms).mean()


def margin_softmax_oracle(x, labels, weights, target_logit, scale=64.0):
    """Cross-entropy of ``scale * cos`` logits (features and class weights L2-normalised, ``weights``: dim x
    classes), the target's cosine replaced by ``target_logit(cos)``; mean over the batch."""
    cos = (x / x.norm(dim=1, keepdim=True)) @ (weights / weights.norm(dim=0, keepdim=True))
    terms = []
    for i, y in enumerate(labels.tolist()):
        logits = [target_logit(cos[i, j]) if j == y else cos[i, j] for j in range(cos.shape[1])]
        terms.append(-F.log_softmax(scale * torch.stack(logits), 0)[y])
    return torch.stack(terms).mean()


def arcface_logit(c, margin=0.5):
    """cos(theta + margin), continued as cos(theta) - margin sin(margin) beyond theta = pi - margin (PML's)."""
    theta = torch.acos(c.clamp(-1, 1))
    return torch.cos(theta + margin) if theta <= math.pi - margin else c - margin * math.sin(margin)


def cosface_logit(c, margin=0.35):
    return c - margin


# ------------------------------------------------------------------------------------------ the losses themselves

@pytest.mark.parametrize("name", LATER)
def test_each_later_loss_builds_with_its_papers_hyper_parameters(name):
    loss = build_loss(name, num_classes=7, feat_dim=8)
    (module,) = loss.terms.values()
    assert type(module) is CLASSES[name] and not loss.needs_logits
    pml = module.pml
    expected = {"circle": {"m": 0.25, "gamma": 128.0}, "ms": {"alpha": 2.0, "beta": 50.0, "base": 0.5},
                "supcon": {"temperature": 0.1}, "arcface": {"margin": 0.5, "scale": 64.0},
                "cosface": {"margin": 0.35, "scale": 64.0}}[name]
    assert {k: pytest.approx(getattr(pml, k)) for k in expected} == expected   # PML keeps ArcFace's in radians
    assert (module.miner.epsilon if name == "ms" else module.miner) == (0.1 if name == "ms" else None)
    weights = list(loss.parameters())
    assert (len(weights), tuple(weights[0].shape) if weights else None) == (
        (1, (8, 7)) if name in ("arcface", "cosface") else (0, None))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("name", LATER)
def test_each_later_loss_equals_pmls_own_loss_and_its_papers_equation(name, seed):
    features, labels = _batch(seed)
    ours = build_loss(name, num_classes=int(labels.max()) + 1, feat_dim=8).terms[name]
    if name in ("arcface", "cosface"):
        torch.nn.init.normal_(ours.pml.W, generator=torch.Generator().manual_seed(seed))
        weights = ours.pml.W.detach().clone().double()
        cls = pml_losses.ArcFaceLoss if name == "arcface" else pml_losses.CosFaceLoss
        theirs = cls(7, 8, margin=math.degrees(0.5) if name == "arcface" else 0.35, scale=64)
        theirs.W.data.copy_(weights)
        oracle = lambda x, y: margin_softmax_oracle(x, y, weights, arcface_logit if name == "arcface"  # noqa: E731
                                                    else cosface_logit)
    elif name == "ms":
        loss, miner = pml_losses.MultiSimilarityLoss(alpha=2, beta=50, base=0.5), pml_miners.MultiSimilarityMiner(0.1)
        theirs = lambda x, y: loss(x, y, miner(x, y))  # noqa: E731
        oracle = ms_oracle
    else:
        theirs = pml_losses.CircleLoss(m=0.25, gamma=128) if name == "circle" else pml_losses.SupConLoss(0.1)
        oracle = circle_oracle if name == "circle" else supcon_oracle
    value, grad = _value_and_grad(ours, features, labels)
    assert value.dtype == torch.float64 and value > 0
    torch.testing.assert_close(value, theirs(features, labels), rtol=1e-12, atol=1e-12)
    expected, expected_grad = _value_and_grad(oracle, features, labels)
    torch.testing.assert_close(value, expected, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-7, atol=1e-9)
    assert ours.last["loss"] == pytest.approx(value.item())
    if name == "ms":
        miner_pairs = pml_miners.MultiSimilarityMiner(0.1)(features, labels)
        assert (ours.last["mined_pos"], ours.last["mined_neg"]) == (len(miner_pairs[0]), len(miner_pairs[2]))
        assert 0 < ours.last["mined_neg"] < int((labels[:, None] != labels[None, :]).sum())   # the miner drops some


def test_the_margin_softmaxes_by_hand():
    """One feature at 60 degrees from its class's weight and 30 from the other's: CosFace's target logit is
    64 (cos 60 - 0.35) = 9.6, ArcFace's 64 cos(60 degrees + 0.5 rad); the other class's 64 cos 30."""
    features, labels = torch.tensor([[0.5, math.sqrt(3) / 2]], dtype=torch.float64), torch.tensor([0])
    other = 64 * math.cos(math.radians(30))
    for cls, target in ((CosFaceLoss, 64 * (0.5 - 0.35)), (ArcFaceLoss, 64 * math.cos(math.radians(60) + 0.5))):
        loss = cls(num_classes=2, feat_dim=2)
        with torch.no_grad():
            loss.pml.W.copy_(torch.tensor([[3.0, 0.0], [0.0, 0.5]]))   # columns: the classes (their norm drops out)
        expected = math.log(math.exp(target) + math.exp(other)) - target
        assert loss(features, labels).item() == pytest.approx(expected, rel=1e-12)


def test_a_batch_without_pairs_gives_a_zero_that_backpropagates():
    features = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    for name in ("circle", "ms", "supcon"):
        value = build_loss(name)(features, torch.arange(4))
        value.backward()
        assert value.item() == 0.0 and torch.equal(features.grad, torch.zeros_like(features))


def test_wrong_inputs_and_options_are_named():
    features, labels = _batch(0)
    with pytest.raises(ValueError, match="built for feat_dim=16 but features have 8"):
        ArcFaceLoss(num_classes=7, feat_dim=16)(features, labels)
    with pytest.raises(ValueError, match=r"class indices in \[0, 3\)"):
        CosFaceLoss(num_classes=3, feat_dim=8)(features, labels)
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        CircleLoss(gamma=-1.0)
    with pytest.raises(ValueError, match="ArcFaceLoss needs a positive integer num_classes"):
        ArcFaceLoss(num_classes=0, feat_dim=8)
    with pytest.raises(ValueError, match="needs num_classes and feat_dim"):
        build_loss("cosface")
    # the triplet's margin reaches every term's "margin": the margin softmaxes name theirs otherwise
    built = loss_from_config(get_preset("smoke", loss="triplet+arcface", triplet_margin=0.7), 4, 8)
    assert built.terms["triplet"].margin == 0.7 and built.terms["arcface"].arc_margin == 0.5
    assert loss_from_config(get_preset("smoke", loss="supcon", loss_options={"temperature": 0.05}), 4, 8
                            ).terms["supcon"].pml.temperature == 0.05


# ------------------------------------------------------------------------------------------------ the recipes

def test_the_later_recipes_and_their_rates_leave_the_others_unchanged():
    assert LATER == ("circle", "ms", "supcon", "arcface", "cosface") and not set(LATER) & set(BASELINES)
    assert list(RECIPES)[-len(LATER):] == list(LATER)
    for name in LATER:
        r = RECIPES[name]
        assert (r.loss, r.fields) == (name, {}) and "PML" in r.source and "cosine" in r.trains_on
        assert r.tests_on == "the pooled features" and name in PAPER_RATES and PAPER_RATES[name][1]
    assert "class weights" in RECIPES["arcface"].trains_on and "miner" in RECIPES["ms"].what
    # a later recipe changes only the loss of the preset (and its label)
    base = get_preset("cpu")
    assert apply_recipe(base, "circle").to_dict() == {**base.to_dict(), "loss": "circle", "recipe": "circle"}
    # Table 1's recipes keep the configurations (hashes) of their records
    assert config_hash(apply_recipe(get_preset("cpu"), "contrastive")) == "7c9b725d09ddc892"
    assert config_hash(apply_recipe(get_preset("smoke"), "ce")) == config_hash(
        get_preset("smoke", loss="ce", label_smoothing=0.1, bnneck=True))


def test_dry_run_of_a_later_recipe_prints_it(capsys, tmp_path):
    try:
        cli(["train", "--recipe", "circle", "--cache-root", str(tmp_path), "--dry-run"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "recipe circle: loss 'circle', as Circle loss (Sun et al. 2020), PML CircleLoss" in out
    assert "m=0.25, gamma=128" in out and "cosine similarities" in out
    assert f"hash {config_hash(apply_recipe(get_preset('cpu'), 'circle'))}" in out
    assert list(tmp_path.iterdir()) == []


def _trainer(config, tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.create()
    return engine._Trainer(config, folder, DistInfo(), progress=False)


@pytest.mark.parametrize("name", ["arcface", "cosface"])
def test_the_class_weights_are_in_the_engines_optimiser_and_train(name, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    config = apply_recipe(get_preset("smoke", data_root=data_root, height=32, width=16, p=4, iterations=1), name)
    trainer = _trainer(config, tmp_path)
    weights = trainer.loss.terms[name].pml.W
    assert weights.shape == (trainer.model.feat_dim, trainer.dataset.num_train_pids) and weights.requires_grad
    groups = trainer.optimizer.param_groups
    assert [id(p) for p in groups[-1]["params"]] == [id(weights)]                # its own group ...
    assert groups[-1]["weight_decay"] == groups[0]["weight_decay"] == config.weight_decay   # ... as the network's
    assert trainer.model.classifier is None                                      # no softmax head in the model
    before = weights.detach().clone()
    images, pids, *_ = next(iter(trainer.train_loader()))
    trainer._step(images, pids, 0)
    assert torch.isfinite(weights).all() and not torch.equal(weights.detach(), before)
    assert torch.equal(trainer._state()["loss_state"][f"terms.{name}.pml.W"], weights.detach())  # checkpointed


@pytest.mark.parametrize("name", ["ms", "cosface"])
def test_a_few_smoke_iterations_train_with_a_finite_loss(name, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    config = apply_recipe(get_preset("smoke", data_root=data_root, height=32, width=16, p=4, iterations=4,
                                     warmup_iterations=1), name)
    run = engine.train(config, progress=False)
    assert len(run.history) == 4 and all(math.isfinite(h["loss"]) and h["loss"] > 0 for h in run.history)
    assert set(run.metrics) >= {"rank1", "mAP"} and run.config.label == name
    if name == "ms":
        assert all(h["ms/mined_pos"] >= 0 for h in run.history)


# ------------------------------------------------------------------------------------ the claims (hand-made records)

#: per recipe: the AP added to the shared per-query base (SN ahead of ms, behind arcface; ce the strongest of Table
#: 1's baselines although it comes after triplet)
OFFSETS = {"sn": 0.2, "triplet": 0.0, "ce": 0.05, "ms": 0.1, "arcface": 0.3}


@pytest.fixture
def recorded_study(tmp_path, monkeypatch):
    """A smoke study settled by hand (Table 1: sn, triplet, ce; fixed rates, the later ones included; 3 seeds, 3
    iterations) whose final records are written by hand: no run may train."""
    def no_training(config, **kwargs):
        raise AssertionError(f"{config.label} seed {config.seed} trained")

    monkeypatch.setattr(engine, "train", no_training)
    rates = {"sn": 1e-3, "triplet": 2e-3, "ce": 3e-3, "ms": 4e-3, "arcface": 5e-3}
    study = dataclasses.replace(open_study("smoke", output_dir=tmp_path / "out"),
                                protocol=Protocol(selection=("sn", "triplet", "ce"), family=(), iterations=3,
                                                  seeds=(0, 1, 2), rates=rates),
                                rates={r: rates[r] for r in ("sn", "triplet", "ce")})
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 0.6, 150) for _ in range(3)]
    for recipe, offset in OFFSETS.items():
        for seed, b in enumerate(base):
            ap = b + offset
            rows = {"pid": list(range(150)), "camid": [0] * 150, "ap": ap.tolist(),
                    "first": (ap < 0.5).astype(int).tolist()}                       # a hit where ap >= 0.5
            config = study.config(recipe, seed=seed, lr=rates[recipe], **study.protocol.budget())
            variants = ("sq", "mq", "rerank") if recipe == "sn" else ("sq",)
            write_record(RunRecord(config=config, dataset="synthetic", split="test", wall_time_s=1.0,
                                   metrics={"rank1": 100 * float(np.mean(ap >= 0.5)), "mAP": 100 * float(ap.mean())},
                                   evaluations=[], history=[], per_query={v: rows for v in variants}),
                         tmp_path / "records")
    return study


def test_the_later_claims_pair_sn_and_the_strongest_baseline_with_each_later_loss(recorded_study, tmp_path):
    study = later.with_later(recorded_study, ("ms", "arcface"))
    assert study.rates == {"sn": 1e-3, "triplet": 2e-3, "ce": 3e-3, "ms": 4e-3, "arcface": 5e-3}
    assert study.selection is None and recorded_study.rates == {"sn": 1e-3, "triplet": 2e-3, "ce": 3e-3}
    assert rate_table(study, ("ms", "arcface"))["lr"].tolist() == [4e-3, 5e-3]
    runs = later.later_runs(study, ("ms", "arcface"))
    assert list(runs) == ["sn", "triplet", "ce", "ms", "arcface"] and all(len(r) == 3 for r in runs.values())
    assert later.strongest_baseline(runs, later.baselines(study)) == "ce"
    scores = later.later_scores(study, ("ms", "arcface"), runs).set_index("loss")
    assert scores["era"].tolist() == ["SN", "paper's time", "paper's time", "later", "later"]
    assert scores["strongest baseline"].tolist() == [False, False, True, False, False]
    assert scores.loc["ms", "lr"] == 4e-3 and scores.loc["ms", "seeds"] == 3
    assert scores.loc["arcface", "mAP"] - scores.loc["ce", "mAP"] == pytest.approx(25.0)

    table = later.later_claims(study, ("ms", "arcface"), runs)
    assert list(table.columns)[:len(COLUMNS)] == list(COLUMNS) and len(table) == 2 * 2 * 2
    rows = table[table["metric"] == "mAP"].set_index("claim")
    assert list(rows.index) == ["SN beats ms", "ms beats ce (the strongest baseline of the paper's time)",
                                "SN beats arcface", "arcface beats ce (the strongest baseline of the paper's time)"]
    for claim, a, b in (("SN beats ms", "sn", "ms"), ("SN beats arcface", "sn", "arcface"),
                        ("arcface beats ce (the strongest baseline of the paper's time)", "arcface", "ce")):
        assert rows.loc[claim, "delta"] == pytest.approx(100 * (OFFSETS[a] - OFFSETS[b]))   # paired per query
        assert (rows.loc[claim, "a"], rows.loc[claim, "b"]) == (a, b) and rows.loc[claim, "seeds"] == 3
    assert rows["verdict"].tolist() == ["supported", "supported", "refuted", "supported"]
    later.save_later_losses(table, study.output_dir)
    written = pd.read_csv(study.output_dir / "later_losses.csv")
    assert written["claim"].tolist() == table["claim"].tolist()
    markdown = (study.output_dir / "later_losses.md").read_text().splitlines()
    assert markdown[0].startswith("| claim | a | b | metric |") and len(markdown) == 2 + len(table)
    later.save_later_findings(table, study, runs)
    findings = (study.output_dir / "later_findings.md").read_text().splitlines()
    assert findings[0] == ("**out, the losses after SN** (Table 1's regime, 3 seeds; the strongest baseline of the "
                           "paper's time: ce): 3 supported, 1 refuted, 0 unresolved.")
    assert findings[2:] == ["- **supported**: SN beats ms; ms beats ce (the strongest baseline of the paper's time); "
                            "arcface beats ce (the strongest baseline of the paper's time)",
                            "- **refuted**: SN beats arcface"]


def test_the_cost_of_the_later_losses_is_their_own_records_wall_time(recorded_study, tmp_path):
    """Selection runs (the records the selection table names) and final runs, summed by hand; Table 1's runs and a
    record the table does not name are not counted."""
    seconds = {(1e-4, 0): 30.0, (1e-4, 1): 90.0, (3e-4, 0): 120.0, (3e-4, 1): 60.0, (1e-3, 0): 600.0}
    hashes = {}
    for (lr, seed), wall in seconds.items():
        config = recorded_study.config("ms", seed=seed, split="val", lr=lr, **recorded_study.protocol.budget())
        write_record(RunRecord(config=config, dataset="synthetic", split="val", wall_time_s=wall,
                               metrics={"rank1": 1.0, "mAP": 1.0}, evaluations=[], history=[], per_query={}),
                     tmp_path / "records")
        hashes.setdefault(lr, []).append(config_hash(config))
    selection = pd.DataFrame({"loss": ["ms", "ms"], "lr": [1e-4, 3e-4], "selected": [False, True],
                              "records": [" ".join(hashes[1e-4]), " ".join(hashes[3e-4])]})   # not the 1e-3 run
    study = dataclasses.replace(recorded_study, selection=selection)
    runs = later.later_runs(later.with_later(recorded_study, ("ms", "arcface")), ("ms", "arcface"))
    cost = later.later_cost(study, ("ms", "arcface"), runs).set_index("loss")
    assert list(cost.index) == ["ms", "arcface", "all"]
    assert cost.loc["ms"].tolist() == pytest.approx([4, (30 + 90 + 120 + 60) / 60, 3, 3 / 60, 5 + 3 / 60])
    assert cost.loc["arcface"].tolist() == pytest.approx([0, 0, 3, 3 / 60, 3 / 60])   # a fixed rate: no selection
    assert cost.loc["all"].tolist() == pytest.approx([4, 5, 6, 6 / 60, 5 + 6 / 60])
    fixed = later.later_cost(later.with_later(recorded_study, ("ms",)), ("ms",), runs)
    assert fixed["selection runs"].tolist() == [0, 0] and fixed["final runs"].tolist() == [3, 3]


def test_the_later_rates_are_selected_as_table_ones_or_forced(recorded_study, monkeypatch):
    selected = {}

    def select(staged, progress=False):
        selected["protocol"] = staged.protocol
        return pd.DataFrame({"loss": ["ms", "ms"], "lr": [1e-4, 3e-4], "selected": [False, True]})

    monkeypatch.setattr(later, "select_rates", select)
    selecting = dataclasses.replace(recorded_study, protocol=dataclasses.replace(recorded_study.protocol, rates={}),
                                    selection=pd.DataFrame({"loss": ["sn"], "lr": [1e-3], "selected": [True]}))
    study = later.with_later(selecting, ("ms",))
    assert selected["protocol"].selection == ("ms",) and selected["protocol"].iterations == 3   # the study's budget
    assert study.rates["ms"] == 3e-4 and study.selection["loss"].tolist() == ["sn", "ms", "ms"]
    assert rate_table(study, ("ms",))["lr"].tolist() == [1e-4, 3e-4]
    assert later.later_rates(selecting, ("ms",), select=False) == ({}, None)
    forced = dataclasses.replace(recorded_study, overrides={"lr": 7e-4})
    assert later.later_rates(forced, ("ms", "arcface")) == ({"ms": 7e-4, "arcface": 7e-4}, None)
    with pytest.raises(ConfigError, match=r"no rate for \['supcon'\]"):
        later.later_rates(recorded_study, ("supcon",))


def test_the_plan_of_notebook_13(recorded_study):
    plan = plans.later_losses(recorded_study)
    assert (plan.recipes, plan.baselines, plan.seeds) == (("ms", "arcface"), ("triplet", "ce"), (0, 1, 2))
    assert plans.later_losses(recorded_study, ["circle"]).recipes == ("circle",)
    with pytest.raises(ConfigError, match="not a loss after SN"):
        plans.later_losses(recorded_study, ["sn"])
    assert plans.PLANS["later_losses"] is plans.later_losses
    cpu = dataclasses.replace(recorded_study, preset="cpu")
    assert plans.later_losses(cpu).recipes == LATER


def test_the_reproduction_plan_of_notebook_13_at_the_paper_preset(tmp_path, monkeypatch):
    """Alone, notebook 13 trains Table 1's runs (6 recipes x 3 seeds) and the 5 later losses x 3 seeds at their
    literature rates; after notebook 01, only the later ones."""
    from snlib.data.synthetic import SyntheticConfig, generate_market_folder

    tiny = SyntheticConfig(num_train_ids=16, num_test_ids=4, num_cameras=3, images_per_camera=(2, 2), height=32,
                           width=16, num_distractors=2, num_junk=1)
    market = generate_market_folder(tmp_path / "market", tiny, num_extra=2)
    monkeypatch.setattr(reproduce_plan, "step_rate", lambda config, steps=3: 100.0)

    def plan(notebooks):
        return reproduce_plan.plan_reproduction("paper", "market1501", market, notebooks=notebooks,
                                                extra_parameters={"overrides": {"p": 4, "pretrained": False}},
                                                records_root=tmp_path / "records")

    alone = plan(["13"])["notebooks"][0]
    assert (alone["plan"], alone["to_train"]) == ("later_losses", (6 + 5) * 3)
    after = {row["notebook"][:2]: row for row in plan(["01", "13"])["notebooks"]}
    assert after["13"]["to_train"] == 5 * 3
    assert {g["recipe"] for g in after["13"]["runs"]} == set(LATER)
