"""Where each real data set comes from, the layout its loader expects, and a checked download helper.

Only Market-1501 and DukeMTMC-reID were ever served from a public URL; CUHK01, CUHK03 and MSMT17 are
released on request (a form and a licence). :func:`download` fetches an official archive with ``pooch``
(progress bar, MD5 check, a temporary file moved into place only when the checksum matches) under a short
timeout, and extracts it; when the network or the host is unavailable it fails at once with the manual
instructions (``Source.help``). An archive placed by hand next to the data (``<root>/<folder>/<archive>``) is
verified and extracted without any network access.

MD5 sums are those open-reid (Cysu/open-reid) checks for the same archives.
"""
from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .base import DataNotFoundError, find_data_dir
from ..errors import ConfigError

#: Seconds a host lookup, a connection or a stalled read may take before a download gives up.
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Source:
    """A real data set: where to get it and how its files must be laid out."""

    name: str
    title: str
    homepage: str
    folder: str                    # the folder under a common data root, as torchreid names it
    layout: str                    # the expected tree, relative to <root>
    archive: str | None = None     # official archive file name
    urls: tuple[str, ...] = ()     # direct mirrors, tried in order (empty: on request only)
    md5: str | None = None
    note: str = ""

    def help(self) -> str:
        lines = [f"{self.title}: get it from {self.homepage}" + (f" ({self.note})" if self.note else "")]
        if self.urls:
            lines.append(f"or call snlib.data.download({self.name!r}, root) to fetch and unpack {self.archive}.")
        elif self.archive:
            lines.append(f"Put {self.archive} in <root>/{self.folder}/ and unpack it there.")
        lines.append("Expected layout (root = the folder passed to load_dataset):")
        lines.append(self.layout)
        return "\n".join(lines)


SOURCES: dict[str, Source] = {
    "market1501": Source(
        name="market1501",
        title="Market-1501 (Zheng et al., ICCV 2015)",
        homepage="https://zheng-lab-anu.github.io/Project/project_reid.html",
        folder="market1501",
        archive="Market-1501-v15.09.15.zip",
        urls=("https://drive.google.com/uc?export=download&id=0B8-rUzbwVRk0c054eEozWG9COHM",
              "http://188.138.127.15:81/Datasets/Market-1501-v15.09.15.zip"),
        md5="65005ab7d12ec1c44de4eeafe813e68a",
        note="research use only",
        layout=("  <root>/market1501/Market-1501-v15.09.15/   (or that folder itself as <root>)\n"
                "      bounding_box_train/0002_c1s1_000451_03.jpg   identity_c<camera>s<sequence>_<frame>_<box>\n"
                "      bounding_box_test/   (identity 0000: distractors, -1: junk)\n"
                "      query/\n"
                "      gt_bbox/             optional: hand-drawn boxes, the multi-query images\n"
                "      images/              optional: distractors_500k.zip unpacked (Market-1501+500k)"),
    ),
    "dukemtmc": Source(
        name="dukemtmc",
        title="DukeMTMC-reID (Ristani et al. 2016, Zheng et al. ICCV 2017)",
        homepage="https://github.com/layumi/DukeMTMC-reID_evaluation",
        folder="dukemtmc-reid",
        archive="DukeMTMC-reID.zip",
        urls=("https://drive.google.com/uc?export=download&id=1jjE85dRCMOgRtvJ5RQV9-Afs-2_5dY3O",
              "http://vision.cs.duke.edu/DukeMTMC/data/misc/DukeMTMC-reID.zip"),
        md5="62d8f3c7d6b2c5dc3d8ca6af7515847c",
        note="withdrawn by its authors in 2019; use an existing copy under its original terms",
        layout=("  <root>/dukemtmc-reid/DukeMTMC-reID/   (or that folder itself as <root>)\n"
                "      bounding_box_train/0001_c2_f0046182.jpg   identity_c<camera>_f<frame>\n"
                "      bounding_box_test/\n"
                "      query/"),
    ),
    "cuhk03": Source(
        name="cuhk03",
        title="CUHK03 (Li et al., CVPR 2014)",
        homepage="https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html (on request); "
                 "767/700 split files: https://github.com/zhunzhong07/person-re-ranking/tree/master/evaluation/data/CUHK03",
        folder="cuhk03",
        archive="cuhk03_release.zip",
        md5="728939e58ad9f0ff53e521857dd8fb43",
        note="research use only",
        layout=("  <root>/cuhk03/cuhk03_release/cuhk-03.mat   (MATLAB v7.3: 'labeled', 'detected', 'testsets')\n"
                "  <root>/cuhk03/cuhk03_new_protocol_config_labeled.mat    only for protocol='new' (767/700)\n"
                "  <root>/cuhk03/cuhk03_new_protocol_config_detected.mat\n"
                "  images are extracted on first use to <root>/cuhk03/images_labeled/ and images_detected/"),
    ),
    "cuhk01": Source(
        name="cuhk01",
        title="CUHK01 (Li et al., ACCV 2012)",
        homepage="https://www.ee.cuhk.edu.hk/~xgwang/CUHK_identification.html (on request)",
        folder="cuhk01",
        archive="CUHK01.zip",
        note="research use only",
        layout=("  <root>/cuhk01/campus/0001001.png   identity (4 digits) + image 001-004 (001-002: camera A,\n"
                "                                      003-004: camera B); CUHK01.zip there is unpacked on first use"),
    ),
    "msmt17": Source(
        name="msmt17",
        title="MSMT17 (Wei et al., CVPR 2018)",
        homepage="https://www.pkuvmc.com/dataset.html (on request)",
        folder="msmt17",
        note="research use only",
        layout=("  <root>/msmt17/MSMT17_V1/   (or MSMT17_V2/ with mask_train_v2/, mask_test_v2/)\n"
                "      train/0000/0000_000_01_0303morning_0015_0.jpg   identity_index_camera_...\n"
                "      test/\n"
                "      list_train.txt list_val.txt list_query.txt list_gallery.txt   ('<path> <identity>' lines)"),
    ),
    "market1501_500k": Source(
        name="market1501_500k",
        title="Market-1501+500k distractors",
        homepage="https://zheng-lab-anu.github.io/Project/project_reid.html",
        folder="market1501",
        archive="distractors_500k.zip",
        note="about 1 GB; no published checksum, so not fetched automatically",
        layout="  <Market-1501 folder>/images/   (distractors_500k.zip unpacked next to bounding_box_test/)",
    ),
}


