"""Named training recipes: each loss the way its own literature trains it, for a fair comparison.

A recipe is a loss spec plus the ``TrainConfig`` fields that its source sets (``apply_recipe(config, name)``);
everything else (backbone, input, batch, optimiser, schedule, budget) is the study's and the same for every recipe
(``bot`` lengthens the shared warm-up to its source's share where that is longer). The learning rate is chosen per
recipe on the validation split (``snlib.study.protocol``). What a recipe trains on is what its loss sees; what it
tests on is the feature the evaluation L2-normalises and ranks by Euclidean distance (``snlib.models.ReIDOutput``:
``features`` to the loss, ``embedding`` to the test).

=============  =========================================  ==========================  ===========================  =========================================
recipe         what                                       trains on                   tests on                     source
=============  =========================================  ==========================  ===========================  =========================================
sn             SN loss, the released squeeze (min S+ D)   pooled features (L2-norm.)  pooled features              the authors' released code (docs/paper.md)
sep            SN separation term alone (no squeeze)      pooled features (L2-norm.)  pooled features              the paper's ablation
sn-paper       SN, the paper's equation as implemented    pooled features (L2-norm.)  pooled features              docs/paper.md, reading "paper"
sn-neighbors   SN, spread of the support positives        pooled features (L2-norm.)  pooled features              docs/paper.md, reading "neighbors"
pair           SN, distance nearest-furthest positive     pooled features (L2-norm.)  pooled features              the abstract's literal reading (docs/paper.md)
sn+ce          SN + softmax                               pooled features; logits     pooled features              the paper's "SN + softmax" row
ce             softmax: label smoothing 0.1, BNNeck       logits after the BNNeck     after the BNNeck             torchreid; Luo et al. 2019 (Bag of Tricks)
triplet        batch-hard triplet, soft margin            TriNet head output (128-d)  TriNet head output (128-d)   Hermans et al. 2017 (TriNet; triplet-reid)
triplet-0.3    batch-hard triplet, hard margin 0.3        raw pooled features         pooled features              the authors' code base (their triplet baseline)
bot            triplet (0.3) + smoothed softmax, BNNeck,  triplet: pooled features    after the BNNeck             Luo et al. 2019 (reid-strong-baseline),
               warm-up 10/120 of the budget               before the BNNeck; softmax:                              without the center loss
                                                          logits after it
contrastive    contrastive loss, margin 1                 pooled features (L2-norm.)  pooled features              Hadsell et al. 2006, as snlib.losses
circle         Circle loss, pair-wise labels,             pooled features (cosine)    pooled features              Sun et al. 2020 (CVPR), the re-ID values;
               m=0.25, gamma=128                                                                                   PML CircleLoss
ms             multi-similarity loss and its miner,       pooled features (cosine)    pooled features              Wang et al. 2019 (CVPR); PML
               alpha=2, beta=50, lambda=0.5, eps=0.1                                                               MultiSimilarityLoss + MultiSimilarityMiner
supcon         supervised contrastive, temperature 0.1    pooled features (cosine)    pooled features              Khosla et al. 2020 (NeurIPS); PML SupConLoss
arcface        ArcFace, margin 0.5 rad, scale 64,         pooled features against     pooled features              Deng et al. 2019 (CVPR); PML ArcFaceLoss
               class weights in the loss                  the class weights (cosine)
cosface        CosFace, margin 0.35, scale 64,            pooled features against     pooled features              Wang et al. 2018 (CVPR); PML CosFaceLoss
               class weights in the loss                  the class weights (cosine)
=============  =========================================  ==========================  ===========================  =========================================

BNNeck (Bag of Tricks): the metric term sees the features before the BatchNorm, the classifier (and the test
features) the features after it. TriNet's head (``snlib.models.TriNetHead``): 1024-BN-ReLU-128 on the pooled
features; its 128-d output is what the loss and the test see. "L2-norm.": the loss normalises the features it
sees (``normalize=True``); the soft-margin and hard-margin triplets see them raw, as their sources train them.

The losses after SN (:data:`LATER`; issue 29: does SN still matter?) are pytorch-metric-learning's (PML) own loss
objects (``snlib.losses``: the ``pml`` extra) with their papers' hyper-parameters. "cosine": the loss ranks the pairs
of the batch (ArcFace and CosFace: each feature against the class weights) by the cosine similarity of the
L2-normalised vectors, which orders them as the evaluation's Euclidean distance of the same vectors does. ArcFace's
and CosFace's class weights (one per training identity, of the features' dimension) are parameters of the loss,
trained by the same optimiser as the network (``snlib.engine``); the test uses the features, not the weights.
Hyper-parameters: Circle's m and gamma are the paper's for person re-ID (PML's CircleLoss docstring quotes them;
fast-reid's defaults are the same), the paper's face values are 0.25 / 256; multi-similarity's are PML's defaults
(its authors' code has beta 40 in its default configuration); SupCon's temperature, ArcFace's and CosFace's
margins and scales are their papers'.
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
    what: str = ""                                  # the loss, as the tables say it
    trains_on: str = "the pooled features"          # what the loss sees (module docstring)
    tests_on: str = "the pooled features"           # what the evaluation ranks

    def describe(self) -> str:
        """Two lines: its loss spec, source and fields; what it trains, on what, and what it tests on."""
        fields = "".join(f", {k}={v!r}" for k, v in self.fields.items())
        return (f"recipe {self.name}: loss {self.loss!r}, as {self.source}{fields} (fields given explicitly win)\n"
                f"  {self.what}; trains on {self.trains_on}; tests on {self.tests_on}")


#: TriNet (Hermans et al. 2017; their code, triplet-reid): its embedding head, 1024-BN-ReLU-128, trained and tested on
#: (``snlib.models.TriNetHead``), soft margin (the recipe's loss).
TRINET_FIELDS = {"embedding_head": "trinet"}
#: Bag of Tricks (Luo et al. 2019; their code, reid-strong-baseline): margin 0.3, smoothing 0.1, BNNeck, and its
#: warm-up, 10 of 120 epochs, as a share of the budget where the study's shared warm-up is shorter.
BOT_FIELDS = {"triplet_margin": 0.3, "label_smoothing": 0.1, "bnneck": True, "warmup_share": 10 / 120}
_SN_FEATURES = "the pooled features (L2-normalised by the loss)"
_AFTER_BNNECK = "the features after the BNNeck"
_COSINE = "the pooled features (cosine similarities: L2-normalised by the loss)"
_CLASS_WEIGHTS = ("the pooled features against the loss's class weights (cosine logits: both L2-normalised), the "
                  "weights trained with the network")

#: Recipe name -> :class:`Recipe` (module docstring), in the order tables list them.
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("sn", "sn", "released code", what="SN loss, the released squeeze (min S+ D)", trains_on=_SN_FEATURES),
    Recipe("sep", "sep", "paper ablation", what="SN separation term alone (no squeeze)", trains_on=_SN_FEATURES),
    Recipe("sn-paper", "sn-paper", "paper equation", what="SN, the paper's equation as implemented",
           trains_on=_SN_FEATURES),
    Recipe("sn-neighbors", "sn-neighbors", "docs/paper.md", what="SN, spread of the support positives",
           trains_on=_SN_FEATURES),
    Recipe("pair", "sn-pair", "abstract", what="SN, distance nearest-furthest positive", trains_on=_SN_FEATURES),
    Recipe("sn+ce", "sn+ce", "paper Table 1", what="SN + softmax",
           trains_on="the pooled features (SN, L2-normalised) and the classifier's logits on them (softmax)"),
    Recipe("ce", "ce", "torchreid / Bag of Tricks", {"label_smoothing": 0.1, "bnneck": True},
           what="softmax, label smoothing 0.1, BNNeck", trains_on="the classifier's logits after the BNNeck",
           tests_on=_AFTER_BNNECK),
    Recipe("triplet", "triplet-soft", "TriNet", TRINET_FIELDS,
           what="batch-hard triplet, soft margin, TriNet's 1024-BN-ReLU-128 head",
           trains_on="the TriNet head's 128-d output (raw)", tests_on="the TriNet head's 128-d output"),
    Recipe("triplet-0.3", "triplet", "authors' code base", {"triplet_margin": 0.3},
           what="batch-hard triplet, hard margin 0.3", trains_on="the raw pooled features"),
    Recipe("bot", "triplet+ce", "Bag of Tricks", BOT_FIELDS,
           what="triplet (margin 0.3) + softmax (smoothing 0.1), BNNeck, warm-up 10/120 of the budget",
           trains_on="the raw pooled features before the BNNeck (triplet), the logits after it (softmax)",
           tests_on=_AFTER_BNNECK),
    Recipe("contrastive", "contrastive", "Hadsell et al. 2006", what="contrastive loss, margin 1",
           trains_on="the pooled features (L2-normalised by the loss)"),
    Recipe("circle", "circle", "Circle loss (Sun et al. 2020), PML CircleLoss",
           what="Circle loss, pair-wise labels, m=0.25, gamma=128 (the paper's re-ID values)", trains_on=_COSINE),
    Recipe("ms", "ms", "Multi-similarity (Wang et al. 2019), PML MultiSimilarityLoss + MultiSimilarityMiner",
           what="multi-similarity loss on its miner's pairs, alpha=2, beta=50, lambda=0.5, epsilon=0.1",
           trains_on=_COSINE),
    Recipe("supcon", "supcon", "SupCon (Khosla et al. 2020), PML SupConLoss",
           what="supervised contrastive loss, temperature 0.1", trains_on=_COSINE),
    Recipe("arcface", "arcface", "ArcFace (Deng et al. 2019), PML ArcFaceLoss",
           what="ArcFace, additive angular margin 0.5 rad (28.6 degrees), scale 64, its class weights in the loss",
           trains_on=_CLASS_WEIGHTS),
    Recipe("cosface", "cosface", "CosFace (Wang et al. 2018), PML CosFaceLoss",
           what="CosFace, additive cosine margin 0.35, scale 64, its class weights in the loss",
           trains_on=_CLASS_WEIGHTS),
)}
#: The SN family: variants of the SN loss (they train at SN's selected learning rate).
SN_FAMILY = ("sn", "sep", "sn-paper", "sn-neighbors", "pair", "sn+ce")
#: The baselines of the paper's time (each gets its own learning-rate selection).
BASELINES = ("ce", "triplet", "triplet-0.3", "bot", "contrastive")
#: The losses that came after SN (``snlib.study.later``: each gets its own learning-rate selection, at the
#: protocol's budget, in the later-losses notebook only: Table 1's runs do not change).
LATER = ("circle", "ms", "supcon", "arcface", "cosface")


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
