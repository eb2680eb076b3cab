"""The paper's published numbers (``results/paper/*.csv``), so reproduced tables can stand beside them."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_DIR = Path(__file__).resolve().parents[1] / "results" / "paper"

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
        raise FileNotFoundError(
            f"{path} is missing: the published numbers ship in the repository's results/paper/ folder; "
            "run from a clone of the repository (pip install -e .)"
        )
    return pd.read_csv(path)
