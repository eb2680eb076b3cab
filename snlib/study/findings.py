"""What a study found, in a few lines: the regime it was measured in and its verdicts, generated from its claims
(``findings.md`` beside ``claims.md``; README's first section includes it, never typed by hand).

The verdicts are listed by outcome on mAP (the claims with another metric, e.g. convergence in iterations, on
theirs); where the rank-1 verdict of a claim differs, it is given in brackets.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import settings

OUTCOMES = ("supported", "refuted", "unresolved")


def regime(study) -> str:
    """The regime of ``study``'s final runs: backbone and weights, trained part, input, batch, budget (and, with a
    pilot, the recipes that had not plateaued within it), seeds."""
    config, protocol = study.config("sn"), study.protocol
    trained = f"trunk frozen before `{config.train_from}`" if config.train_from else "end to end"
    weights = "ImageNet weights" if config.pretrained else "random initialisation"
    budget = f"{protocol.iterations} iterations"
    if study.pilot is not None and len(study.pilot):
        rising = list(study.pilot.loc[~study.pilot["plateaued"].astype(bool), "loss"])
        budget += (" (the pilot's choice: every recipe plateaued)" if not rising else
                   f" (the pilot's length; not plateaued within it: {', '.join(rising)})")
    return (f"`{config.model}` ({weights}), {trained}, {config.height}x{config.width}, P x K = {config.p} x {config.k}, "
            f"{budget}, {len(protocol.seeds)} seeds")


def verdict_lines(claims: pd.DataFrame) -> list[str]:
    """One line per outcome that occurs: ``**supported**: claim, claim (rank-1: refuted), ...``."""
    main = claims[claims["metric"] != "rank1"]
    rank1 = claims[claims["metric"] == "rank1"].set_index("claim")["verdict"]
    lines = []
    for outcome in OUTCOMES:
        names = []
        for claim in main.loc[main["verdict"] == outcome, "claim"].drop_duplicates():
            other = rank1.get(claim)
            names.append(claim if other is None or other == outcome else f"{claim} (rank-1: {other})")
        if names:
            lines.append(f"**{outcome}**: " + "; ".join(names))
    return lines


def findings_markdown(claims: pd.DataFrame, title: str, regime_text: str) -> str:
    """The study's findings: a title line with its regime, then :func:`verdict_lines`."""
    counts = claims[claims["metric"] != "rank1"]["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
    return "\n".join([f"**{title}** ({regime_text}): {summary}.", "", *(f"- {line}" for line in
                                                                         verdict_lines(claims))]) + "\n"


def save_findings(claims: pd.DataFrame, study, title: str | None = None) -> Path:
    """``findings.md`` of ``study`` (its output folder) from its ``claims`` table; the title names the output
    folder (the data set's folder name: ``cuhk03p1``, ``synthetic``) and the preset."""
    text = findings_markdown(claims, title or f"{Path(study.output_dir).name}, `{study.preset}` preset", regime(study))
    return settings.atomic_write(Path(study.output_dir) / "findings.md", text)
