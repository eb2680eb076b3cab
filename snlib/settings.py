"""Settings: the one place that reads snlib's environment variables and knows the repository's folders.

Environment variables (each optional):

    SNLIB_CACHE   run cache root                        (default: <repository>/results/cache)
    SNLIB_RECORDS run records root: <root>/<preset>/      (default: <repository>/results/runs)
    SNLIB_PRESET  the notebooks' default preset           (default: cpu; nbval runs set smoke)
    SNLIB_BATCH   "1" in batch runs (papermill): no interactive widgets
    SNLIB_DEBUG   "1": command-line errors show their traceback

Path rule (one for every entry point): a path given by the user (command line, notebook parameter) is read
relative to the current folder, as any program reads it; a path written in snlib (a preset's data root,
``data/...``) is relative to the repository. Run hashes store paths inside the repository relative to it, so
the same command gets the same hash from any folder and on any machine (``portable_path``).
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "SNLIB_CACHE"
RECORDS_ENV = "SNLIB_RECORDS"
PRESET_ENV = "SNLIB_PRESET"
BATCH_ENV = "SNLIB_BATCH"
DEBUG_ENV = "SNLIB_DEBUG"

#: The repository (an editable install or a source checkout); ``None`` when snlib is installed as a package.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT: Path | None = _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else None


def repo_root() -> Path:
    """The repository root, else the current folder (snlib installed as a package)."""
    return REPO_ROOT if REPO_ROOT is not None else Path.cwd()


def data_dir() -> Path:
    """``<repository>/data``: where generated data sets live."""
    return repo_root() / "data"


def results_dir() -> Path:
    """``<repository>/results``: published tables, figures and run records."""
    return repo_root() / "results"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def cache_root() -> Path:
    """The run cache: ``$SNLIB_CACHE``, else ``<repository>/results/cache``."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else results_dir() / "cache"


def records_root() -> Path:
    """The root of the run records (``snlib.records.records_dir``: ``<root>/<preset>/``): ``$SNLIB_RECORDS``, else
    ``<repository>/results/runs`` (the published ones)."""
    value = os.environ.get(RECORDS_ENV)
    return Path(value).expanduser() if value else results_dir() / "runs"


def default_preset(preset: str | None = None) -> str:
    """``preset`` when given, else the notebooks' default: ``$SNLIB_PRESET`` (nbval sets ``smoke``), else ``cpu``."""
    return preset or os.environ.get(PRESET_ENV) or "cpu"


#: Batch runs: the lines a kernel prints with this prefix (training progress) are relayed to the console.
BATCH_LINE_PREFIX = "[snlib] "


def batch_mode() -> bool:
    """True inside a batch run (``snlib reproduce``): interactive widgets are not built."""
    return os.environ.get(BATCH_ENV) == "1"


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` for the block (the kernels started inside inherit it); restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def batch_run() -> contextlib.AbstractContextManager[None]:
    """Mark the process and the kernels it starts as a batch run for the duration of the block."""
    return _environment(BATCH_ENV, "1")


def using_cache_root(path: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """Make ``path`` (a user path) the run cache (``cache_root()``) of the process and the kernels it starts, for
    the duration of the block."""
    return _environment(CACHE_ENV, str(user_path(path)))


def using_records_root(path: str | os.PathLike) -> contextlib.AbstractContextManager[None]:
    """Make ``path`` (a user path) the records root (``records_root()``) of the process and the kernels it starts,
    for the duration of the block."""
    return _environment(RECORDS_ENV, str(user_path(path)))


def debug() -> bool:
    """True when ``SNLIB_DEBUG=1``: expected command-line errors show their traceback too."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def user_path(path: str | os.PathLike) -> Path:
    """A path the user gave: ``~`` expanded, relative to the current folder, made absolute."""
    return Path(path).expanduser().resolve()


def repo_path(path: str | os.PathLike) -> Path:
    """A path written in snlib (e.g. a preset's ``data/synthetic-...``): relative to the repository."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (repo_root() / path).resolve()


def portable_path(path: str | os.PathLike) -> str:
    """``path`` relative to the repository when it lies inside it or beside it (``data/...``,
    ``../shared/data/...``; POSIX form), else absolute: what run hashes, manifests and committed records store,
    so that they depend neither on the machine nor on the working folder; a link beside the repository
    (``../shared`` -> elsewhere) keeps its name. ``repo_path`` reads it back."""
    given = Path(path).expanduser()
    # lexically first (``../shared`` may be a link to elsewhere: it still reads ``../shared``), then resolved
    for absolute, root in ((Path(os.path.abspath(given)), Path(os.path.abspath(repo_root()))),
                           (given.resolve(), repo_root().resolve())):
        for base, prefix in ((root, ""), (root.parent, "../")):
            try:
                return prefix + absolute.relative_to(base).as_posix()
            except ValueError:
                continue
    return str(given.resolve())


def portable_text(text: str) -> str:
    """``text`` (a notebook output, a record) with each absolute path inside or beside the repository written as
    ``portable_path`` writes it: ``<repository>/results/x`` -> ``results/x``, ``<repository>`` -> ``.``,
    ``<parent>/shared/x`` -> ``../shared/x``. Other paths and URLs (``file:///...``) are left as they are."""
    root = repo_root().resolve()
    rules = [(re.escape(str(root)) + r"/(?=[\w.-])", ""), (re.escape(str(root)) + r"(?![\w.-])", ".")]
    if root.parent != root.parent.parent:  # a repository at /name: other absolute paths stay absolute
        rules.append((re.escape(str(root.parent)) + r"/(?=[\w.-])", "../"))
    for pattern, replacement in rules:
        text = re.sub(r"(?<![\w.~/+:-])" + pattern, replacement, text)
    return text


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[BinaryIO], object]) -> Path:
    """Write ``data`` (text, bytes, or a function writing to a binary file, e.g. ``lambda f: torch.save(obj, f)``)
    to ``path`` through a temporary file of the same folder and ``os.replace``: a crash never leaves a
    half-written file. The file is made readable by others (0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
