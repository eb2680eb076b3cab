"""The protocol's sizes per preset (``snlib.presets.PROTOCOLS``, resolved by ``snlib.study.plans.study_protocol``):
the paper's budget from the number of training identities, the literature's fixed rates (no selection), the cpu
and smoke presets' sizes as they were written before they became data, and a notebook's ``protocol_sizes``."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from snlib.data import ReIDDataset, Sample
from snlib.errors import ConfigError
from snlib.presets import PAPER_RATES, PROTOCOL_VERSION, PROTOCOLS, get_preset
from snlib.recipes import SN_FAMILY, run_config
from snlib.study import figures, plans, views
from snlib.study import protocol as P
from snlib.study.protocol import Protocol


def _market_like(num_ids: int) -> ReIDDataset:
    train = [Sample(f"t/{pid}_{i}.jpg", pid + 1, i % 2) for pid in range(num_ids) for i in range(4)]
    return ReIDDataset("market1501", "root", train, [Sample("q.jpg", 5000, 0)], [Sample("g.jpg", 5000, 1)])


def _study(preset: str, dataset: str = "market1501", num_ids: int = 751, **overrides):
    """What the plans read of a ``Study``; ``config`` in ``Study.config``'s order (no budget, no selected rate)."""
    base = get_preset(preset)
    return SimpleNamespace(preset=preset, dataset_name=dataset, data=_market_like(num_ids), base=base,
                           overrides=overrides, config=lambda loss="sn", seed=0, **fields: run_config(
                               base, loss, overrides=overrides, call={"seed": seed, **fields}))


@pytest.fixture
def own_distractors(monkeypatch):
    monkeypatch.setattr(views, "distractors", lambda data, config, count=None, source="own": [Sample("d", 0, 0)] * 9)


def test_the_paper_preset_trains_150_epochs_over_the_identities_at_the_literatures_rates(own_distractors):
    protocol = plans.study_protocol(_study("paper"))
    # Market-1501: 751 identities // 32 a batch = 23 iterations an epoch (the engine's), x 150 epochs
    assert (protocol.epochs, protocol.iterations) == (150, 150 * 23) == (150, 3450)
    assert protocol.seeds == (0, 1, 2) and protocol.num_distractors == 9
    assert protocol.rates == {"sn": 2e-4, "ce": 3e-4, "triplet": 3e-4, "triplet-0.3": 2e-4, "bot": 3.5e-4,
                              "contrastive": 3e-4,   # and the losses after SN (notebook 13: snlib.study.later)
                              "circle": 3e-4, "ms": 3e-4, "supcon": 3e-4, "arcface": 3.5e-4, "cosface": 3.5e-4}
    assert set(protocol.rate_sources) == set(PAPER_RATES)
    # the budget follows the data set and the batch: 1,041 identities at p=16 -> 65 an epoch
    assert plans.study_protocol(_study("paper", num_ids=1041, p=16)).iterations == 150 * 65
    # the schedule: warm-up, then constant, decay from 76/150 of the budget (TrainConfig.decay_start)
    budget = protocol.budget()
    assert (budget["iterations"], budget["warmup_iterations"]) == (3450, 345)


def test_the_smoke_preset_keeps_the_sizes_it_had_before_it_became_data(own_distractors):
    """The hand-written Protocol of before."""
    assert plans.study_protocol(_study("paper", "synthetic", num_ids=64)).num_distractors == 3000
    smoke = Protocol(selection=("sn", "triplet", "ce"), family=("sep",), lrs=(1e-3, 2e-3), iterations=12,
                     seeds=(0, 1), long_factor=2, evaluations=3, fractions=(0.5, 1.0),
                     convergence_losses=("sn", "triplet"), convergence_seeds=(0, 1), num_distractors=20,
                     overrides={"p": 4})
    assert plans.study_protocol(_study("smoke", "synthetic")) == smoke
    assert smoke.version == plans.study_protocol(_study("paper")).version == PROTOCOL_VERSION == 1


CONVERGED = dict(version=2, pilot_iterations=2000, pilot_seeds=(0, 1), pilot_evaluations=20, pilot_rate_factor=3.0,
                 lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), refinements=1, selection_seeds=(0, 1), seeds=(0, 1, 2, 3, 4),
                 long_factor=2,
                 long_seeds=(0, 1), convergence_seeds=(0, 1, 2))


def test_the_cpu_preset_runs_the_converged_protocol_version_2(own_distractors):
    """Issue 26: a pilot chooses the budget, two selection seeds on a grid wide at both ends, 5 final seeds, long
    runs at 2x with 2 seeds, convergence with 3 seeds; on the synthetic set a 600-iteration pilot, the head only
    trained, on a 64x32 trunk."""
    assert plans.study_protocol(_study("cpu")) == Protocol(**CONVERGED, num_distractors=9)
    assert plans.study_protocol(_study("cpu", "synthetic")) == Protocol(
        **{**CONVERGED, "pilot_iterations": 600}, num_distractors=3000,
        overrides={"height": 64, "width": 32, "train_from": "head"})
    protocol = plans.study_protocol(_study("cpu"))
    assert protocol.rates == {} and protocol.fractions == (0.25, 0.5, 1.0)   # rates selected on validation
    # half-decade steps from version 1's lowest rate to 5x its highest
    assert min(protocol.lrs) == min(Protocol().lrs) and max(protocol.lrs) == 5 * max(Protocol().lrs)
    assert all(2.99 < b / a < 3.34 for a, b in zip(protocol.lrs, protocol.lrs[1:]))
    assert protocol.version > PROTOCOL_VERSION
    # a notebook's iterations still skip the pilot's budget (settle), and any size can change
    assert plans.study_protocol(_study("cpu"), {"pilot_iterations": 0}).pilot_iterations == 0


