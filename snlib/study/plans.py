"""Each notebook's experiment as data: its seeds, variants, sweep grids and sizes per preset, resolved from the
notebook's parameters (``None``: the plan's default). A notebook opens its study and plan with one call::

    study, plan = setup("ablation", preset, dataset, data_root, output_dir, overrides, seeds=seeds)

``setup`` settles everything first (the protocol's sizes for this preset and data set, the learning-rate selection
unless the overrides force ``lr``, the overrides), then builds the plan from the settled study. The smoke preset
(tests, nbval) runs each experiment at its smallest size: one or two seeds and the fewest variants that still exercise
every code path; the ``cpu`` and ``paper`` presets run the full grids. The protocol's sizes per preset are data
(``snlib.presets.PROTOCOLS``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .. import settings
from ..data import DataNotFoundError, images_allowed
from ..errors import ConfigError
from ..presets import PROTOCOLS, batch_scaled_k
from ..recipes import LATER
from . import later, views
from .protocol import Protocol, settle
from .study import Study, open_study

#: Notebook 02's data sets: (name, root, loader options).
OTHER_DATASETS = (
    ("cuhk03", "data/cuhk03", {"protocol": "classic", "boxes": "labeled"}),  # 1,367 / 100 identities, split 0
    ("cuhk01", "data/cuhk01", {"num_test_ids": 100}),                        # 871 / 100 identities, split 0
    ("dukemtmc", "data/dukemtmc"),
)


def _given(value, default) -> tuple:
    return tuple(value) if value is not None else tuple(default)


def _smoke(study: Study, small, full):
    """``small`` at the smoke preset, else ``full``."""
    return small if study.preset == "smoke" else full


@dataclass(frozen=True)
class Comparison:
    """Recipes trained for each seed (notebooks 00-03, 06; the template): each recipe at its learning rate
    selected on the validation identities and the protocol's budget (:func:`~snlib.study.protocol.settle`)."""
    seeds: tuple[int, ...]
    losses: tuple[str, ...]
    protocol: Protocol | None = field(default=None, repr=False)
    selection: object = field(default=None, repr=False)        # the lr_selection table

    @property
    def variants(self) -> list[dict]:
        return [{"loss": loss} for loss in self.losses]


def _compared(study: Study, seeds, losses, cls=None, **extra) -> Comparison:
    """A :class:`Comparison` of ``losses`` for ``seeds`` (default: the protocol's), with the study's protocol."""
    return (cls or Comparison)(_given(seeds, study.protocol.seeds), tuple(losses), study.protocol, study.selection,
                               **extra)


def lr_selection(study: Study) -> Comparison:
    """Notebook 00: the learning-rate selection of every recipe on the validation identities, each rate at every
    seed of the protocol's ``selection_seeds``."""
    return _compared(study, study.protocol.selection_seeds, study.protocol.selection)


def table1(study: Study, seeds=None) -> Comparison:
    """Notebook 01: SN against every baseline, each as its literature trains it (``snlib.recipes``)."""
    return _compared(study, seeds, study.protocol.selection)


@dataclass(frozen=True)
class OtherDatasets(Comparison):
    datasets: tuple = OTHER_DATASETS


def other_datasets(study: Study, datasets=None, seeds=None) -> OtherDatasets:
    """Notebook 02: SN, triplet and softmax, one seed, on each data set of ``datasets`` that is present (the
    preset's configuration: no selection was run on those sets)."""
    return OtherDatasets(_given(seeds, (0,)), ("sn", "triplet", "ce"), study.protocol, study.selection,
                         _given(datasets, OTHER_DATASETS))


def ablation(study: Study, seeds=None, variants=None) -> Comparison:
    """Notebook 03: the separation term alone, the four squeeze readings, SN + softmax (at SN's rate)."""
    family = ("sep", "sn-paper", "sn-neighbors", "pair", "sn", "sn+ce")
    return _compared(study, seeds, _given(variants, [r for r in family if r in study.protocol.recipes]))


