"""bf16 + channels-last against fp32 NCHW on a CPU: the ``paper`` preset's ResNet-50 (256x128), same seed, same
batches; does the SN loss fall the same way, and how much faster is a training step?

Both runs: the ``paper`` preset with ``pretrained=false`` (no ImageNet download here), on the synthetic set
(the cpu preset's data root), P reduced (``--p``, K=4), one epoch (150 training identities: 37 iterations at
P=4), a small test set (the final evaluation is not the point), a temporary run cache. Writes
``results/cpu/synthetic/bf16_loss_curves.{png,csv,md}`` (per-iteration loss and the engine's images/s of both)
and prints the median images/s of both (first iteration left out: warm-up).

    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bf16_loss_curves.py
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile

import pandas as pd

from snlib import settings
from snlib.engine import train
from snlib.presets import get_preset
from snlib.reporting import save_figure, save_table
from snlib.settings import atomic_write

NAME = "bf16_loss_curves"
#: A smaller test split than the default synthetic set's (training identities unchanged).
SMALL_TEST = {"num_test_ids": 10, "num_distractors": 0, "num_junk": 0}
VARIANTS = {"fp32": {"amp": "off", "channels_last": False}, "bf16": {"amp": "bf16", "channels_last": True}}


def run_both(p: int, epochs: int, seed: int) -> tuple[pd.DataFrame, dict]:
    """Per-iteration loss and images/s of both variants; their run summaries."""
    columns, summary = {}, {}
    with tempfile.TemporaryDirectory(prefix="bf16-curves-") as cache_root:
        for name, precision in VARIANTS.items():
            config = get_preset("paper", pretrained=False, dataset="synthetic", data_root=get_preset("cpu").data_root,
                                dataset_options=SMALL_TEST, p=p, epochs=epochs, seed=seed, device="cpu",
                                num_workers=0, **precision)
            run = train(config, cache_root=cache_root, fresh=True, progress=False)
            history = run.history_frame()
            columns["iteration"] = history["iteration"]
            columns[f"loss_{name}"] = history["loss"]
            columns[f"images_per_s_{name}"] = history["images_per_s"]
            summary[name] = {"median_images_per_s": statistics.median(history["images_per_s"].iloc[1:]),
                             "first_loss": float(history["loss"].iloc[0]),
                             "last5_loss": float(history["loss"].iloc[-5:].mean()),
                             **{k: run.extra[k] for k in ("channels_last", "amp")}}
            print(f"{name}: {len(history)} iterations, loss {summary[name]['first_loss']:.4f} -> "
                  f"{summary[name]['last5_loss']:.4f} (mean of the last 5), median "
                  f"{summary[name]['median_images_per_s']:.2f} img/s (channels_last={run.extra['channels_last']}, "
                  f"amp={run.extra['amp']})", flush=True)
    return pd.DataFrame(columns), summary


def plot(curves: pd.DataFrame, title: str):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(curves["iteration"], curves["loss_fp32"], label="fp32, NCHW", color="tab:blue")
    ax.plot(curves["iteration"], curves["loss_bf16"], label="bf16 autocast, channels-last", color="tab:orange",
            linestyle="--")
    ax.set(xlabel="iteration", ylabel="SN loss", title=title)
    ax.legend()
    return fig


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=int, default=4, help="identities per batch (K=4)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(settings.results_dir() / "cpu" / "synthetic"))
    args = parser.parse_args(argv)
    curves, summary = run_both(args.p, args.epochs, args.seed)
    speedup = summary["bf16"]["median_images_per_s"] / summary["fp32"]["median_images_per_s"]
    gap = (curves["loss_bf16"] - curves["loss_fp32"]).abs()
    print(f"bf16 + channels-last / fp32: {speedup:.2f}x images/s (goal >= 1.8x); |loss bf16 - loss fp32|: mean "
          f"{gap.mean():.4f}, max {gap.max():.4f}", flush=True)
    command = "flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bf16_loss_curves.py " + shlex.join(argv or [])
    title = f"paper preset, ResNet-50 256x128, P={args.p} x K=4, synthetic, from scratch"
    save_figure(plot(curves, title), args.out, NAME)
    csv = save_table(curves, args.out, NAME, floatfmt=".4f")
    md = csv.with_suffix(".md")
    header = (f"# bf16 + channels-last vs fp32 NCHW on a CPU ({title})\n\n"
              f"Command: `{command.strip()}` (benchmarks/bf16_loss_curves.py; same seed, same batches).\n\n"
              + "\n".join(f"- {name}: loss {s['first_loss']:.4f} -> {s['last5_loss']:.4f} (mean of the last 5 "
                          f"iterations), median {s['median_images_per_s']:.2f} img/s" for name, s in summary.items())
              + f"\n- bf16 / fp32 images/s: {speedup:.2f}x; |loss difference| mean {gap.mean():.4f}, "
                f"max {gap.max():.4f}\n\n")
    atomic_write(md, header + md.read_text())
    print(f"wrote {csv}, {md}, {csv.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
