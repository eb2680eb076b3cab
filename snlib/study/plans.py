"""Each notebook's experiment as data: its seeds, variants, sweep grids and sizes per preset, resolved from the
notebook's parameters (``None``: the plan's default). A notebook opens its study and plan with one call::

    study, plan = setup("ablation", preset, dataset, data_root, output_dir, overrides, seeds=seeds)

The smoke preset (tests, nbval) runs each experiment at its smallest size: one seed and the fewest variants
that still exercise every code path; the ``cpu`` and ``paper`` presets run the full grids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import settings
from ..presets import get_preset
from .protocol import Protocol
from .study import Study, open_study
from ..data import images_allowed

#: The seeds of the loss comparisons (notebooks 01, 03, 05, 06 share their runs), per preset.
SEEDS = {"smoke": (0,)}
ALL_SEEDS = (0, 1, 2)

#: Notebook 02's data sets: (name, root, loader options).
OTHER_DATASETS = (
    ("cuhk03", "data/cuhk03", {"protocol": "classic", "boxes": "labeled"}),  # 1,367 / 100 identities, split 0
    ("cuhk01", "data/cuhk01", {"num_test_ids": 100}),                        # 871 / 100 identities, split 0
    ("dukemtmc", "data/dukemtmc"),
)


def _given(value, default) -> tuple:
    return tuple(value) if value is not None else tuple(default)


def _seeds(study: Study, seeds) -> tuple[int, ...]:
    return _given(seeds, SEEDS.get(study.preset, ALL_SEEDS))


def _smoke(study: Study, small, full):
    """``small`` at the smoke preset, else ``full``."""
    return small if study.preset == "smoke" else full


@dataclass(frozen=True)
class Comparison:
    """Losses trained for each seed with the preset's configuration (notebooks 01, 02, 03, 06; the template)."""
    seeds: tuple[int, ...]
    losses: tuple[str, ...]

    @property
    def variants(self) -> list[dict]:
        return [{"loss": loss} for loss in self.losses]


def table1(study: Study, seeds=None) -> Comparison:
    """Notebook 01: SN, batch-hard triplet and softmax."""
    return Comparison(_seeds(study, seeds), ("sn", "triplet", "ce"))


@dataclass(frozen=True)
class OtherDatasets(Comparison):
    datasets: tuple = OTHER_DATASETS


def other_datasets(study: Study, datasets=None, seeds=None) -> OtherDatasets:
    """Notebook 02: Table 1's losses, one seed, on each data set of ``datasets`` that is present."""
    return OtherDatasets(_given(seeds, (0,)), ("sn", "triplet", "ce"), _given(datasets, OTHER_DATASETS))


def ablation(study: Study, seeds=None, variants=None) -> Comparison:
    """Notebook 03: the separation term alone, the squeeze readings, SN + softmax, triplet, softmax."""
    full = ("sep", "sn-paper", "sn-neighbors", "sn", "sn+ce", "triplet", "ce")
    return Comparison(_seeds(study, seeds), _given(variants, _smoke(study, ("sep", "sn", "ce"), full)))


@dataclass(frozen=True)
class Sensitivity:
    """One-at-a-time sweeps of the SN parameters around the paper's values (``defaults``)."""
    seeds: tuple[int, ...]
    sweeps: dict[str, tuple]
    fixed: dict
    noise_seeds: tuple[int, ...]
    labels: dict[str, str] = field(default_factory=lambda: {
        "sn_k": "k (support neighbours)", "sn_alpha": "alpha (scale)", "sn_lambda": "lambda (squeeze weight)"})

    @property
    def defaults(self) -> dict:
        paper = get_preset("paper")
        return {name: getattr(paper, name) for name in self.sweeps}


def sensitivity(study: Study, seeds=None, sweep_epochs=None, k_values=None, alpha_values=None, lambda_values=None,
                noise_seeds=None) -> Sensitivity:
    """Notebook 04: k, alpha and lambda (lambda over 1e-4 ... 10, the released scripts' sweep); the default
    point's spread over ``noise_seeds`` (notebook 01's SN runs)."""
    sweeps = {"sn_k": _given(k_values, _smoke(study, (10,), (5, 10, 20))),
              "sn_alpha": _given(alpha_values, _smoke(study, (50.0,), (25.0, 50.0, 100.0))),
              "sn_lambda": _given(lambda_values, _smoke(study, (0.1, 10.0), (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)))}
    fixed = {"loss": "sn", **({"epochs": sweep_epochs} if sweep_epochs is not None else {})}
    return Sensitivity(_given(seeds, (0,)), sweeps, fixed, _seeds(study, noise_seeds))