def md5sum(path: str | Path) -> str:
    import pooch

    return pooch.file_hash(str(path), alg="md5")


def _resolve(url: str, timeout: float) -> None:
    """Look the host up within ``timeout`` (the timeout of a request bounds connecting and reading, not a stalled
    DNS lookup)."""
    parsed = urllib.parse.urlsplit(url)
    if not parsed.hostname:
        return
    def look_up():
        with contextlib.suppress(OSError):  # a failed lookup is reported by the download itself
            socket.getaddrinfo(parsed.hostname, parsed.port or 80)

    lookup = threading.Thread(target=look_up, daemon=True)
    lookup.start()
    lookup.join(timeout)
    if lookup.is_alive():  # a daemon thread: a resolver that never answers cannot keep the process alive
        raise TimeoutError(f"looking up {parsed.hostname} took more than {timeout:g} s")


def _copy_local(url: str, output_file, _pooch=None) -> None:
    """A pooch downloader for ``file://`` URLs (an archive on a local or mounted disk)."""
    shutil.copyfile(urllib.request.url2pathname(urllib.parse.urlsplit(url).path), output_file)


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``target`` with pooch, checked against ``md5``: a broken transfer or a file with another
    checksum leaves nothing (``ValueError`` on a checksum mismatch, ``OSError`` on a network failure)."""
    import pooch

    _resolve(url, timeout)
    downloader = _copy_local if url.startswith("file:") else pooch.HTTPDownloader(progressbar=True, timeout=timeout)
    pooch.retrieve(url, known_hash=f"md5:{md5}", fname=target.name, path=target.parent, downloader=downloader)


def extract_zip(archive: Path, dest: Path) -> None:
    """Unpack ``archive`` into ``dest`` with progress; members land only once all of them are out."""
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".extract-"))
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in tqdm(zf.infolist(), desc=f"extracting {archive.name}", unit="file"):
                zf.extract(member, staging)
        for entry in staging.iterdir():
            target = dest / entry.name
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
            entry.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download(name: str, root: str | Path, timeout: float = DEFAULT_TIMEOUT) -> Path:
    """Fetch, verify (MD5) and unpack the official archive of ``name`` into ``<root>/<folder>/``.

    Returns that folder, ready for ``load_dataset(name, root)``. An archive already there with the right
    checksum is used as is. Raises :class:`DataNotFoundError` (with the manual instructions) when the
    data set has no public URL, or when every mirror fails or serves a file with another checksum.
    """
    if name not in SOURCES:
        raise ConfigError(f"unknown data set {name!r}; known: {sorted(SOURCES)}")
    source = SOURCES[name]
    dest = Path(root).expanduser() / source.folder
    if source.archive is None or source.md5 is None:
        raise DataNotFoundError(f"{source.title} cannot be downloaded automatically.\n{source.help()}")
    archive = dest / source.archive
    errors = []
    verified = archive.is_file() and md5sum(archive) == source.md5
    if archive.is_file() and not verified:
        errors.append(f"{archive} present but its MD5 is not {source.md5}")
    if not verified:
        dest.mkdir(parents=True, exist_ok=True)
        for url in source.urls:
            try:
                _fetch(url, archive, source.md5, timeout)
                break
            except OSError as err:  # requests' errors, timeouts, refused connections are all OSError
                errors.append(f"{url}: {err}")
            except ValueError:  # pooch: the checksum does not match (the file is not kept)
                errors.append(f"{url}: served a file whose MD5 is not {source.md5} (an HTML page?)")
        else:
            raise DataNotFoundError(
                f"could not download {source.title}:\n  " + "\n  ".join(errors) + "\n" + source.help())
    extract_zip(archive, dest)
    return dest


def find_or_unpack(root: str | Path, source: Source, candidates, required) -> Path:
    """:func:`~snlib.data.base.find_data_dir`, unpacking the official archive first when only it is there.

    The archive is looked for in ``<root>`` and ``<root>/<source.folder>`` and unpacked next to itself.
    """
    try:
        return find_data_dir(root, candidates, required, source.help())
    except DataNotFoundError:
        root = Path(root).expanduser()
        archives = [folder / source.archive for folder in (root, root / source.folder)
                    if source.archive and (folder / source.archive).is_file()]
        if not archives:
            raise
    extract_zip(archives[0], archives[0].parent)
    return find_data_dir(root, candidates, required, source.help())
