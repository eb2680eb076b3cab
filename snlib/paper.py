"""The paper's published numbers, so reproduced tables can stand beside them.

The transcribed tables ship as package data in ``snlib/published/*.csv`` (``results/paper`` links there), so
``published("table1")`` works from an installed wheel as from a clone.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parent / "published"

TABLES = {
    "table1": "table1_market1501.csv",
    "figure4": "figure4_distractors.csv",
    "context": "context_resnet50.csv",
}


def published(table: str) -> pd.DataFrame:
    """Return one of the transcribed tables: ``"table1"``, ``"figure4"`` or ``"context"`` (percentages)."""
    if table not in TABLES:
        raise KeyError(f"unknown published table {table!r}; known: {sorted(TABLES)}")
    path = PAPER_DIR / TABLES[table]
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the published numbers ship inside the snlib package "
                                "(snlib/published/); reinstall snlib")
    return pd.read_csv(path)
