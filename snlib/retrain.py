"""Retrain one committed run record here and compare (``snlib runs HASH --retrain``): how a user checks a
reproduction on their own machine.

Training is deterministic on one machine, not across machines: the CPU kernels' floating-point summation order
depends on the instruction set torch dispatches to (``cpu_capability`` in a record's provenance), so a record
retrained where it was made gives the same losses and network, and elsewhere the loss departs after a few
iterations and the network drifts by about the spread between seeds. :func:`retrain_check` trains the record's
configuration in a temporary folder (no run is added to the run cache, whose trunk and decoded-image caches serve
it as any run; the record is never written), then reports the first recorded iteration whose training loss
differs, the difference in rank-1 / mAP and whether the retrained values lie inside the range of the recipe's
recorded seeds (:func:`snlib.records.compare_with_record`).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

from . import engine
from .errors import DamagedRecordError
from .provenance import provenance
from .records import RunRecord, compare_with_record, load_record

#: Relative difference below which a retrained loss counts as the record's: the record keeps float32 losses
#: written as decimals, exact on the machine that made it.
LOSS_RTOL = 1e-6


def seed_records(record: RunRecord, folder: str | Path) -> list[RunRecord]:
    """The records in ``folder`` of ``record``'s configuration with any seed (``record`` among them), by seed;
    unreadable files are skipped (``snlib runs`` names them)."""
    wanted = record.config.replace(seed=0)
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            other = load_record(path)
        except DamagedRecordError:
            continue
        if other.config.replace(seed=0) == wanted:
            found.append(other)
    return sorted(found, key=lambda r: r.config.seed)


def first_loss_departure(recorded: list[dict], retrained: list[dict], rtol: float = LOSS_RTOL) -> dict:
    """Where the retrained training loss first differs from the record's: over the iterations both histories keep,
    ``{"checked": n, "equal_until": last equal iteration or None, "departs_at": first differing iteration or None,
    "record_loss": ..., "retrained_loss": ...}`` (the last two at ``departs_at``)."""
    losses = {row["iteration"]: row["loss"] for row in retrained if "loss" in row}
    out = {"checked": 0, "equal_until": None, "departs_at": None, "record_loss": None, "retrained_loss": None}
    for row in recorded:
        here = losses.get(row.get("iteration"))
        if here is None or row.get("loss") is None:
            continue
        out["checked"] += 1
        if not math.isclose(here, row["loss"], rel_tol=rtol, abs_tol=0.0):
            out.update(departs_at=row["iteration"], record_loss=row["loss"], retrained_loss=here)
            break
        out["equal_until"] = row["iteration"]
    return out


def retrain_check(record: RunRecord, records_folder: str | Path, progress: bool = True) -> dict:
    """Train ``record``'s configuration afresh in a temporary folder and compare it with the record: the processors
    (``record_cpu``, ``cpu``: torch's CPU capability), :func:`first_loss_departure` (``loss``) and, unless the
    record diverged, :func:`~snlib.records.compare_with_record` against the recipe's recorded seeds in
    ``records_folder``."""
    made_by = record.provenance or {}
    out = {"run": record.hash, "recipe": record.name, "seed": record.config.seed,
           "record_cpu": made_by.get("cpu_capability"), "cpu": provenance()["cpu_capability"]}
    with tempfile.TemporaryDirectory(prefix="snlib-retrain-") as scratch:
        run = engine.train(record.config, run_dir=Path(scratch) / record.hash, progress=progress)
    out["loss"] = first_loss_departure(record.history, run.history)
    if record.metrics and run.metrics:
        out.update(compare_with_record(run.metrics, record, seed_records(record, records_folder)))
    return out


def describe(check: dict) -> list[str]:
    """The lines ``snlib runs HASH --retrain`` prints for a :func:`retrain_check`."""
    made = check["record_cpu"] or "unknown (a record written before provenance)"
    lines = [f"record {check['run']} ({check['recipe']}, seed {check['seed']}) made on CPU capability {made}; "
             f"retrained here on {check['cpu']}"]
    loss = check["loss"]
    if loss["departs_at"] is None:
        lines.append(f"training loss: equal to the record's at all {loss['checked']} recorded iterations")
    else:
        before = (f"equal up to iteration {loss['equal_until']}, " if loss["equal_until"] is not None else "")
        lines.append(f"training loss: {before}first differs at iteration {loss['departs_at']} (record "
                     f"{loss['record_loss']:.6f}, here {loss['retrained_loss']:.6f})")
    if "rank1_diff" in check:
        lines.append(f"rank-1: record {check['rank1_record']:.2f}, retrained {check['rank1_retrained']:.2f} "
                     f"({check['rank1_diff']:+.2f}); mAP: record {check['mAP_record']:.2f}, retrained "
                     f"{check['mAP_retrained']:.2f} ({check['mAP_diff']:+.2f})")
        lines.append(f"{'inside' if check['inside_seed_spread'] else 'OUTSIDE'} the range of the recipe's "
                     f"{check['seeds']} recorded seed(s) (spread: rank-1 {check['rank1_seed_spread']:.2f}, "
                     f"mAP {check['mAP_seed_spread']:.2f})")
    else:
        lines.append("no metrics to compare (the record or the retrained run diverged)")
    return lines
