"""What a study found, in a few lines: the regime it was measured in and its verdicts, generated from its claims
(``findings.md`` beside ``claims.md``; README's first section includes it, never typed by hand).

The supported and refuted claims are named, by their outcome on mAP (the claims with another metric, e.g.
convergence in iterations, on theirs); where the rank-1 verdict of a claim differs, it is given in brackets, and a
claim unresolved on mAP but decided on rank-1 is named under its rank-1 outcome ("rank-1 only"). The claims
unresolved on every metric are counted, not named (the claims table lists them), so that the README's first screen
carries what was shown.

Across studies (:func:`claims_by_study`): each claim's delta, interval and verdict in every study of a preset's
results folder side by side, so that where real images and the synthetic set agree or differ is read from code,
each column holding for its own study's regime only; the same for any table of claims' columns (``SIDE_BY_SIDE``:
``claims.csv`` and notebook 13's ``later_losses.csv``).
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .. import settings
from ..reporting import save_table

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


def verdict_lines(claims: pd.DataFrame, listed_in: str = "claims.md") -> list[str]:
    """``**supported**: claim; claim (rank-1: refuted); claim (rank-1 only)``, the same for refuted (each where it
    occurs), then ``**unresolved** on every metric: n claim(s) (`listed_in`)``."""
    main = claims[claims["metric"] != "rank1"].drop_duplicates("claim").set_index("claim")["verdict"]
    rank1 = claims[claims["metric"] == "rank1"].drop_duplicates("claim").set_index("claim")["verdict"]
    lines = []
    for outcome in OUTCOMES[:2]:
        names = []
        for claim, verdict in main.items():
            other = rank1.get(claim)
            if verdict == outcome:
                names.append(claim if other is None or other == outcome else f"{claim} (rank-1: {other})")
            elif verdict == "unresolved" and other == outcome:
                names.append(f"{claim} (rank-1 only)")
        if names:
            lines.append(f"**{outcome}**: " + "; ".join(names))
    rest = [c for c, v in main.items() if v == "unresolved" and rank1.get(c) in (None, "unresolved")]
    if rest:
        lines.append(f"**unresolved** on every metric: {len(rest)} claim{'s' if len(rest) > 1 else ''} "
                     f"(`{listed_in}`)")
    return lines


def findings_markdown(claims: pd.DataFrame, title: str, regime_text: str, listed_in: str = "claims.md") -> str:
    """The study's findings: a title line with its regime and the count of each outcome (on mAP), then
    :func:`verdict_lines`."""
    counts = claims[claims["metric"] != "rank1"].drop_duplicates("claim")["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(o, 0)} {o}" for o in OUTCOMES)
    return "\n".join([f"**{title}** ({regime_text}): {summary}.", "",
                      *(f"- {line}" for line in verdict_lines(claims, listed_in))]) + "\n"


def save_findings(claims: pd.DataFrame, study, title: str | None = None) -> Path:
    """``findings.md`` of ``study`` (its output folder) from its ``claims`` table; the title names the output
    folder (the data set's folder name: ``cuhk03p1``, ``synthetic``) and the preset."""
    text = findings_markdown(claims, title or f"{Path(study.output_dir).name}, `{study.preset}` preset", regime(study))
    return settings.atomic_write(Path(study.output_dir) / "findings.md", text)


#: The tables of claims compared across studies (:func:`save_claims_by_study` writes ``T_by_study`` of each ``T``):
#: ``claims.csv`` (notebook 12) and ``later_losses.csv`` (notebook 13).
SIDE_BY_SIDE = ("claims", "later_losses")
#: How a later loss's claim against the study's strongest baseline of the paper's time names it:
#: ``"circle beats triplet (STRONGEST)"`` (``snlib.study.later``); studies with different strongest baselines
#: compare these claims side by side in one row.
STRONGEST = "the strongest baseline of the paper's time"


def _claim_kind(claim: str, b: str) -> tuple[str, str]:
    """``(claim, "")``, or for a claim against the strongest baseline (``STRONGEST``), ``("r beats STRONGEST", b)``:
    one comparison in every study, whichever baseline was its strongest."""
    against = f" beats {b} ({STRONGEST})"
    if claim.endswith(against):
        return f"{claim[:-len(against)]} beats {STRONGEST}", b
    return claim, ""


def _metric_kind(metric: str) -> str:
    """A claim's metric without the study-specific size in brackets: ``relative mAP drop (distractors-3000)`` and
    ``... (distractors-7239)`` are one comparison."""
    return re.sub(r"\s*\(distractors-\d+\)$", "", metric)


def claims_by_study(studies: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim and metric, one column per study (``delta [low, high] verdict``, ``-`` where the study has
    no such claim; a claim against the strongest baseline of the paper's time adds that study's baseline, ``(vs
    b)``) and ``same verdict``: ``yes`` / ``no`` where every study has the claim. A claim's metrics are adjacent;
    claims and metrics in the order in which the studies first list them."""
    found: dict[tuple[str, str], dict] = {}   # (claim kind, metric kind) -> study -> its row
    for name, claims in studies.items():
        for row in claims.itertuples(index=False):
            found.setdefault((_claim_kind(row.claim, row.b)[0], _metric_kind(row.metric)), {})[name] = row

    def cell(r) -> str:
        against = _claim_kind(r.claim, r.b)[1]
        text = f"{r.delta:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] {r.verdict}"
        return f"{text} (vs {against})" if against else text

    order = list(dict.fromkeys(claim for claim, _ in found))
    rows = []
    for (claim, metric), by_study in sorted(found.items(), key=lambda item: order.index(item[0][0])):
        verdicts = {row.verdict for row in by_study.values()}
        rows.append({"claim": claim, "metric": metric,
                     **{n: cell(r) if (r := by_study.get(n)) else "-" for n in studies},
                     "same verdict": "-" if len(by_study) < len(studies) else "yes" if len(verdicts) == 1 else "no"})
    return pd.DataFrame(rows, columns=["claim", "metric", *studies, "same verdict"])


def save_claims_by_study(preset_folder: str | Path, table: str = "claims") -> Path | None:
    """``<table>_by_study.csv`` / ``.md`` in ``preset_folder`` (e.g. ``results/cpu``) from the ``<table>.csv`` of
    each study folder in it (a table of claims: ``SIDE_BY_SIDE``), in name order; ``None`` (nothing written) with
    fewer than two studies."""
    folder = Path(preset_folder)
    studies = {p.parent.name: pd.read_csv(p) for p in sorted(folder.glob(f"*/{table}.csv"))}
    if len(studies) < 2:
        return None
    return save_table(claims_by_study(studies), folder, f"{table}_by_study")