@dataclass(frozen=True)
class Sensitivity:
    """One-at-a-time sweeps of the SN parameters around the study's own values (``defaults``: those of its SN
    runs, which every sweep keeps for the parameters it does not move), at SN's selected rate and the protocol's
    budget (``fixed``)."""
    seeds: tuple[int, ...]
    sweeps: dict[str, tuple]
    fixed: dict
    noise_seeds: tuple[int, ...]
    labels: dict[str, str]                                  # field -> axis label, in the figure's row order
    defaults: dict                                          # field -> the value of the study's SN runs


def k_sweep(batch: int) -> tuple[int, ...]:
    """The k of the sensitivity sweep at a batch of ``batch``: 1/2, 1 and 2 times :func:`batch_scaled_k`
    (``snlib.presets``), three points around the paper's share of the batch that, at batches of 64 to 256, hold the
    paper's k = 10 itself (3, 5, 10 at 64)."""
    scaled = batch_scaled_k(batch)
    return tuple(sorted({max(1, int(f * scaled + 0.5)) for f in (0.5, 1, 2)}))


def sensitivity(study: Study, seeds=None, k_values=None, alpha_values=None, lambda_values=None,
                noise_seeds=None) -> Sensitivity:
    """Notebook 04: k (:func:`k_sweep`: scaled with the batch), alpha and lambda, three points each around the
    study's values (alpha and lambda: the paper's 50 and 0.1; k: the paper's 10 of 128 scaled to the batch), three
    seeds (one at the smoke preset), at SN's selected rate and the protocol's budget; the
    default point's spread over ``noise_seeds`` (the protocol's SN runs)."""
    batch = study.base.p * study.base.k
    sweeps = {"sn_k": _given(k_values, _smoke(study, (10,), k_sweep(batch))),
              "sn_alpha": _given(alpha_values, _smoke(study, (50.0,), (25.0, 50.0, 100.0))),
              "sn_lambda": _given(lambda_values, _smoke(study, (0.1, 10.0), (0.01, 0.1, 1.0)))}
    labels = {"sn_k": f"k (support neighbours; {batch_scaled_k(batch)} = the paper's 10 of 128 "
                      f"at a batch of {batch})",
              "sn_alpha": "alpha (scale)", "sn_lambda": "lambda (squeeze weight)"}
    sn = study.config("sn")
    return Sensitivity(_given(seeds, _smoke(study, (0,), (0, 1, 2))), sweeps, {"loss": "sn"},
                       _given(noise_seeds, study.protocol.seeds), labels,
                       {name: getattr(sn, name) for name in sweeps})


@dataclass(frozen=True)
class ProtocolPlan:
    """A notebook that reads the protocol's own runs (convergence, claims): the protocol and its selection."""
    protocol: Protocol
    selection: object = field(repr=False)


def convergence(study: Study) -> ProtocolPlan:
    """Notebook 05: the protocol's convergence runs (SN and the verification losses, triplet and contrastive;
    fixed iterations on 25 / 50 / 100 % of the training identities, scored on validation every tenth of the
    budget)."""
    return ProtocolPlan(study.protocol, study.selection)


@dataclass(frozen=True)
class GallerySize(Comparison):
    #: the numbers of distractors the curve is scored at, from the original gallery (0) to all of them
    steps: tuple[int, ...] = ()

    @property
    def variants(self) -> tuple[str, ...]:
        """The record variants the curve reads (``snlib.records``: ``sq`` at 0 distractors)."""
        return ("sq", *(f"distractors-{n}" for n in self.steps if n))


def gallery_size(study: Study, seeds=None, num_distractors=None, num_steps=None) -> GallerySize:
    """Notebook 06: SN and triplet as the first of the study's distractors join the gallery
    (``Study.with_distractors``): on the synthetic set 3000 generated distractors (20 at the smoke preset: the
    protocol's), elsewhere all of the data set's own, or all of its training images where it has none
    (:func:`study_protocol`); ``num_distractors`` (at most the protocol's) and ``num_steps`` shorten the curve."""
    protocol = study.protocol
    total = protocol.num_distractors if num_distractors is None else num_distractors
    if total and protocol.num_distractors and total > protocol.num_distractors:
        raise ValueError(f"num_distractors={total}: the study has {protocol.num_distractors} distractors")
    steps = views.gallery_steps(len(study.data.gallery), total, num_steps or protocol.gallery_steps) if total else []
    return _compared(study, seeds, protocol.gallery_losses, GallerySize, steps=tuple(steps))