def test_the_sensitivity_and_convergence_plans_have_three_points_and_three_seeds(own_distractors):
    """Issue 26: k, alpha and lambda at 3 points each, 3 seeds; convergence on 25 / 50 / 100 % of the identities
    with >= 3 seeds (the cpu preset); the smoke preset keeps one seed and the fewest points."""
    study = _study("cpu")
    study.protocol = plans.study_protocol(study)
    sweep = plans.sensitivity(study)
    assert {name: len(values) for name, values in sweep.sweeps.items()} == {"sn_k": 3, "sn_alpha": 3, "sn_lambda": 3}
    assert sweep.sweeps["sn_k"] == (3, 5, 10) and study.base.sn_k in sweep.sweeps["sn_k"]
    assert sweep.seeds == (0, 1, 2) and sweep.noise_seeds == study.protocol.seeds
    # the rows a sweep does not move are labelled with the values its runs used: the study's (k = 5 of 64 here),
    # not the paper preset's k = 10
    sn = study.config("sn")
    assert sweep.defaults == {name: getattr(sn, name) for name in sweep.sweeps} and sweep.defaults["sn_k"] == 5
    assert all(sweep.defaults[name] in values for name, values in sweep.sweeps.items())
    convergence = plans.convergence(SimpleNamespace(protocol=study.protocol, selection=None)).protocol
    assert convergence.fractions == (0.25, 0.5, 1.0) and len(convergence.convergence_seeds) >= 3
    smoke = _study("smoke", "synthetic")
    smoke.protocol = plans.study_protocol(smoke)
    assert plans.sensitivity(smoke).seeds == (0,)


def test_a_notebook_changes_any_size(own_distractors):
    study = _study("paper")
    short = plans.study_protocol(study, {"iterations": 50, "seeds": [0]})     # YAML lists: tuples
    assert (short.iterations, short.epochs, short.seeds) == (50, None, (0,))
    assert plans.study_protocol(study, {"epochs": 2}).iterations == 2 * 23
    assert plans.study_protocol(study, {"rates": {}}).rates == {}                     # back to the selection
    with pytest.raises(ConfigError, match="'iteration'.*not a protocol size"):
        plans.study_protocol(study, {"iteration": 5})
    with pytest.raises(ConfigError, match="cannot fill a batch"):
        plans.study_protocol(_study("paper", num_ids=20))


def test_fixed_rates_run_no_selection_and_say_where_they_come_from(tmp_path, monkeypatch, data_root):
    def no_selection(*args, **kwargs):
        raise AssertionError("a selection ran although the protocol fixes the rates")

    monkeypatch.setattr(P, "select_rates", no_selection)
    sizes = {"iterations": 5, "selection": ("sn", "ce"), "family": ("sep",), "rates": {"sn": 2e-4, "ce": 3e-4},
             "rate_sources": {"sn": "the paper"}}
    study, plan = plans.setup("lr_selection", "smoke", data_root=data_root, output_dir=tmp_path / "out",
                               protocol_sizes=sizes)
    assert study.selection is None and study.rates == {"sn": 2e-4, "ce": 3e-4, "sep": 2e-4}
    assert study.config("sep").lr == 2e-4 and study.config("ce").lr == 3e-4 and study.config("ce").iterations == 5
    assert "from the literature (fixed: no selection)" in study.describe()
    table = P.rate_table(study)
    assert table.to_dict("records") == [{"loss": "sn", "lr": 2e-4, "source": "the paper"},
                                        {"loss": "ce", "lr": 3e-4, "source": "fixed by the protocol"}]
    assert P.selection_records(study) == [] and P.stability_claims(study).empty
    figures.lr_selection(table)                                                    # the rates, no scores
    figures.training_curves(P.curve_table([]), y=("rank1", "mAP"), col="lr", x="iteration")
    forced = dataclasses.replace(study, overrides={"lr": 1e-3})
    assert set(P.rate_table(forced)["source"]) == {"forced by the overrides"}
    assert set(P.rate_table(forced)["lr"]) == {1e-3}
    with pytest.raises(ConfigError, match=r"no rate for \['triplet'\]"):
        P.fixed_rates(Protocol(selection=("sn", "triplet"), rates={"sn": 1e-3}))


def test_every_recipe_of_the_paper_protocol_has_a_rate():
    protocol = Protocol(**{k: v for k, v in PROTOCOLS["paper"].items() if k not in ("on_synthetic", "epochs")})
    rates = P.fixed_rates(protocol)
    assert set(rates) == set(protocol.recipes)
    assert all(rates[r] == PAPER_RATES["sn"][0] for r in SN_FAMILY)
    assert set(P.rate_table(SimpleNamespace(selection=None, overrides={}, protocol=protocol, rates=rates))["loss"]) \
        == set(protocol.selection)
