"""``load_dataset(name, root, **options)``: one entry point for every data set; ``detect_dataset(root)`` names the
data set a folder holds; ``check_options(name, options)`` checks loader options before any work."""
from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path

from ..errors import ConfigError
from . import cuhk01, cuhk03
from .base import DataNotFoundError, IMAGE_SUFFIXES, ReIDDataset, find_data_dir, verify_images
from .cuhk01 import load_cuhk01
from .cuhk03 import load_cuhk03
from .dukemtmc import DUKEMTMC, load_dukemtmc
from .market1501 import MARKET1501, SPLIT_FOLDERS, MarketLayout, load_market1501
from .msmt17 import find_release, load_msmt17
from .synthetic import CONFIG_FILE, SyntheticConfig, load_synthetic

LOADERS = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03": load_cuhk03,
    "cuhk01": load_cuhk01,
    "msmt17": load_msmt17,
    "synthetic": load_synthetic,
}

#: Options a loader takes through ``**overrides`` (its signature cannot name them).
KEYWORD_OPTIONS = {"synthetic": tuple(f.name for f in dataclasses.fields(SyntheticConfig))}

#: What ``detect_dataset`` looks for (in the root, or the sub-folders each loader accepts).
LAYOUTS = {
    "market1501": "bounding_box_train/, query/, bounding_box_test/ with Market-1501 names (0002_c1s1_000451_03.jpg)",
    "dukemtmc": "bounding_box_train/, query/, bounding_box_test/ with DukeMTMC names (0001_c2_f0046182.jpg)",
    "cuhk03": f"{cuhk03.MAT_NAME} (in {', '.join(cuhk03.CANDIDATES)})",
    "cuhk01": f"campus/ (in {', '.join(cuhk01.CANDIDATES)})",
    "msmt17": "list_train.txt and train/ (MSMT17_V1, MSMT17_V2 or the release folder itself)",
    "synthetic": f"{CONFIG_FILE} (a folder snlib generated) or synthetic-*/ folders holding one",
}


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "")


def _loader(name: str):
    return {_key(k): v for k, v in LOADERS.items()}.get(_key(name))


def check_options(name: str, options: dict) -> None:
    """:class:`~snlib.errors.ConfigError` naming the data set, the options its loader does not take and those it
    takes (read from the loader's signature), before anything is loaded or generated."""
    loader = _loader(name)
    if loader is None:
        raise ConfigError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}")
    params = list(inspect.signature(loader).parameters.values())[1:]  # the first is the root
    accepted = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if any(p.kind is p.VAR_KEYWORD for p in params):
        if _key(name) not in KEYWORD_OPTIONS:
            return  # a loader of any keyword: nothing to check against
        accepted += KEYWORD_OPTIONS[_key(name)]
    bad = sorted(set(options) - set(accepted))
    if bad:
        raise ConfigError(f"data set {name!r} takes no option {', '.join(bad)} (dataset_options); it accepts: "
                          f"{', '.join(accepted) or 'none'}")


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


_PROBES = {
    "market1501": lambda root: _market_like(MARKET1501, root),
    "dukemtmc": lambda root: _market_like(DUKEMTMC, root),
    "cuhk03": lambda root: _holds(root, cuhk03.CANDIDATES, (cuhk03.MAT_NAME,)),
    "cuhk01": lambda root: _holds(root, cuhk01.CANDIDATES, ("campus",)),
    "msmt17": _msmt17,
    "synthetic": lambda root: (root / CONFIG_FILE).is_file()
    or any((p / CONFIG_FILE).is_file() for p in root.glob("synthetic-*")),
}


def detect_dataset(root: str | Path) -> str:
    """The name of the data set in ``root`` (its folder or a parent the loader accepts), from its layout; reads
    names only, writes nothing. :class:`DataNotFoundError` lists what was looked for when none is found,
    :class:`~snlib.errors.ConfigError` names them when several are."""
    root = Path(root).expanduser()
    found = [name for name, probe in _PROBES.items() if root.is_dir() and probe(root)]
    if len(found) > 1:
        raise ConfigError(f"{root} holds several data sets ({', '.join(found)}): name one with --dataset "
                          "(or point the root at its own folder)")
    if not found:
        state = "the folder does not exist" if not root.exists() else "no known layout is there"
        looked = "\n".join(f"  {name}: {what}" for name, what in LAYOUTS.items())
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
    dataset = _loader(name)(root, **options)
    if verify:
        samples = {s.path: s for subset in dataset.splits().values() for s in subset}
        verify_images(samples.values(), desc=f"verifying {dataset.name}")
    return dataset
