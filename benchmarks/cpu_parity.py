"""Accuracy parity of the CPU fast path: the `cpu` preset trained end to end (``END_TO_END``) with its defaults
(channels-last, decoded-image cache) against the old path (NCHW, JPEG decoding every batch), same losses, same
seeds, on the synthetic default.

A fast path is only a gain if the model learns as well: for each loss and seed both paths are trained from
scratch (separate temporary run caches), and the difference of their means is compared with the seed spread.

    .venv/bin/python benchmarks/cpu_parity.py                       # sn and ce, seeds 0 and 1 (~15 min here)
    .venv/bin/python benchmarks/cpu_parity.py --losses sn --seeds 0 --epochs 2   # a quick look
    .venv/bin/python benchmarks/cpu_parity.py --summarise-only      # the summary again, from the runs' CSV

Writes results/cpu/synthetic/cpu_path_parity_runs.{csv,md} (one row per run) and cpu_path_parity.{csv,md} (the
summary; its Markdown starts with the command).
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench_train import END_TO_END, OLD_PATH   # OLD_PATH: before issue 13, NCHW and JPEG decoding in the loop
from snlib import settings
from snlib.engine import train
from snlib.presets import get_preset
from snlib.reporting import save_table
from snlib.settings import atomic_write

METRICS = ("rank1", "mAP")


def run_all(losses, seeds, epochs: int | None) -> pd.DataFrame:
    rows = []
    for path, changes in (("old (NCHW, files)", OLD_PATH), ("new (preset defaults)", {})):
        with tempfile.TemporaryDirectory(prefix="snlib-parity-") as cache:
            for loss in losses:
                for seed in seeds:
                    config = get_preset("cpu", loss=loss, seed=seed, **END_TO_END, **changes,
                                        **({"epochs": epochs} if epochs else {}))
                    result = train(config, cache_root=cache, progress=False)
                    speeds = pd.Series([h["images_per_s"] for h in result.history])
                    rows.append({"path": path, "loss": loss, "seed": seed,
                                 **{m: result.metrics[m] for m in METRICS},
                                 "train_s": round(result.wall_time_s, 1), "median_img_per_s": speeds.median()})
                    print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Per loss and metric: mean of each path, their difference, the largest seed spread (max - min over seeds
    within a path) and whether the difference lies within it."""
    rows = []
    for loss, group in runs.groupby("loss", sort=False):
        for metric in METRICS:
            by_path = group.groupby("path", sort=False)[metric]
            means, spread = by_path.mean(), (by_path.max() - by_path.min()).max()
            old, new = means.iloc[0], means.iloc[1]
            rows.append({"loss": loss, "metric": metric, "old_mean": old, "new_mean": new, "new_minus_old": new - old,
                         "seed_spread": spread,
                         "within_seed_spread": "yes" if abs(new - old) <= spread else "no"})
        speed = group.groupby("path", sort=False)["train_s"].mean()
        rows.append({"loss": loss, "metric": "train_s", "old_mean": speed.iloc[0], "new_mean": speed.iloc[1],
                     "new_minus_old": speed.iloc[1] - speed.iloc[0], "seed_spread": float("nan"),
                     "within_seed_spread": f"old / new: {speed.iloc[0] / speed.iloc[1]:.2f}x"})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--losses", nargs="+", default=["sn", "ce"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--epochs", type=int, help="default: the preset's")
    parser.add_argument("--out", default=str(settings.results_dir() / "cpu" / "synthetic"))
    parser.add_argument("--summarise-only", action="store_true",
                        help="no training: summarise the runs already in <out>/cpu_path_parity_runs.csv")
    args = parser.parse_args(argv)
    runs_csv = Path(args.out) / "cpu_path_parity_runs.csv"
    if args.summarise_only:
        runs = pd.read_csv(runs_csv)
    else:
        runs = run_all(args.losses, args.seeds, args.epochs)
        save_table(runs, args.out, "cpu_path_parity_runs")
    summary = summarise(runs)
    print(summary.to_string(index=False))
    md = save_table(summary, args.out, "cpu_path_parity").with_suffix(".md")
    trained_by = [a for a in argv or [] if a != "--summarise-only"]   # the command that trained the runs
    command = "flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/cpu_parity.py " + shlex.join(trained_by)
    header = (f"# The cpu preset's fast path (channels-last, decoded-image cache) against the old path (NCHW, JPEG "
              f"decoding every batch)\n\nCommand: `{command.strip()}`; runs: `{runs_csv.name}` (the cpu preset trained "
              f"end to end, {', '.join(f'{k}={v!r}' for k, v in END_TO_END.items())}, on the synthetic default, "
              f"seeds {sorted(set(runs['seed']))}). `seed_spread`: the largest max - min over "
              "the seeds within one path; `train_s`: seconds in the training epochs of a run (its periodic "
              "evaluations included, the final one not).\n\n")
    atomic_write(md, header + md.read_text())


if __name__ == "__main__":
    main(sys.argv[1:])
