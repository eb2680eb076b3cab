"""Market-1501, and the loader for any data set published in its folder layout (DukeMTMC-reID, synthetic).

Market-1501 protocol (the data set's own evaluation code), as loaded here:
    * train: ``bounding_box_train``; junk (-1) and distractor (0) images, if any, are not identities
      and are left out (the official folder holds none);
    * query: ``query`` (one hand-drawn box per identity and camera);
    * gallery: all of ``bounding_box_test``, **including** distractors (identity 0, which stay in the
      ranking and match nothing) and junk (identity -1, which the evaluator removes from the ranking,
      so keeping them changes no number). ``keep_junk=False`` drops the junk at load (torchreid's
      15,913-image gallery);
    * multi-query: the ``gt_bbox`` images whose identity and camera are those of a query (the official
      multi-query setting averages their features); ``None`` when ``gt_bbox`` is absent;
    * extra gallery: the 500k distractor images (``images/`` or ``distractors_500k/``) when asked for.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .base import DataNotFoundError, FileNameError, ReIDDataset, Sample, find_data_dir, listing, scan_folder
from .sources import SOURCES

SPLIT_FOLDERS = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
MULTI_QUERY_FOLDER = "gt_bbox"
EXTRA_GALLERY_FOLDERS = ("images", "distractors_500k")


@dataclass(frozen=True)
class MarketLayout:
    """A data set in the Market-1501 layout: its file-name scheme, cameras and where it may sit."""

    name: str
    pattern: re.Pattern       # groups: identity, camera (1-based)
    scheme: str               # the scheme in words, for error messages
    num_cams: int
    candidates: tuple[str, ...]  # relative folders tried under the user's root
    help_text: str
    junk_pids: tuple[int, ...] = ()
    distractor_pids: tuple[int, ...] = ()

    def parse(self, filename: str) -> tuple[int, int]:
        """``(pid, camid)`` of a file name, camid 0-based; ``ValueError`` says why a name is refused."""
        match = self.pattern.match(filename)
        if match is None:
            raise ValueError("does not match")
        pid, cam = int(match.group(1)), int(match.group(2))
        if not 1 <= cam <= self.num_cams:
            raise ValueError(f"camera {cam} outside 1..{self.num_cams}")
        return pid, cam - 1


MARKET1501 = MarketLayout(
    name="market1501",
    pattern=re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$"),
    scheme="0002_c1s1_000451_03.jpg (identity or -1, camera 1-6, sequence, frame, box)",
    num_cams=6,
    candidates=(".", "Market-1501-v15.09.15", "market1501/Market-1501-v15.09.15", "market1501",
                "Market-1501"),
    help_text=SOURCES["market1501"].help(),
    junk_pids=(-1,),
    distractor_pids=(0,),
)

def _extra_gallery(layout: MarketLayout, data_dir: Path, extra: bool | str | Path) -> list[Sample]:
    """The 500k distractors: every image must carry a junk or distractor identity."""
    if extra is True:
        folders = [base / name for base in (data_dir, data_dir.parent) for name in EXTRA_GALLERY_FOLDERS]
        found = [f for f in folders if f.is_dir()]
        if not found:
            raise DataNotFoundError(
                f"distractors_500k=True but none of [{listing([str(f) for f in folders], limit=4)}] exists.\n"
                + SOURCES["market1501_500k"].help())
        folder = found[0]
    else:
        folder = Path(extra)
        if not folder.is_dir():
            raise DataNotFoundError(f"extra gallery folder {folder} does not exist.\n"
                                    + SOURCES["market1501_500k"].help())
    samples = scan_folder(folder, layout.parse, layout.scheme)
    allowed = set(layout.junk_pids + layout.distractor_pids)
    labelled = [Path(s.path).name for s in samples if s.pid not in allowed]
    if labelled:
        raise FileNameError(f"{len(labelled)} images of the extra gallery {folder} carry a real identity "
                         f"(only {sorted(allowed)} are allowed for distractors): {listing(labelled)}")
    return samples


def load_market_layout(layout: MarketLayout, root: str | Path, keep_junk: bool = True,
                       multi_query: bool = True, distractors_500k: bool | str | Path = False,
                       info: dict | None = None) -> ReIDDataset:
    """Read a data set in the Market-1501 layout (see the module docstring for what each list holds)."""
    data_dir = find_data_dir(root, layout.candidates, tuple(SPLIT_FOLDERS.values()), layout.help_text)
    split = {key: scan_folder(data_dir / folder, layout.parse, layout.scheme)
             for key, folder in SPLIT_FOLDERS.items()}
    not_identities = set(layout.junk_pids + layout.distractor_pids)
    train = [s for s in split["train"] if s.pid not in not_identities]
    query = [s for s in split["query"] if s.pid not in not_identities]
    gallery = [s for s in split["gallery"] if keep_junk or s.pid not in layout.junk_pids]
    info = dict(info or {})
    for key, kept, all_ in (("train", train, split["train"]), ("query", query, split["query"])):
        if len(kept) != len(all_):
            info[f"{key}_images_without_identity_left_out"] = len(all_) - len(kept)

    mq_samples = None
    if multi_query and (data_dir / MULTI_QUERY_FOLDER).is_dir():
        query_keys = {(s.pid, s.camid) for s in query}
        mq_samples = [s for s in scan_folder(data_dir / MULTI_QUERY_FOLDER, layout.parse, layout.scheme)
                      if (s.pid, s.camid) in query_keys]
    extra = _extra_gallery(layout, data_dir, distractors_500k) if distractors_500k else None
    return ReIDDataset(name=layout.name, root=str(data_dir), train=train, query=query, gallery=gallery,
                       multi_query=mq_samples, extra_gallery=extra, junk_pids=layout.junk_pids,
                       distractor_pids=layout.distractor_pids, info=info)


def load_market1501(root: str | Path, keep_junk: bool = True, multi_query: bool = True,
                    distractors_500k: bool | str | Path = False) -> ReIDDataset:
    """Market-1501 (or any folder in its layout and naming, e.g. ``shared/data/cuhk03p1``).

    ``distractors_500k``: ``True`` to add the 500k distractor set found next to the data (``images/``),
    or a folder path. ``keep_junk``: keep identity -1 in the gallery (default; the evaluator ignores it).
    """
    return load_market_layout(MARKET1501, root, keep_junk=keep_junk, multi_query=multi_query,
                              distractors_500k=distractors_500k)
