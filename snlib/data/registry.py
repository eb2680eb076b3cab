"""``load_dataset(name, root, **options)``: one entry point for every data set."""
from __future__ import annotations

from pathlib import Path

from .base import ReIDDataset, verify_images
from .cuhk01 import load_cuhk01
from .cuhk03 import load_cuhk03
from .dukemtmc import load_dukemtmc
from .market1501 import load_market1501
from .msmt17 import load_msmt17
from .synthetic import load_synthetic

LOADERS = {
    "market1501": load_market1501,
    "dukemtmc": load_dukemtmc,
    "cuhk03": load_cuhk03,
    "cuhk01": load_cuhk01,
    "msmt17": load_msmt17,
    "synthetic": load_synthetic,
}


def load_dataset(name: str, root: str | Path, verify: bool = False, **options) -> ReIDDataset:
    """Load data set ``name`` from ``root`` (the data-set folder or a parent of it).

    ``options`` go to the data set's loader, e.g. ``cuhk03``: ``boxes="labeled"|"detected"``,
    ``protocol="classic"|"new"``, ``split_id``; ``market1501``: ``distractors_500k``, ``keep_junk``;
    ``synthetic``: :class:`~snlib.data.synthetic.SyntheticConfig` fields. ``verify=True`` decodes every
    image once and reports all unreadable files together.
    """
    key = name.lower().replace("-", "").replace("_", "")
    loader = {k.replace("_", ""): v for k, v in LOADERS.items()}.get(key)
    if loader is None:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(LOADERS)}")
    dataset = loader(root, **options)
    if verify:
        subsets = [dataset.train, dataset.query, dataset.gallery, dataset.multi_query or [],
                   dataset.extra_gallery or []]
        verify_images({s.path: s for subset in subsets for s in subset}.values(), desc=f"verifying {dataset.name}")
    return dataset
