"""The embedded default data set: procedural pedestrians (:mod:`snlib.data.pedestrian`) in the Market-1501 layout.

``generate_synthetic(root, config)`` writes, deterministically from ``config.seed`` (same seed, same bytes):

    <root>/bounding_box_train/0001_c1s1_000001_00.jpg   train identities 0001..N_train
    <root>/query/                                       test identities N_train+1..: one image per
                                                        (identity, camera), as Market-1501
    <root>/bounding_box_test/                           the other test images, plus distractors
                                                        (identity 0000: people of no test identity) and
                                                        junk (-1: badly framed boxes, background)
    <root>/gt_bbox/                                     multi-query: every test image of each query's
                                                        identity and camera (as Market-1501's gt_bbox)
    <root>/synthetic.json                               the config (and generator version) it was made from

Each identity is seen by ``min_cameras_per_id``..``num_cameras`` cameras, with ``images_per_camera``
(a range) images in each, so every query has cross-camera matches in the gallery. Generation goes to a
temporary folder renamed into place at the end, so an interrupted run never leaves a partial data set.

One folder per configuration: ``ensure_synthetic(root, config)`` and ``load_dataset("synthetic", root)`` take a
parent folder (the presets': the repository's ``data/``) and use ``<root>/synthetic-<tag>``, ``tag`` = the first
8 hex digits of the sha256 of ``config.to_dict()`` (``synthetic_root``), so two configurations (the ``smoke`` and
``cpu`` presets) never share a folder. A ``root`` that itself holds ``synthetic.json`` is that folder. Nothing is
deleted: a folder holding the set of another configuration, or files snlib did not write, is a
:class:`SyntheticFolderError` naming what is there; ``generate_synthetic`` writes only a new or empty folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from . import pedestrian
from ..errors import SnlibError
from .base import DataNotFoundError, ReIDDataset, listing
from .market1501 import MARKET1501, MarketLayout, load_market_layout

#: Bump when the drawing changes: another version's sets get another folder (the tag covers the version).
GENERATOR_VERSION = 1
CONFIG_FILE = "synthetic.json"
# Independent random streams (numpy SeedSequence entropy: [seed, stream, ...]).
_CAMERAS, _SCENES, _PEOPLE, _VISITS, _IMAGES, _DISTRACTORS, _JUNK = range(7)

SYNTHETIC = MarketLayout(
    name="synthetic", pattern=MARKET1501.pattern, scheme=MARKET1501.scheme.replace("1-6", "1-9"), num_cams=9,
    candidates=(".",), help_text="generate it with snlib.data.ensure_synthetic(root) or `python -m snlib synth`",
    junk_pids=(-1,), distractor_pids=(0,))


class SyntheticFolderError(SnlibError, FileExistsError):
    """The folder meant for a synthetic set holds something else (another configuration's set, other files)."""


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and difficulty of the synthetic data set (the defaults train on a CPU in minutes).

    ``images_per_camera``: images of an identity in each camera that sees it, an int or an inclusive
    ``(min, max)`` range (min >= 2, so a query leaves a gallery image in its camera). ``difficulty``
    scales every camera effect (0: identical neutral cameras, 1: default, > 1: harsher).
    """

    seed: int = 0
    num_train_ids: int = 150
    num_test_ids: int = 100
    num_cameras: int = 4
    min_cameras_per_id: int = 2
    images_per_camera: tuple[int, int] = (2, 5)
    height: int = 128
    width: int = 64
    difficulty: float = 1.0
    num_distractors: int = 50
    num_junk: int = 20
    jpeg_quality: int = 92

    def __post_init__(self):
        ipc = self.images_per_camera
        object.__setattr__(self, "images_per_camera", (ipc, ipc) if isinstance(ipc, int) else tuple(ipc))
        lo, hi = self.images_per_camera
        checks = [
            (2 <= self.num_cameras <= 9, "num_cameras must be in 2..9 (one digit in Market-1501 file names)"),
            (2 <= self.min_cameras_per_id <= self.num_cameras, "min_cameras_per_id must be in 2..num_cameras"),
            (2 <= lo <= hi, "images_per_camera must be >= 2 (a query leaves a gallery image) with min <= max"),
            (self.num_train_ids >= 1 and self.num_test_ids >= 1, "num_train_ids and num_test_ids must be >= 1"),
            (self.num_train_ids + self.num_test_ids <= 9999, "at most 9999 identities (four-digit names)"),
            (self.height >= 32 and self.width >= 16, "images must be at least 32 x 16"),
            (self.difficulty >= 0, "difficulty must be >= 0"),
            (self.num_distractors >= 0 and self.num_junk >= 0, "num_distractors and num_junk must be >= 0"),
        ]
        errors = [message for ok, message in checks if not ok]
        if errors:
            raise ValueError(f"invalid SyntheticConfig: {'; '.join(errors)}")

    def to_dict(self) -> dict:
        """JSON-ready config, with the generator version (what ``synthetic.json`` stores)."""
        return json.loads(json.dumps({**asdict(self), "generator_version": GENERATOR_VERSION}))


@dataclass(frozen=True)
class _Job:
    folder: str
    name: str
    person: pedestrian.Person | None
    camera: int
    seed: tuple[int, ...]
    junk: bool = False


def _plan(config: SyntheticConfig) -> tuple[list[_Job], dict[tuple[int, int], list[str]]]:
    """Every image to draw, and the test images of each (identity, camera) (the multi-query groups)."""
    seed, num_ids = config.seed, config.num_train_ids + config.num_test_ids
    people = pedestrian.draw_people(np.random.default_rng([seed, _PEOPLE]), num_ids)
    frames = [0] * config.num_cameras

    def name(pid: int, cam: int) -> str:
        frames[cam] += 1
        return f"{pid:04d}_c{cam + 1}s1_{frames[cam]:06d}_00.jpg" if pid >= 0 else \
            f"-1_c{cam + 1}s1_{frames[cam]:06d}_00.jpg"

    jobs, groups = [], {}
    lo, hi = config.images_per_camera
    for index, person in enumerate(people):
        pid, test = index + 1, index >= config.num_train_ids
        rng = np.random.default_rng([seed, _VISITS, index])
        num_cams = int(rng.integers(config.min_cameras_per_id, config.num_cameras + 1))
        for cam in sorted(int(c) for c in rng.choice(config.num_cameras, size=num_cams, replace=False)):
            count = int(rng.integers(lo, hi + 1))
            query_at = int(rng.integers(count))
            for k in range(count):
                folder = "bounding_box_train" if not test else ("query" if k == query_at else "bounding_box_test")
                jobs.append(_Job(folder, name(pid, cam), person, cam, (seed, _IMAGES, index, cam, k)))
                if test:
                    groups.setdefault((pid, cam), []).append(f"{folder}/{jobs[-1].name}")

    taken = {p.key for p in people}
    strangers = pedestrian.draw_people(np.random.default_rng([seed, _DISTRACTORS]), config.num_distractors, taken)
    for j, person in enumerate(strangers):
        cam = int(np.random.default_rng([seed, _DISTRACTORS, j]).integers(config.num_cameras))
        jobs.append(_Job("bounding_box_test", name(0, cam), person, cam, (seed, _DISTRACTORS, j, 1)))
    for j in range(config.num_junk):
        rng = np.random.default_rng([seed, _JUNK, j])
        cam, person = int(rng.integers(config.num_cameras)), pedestrian.draw_person(rng)
        jobs.append(_Job("bounding_box_test", name(-1, cam), person if rng.random() < 0.7 else None, cam,
                         (seed, _JUNK, j, 1), junk=True))
    return jobs, groups


def _encode(job: _Job, cameras, scenes, config: SyntheticConfig) -> bytes:
    image = pedestrian.render(job.person, cameras[job.camera], scenes[job.camera],
                              np.random.default_rng(list(job.seed)), config.height, config.width, junk=job.junk)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=config.jpeg_quality)
    return buffer.getvalue()


def config_tag(config: SyntheticConfig) -> str:
    """First 8 hex digits of the sha256 of ``config.to_dict()``: the ``synthetic-<tag>`` folder name."""
    text = json.dumps(config.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _check_writable(root: Path, config: SyntheticConfig) -> None:
    """Refuse a folder that is not new or empty, saying what is there (nothing is ever replaced)."""
    entries = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    if not entries:
        return
    if CONFIG_FILE in entries:
        stored, wanted = json.loads((root / CONFIG_FILE).read_text()), config.to_dict()
        diff = [f"{key}: {stored.get(key)!r} there, {wanted.get(key)!r} asked"
                for key in sorted(set(stored) | set(wanted)) if stored.get(key) != wanted.get(key)]
        what = (f"the synthetic data set of another configuration ({listing(diff)})" if diff
                else "a synthetic data set of this configuration")
        raise SyntheticFolderError(
            f"{root} already holds {what}; it is left as it is. Pass its parent folder (each configuration gets its "
            f"own synthetic-<tag> folder there), or options matching its {CONFIG_FILE}, or delete it yourself.")
    raise SyntheticFolderError(
        f"{root} is not empty and holds no {CONFIG_FILE} ({listing(entries)}): it is not a synthetic data set, "
        "and it will not be overwritten; pass an empty or new folder, or a parent folder (the set then goes to "
        "<folder>/synthetic-<tag>)")


def generate_synthetic(root: str | Path, config: SyntheticConfig | None = None) -> Path:
    """Write the data set into ``root``, a new or empty folder (:class:`SyntheticFolderError` otherwise);
    return ``root``."""
    config = config or SyntheticConfig()
    root = Path(root).expanduser().resolve()
    _check_writable(root, config)
    root.parent.mkdir(parents=True, exist_ok=True)
    cameras = [pedestrian.draw_camera(np.random.default_rng([config.seed, _CAMERAS, c]), c, config.difficulty)
               for c in range(config.num_cameras)]
    scenes = [pedestrian.render_scene(cam, np.random.default_rng([config.seed, _SCENES, c]),
                                      2 * config.height, 24 * config.width) for c, cam in enumerate(cameras)]
    jobs, groups = _plan(config)
    staging = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}.tmp-"))
    try:
        for folder in ("bounding_box_train", "bounding_box_test", "query", "gt_bbox"):
            (staging / folder).mkdir()
        for job in tqdm(jobs, desc=f"synthetic data set -> {root.name}", unit="img"):
            (staging / job.folder / job.name).write_bytes(_encode(job, cameras, scenes, config))
        for members in groups.values():
            for member in members:
                shutil.copyfile(staging / member, staging / "gt_bbox" / Path(member).name)
        (staging / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True) + "\n")
        if root.exists():
            root.rmdir()  # empty (checked above); rmdir refuses anything else
        os.replace(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def synthetic_root(root: str | Path, config: SyntheticConfig) -> Path:
    """The folder of ``config``'s set: ``root`` itself when it holds ``synthetic.json``, else
    ``root/synthetic-<tag>`` (module docstring)."""
    root = Path(root).expanduser().resolve()
    return root if (root / CONFIG_FILE).is_file() else root / f"synthetic-{config_tag(config)}"


def stored_options(folder: str | Path) -> dict:
    """The :class:`SyntheticConfig` fields of the set in ``folder`` (its ``synthetic.json``): the options that
    load it as it is, without generating anything."""
    folder = Path(folder).expanduser()
    if not (folder / CONFIG_FILE).is_file():
        sets = sorted(p.name for p in folder.glob("synthetic-*") if (p / CONFIG_FILE).is_file())
        hint = f"; it holds the synthetic sets {', '.join(sets)}: pass one of them" if sets else ""
        raise DataNotFoundError(f"{folder} holds no {CONFIG_FILE}, so it is no synthetic data set folder{hint}. "
                                "Generate one with `python -m snlib synth`.")
    stored = json.loads((folder / CONFIG_FILE).read_text())
    return {f.name: stored[f.name] for f in fields(SyntheticConfig) if f.name in stored}


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive lock on ``path`` (POSIX), so two processes do not generate the same folder at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; generation stays atomic
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_synthetic(root: str | Path, config: SyntheticConfig | None = None, **overrides) -> Path:
    """The folder of the set of ``config`` under ``root`` (:func:`synthetic_root`), generated unless it is there.

    ``overrides`` replace fields of ``config`` (default :class:`SyntheticConfig`). A folder holding anything
    else is a :class:`SyntheticFolderError`; nothing is deleted.
    """
    config = replace(config or SyntheticConfig(), **overrides)
    folder = synthetic_root(root, config)
    stored = folder / CONFIG_FILE

    def present() -> bool:
        return stored.is_file() and json.loads(stored.read_text()) == config.to_dict()

    if not present():  # only generation takes the lock (a file beside the folder): loading writes nothing
        with _lock(folder.with_name(f".{folder.name}.lock")):
            if not present():
                generate_synthetic(folder, config)
    return folder


def load_synthetic(root: str | Path, config: SyntheticConfig | None = None, **overrides) -> ReIDDataset:
    """The synthetic set of ``config`` under ``root`` (generated first when absent; see :func:`ensure_synthetic`)."""
    folder = ensure_synthetic(root, config, **overrides)
    stored = json.loads((folder / CONFIG_FILE).read_text())
    info = {key: stored[key] for key in ("seed", "difficulty", "num_cameras")}
    return load_market_layout(SYNTHETIC, folder, info=info)


#: Where Market-1501 keeps its 500k distractor set (``load_market1501(..., distractors_500k=True)`` finds it).
MARKET_DISTRACTOR_FOLDER = "distractors_500k"


def generate_market_folder(root: str | Path, config: SyntheticConfig | None = None, num_extra: int = 0) -> Path:
    """The synthetic set as a plain Market-1501 folder (its file names are already Market's: ``0002_c1s1_...``,
    ``0000_`` distractors and ``-1_`` junk in ``bounding_box_test``): ``config`` (at most 6 cameras) with
    ``num_extra`` more generated distractors moved out of the gallery into ``distractors_500k/``, the stand-in for
    Market's 500k set; no ``synthetic.json``, so it loads as ``market1501`` only. For tests and benchmarks of the
    Market path without Market's images."""
    config = config or SyntheticConfig()
    if config.num_cameras > MARKET1501.num_cams:
        raise ValueError(f"num_cameras={config.num_cameras}: Market-1501 has {MARKET1501.num_cams} cameras")
    root = generate_synthetic(root, replace(config, num_distractors=config.num_distractors + num_extra))
    extra = root / MARKET_DISTRACTOR_FOLDER
    extra.mkdir()
    for path in sorted((root / "bounding_box_test").glob("0000_*.jpg"))[:num_extra]:
        path.rename(extra / path.name)
    (root / CONFIG_FILE).unlink()
    return root
