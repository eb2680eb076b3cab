"""The data sets snlib knows, one :class:`DatasetSpec` each (``dataset_spec(name)``): ``load_dataset(name, root,
**options)`` is one entry point for every data set; ``detect_dataset(root)`` names the data set a folder holds;
``check_options(name, options)`` checks loader options before any work.

Adding a data set: its loader file (``load_<name>(root, **options) -> ReIDDataset``) and one
``register_dataset(DatasetSpec(...))`` below.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, did_you_mean
from . import cuhk01, cuhk03
from .base import DataNotFoundError, IMAGE_SUFFIXES, ReIDDataset, find_data_dir, verify_images
from .cuhk01 import load_cuhk01
from .cuhk03 import load_cuhk03
from .dukemtmc import DUKEMTMC, load_dukemtmc
from .market1501 import MARKET1501, SPLIT_FOLDERS, MarketLayout, load_market1501
from .msmt17 import find_release, load_msmt17
from .sources import SOURCES, Source
from .synthetic import CONFIG_FILE, SyntheticConfig, load_synthetic


@dataclass(frozen=True)
class DatasetSpec:
    """A data set: how to load it, recognise it, get it, show it, and where its distractors come from.

    ``probe(root)``: whether ``root`` holds the data set (names only); ``layout``: what the probe looks for.
    ``source``: where to download it or ask for it (``snlib.data.sources``), None for a generated set.
    ``images_allowed``: whether figures may show its person images (the real sets' licences and the people in
    them: only the synthetic set's). Distractors (extra gallery images, Figure 4): the loaded set's
    ``extra_gallery`` where it has one; else, with ``distractor_option``, the loader option that adds its
    distractor set (Market-1501's 500k); with ``generates_distractors``, new ones drawn by its generator.
    ``keyword_options``: the options a loader takes through ``**overrides`` (its signature cannot name them).
    """

    name: str
    loader: Callable[..., ReIDDataset]
    probe: Callable[[Path], bool]
    layout: str
    source: Source | None = None
    images_allowed: bool = False
    distractor_option: str | None = None
    generates_distractors: bool = False
    keyword_options: tuple[str, ...] = ()


#: Data-set name -> :class:`DatasetSpec`, in registration order.
DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in DATASETS:
        raise ValueError(f"data set {spec.name!r} is registered twice")
    DATASETS[spec.name] = spec
    return spec


def _market_like(layout: MarketLayout, root: Path) -> bool:
    """A Market-layout folder (not a synthetic one) whose first training image is named as ``layout``'s."""
    try:
        folder = find_data_dir(root, layout.candidates, tuple(SPLIT_FOLDERS.values()), "")
    except DataNotFoundError:
        return False
    images = sorted(n for n in os.listdir(folder / "bounding_box_train") if n.lower().endswith(IMAGE_SUFFIXES))
    return not (folder / CONFIG_FILE).is_file() and bool(images) and layout.pattern.match(images[0]) is not None


def _holds(root: Path, candidates, required) -> bool:
    return any(all((root / c / r).exists() for r in required) for c in candidates)


def _msmt17(root: Path) -> bool:
    try:
        find_release(root)
    except DataNotFoundError:
        return False
    return True


register_dataset(DatasetSpec(
    "market1501", load_market1501, lambda root: _market_like(MARKET1501, root),
    "bounding_box_train/, query/, bounding_box_test/ with Market-1501 names (0002_c1s1_000451_03.jpg)",
    source=SOURCES["market1501"], distractor_option="distractors_500k"))
register_dataset(DatasetSpec(
    "dukemtmc", load_dukemtmc, lambda root: _market_like(DUKEMTMC, root),
    "bounding_box_train/, query/, bounding_box_test/ with DukeMTMC names (0001_c2_f0046182.jpg)",
    source=SOURCES["dukemtmc"]))
register_dataset(DatasetSpec(
    "cuhk03", load_cuhk03, lambda root: _holds(root, cuhk03.CANDIDATES, (cuhk03.MAT_NAME,)),
    f"{cuhk03.MAT_NAME} (in {', '.join(cuhk03.CANDIDATES)})", source=SOURCES["cuhk03"]))
register_dataset(DatasetSpec(
    "cuhk01", load_cuhk01, lambda root: _holds(root, cuhk01.CANDIDATES, ("campus",)),
    f"campus/ (in {', '.join(cuhk01.CANDIDATES)})", source=SOURCES["cuhk01"]))
register_dataset(DatasetSpec(
    "msmt17", load_msmt17, _msmt17,
    "list_train.txt and train/ (MSMT17_V1, MSMT17_V2 or the release folder itself)", source=SOURCES["msmt17"]))
register_dataset(DatasetSpec(
    "synthetic", load_synthetic,
    lambda root: (root / CONFIG_FILE).is_file() or any((p / CONFIG_FILE).is_file() for p in root.glob("synthetic-*")),
    f"{CONFIG_FILE} (a folder snlib generated) or synthetic-*/ folders holding one",
    images_allowed=True, generates_distractors=True,
    keyword_options=tuple(f.name for f in dataclasses.fields(SyntheticConfig))))

def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _find(name: str) -> DatasetSpec | None:
    return {_key(k): v for k, v in DATASETS.items()}.get(_key(name))


def dataset_spec(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name`` (case, ``-`` and ``_`` ignored); an unknown name is a ``ConfigError``."""
    spec = _find(name)
    if spec is None:
        raise ConfigError(f"unknown data set {name!r}{did_you_mean(name, DATASETS)}; known: {', '.join(DATASETS)}")
    return spec


def images_allowed(name: str) -> bool:
    """Whether figures may show the person images of the data set named exactly ``name`` (a ``ReIDDataset.name``;
    ``DatasetSpec.images_allowed``); False for a name snlib does not know."""
    spec = DATASETS.get(name)
    return spec is not None and spec.images_allowed


def check_options(name: str, options: dict) -> None:
    """:class:`~snlib.errors.ConfigError` naming the data set, the options its loader does not take and those it
    takes (read from the loader's signature), before anything is loaded or generated."""
    spec = dataset_spec(name)
    params = list(inspect.signature(spec.loader).parameters.values())[1:]  # the first is the root
    accepted = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        if not spec.keyword_options:
            return  # a loader of any keyword: nothing to check against
        accepted += spec.keyword_options
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ConfigError(f"data set {name!r} takes no option {', '.join(bad)} (dataset_options); it accepts: "
                          f"{', '.join(accepted) or 'none'}")


def detect_dataset(root: str | Path) -> str:
    """The name of the data set in ``root`` (its folder or a parent the loader accepts), from its layout; reads
    names only, writes nothing. :class:`DataNotFoundError` lists what was looked for when none is found,
    :class:`~snlib.errors.ConfigError` names them when several are."""
    root = Path(root).expanduser()
    found = [name for name, spec in DATASETS.items() if root.is_dir() and spec.probe(root)]
    if len(found) > 1:
        raise ConfigError(f"{root} holds several data sets ({', '.join(found)}): name one with --dataset "
                          "(or point the root at its own folder)")
    if not found:
        state = "the folder does not exist" if not root.exists() else "no known layout is there"
        looked = "\n".join(f"  {name}: {spec.layout}" for name, spec in DATASETS.items())
        raise DataNotFoundError(f"no data set recognised at {root} ({state}); looked for:\n{looked}\n"
                                "Point --data-root at the data set's folder, or name it with --dataset (the loader "
                                "then says what is missing).")
    return found[0]


def load_dataset(name: str, root: str | Path, verify: bool = False, **options) -> ReIDDataset:
    """Load data set ``name`` from ``root`` (the data-set folder or a parent of it).

    ``options`` go to the data set's loader, e.g. ``cuhk03``: ``boxes="labeled"|"detected"``,
    ``protocol="classic"|"new"``, ``split_id``; ``market1501``: ``distractors_500k``, ``keep_junk``;
    ``synthetic``: :class:`~snlib.data.synthetic.SyntheticConfig` fields. ``verify=True`` decodes every
    image once and reports all unreadable files together.
    """
    check_options(name, options)   # an unknown name or option: a ConfigError before anything is read
    dataset = dataset_spec(name).loader(root, **options)
    if verify:
        samples = {s.path: s for subset in dataset.splits().values() for s in subset}
        verify_images(samples.values(), desc=f"verifying {dataset.name}")
    return dataset
