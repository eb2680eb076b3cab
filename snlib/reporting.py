"""Writing results: tables as CSV + Markdown, figures as PNG, the run manifest (provenance), the list of networks
retrained beside their records (``RETRAINED_FILE``) and README's generated sections (``update_includes``)."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd

from . import settings
from .settings import atomic_write, repo_root

#: Packages whose versions go into every manifest.
TRACKED_PACKAGES = (
    "snlib", "torch", "torchvision", "timm", "numpy", "scikit-learn", "pandas", "matplotlib",
    "seaborn", "papermill", "nbval",
)

#: Where a study keeps the comparison of the networks it retrained with their records (``Study.compare_with_record``;
#: ``snlib reproduce`` copies it into the manifest).
RETRAINED_FILE = "retrained_runs.json"


def _column_formats(df: pd.DataFrame, floatfmt: str) -> tuple[str, ...]:
    """``floatfmt`` per column, except ``"g"`` where it would print a non-zero value as zero (lambda = 1e-4)."""
    def hides_a_value(column: pd.Series) -> bool:
        return column.dtype.kind == "f" and any(v != 0 and float(format(v, floatfmt)) == 0 for v in column.dropna())
    return tuple("g" if hides_a_value(df[c]) else floatfmt for c in df.columns)


def _escape_pipes(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``|`` escaped in column names and text cells (a bare ``|`` ends a Markdown table cell)."""
    def escape(value):
        return value.replace("|", "\\|") if isinstance(value, str) else value
    escaped = df.rename(columns=escape)
    for column in escaped.columns[[df[c].dtype.kind == "O" for c in df.columns]]:  # text, categories
        escaped[column] = escaped[column].map(escape)
    return escaped


def save_table(df: pd.DataFrame, out_dir: str | Path, name: str, floatfmt: str = ".2f") -> Path:
    """Write ``df`` as ``<out_dir>/<name>.csv`` (exact) and ``<out_dir>/<name>.md`` (``floatfmt``, or ``"g"`` in
    a column where it would print a non-zero value as zero; ``|`` in a name or a text cell escaped as ``\\|``);
    return the CSV path."""
    out = Path(out_dir)
    atomic_write(out / f"{name}.csv", df.to_csv(index=False))
    markdown = _escape_pipes(df).to_markdown(index=False, floatfmt=_column_formats(df, floatfmt))
    atomic_write(out / f"{name}.md", markdown + "\n")
    return out / f"{name}.csv"


def save_figure(fig, out_dir: str | Path, name: str, dpi: int = 120) -> Path:
    """Write a matplotlib figure as ``<out_dir>/<name>.png`` (atomically)."""
    return atomic_write(Path(out_dir) / f"{name}.png", lambda fh: fig.savefig(fh, format="png", dpi=dpi,
                                                                                bbox_inches="tight"))


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit(repo: str | Path | None = None) -> str:
    """The current commit (with ``+dirty`` when tracked files outside ``results/`` have uncommitted changes: the
    outputs a run writes do not make the code dirty), or ``"unknown"``."""
    repo = Path(repo or repo_root())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                ":(exclude)results"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def environment_info() -> dict:
    """Machine and software facts recorded next to every result."""
    import torch

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "packages": package_versions(),
        "git_commit": git_commit(),
    }


def write_manifest(out_dir: str | Path, manifest: dict, environment: dict | None = None) -> Path:
    """Write ``manifest.json`` (merged with the environment facts: ``environment``, else taken now) atomically;
    return its path."""
    path = Path(out_dir) / "manifest.json"
    payload = {**manifest, "environment": environment or environment_info()}
    atomic_write(path, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
    return path


#: A generated section of a Markdown file: the text between these markers is the named file's content.
INCLUDE_START = re.compile(r"^<!-- include: (?P<path>\S+) -->\n", re.MULTILINE)
INCLUDE_END = "<!-- end include -->"


def update_includes(markdown_path: str | Path, under: str | Path | None = None) -> list[str]:
    """Rewrite every ``<!-- include: PATH -->`` ... ``<!-- end include -->`` section of ``markdown_path`` with the
    content of PATH (relative to the repository), e.g. README's verdict tables from ``claims.md``; with ``under``
    only those whose PATH lies in that folder. Returns the rewritten paths. Never typed by hand: ``snlib readme``
    (and ``snlib reproduce``, for its output folder) regenerate them."""
    path = Path(markdown_path)
    text = path.read_text()
    out, included, position = [], [], 0
    for match in INCLUDE_START.finditer(text):
        end = text.find(INCLUDE_END, match.end())
        if end < 0:
            raise ValueError(f"{path}: '{match.group(0).strip()}' has no '{INCLUDE_END}' after it")
        source = settings.repo_path(match["path"])
        if under is not None and not source.resolve().is_relative_to(Path(under).resolve()):
            continue
        body = source.read_text() if source.is_file() else f"*({match['path']} is not there yet: run the study)*\n"
        out += [text[position:match.end()], body if body.endswith("\n") else body + "\n"]
        included.append(match["path"])
        position = end
    out.append(text[position:])
    new = "".join(out)
    if new != text:
        atomic_write(path, new)
    return included
