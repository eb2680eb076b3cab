"""Settings: the one place that reads snlib's environment variables and knows the repository's folders.

Environment variables (each optional):

    SNLIB_CACHE   run cache root                        (default: <repository>/results/cache)
    SNLIB_BATCH   "1" in batch runs (papermill): no interactive widgets
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

CACHE_ENV = "SNLIB_CACHE"
BATCH_ENV = "SNLIB_BATCH"

#: The repository (an editable install or a source checkout); ``None`` when snlib is installed as a package.
_SOURCE_ROOT = Path(__file__).resolve().parents[1]
REPO_ROOT: Path | None = _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else None


def repo_root() -> Path:
    """The repository root, else the current folder (snlib installed as a package)."""
    return REPO_ROOT if REPO_ROOT is not None else Path.cwd()




def results_dir() -> Path:
    """``<repository>/results``: published tables, figures and run records."""
    return repo_root() / "results"


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def cache_root() -> Path:
    """The run cache: ``$SNLIB_CACHE``, else ``<repository>/results/cache``."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else results_dir() / "cache"




def batch_mode() -> bool:
    """True inside a batch run (``snlib reproduce``): interactive widgets are not built."""
    return os.environ.get(BATCH_ENV) == "1"


@contextlib.contextmanager
def batch_run() -> Iterator[None]:
    """Mark the process and the kernels it starts as a batch run for the duration of the block."""
    previous = os.environ.get(BATCH_ENV)
    os.environ[BATCH_ENV] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(BATCH_ENV, None)
        else:
            os.environ[BATCH_ENV] = previous










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
