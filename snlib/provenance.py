"""Where a run record came from (``snlib.records``; its ``provenance`` field): the code, the packages and the machine.

Training is deterministic on one machine, not across machines (README, "What drifts"), so a record keeps what a
rerun must match: the git commit of the snlib checkout that wrote it and whether tracked files differed from that
commit (``dirty``), or, where snlib runs from no git checkout (an installed wheel; git absent, failing or slow),
only the package version and why there is no commit; the versions of python and of the packages that decide the
numbers; the processor (``platform.machine`` / ``processor``, and the instruction set torch's CPU kernels use).
Git is asked once per record, with a timeout: a run never fails or waits on it.
"""
from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

from . import __version__, settings

#: The packages whose version a record keeps (None where one is not installed).
PACKAGES = ("torch", "torchvision", "timm", "numpy")
#: Seconds the git call may take before the commit is given up.
GIT_TIMEOUT_S = 10.0


def provenance() -> dict:
    """This process's provenance, as a record stores it: ``snlib`` (the package version), ``commit`` (full hash,
    None without a git checkout), ``dirty`` (tracked files changed since it; None without a checkout),
    ``source`` (``"git checkout"``, else why there is no commit), ``python``, one key per :data:`PACKAGES`,
    ``machine``, ``processor`` (None where the platform names none) and ``cpu_capability`` (the instruction set
    torch dispatches its CPU kernels to, e.g. ``AVX2``)."""
    import torch

    return {"snlib": __version__, **code_source(settings.REPO_ROOT), "python": platform.python_version(),
            **{name: package_version(name) for name in PACKAGES}, "machine": platform.machine(),
            "processor": platform.processor() or None, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def code_source(root: Path | None) -> dict:
    """``commit``, ``dirty`` and ``source`` of the snlib source folder ``root`` (``settings.REPO_ROOT``; None: snlib
    is an installed package). Only a ``root`` that is itself a git checkout's top folder is asked, so a package
    installed inside some other repository (a virtual environment in a clone) never takes that repository's
    commit. ``dirty``: ``git status`` lists a tracked file changed, staged or not (untracked files do not count)."""
    unknown = {"commit": None, "dirty": None}
    if root is None:
        return {**unknown, "source": "installed package (no git checkout): the snlib version only"}
    if not (root / ".git").exists():
        return {**unknown, "source": "the source folder is not a git checkout: the snlib version only"}
    command = ["git", "-C", str(root), "--no-optional-locks", "status", "--porcelain=v2", "--branch",
               "--untracked-files=no"]
    try:
        done = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace",
                              timeout=GIT_TIMEOUT_S, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return {**unknown, "source": f"git failed (no answer in {GIT_TIMEOUT_S:g} s): the snlib version only"}
    except OSError as err:   # no git program
        return {**unknown, "source": f"git failed ({type(err).__name__}: {err.strerror}): the snlib version only"}
    lines = done.stdout.splitlines()
    commit = next((line.split()[2] for line in lines if line.startswith("# branch.oid ")), "(initial)")
    if done.returncode != 0 or commit == "(initial)":   # not git's message: it may name machine paths
        reason = f"exit status {done.returncode}" if done.returncode else "no commit yet"
        return {**unknown, "source": f"git failed ({reason}): the snlib version only"}
    return {"commit": commit, "dirty": any(not line.startswith("#") for line in lines), "source": "git checkout"}


def package_version(name: str) -> str | None:
    """The installed version of distribution ``name`` (``importlib.metadata``), None where it is not installed."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def describe(record_provenance: dict) -> list[str]:
    """The lines ``snlib runs <hash>`` prints for a record's provenance."""
    p = record_provenance
    if p.get("commit"):
        code = f"commit {p['commit']}" + (" (with uncommitted changes to tracked files)" if p.get("dirty") else "")
    else:
        code = p.get("source") or "no commit"
    packages = ", ".join(f"{name} {p.get(name) or 'absent'}" for name in ("python", *PACKAGES))
    cpu = " / ".join(str(p[key]) for key in ("machine", "processor", "cpu_capability") if p.get(key))
    return [f"  code: snlib {p.get('snlib')}, {code}", f"  packages: {packages}", f"  processor: {cpu or 'unknown'}"]
