"""What every data set shares: the sample record, the data-set container, folder resolution and checks.

Conventions (torchreid's):
    * a sample is ``(path, pid, camid)``; ``camid`` is 0-based;
    * train identities are relabelled ``0..C-1`` (sorted by original identity), so they index a classifier;
      query and gallery keep the identities of the data set, so the two share one scope;
    * ``junk_pids`` are identities that never count in an evaluation (Market-1501's ``-1``), and
      ``distractor_pids`` identities that stay in the gallery but match no query (Market-1501's ``0``);
      neither is counted as an identity in the summary.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from PIL import Image
from tqdm.auto import tqdm

from ..errors import SnlibError

#: File types a loader reads as images.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: Files that ship inside the official archives (or that file browsers leave behind) and are not data.
IGNORED_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "readme.txt"})
#: How many offending names an error message lists.
MAX_LISTED = 5


class Sample(NamedTuple):
    path: str
    pid: int
    camid: int


class DataNotFoundError(SnlibError, FileNotFoundError):
    """A data set's folder or file is missing; the message names the expected layout and the source."""


class FileNameError(SnlibError, ValueError):
    """Files whose names do not follow the data set's naming scheme (identity and camera unknown)."""


class CorruptImageError(SnlibError, OSError):
    """An image file that cannot be decoded (truncated, corrupt or not an image)."""


def listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``a, b, c (and 7 more)``: the first few items of a list of offenders."""
    shown = ", ".join(str(item) for item in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def unique_pids(samples: Iterable[Sample], excluded: Iterable[int] = ()) -> set[int]:
    excluded = set(excluded)
    return {s.pid for s in samples if s.pid not in excluded}


def relabel(samples: Sequence[Sample]) -> tuple[list[Sample], dict[int, int]]:
    """Map identities to ``0..C-1`` in increasing order of the original identity; return samples and map."""
    pid_map = {pid: label for label, pid in enumerate(sorted(unique_pids(samples)))}
    return [s._replace(pid=pid_map[s.pid]) for s in samples], pid_map


@dataclass
class ReIDDataset:
    """A re-ID data set: train / query / gallery lists of :class:`Sample`.

    ``train`` is relabelled to ``0..C-1`` on construction (``train_pid_map``: original -> label).
    ``multi_query`` (optional) holds extra images of the query identities in the query cameras
    (Market-1501's ``gt_bbox``: the paper averages the features of one identity-camera pair);
    ``extra_gallery`` (optional) holds additional distractors (Market-1501's 500k set, Figure 4).
    ``info`` records the protocol choices (split, box type, ...) that produced the lists.
    """

    name: str
    root: str
    train: list[Sample]
    query: list[Sample]
    gallery: list[Sample]
    multi_query: list[Sample] | None = None
    extra_gallery: list[Sample] | None = None
    junk_pids: tuple[int, ...] = ()
    distractor_pids: tuple[int, ...] = ()
    info: dict = field(default_factory=dict)
    train_pid_map: dict[int, int] = field(init=False)

    def __post_init__(self):
        self.train, self.train_pid_map = relabel(self.train)

    def _pids(self, samples):
        """Identities of a test list (junk and distractors are none); train labels are all identities."""
        if samples is self.train:
            return unique_pids(samples)
        return unique_pids(samples, excluded=self.junk_pids + self.distractor_pids)

    @property
    def num_train_pids(self) -> int:
        return len(self._pids(self.train))

    @property
    def num_train_imgs(self) -> int:
        return len(self.train)

    @property
    def num_train_cams(self) -> int:
        return len({s.camid for s in self.train})

    @property
    def num_query_pids(self) -> int:
        return len(self._pids(self.query))

    @property
    def num_query_imgs(self) -> int:
        return len(self.query)

    @property
    def num_gallery_pids(self) -> int:
        return len(self._pids(self.gallery))

    @property
    def num_gallery_imgs(self) -> int:
        return len(self.gallery)

    @property
    def num_cams(self) -> int:
        return len({s.camid for s in self.train + self.query + self.gallery})

    def splits(self) -> dict[str, list[Sample]]:
        """Every sample list by name: train, query, gallery, multi_query, extra_gallery (empty when absent)."""
        return {"train": self.train, "query": self.query, "gallery": self.gallery,
                "multi_query": self.multi_query or [], "extra_gallery": self.extra_gallery or []}

    def summary(self) -> str:
        """A torchreid-style table of identities, images and cameras per subset."""
        rows = [("train", self.train), ("query", self.query), ("gallery", self.gallery)]
        if self.multi_query is not None:
            rows.append(("multi-query", self.multi_query))
        if self.extra_gallery is not None:
            rows.append(("extra gallery", self.extra_gallery))
        rule = "  " + "-" * 50
        lines = [f"=> {self.name} ({self.root})", rule,
                 f"  {'subset':<14}| {'# ids':>6} | {'# images':>8} | {'# cameras':>9}", rule]
        for label, samples in rows:
            lines.append(f"  {label:<14}| {len(self._pids(samples)):>6} | {len(samples):>8} | "
                         f"{len({s.camid for s in samples}):>9}")
        lines.append(rule)
        for kind, pids in (("junk", self.junk_pids), ("distractor", self.distractor_pids)):
            for pid in pids:
                count = sum(s.pid == pid for s in self.gallery)
                if count:
                    lines.append(f"  gallery {kind} images (pid {pid}): {count}")
        if self.info:
            lines.append("  " + ", ".join(f"{key}={value}" for key, value in self.info.items()))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"ReIDDataset({self.name!r}, train={self.num_train_pids} ids/{self.num_train_imgs} imgs, "
                f"query={self.num_query_imgs}, gallery={self.num_gallery_imgs})")


def find_data_dir(root: str | Path, candidates: Sequence[str], required: Sequence[str],
                  help_text: str) -> Path:
    """Return the first ``root/candidate`` that holds every path of ``required``.

    ``candidates`` are relative paths tried in order (``"."`` is the root itself), so a user may pass
    the data-set folder or a parent of it (``data/`` or ``data/market1501/``), as in torchreid.
    Raises :class:`DataNotFoundError` naming the folders searched and ``help_text`` (layout, source).
    """
    root = Path(root).expanduser()
    tried = []
    for candidate in candidates:
        folder = root / candidate
        if all((folder / item).exists() for item in required):
            return folder.resolve()
        tried.append(str(folder))
    raise DataNotFoundError(
        f"no data set found under {root}: none of [{listing(tried, limit=len(tried))}] holds "
        f"{', '.join(required)}.\n{help_text}")


def scan_folder(folder: str | Path, parse: Callable[[str], tuple[int, int]], scheme: str) -> list[Sample]:
    """Read every image of ``folder`` (sorted by name) into samples, ``parse(name) -> (pid, camid)``.

    ``parse`` raises ``ValueError`` (with the reason) for a name it does not accept. Known non-data files
    (``Thumbs.db``, ``.DS_Store``, hidden files) are skipped; any other file whose name does not parse,
    and any file that is not an image, is reported in one :class:`FileNameError` (first few listed).
    """
    folder = Path(folder)
    samples, offenders = [], []
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or name.lower() in IGNORED_NAMES:
            continue
        if not name.lower().endswith(IMAGE_SUFFIXES):
            offenders.append(f"{name} (not an image)")
            continue
        try:
            pid, camid = parse(name)
        except ValueError as err:
            offenders.append(f"{name} ({err})")
            continue
        samples.append(Sample(str(folder / name), pid, camid))
    if offenders:
        raise FileNameError(
            f"{len(offenders)} file(s) in {folder} do not follow the naming scheme {scheme}: "
            f"{listing(offenders)}. Rename or remove them; nothing was loaded.")
    return samples


def read_image(path: str | os.PathLike) -> Image.Image:
    """Decode an image fully and return it as RGB; :class:`CorruptImageError` names the path otherwise."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # PIL raises all three for broken files
        raise CorruptImageError(f"cannot read image {path}: {err}") from err


def check_files(dataset: ReIDDataset, decode: bool = False) -> None:
    """Pre-flight check of every split (train, query, gallery, multi_query, extra_gallery): each file exists and
    has an image header PIL reads (pixels are not decoded: about a second per ten thousand images). All offenders
    are reported in one error: :class:`DataNotFoundError` when files are missing, else :class:`CorruptImageError`.
    ``decode``: then decode every image too (:func:`verify_images`)."""
    samples = {}
    for name, split in dataset.splits().items():
        for sample in split:
            samples.setdefault(sample.path, (name, sample))
    missing, broken = [], []
    for path, (split, _) in samples.items():
        try:
            with Image.open(path):
                pass
        except FileNotFoundError:
            missing.append(f"{path} ({split})")
        except (OSError, SyntaxError, ValueError) as err:  # PIL raises all three for broken headers
            broken.append(f"{path} ({split}: {err})")
    if missing or broken:
        parts = [f"{len(missing)} missing: {listing(missing)}"] if missing else []
        parts += [f"{len(broken)} not readable as images: {listing(broken)}"] if broken else []
        error = DataNotFoundError if missing else CorruptImageError
        raise error(f"{len(missing) + len(broken)} of {len(samples)} files of {dataset.name} ({dataset.root}) "
                    f"cannot be used; {'; '.join(parts)}. Replace them from the original archive, or remove them.")
    if decode:
        verify_images([sample for _, sample in samples.values()], desc=f"decoding {dataset.name}")


def verify_images(samples: Iterable[Sample], desc: str = "verifying images") -> None:
    """Decode every image; raise one :class:`CorruptImageError` listing all broken paths."""
    samples = list(samples)
    broken = []
    for sample in tqdm(samples, desc=desc, unit="img", leave=False):
        try:
            read_image(sample.path)
        except CorruptImageError as err:
            broken.append(f"{sample.path} ({err.__cause__})")
    if broken:
        raise CorruptImageError(
            f"{len(broken)} of {len(samples)} images cannot be read: {listing(broken)}. "
            "Replace them from the original archive.")
