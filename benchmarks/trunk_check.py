"""What a frozen trunk costs in accuracy, and whether it changes the ordering of the losses (issue 24).

On the validation identities of a data set (``split="val"``), each loss of ``--losses`` (default SN, softmax and
contrastive, as ``snlib.recipes`` trains them) at ``--iterations`` (1000; warm-up over the first tenth, the
protocol's schedule), with the backbone's own normalisation (``normalization="backbone"``: timm's for
EfficientNet-Lite0), in each variant: end to end at 128x64, and a cached frozen trunk (``train_from``,
``trunk_cache="disk"``) from ``blocks.5`` and ``blocks.6`` at 128x64 and at 256x128. Every (variant, loss) picks
its rate from the same grid (``--lrs``, validation mAP, seed 0); the other seeds train at that rate. The table
gives, per variant and loss, the rate (and whether it is an end of the grid), rank-1 / mAP (mean over seeds, each
seed's), the minutes of training a run, and per variant the ordering of the losses by mAP and whether it is end to
end's.

Every run is cached by its configuration (``<cache root>/<hash>``: an interrupted call resumes where it stopped)
and recorded (``results/runs/<preset>/<hash>.json``, or ``--records``): a second call reads the records and only
writes the table. The trunk caches (one per stage and size, on disk) are built once and shared by every run.

    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/trunk_check.py --dataset market1501 \
        --data-root ../shared/data/cuhk03p1

writes ``results/cpu/cuhk03p1/trunk_check.{md,csv}`` (the table; the Markdown headed by the command) and
``trunk_check_runs.{md,csv}`` (one row per run). Cost on the 2-core CPU: 5 variants x 3 losses x (3 rates + 1
seed) = 60 runs of 1000 iterations, 10.0 hours of training on cuhk03p1 by their records (each variant's minutes
a run: the table's ``min a run``; end to end at 128x64 is most of it), plus each trunk cache once (under a minute
at 128x64, about 6 min at 256x128). Run it in the background, a variant at a time (``--train-only``), over
sessions.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import pandas as pd

from snlib import settings
from snlib.engine import TrainingDivergedError, train
from snlib.presets import TrainConfig, get_preset, parse_overrides
from snlib.recipes import apply_recipe
from snlib.records import RunRecord, read_record, records_dir, thin_history, write_record
from snlib.reporting import save_table
from snlib.settings import atomic_write

#: Variant name -> TrainConfig fields (every variant also takes the backbone's normalisation and :data:`CHECKED`).
VARIANTS = {
    "end to end 128x64": {"train_from": "", "trunk_cache": "off"},
    "blocks.5 128x64": {"train_from": "blocks.5", "trunk_cache": "disk"},
    "blocks.6 128x64": {"train_from": "blocks.6", "trunk_cache": "disk"},
    "blocks.5 256x128": {"train_from": "blocks.5", "trunk_cache": "disk", "height": 256, "width": 128},
    "blocks.6 256x128": {"train_from": "blocks.6", "trunk_cache": "disk", "height": 256, "width": 128},
}
#: Fields the check fixes whatever the preset says: SN's k at the paper's 10, as the check's runs were made (before
#: the cpu preset scaled k with the batch), so that its records keep their hashes.
CHECKED = {"sn_k": 10}
LOSSES = ("sn", "ce", "contrastive")
LRS = (3e-4, 1e-3, 3e-3)
SEEDS = (0, 1)
#: Epochs between checkpoints (operational): an interruption loses at most this much of the run in progress.
CHECKPOINT_EPOCHS = 10


def run_config(base: TrainConfig, variant: dict, loss: str, lr: float, seed: int, iterations: int) -> TrainConfig:
    """``base`` trained with recipe ``loss`` at ``lr``, ``seed``, in ``variant``, on the validation split."""
    config = base.replace(split="val", normalization="backbone", lr=lr, seed=seed, iterations=iterations,
                          warmup_iterations=max(1, iterations // 10), eval_every=0, eval_every_iterations=0,
                          checkpoint_every=CHECKPOINT_EPOCHS, **CHECKED, **variant)
    return apply_recipe(config, loss)


def recorded(config: TrainConfig, root: Path) -> RunRecord:
    """The record of ``config``'s run: read, else trained (or read from the run cache) and written; a run that
    diverges is recorded as such (no metrics)."""
    record = read_record(config, root)
    if record is not None:
        return record
    try:
        run = train(config, progress=True)
    except TrainingDivergedError as error:
        record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics={}, evaluations=[],
                           history=[], wall_time_s=float("nan"), diverged=error.reason)
    else:
        record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics=run.metrics,
                           evaluations=run.evaluations, history=thin_history(run.history),
                           wall_time_s=run.wall_time_s, per_query={"sq": run.per_query})
    write_record(record, root)
    return record


def _row(variant: str, loss: str, lr: float, seed: int, record: RunRecord, selection: bool) -> dict:
    return {"variant": variant, "loss": loss, "lr": lr, "seed": seed, "selection": selection,
            "rank1": record.metrics.get("rank1", float("nan")), "mAP": record.metrics.get("mAP", float("nan")),
            "train_min": record.wall_time_s / 60, "diverged": record.diverged, "run": record.hash}


def run_all(base: TrainConfig, variants: dict, losses, lrs, seeds, iterations: int, root: Path,
            landed: bool = False) -> pd.DataFrame:
    """Every run (module docstring), one row each: the selection over ``lrs`` at ``seeds[0]``, then the other
    seeds at the selected rate. ``landed``: only the runs already recorded, training none; a (variant, loss) whose
    rate grid is not complete is left out (its choice is not made yet)."""
    def get(config):
        return read_record(config, root) if landed else recorded(config, root)

    rows = []
    for variant, fields in variants.items():
        for loss in losses:
            found = [(lr, get(run_config(base, fields, loss, lr, seeds[0], iterations))) for lr in lrs]
            if any(record is None for _, record in found):
                continue
            grid = [_row(variant, loss, lr, seeds[0], record, True) for lr, record in found]
            best = max(grid, key=lambda r: (r["mAP"] if r["mAP"] == r["mAP"] else -1.0, -r["lr"]))
            rows += grid
            others = [(seed, get(run_config(base, fields, loss, best["lr"], seed, iterations))) for seed in seeds[1:]]
            rows += [_row(variant, loss, best["lr"], seed, record, False) for seed, record in others if record]
    return pd.DataFrame(rows, columns=["variant", "loss", "lr", "seed", "selection", "rank1", "mAP", "train_min",
                                       "diverged", "run"])


def summary(runs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (variant, loss) at its selected rate (and whether it is the grid's lowest or highest: a better
    rate may lie outside it): rank-1 / mAP mean over seeds and per seed, training minutes a run; per variant the
    losses ordered by mAP and whether that ordering is the ``reference`` variant's (end to end; "n/a" until end to
    end is recorded for the same losses)."""
    rows = []
    for (variant, loss), group in runs.groupby(["variant", "loss"], sort=False):
        selected = group[~group["selection"]]["lr"]
        lr = selected.iloc[0] if len(selected) else group.loc[group["mAP"].fillna(-1).idxmax(), "lr"]
        chosen = group[(group["lr"] == lr)].drop_duplicates("seed").sort_values("seed")
        grid = group[group["selection"]]["lr"]
        rows.append({"variant": variant, "loss": loss, "lr": lr,
                     "at the grid's edge": "yes" if lr in (grid.min(), grid.max()) else "no",
                     "rank1": chosen["rank1"].mean(),
                     "mAP": chosen["mAP"].mean(),
                     "per seed (rank1 / mAP)": ", ".join(f"{r:.1f} / {m:.1f}" for r, m in zip(chosen["rank1"],
                                                                                             chosen["mAP"])),
                     "min a run": group["train_min"].mean()})
    table = pd.DataFrame(rows)
    order = {v: " > ".join(g.sort_values("mAP", ascending=False)["loss"]) for v, g in table.groupby("variant",
                                                                                                    sort=False)}
    losses = {v: set(g["loss"]) for v, g in table.groupby("variant", sort=False)}
    table["ordering (mAP)"] = table["variant"].map(order)
    table["as end to end"] = table["variant"].map(
        lambda v: "n/a" if losses[v] != losses.get(reference) else "yes" if order[v] == order[reference] else "no")
    return table