def claims(study: Study) -> ProtocolPlan:
    """Notebook 12: every claim, from the records of all the protocol's runs."""
    return ProtocolPlan(study.protocol, study.selection)


@dataclass(frozen=True)
class LaterLosses:
    """The losses after SN against SN and the baselines of the paper's time (``snlib.study.later``), each at the
    protocol's budget and seeds."""
    recipes: tuple[str, ...]
    baselines: tuple[str, ...]
    seeds: tuple[int, ...]


def later_losses(study: Study, recipes=None) -> LaterLosses:
    """Notebook 13: every loss of ``snlib.recipes.LATER`` (at the smoke preset one pair loss with its miner and one
    margin softmax, ``ms`` and ``arcface``), its rate selected as Table 1's (``later.with_later``), against SN and
    the recipes of Table 1 (their runs are Table 1's), the protocol's seeds."""
    unknown = [r for r in _given(recipes, ()) if r not in LATER]
    if unknown:
        raise ConfigError(f"recipes {unknown}: not a loss after SN; known: {', '.join(LATER)}")
    return LaterLosses(_given(recipes, _smoke(study, ("ms", "arcface"), LATER)), later.baselines(study),
                       study.protocol.seeds)


@dataclass(frozen=True)
class Pictures:
    """The visual notebooks (07-11): whether person images are drawn, and what each one looks at."""
    images: bool
    networks: dict = field(default_factory=dict)
    toy: dict = field(default_factory=dict)
    toy_seed: int = 6
    anchors: int = 4
    test_batches: int = 50
    topk: int = 10


def sn_explained(study: Study) -> Pictures:
    """Notebook 07: a 2-D toy batch (seed 6: one anchor of each kind) under k=5, then the SN run's test batch."""
    return Pictures(images_allowed(study.dataset_name), toy={"k": 5, "alpha": 50.0, "lam": 0.1, "normalize": False})


def support_sets(study: Study) -> Pictures:
    """Notebook 08: four anchors on images; the composition on random test batches (5 at the smoke preset)."""
    return Pictures(images_allowed(study.dataset_name), test_batches=_smoke(study, 5, 50),
                    networks={"epoch 0": None, "SN": "sn", "triplet": "triplet", "softmax": "ce"})


def tsne(study: Study) -> Pictures:
    """Notebook 09: t-SNE of the untrained network and of SN, triplet and softmax training."""
    return Pictures(images_allowed(study.dataset_name), networks={
        "epoch 0 (untrained)": None, "SN loss": "sn", "batch-hard triplet": "triplet", "softmax (cross-entropy)": "ce"})


def ranked_lists(study: Study) -> Pictures:
    """Notebook 10: top-10 lists of SN against batch-hard triplet."""
    return Pictures(images_allowed(study.dataset_name), networks={"SN loss": "sn", "batch-hard triplet": "triplet"})


def explorer(study: Study) -> Pictures:
    """Notebook 11: the explorer on the SN run's test batch."""
    return Pictures(images_allowed(study.dataset_name))


def template(study: Study, seeds=None) -> Comparison:
    """notebooks/TEMPLATE.ipynb: the SN loss at its selected rate, one seed (copy this as the new notebook's
    plan)."""
    return _compared(study, _given(seeds, (0,)), ("sn",))


