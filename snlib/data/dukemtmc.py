"""DukeMTMC-reID: the Market-1501 layout with its own file names (``0001_c2_f0046182.jpg``), 8 cameras.

No junk or distractor identity by name: the 408 distractor identities appear in the gallery only.
"""
from __future__ import annotations

import re
from pathlib import Path

from .base import ReIDDataset
from .sources import SOURCES
from .market1501 import MarketLayout, load_market_layout

DUKEMTMC = MarketLayout(
    name="dukemtmc",
    pattern=re.compile(r"^(\d{4})_c(\d)_f(\d+)\.jpg$"),
    scheme="0001_c2_f0046182.jpg (identity, camera 1-8, frame)",
    num_cams=8,
    candidates=(".", "DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", "dukemtmc-reid", "dukemtmc/DukeMTMC-reID"),
    help_text=SOURCES["dukemtmc"].help(),
)


def load_dukemtmc(root: str | Path) -> ReIDDataset:
    """DukeMTMC-reID: 702 train identities, 702 test identities plus 408 gallery-only distractor identities."""
    return load_market_layout(DUKEMTMC, root, multi_query=False)
