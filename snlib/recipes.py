"""Named training recipes: each loss the way its own literature trains it, for a fair comparison.

A recipe is a loss spec plus the ``TrainConfig`` fields that its source sets (``apply_recipe(config, name)``);
everything else (backbone, input, batch, optimiser, schedule, budget, warm-up) is the study's and the same for
every recipe. The learning rate is chosen per recipe on the validation split (``snlib.study.protocol``).

=============  ===========================================  ==================================================
recipe         what                                         source
=============  ===========================================  ==================================================
sn             SN loss, the released squeeze (min S+ D)     the authors' released code (docs/paper.md)
sep            SN separation term alone (no squeeze)        the paper's ablation
sn-paper       SN, the paper's equation as implemented       docs/paper.md, reading "paper"
sn-neighbors   SN, spread of the support positives          docs/paper.md, reading "neighbors"
pair           SN, distance nearest-furthest positive       the abstract's literal reading (docs/paper.md)
sn+ce          SN + softmax                                 the paper's "SN + softmax" row
ce             softmax: label smoothing 0.1, BNNeck          torchreid; Luo et al. 2019 (Bag of Tricks)
triplet        batch-hard triplet, soft margin, raw feats   Hermans et al. 2017 (TriNet)
triplet-0.3    batch-hard triplet, hard margin 0.3          the authors' code base (their triplet baseline)
bot            triplet (0.3) + smoothed softmax, BNNeck     Bag of Tricks without the center loss
contrastive    contrastive loss, margin 1 (normalised)      Hadsell et al. 2006, as snlib.losses
=============  ===========================================  ==================================================

BNNeck (Bag of Tricks): the metric term sees the features before the BatchNorm, the classifier (and the test
features) the features after it. Warm-up is part of the study's budget (every recipe warms up alike).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError, did_you_mean
from .presets import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """A loss spec (``snlib.losses.build_loss``), the fields its source sets, and that source."""

    name: str
    loss: str
    source: str
    fields: dict = field(default_factory=dict)


#: Recipe name -> :class:`Recipe` (module docstring), in the order tables list them.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("sn", "sn", "released code"),
    Recipe("sep", "sep", "paper ablation"),
    Recipe("sn-paper", "sn-paper", "paper equation"),
    Recipe("sn-neighbors", "sn-neighbors", "docs/paper.md"),
    Recipe("pair", "sn-pair", "abstract"),
    Recipe("sn+ce", "sn+ce", "paper Table 1"),
    Recipe("ce", "ce", "torchreid / Bag of Tricks", {"label_smoothing": 0.1, "bnneck": True}),
    Recipe("triplet", "triplet-soft", "TriNet"),
    Recipe("triplet-0.3", "triplet", "authors' code base", {"triplet_margin": 0.3}),
    Recipe("bot", "triplet+ce", "Bag of Tricks", {"triplet_margin": 0.3, "label_smoothing": 0.1, "bnneck": True}),
    Recipe("contrastive", "contrastive", "Hadsell et al. 2006"),
)}
#: The fields the ``triplet`` and ``bot`` recipes take once the studies are rerun (issue 25; not yet in
#: ``RECIPES``: that changes their hashes). TriNet (Hermans et al. 2017; their code, triplet-reid): its embedding
#: head, 1024-BN-ReLU-128, trained and tested on (``snlib.models.TriNetHead``), soft margin (the recipe's loss).
TRINET_FIELDS = {"embedding_head": "trinet"}
#: Bag of Tricks (Luo et al. 2019; their code, reid-strong-baseline): margin 0.3, smoothing 0.1, BNNeck, and its
#: warm-up, 10 of 120 epochs, as a share of the budget where the study's shared warm-up is shorter.
BOT_FIELDS = {"triplet_margin": 0.3, "label_smoothing": 0.1, "bnneck": True, "warmup_share": 10 / 120}
#: The SN family: variants of the SN loss (they train at SN's selected learning rate).
SN_FAMILY = ("sn", "sep", "sn-paper", "sn-neighbors", "pair", "sn+ce")
#: The baselines (each gets its own learning-rate selection).
BASELINES = ("ce", "triplet", "triplet-0.3", "bot", "contrastive")


def recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}{did_you_mean(name, RECIPES)}; known: {', '.join(RECIPES)}")
    return RECIPES[name]


def apply_recipe(config: TrainConfig, name: str) -> TrainConfig:
    """``config`` trained with recipe ``name``: its loss spec and fields, ``recipe`` set to the name."""
    r = recipe(name)
    return config.replace(loss=r.loss, recipe=name, **r.fields)


def run_config(base: TrainConfig, name: str, budget: dict | None = None, lr: float | None = None,
               overrides: dict | None = None, call: dict | None = None) -> TrainConfig:
    """The configuration of one run, the one order of precedence every run of snlib follows (later wins):

        base (the preset, with the study's data)  <  budget (the protocol's iterations, warm-up, ...)
        <  the recipe's fields (``name``, when it is a recipe)  <  ``lr`` (its selected rate)
        <  ``overrides`` (a notebook's or a command line's)  <  ``call`` (this call's keyword arguments)

    ``name`` is a recipe of :data:`RECIPES` (its loss spec, fields and ``recipe`` name) or a plain loss spec
    (``"sn+0.5*ce"``), which sets only ``loss``. So ``run_config(preset, "ce", call={"label_smoothing": 0})``
    trains softmax without label smoothing, and a rate forced in ``overrides`` beats the selected one."""
    config = base.replace(**(budget or {}))
    config = apply_recipe(config, name) if name in RECIPES else config.replace(loss=name)
    if lr is not None:
        config = config.replace(lr=lr)
    return config.replace(**{**(overrides or {}), **(call or {})})
