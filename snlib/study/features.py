"""Test features as a study keeps them: the ``{"query": ..., "gallery": ..., "multi_query": ...}`` dict of
:meth:`~snlib.study.study.Study.features` (each entry ``(features, pids, camids)``), and the file digests that let a
feature extracted once serve every copy of the same image."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from ..data import Sample


def query_gallery(features: dict) -> tuple:
    """``(qf, gf, q_pids, g_pids, q_camids, g_camids)`` of a :meth:`Study.features` dict, in the order
    :func:`snlib.evaluation.evaluate_features` takes them."""
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = features["query"], features["gallery"]
    return qf, gf, q_pids, g_pids, q_camids, g_camids


def paths_digest(samples: Sequence[Sample]) -> str:
    """sha256 of the samples' paths in order: a stored feature file belongs to exactly this list."""
    return hashlib.sha256("\n".join(s.path for s in samples).encode()).hexdigest()


def file_digests(samples: Sequence[Sample]) -> list[str]:
    """sha1 of each sample's file (identical bytes, identical image)."""
    return [hashlib.sha1(Path(s.path).read_bytes()).hexdigest() for s in samples]