def check_arguments(parser: argparse.ArgumentParser, table: str) -> None:
    """The arguments of every check on a data set's validation identities (this one, ``baselines_check.py``):
    preset, data set, iterations, ``--set`` fields of every run, where ``table`` and the records go."""
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--dataset", default=None, help="default: the preset's (market1501 for a real folder)")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--dataset-options", default="{}", help="JSON options of --dataset's loader")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a TrainConfig field of every run (as snlib train --set)")
    parser.add_argument("--output", default=None, help=f"folder of {table} (default results/<preset>/<folder name "
                                                       f"of the data root>)")
    parser.add_argument("--records", default=None, help="folder of the run records (default results/runs/<preset>)")


def check_setup(args) -> tuple[TrainConfig, Path, Path]:
    """``(base configuration, records folder, output folder)`` of :func:`check_arguments`' parsed ``args``."""
    root = settings.repo_path(args.data_root)
    data = {"dataset": args.dataset, "dataset_options": json.loads(args.dataset_options)} if args.dataset else {}
    base = get_preset(args.preset, data_root=str(root), **data, **parse_overrides(args.set))
    records = Path(args.records) if args.records else records_dir(args.preset)
    out = Path(args.output) if args.output else settings.results_dir() / args.preset / Path(root).name
    return base, records, out


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check_arguments(parser, "trunk_check.md")
    parser.add_argument("--losses", nargs="*", default=list(LOSSES))
    parser.add_argument("--lrs", nargs="*", type=float, default=list(LRS))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--sizes", nargs="*", default=None, metavar="HxW",
                        help="replace the variants' sizes 128x64 and 256x128, in that order (tiny tests)")
    parser.add_argument("--landed", action="store_true",
                        help="write the table of the runs recorded so far (a partial table, so headed), train none")
    parser.add_argument("--train-only", nargs="*", default=None, metavar="VARIANT",
                        help=f"train (or read) the runs of these variants only and write no table, so that the "
                             f"cheap variants land first in a background job; variants: {', '.join(VARIANTS)}")
    args = parser.parse_args(argv)
    base, records, out = check_setup(args)
    variants = _sized(VARIANTS, args.sizes)
    if args.train_only is not None:
        unknown = sorted(set(args.train_only) - set(variants))
        if unknown:
            parser.error(f"unknown variant(s) {unknown}; known: {list(variants)}")
        return run_all(base, {v: variants[v] for v in args.train_only}, args.losses, args.lrs, args.seeds,
                       args.iterations, records)
    runs = run_all(base, variants, args.losses, args.lrs, args.seeds, args.iterations, records, args.landed)
    table = summary(runs, next(iter(variants)))
    save_table(runs, out, "trunk_check_runs")
    save_table(table, out, "trunk_check")
    command = settings.portable_text(  # the committed header names no folder of this machine
        "python benchmarks/trunk_check.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    markdown = (out / "trunk_check.md").read_text()
    partial = ("**Partial: the runs recorded so far** (a variant and loss appear once their rate grid is complete; "
               "the check goes on).\n\n") if args.landed else ""
    atomic_write(out / "trunk_check.md", f"`{command}` ({args.iterations} iterations, {base.dataset} validation "
                                          f"identities, rates from {args.lrs} on validation mAP, seed "
                                          f"{args.seeds[0]})\n\n{partial}{markdown}")
    print(markdown)
    return table


def _sized(variants: dict, sizes) -> dict:
    """``variants`` with 128x64 / 256x128 replaced by ``sizes`` (names and fields)."""
    if not sizes:
        return variants
    mapping = dict(zip(("128x64", "256x128"), sizes))
    out = {}
    for name, fields in variants.items():
        stage, size = name.rsplit(" ", 1)
        height, width = (int(v) for v in mapping[size].split("x"))
        out[f"{stage} {mapping[size]}"] = {**fields, "height": height, "width": width}
    return out


if __name__ == "__main__":
    main()