@dataclass(frozen=True)
class Convergence:
    """Training curves of each loss on growing fractions of the training identities."""
    seeds: tuple[int, ...]
    fractions: tuple[float, ...]
    losses: tuple[str, ...]
    eval_every: int | None

    @property
    def variants(self) -> list[dict]:
        return [{"loss": loss, "train_fraction": f, "eval_every": self.eval_every}
                for f in self.fractions for loss in self.losses]


def convergence(study: Study, seeds=None, fractions=None, losses=None, eval_every=None) -> Convergence:
    """Notebook 05: SN, triplet, contrastive and softmax; test evaluation every quarter of the epochs (at the
    smoke preset the preset's, so that notebook 01's runs are reused)."""
    base = study.base
    if eval_every is None:
        eval_every = _smoke(study, base.eval_every, base.eval_every or max(1, base.epochs // 4))
    return Convergence(_seeds(study, seeds), _given(fractions, _smoke(study, (1.0,), (0.25, 1.0))),
                       _given(losses, ("sn", "triplet", "contrastive", "ce")), eval_every)


@dataclass(frozen=True)
class GallerySize(Comparison):
    num_distractors: int | None = None
    num_steps: int = 6


def gallery_size(study: Study, seeds=None, num_distractors=None, num_steps=None) -> GallerySize:
    """Notebook 06: SN and triplet as distractors join the gallery; on the synthetic set 3000 generated
    distractors (40 at the smoke preset), elsewhere all of the data set's."""
    if num_distractors is None and study.dataset_name == "synthetic":
        num_distractors = _smoke(study, 40, 3000)
    return GallerySize(_seeds(study, seeds), ("sn", "triplet"), num_distractors, num_steps if num_steps is not None else 6)


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
    """notebooks/TEMPLATE.ipynb: the SN loss, one seed (copy this as the new notebook's plan)."""
    return Comparison(_given(seeds, (0,)), ("sn",))


#: Overrides of every run of a (preset, data set) study, so that its whole protocol fits ``make reproduce``'s
#: hour on a 2-core CPU: the synthetic set at 64x32 (engine.CPU_STEP_SPEED: 3.4x the step rate of 128x64).
STUDY_OVERRIDES = {("cpu", "synthetic"): {"height": 64, "width": 32}}


def protocol(study: Study) -> Protocol:
    """The fair-comparison protocol (``snlib.study.protocol``) at the study's size: at the smoke preset two
    recipes and rates, a 4-identity batch and a few iterations (every code path, seconds)."""
    if study.preset == "smoke":
        return Protocol(selection=("sn", "triplet"), family=("sep",), lrs=(1e-3, 2e-3), iterations=12, seeds=(0, 1),
                        long_factor=2, evaluations=3, fractions=(0.5, 1.0), convergence_losses=("sn", "triplet"),
                        convergence_seeds=(0, 1), num_distractors=20, overrides={"p": 4})
    return Protocol(num_distractors=3000 if study.dataset_name == "synthetic" else None)


def setup(plan: str, preset: str | None = None, dataset: str | None = None, data_root=None, output_dir=None,
          overrides: dict | None = None, **parameters) -> tuple[Study, object]:
    """A notebook's study (:func:`~snlib.study.study.open_study` of its common parameters, ``overrides`` applied
    to every run) and its plan (the function ``plan`` of this module, given the notebook's other parameters);
    prints what the numbers come from and the plan."""
    preset = settings.default_preset(preset)
    fixed = STUDY_OVERRIDES.get((preset, dataset or get_preset(preset).dataset), {})
    study = open_study(preset, dataset, data_root, output_dir, **{**fixed, **(overrides or {})})
    made = globals()[plan](study, **parameters)
    print(study.describe(getattr(made, "seeds", None)))
    print(f"plan: {made}")
    print(f"figures and tables go to {settings.portable_path(study.output_dir)}")
    return study, made