def study_protocol(study: Study, changes: dict | None = None) -> Protocol:
    """The fair-comparison protocol (``snlib.study.protocol``) of the study's preset
    (``snlib.presets.PROTOCOLS``) on its data set, with ``changes`` (Protocol fields: a notebook's
    ``protocol_sizes`` parameter) applied last. A budget in ``epochs`` gives the iterations on this data set
    (:func:`epoch_iterations`; ``changes`` naming ``iterations`` alone replace it); unless given, the distractors
    are :func:`dataset_distractors`."""
    changes = _protocol_changes(changes)
    sizes = dict(PROTOCOLS[study.preset])
    on_synthetic = sizes.pop("on_synthetic", {})
    sizes.update({**(on_synthetic if study.dataset_name == "synthetic" else {}), **changes})
    if "iterations" in changes and "epochs" not in changes:
        sizes["epochs"] = None
    if sizes.get("epochs"):
        p = study.overrides.get("p", sizes.get("overrides", {}).get("p", study.base.p))
        sizes["iterations"] = epoch_iterations(sizes["epochs"], study.data.num_train_pids, p)
    if "num_distractors" not in sizes:
        sizes.update(dataset_distractors(study))
    return Protocol(**sizes)


def _protocol_changes(changes: dict | None) -> dict:
    """``changes`` with lists as tuples (a YAML ``--param``); a name that is no Protocol field is an error."""
    changes = dict(changes or {})
    known = [f.name for f in dataclasses.fields(Protocol)]
    if unknown := sorted(set(changes) - set(known)):
        raise ConfigError(f"protocol {unknown}: not a protocol size; known: {', '.join(known)}")
    return {name: tuple(v) if isinstance(v, list) else v for name, v in changes.items()}


def epoch_iterations(epochs: int, num_ids: int, p: int) -> int:
    """The iterations of ``epochs`` passes over ``num_ids`` training identities at ``p`` identities a batch, as
    the engine counts an epoch (``num_ids // p`` batches): 150 x (751 // 32) = 3450 on Market-1501."""
    if num_ids < p:
        raise ConfigError(f"{num_ids} training identities cannot fill a batch of p={p} identities")
    return epochs * (num_ids // p)


def dataset_distractors(study: Study) -> dict:
    """All of the data set's own distractors (Market-1501's 500k), else, where it has none (cuhk03p1), all of its
    training images: the Protocol fields ``num_distractors`` and ``distractor_source``."""
    try:
        return {"num_distractors": len(views.distractors(study.data, study.base))}
    except DataNotFoundError:
        return {"num_distractors": len(study.data.train), "distractor_source": "train"}


#: Every notebook's plan, by the name ``setup`` takes.
PLANS = {"lr_selection": lr_selection, "table1": table1, "other_datasets": other_datasets, "ablation": ablation,
         "sensitivity": sensitivity, "convergence": convergence, "gallery_size": gallery_size, "claims": claims,
         "later_losses": later_losses, "sn_explained": sn_explained, "support_sets": support_sets, "tsne": tsne,
         "ranked_lists": ranked_lists, "explorer": explorer, "template": template}
#: The plans that show the selection itself: they run it even when the overrides force ``lr``.
SHOWS_SELECTION = ("lr_selection",)


def setup(plan: str, preset: str | None = None, dataset: str | None = None, data_root=None, output_dir=None,
          overrides: dict | None = None, protocol_sizes: dict | None = None, **parameters) -> tuple[Study, object]:
    """A notebook's settled study and its plan. In this order: the study of the notebook's common parameters
    (:func:`~snlib.study.study.open_study`, ``overrides`` applied to every run), the protocol's sizes for its preset
    and data set (:func:`study_protocol`, with the notebook's ``protocol_sizes``), the learning-rate selection
    (none where the protocol fixes the rates; skipped when ``overrides`` force ``lr``, except for the plans of
    :data:`SHOWS_SELECTION`), then the plan ``plan`` of :data:`PLANS` given the notebook's other parameters.
    Prints what the numbers come from and the plan."""
    if plan not in PLANS:
        raise KeyError(f"unknown plan {plan!r}; known: {', '.join(PLANS)}")
    overrides = dict(overrides or {})
    study = open_study(preset, dataset, data_root, output_dir, **overrides)
    forced = "lr" in overrides and plan not in SHOWS_SELECTION
    study = settle(study, study_protocol(study, protocol_sizes), select=not forced)
    made = PLANS[plan](study, **parameters)
    print(study.describe(getattr(made, "seeds", None)))
    print(f"plan: {made}")
    print(f"figures and tables go to {settings.portable_path(study.output_dir)}")
    return study, made
