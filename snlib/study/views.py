"""Distractor images that join the gallery (the gallery-size experiment, the paper's Figure 4; where they come
from: the data set's ``snlib.data.DatasetSpec``), and the gallery sizes of the experiment. Generated
distractors are built once on disk (ignored by git, as every generated data set). (Nested shares of the training
identities: ``snlib.data.train_share``, the ``train_fraction`` of a run.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DataNotFoundError, ReIDDataset, Sample, dataset_spec, load_dataset
from ..data.synthetic import SyntheticConfig
from ..presets import TrainConfig


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


def training_distractors(data: ReIDDataset, count: int | None = None) -> list[Sample]:
    """The first ``count`` (None: all) training images as distractors, for a data set without a distractor set
    (e.g. cuhk03p1): people no query matches, since the training identities are disjoint from the test
    identities (checked). They carry their original identities (``train`` holds labels ``0..C-1``, which may
    equal a test identity). The networks have seen them in training, unlike Market-1501's 500k."""
    original = {label: pid for pid, label in data.train_pid_map.items()}
    images = [s._replace(pid=original[s.pid]) for s in data.train[:count]]
    tested = {s.pid for s in (*data.query, *data.gallery)}
    shared = sorted(tested & set(original.values()))
    if shared:
        raise ValueError(f"{data.name} at {data.root}: identities {shared[:5]} are in both the training and the test "
                         "lists, so its training images cannot serve as distractors")
    return images


def gallery_steps(gallery_size: int, num_distractors: int, num_steps: int = 6) -> list[int]:
    """Distractor counts ``0 = n_0 < ... < n_last = num_distractors`` whose galleries grow geometrically
    (``gallery_size + n_i`` evenly spaced on a log axis, as the paper's 19.7k -> 519.7k figure)."""
    if num_distractors <= 0:
        return [0]
    sizes = np.geomspace(gallery_size, gallery_size + num_distractors, max(num_steps, 2))
    return sorted({0, num_distractors, *np.round(sizes - gallery_size).astype(int).tolist()})


#: Where distractors come from: the data set's own (``DatasetSpec``), or its training images.
DISTRACTOR_SOURCES = ("own", "train")


def distractors(data: ReIDDataset, config: TrainConfig, count: int | None = None, source: str = "own") -> list[Sample]:
    """Extra gallery images of no query identity for the data set ``data`` of ``config`` (see
    :meth:`snlib.study.study.Study.distractors`): its own (``source="own"``; :class:`DataNotFoundError` where
    it has none) or its training images (``"train"``: :func:`training_distractors`)."""
    if source not in DISTRACTOR_SOURCES:
        raise ValueError(f"distractor source {source!r}: one of {DISTRACTOR_SOURCES}")
    if source == "train":
        return training_distractors(data, count)
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
