"""Views of a data set for the experiments: train subsets (nested fractions of the training identities),
distractor images that join the gallery (the gallery-size experiment, the paper's Figure 4; where they come
from: the data set's ``snlib.data.DatasetSpec``).

Subsets and distractors are built once on disk (ignored by git, as every generated data set) and load with the
data set's own loader.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .. import settings
from ..data import DataNotFoundError, ReIDDataset, Sample, dataset_spec, load_dataset
from ..data.synthetic import SyntheticConfig
from ..presets import TrainConfig

#: Where train-subset views of data sets are built.
SUBSET_DIR = settings.data_dir() / "subsets"


def _link(source: Path, target: Path) -> None:
    try:
        os.symlink(source, target, target_is_directory=source.is_dir())
    except OSError:  # no symlinks (Windows without privilege): copy
        (shutil.copytree if source.is_dir() else shutil.copyfile)(source, target)


def train_subset_root(dataset: ReIDDataset, fraction: float, subset_seed: int = 0) -> Path:
    """A view of ``dataset`` (Market-1501 layout) that trains on ``fraction`` of its training identities.

    The identities are the first ``round(fraction * C)`` of one fixed permutation (``subset_seed``), so the
    subsets of growing fractions are nested; query, gallery and the other folders are the originals (linked).
    The view is built once under ``data/subsets/`` (and again if the original's training images changed) and
    loads with the same loader and options as the original.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"train fraction {fraction} must lie in (0, 1]")
    source = Path(dataset.root)
    if not (source / "bounding_box_train").is_dir():
        raise NotImplementedError(f"train subsets are built for data sets in the Market-1501 layout "
                                  f"(bounding_box_train/ ...); {dataset.name} at {source} is not one")
    labels = np.random.default_rng(subset_seed).permutation(dataset.num_train_pids)
    keep = set(labels[:max(1, round(fraction * len(labels)))].tolist())
    chosen = [Path(s.path) for s in dataset.train if s.pid in keep]
    tag = hashlib.sha256(str(source).encode()).hexdigest()[:8]
    view = SUBSET_DIR / f"{dataset.name}-{tag}-{len(keep)}of{len(labels)}ids-seed{subset_seed}"
    if view.is_dir():
        linked = list((view / "bounding_box_train").iterdir())
        if {p.name for p in linked} == {p.name for p in chosen} and all(p.exists() for p in linked):
            return view
        shutil.rmtree(view)  # the original was regenerated or moved since: build the view again
    SUBSET_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=SUBSET_DIR, prefix=f".{view.name}."))
    try:
        for entry in source.iterdir():
            if entry.name != "bounding_box_train":
                _link(entry, staging / entry.name)
        (staging / "bounding_box_train").mkdir()
        for path in chosen:
            _link(path, staging / "bounding_box_train" / path.name)
        os.replace(staging, view)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return view


def synthetic_distractors(data_root: str | Path, options: dict, count: int) -> list[Sample]:
    """``count`` distractor images (identity 0) for the synthetic set of ``data_root`` / ``options``.

    The generator draws distractors after the identities, each unlike every identity of the set; the same
    configuration with ``num_distractors`` raised by ``count`` (generated once, in its own ``synthetic-<tag>``
    folder beside the original) holds exactly the original images plus ``count`` new distractors, which are
    returned.
    """
    config = SyntheticConfig(**options)
    larger = {**options, "num_distractors": config.num_distractors + count}
    dataset = load_dataset("synthetic", data_root, **options)
    original = {Path(s.path).name for s in dataset.gallery if s.pid == 0}
    bigger = load_dataset("synthetic", Path(dataset.root).parent, **larger)
    extra = [s for s in bigger.gallery if s.pid == 0 and Path(s.path).name not in original]
    if len(extra) != count:
        raise RuntimeError(f"{bigger.root} holds {len(extra)} new distractors instead of {count}: the synthetic "
                           "generator no longer appends distractors after the original ones; report it")
    return extra


def gallery_steps(gallery_size: int, num_distractors: int, num_steps: int = 6) -> list[int]:
    """Distractor counts ``0 = n_0 < ... < n_last = num_distractors`` whose galleries grow geometrically
    (``gallery_size + n_i`` evenly spaced on a log axis, as the paper's 19.7k -> 519.7k figure)."""
    if num_distractors <= 0:
        return [0]
    sizes = np.geomspace(gallery_size, gallery_size + num_distractors, max(num_steps, 2))
    return sorted({0, num_distractors, *np.round(sizes - gallery_size).astype(int).tolist()})


def distractors(data: ReIDDataset, config: TrainConfig, count: int | None = None) -> list[Sample]:
    """Extra gallery images of no query identity for the data set ``data`` of ``config`` (see
    :meth:`snlib.study.study.Study.distractors`); :class:`DataNotFoundError` where there is none."""
    if data.extra_gallery:
        return list(data.extra_gallery[:count])
    spec = dataset_spec(config.dataset)
    if spec.distractor_option:  # the runs' configuration (and cache) stays that of the study
        options = {**config.dataset_options, spec.distractor_option: True}
        return list(load_dataset(config.dataset, config.data_root, **options).extra_gallery[:count])
    if spec.generates_distractors:
        if count is None:
            raise ValueError(f"{config.dataset} has no extra gallery of its own: give count, the number of "
                             "distractor images to generate")
        return synthetic_distractors(config.data_root, config.dataset_options, count)
    raise DataNotFoundError(f"{config.dataset} at {config.data_root} has no extra gallery (distractor set); "
                            "Market-1501's 500k distractors and the synthetic set have one")
