"""Evidence that every baseline trains (issue 25): each recipe at three rates around its literature's, on the
validation identities, with validation curves, the collapse diagnostics and the untrained network as the floor.

Every recipe of ``--recipes`` (SN and the five baselines) trains with the set-up its source gives it
(``snlib.recipes``: ``triplet`` with :data:`~snlib.recipes.TRINET_FIELDS`, TriNet's 1024-BN-ReLU-128 head, ``bot``
with :data:`~snlib.recipes.BOT_FIELDS`, Bag of Tricks' margin, smoothing, BNNeck and warm-up share). Each trains at its literature's rate
(``snlib.presets.PAPER_RATES``) times each of ``--rate-steps`` (1/3, 1, 3), seed 0, ``--iterations`` (1000; warm-up
over the first tenth, the protocol's schedule), on the cached frozen trunk of ``--train-from`` (``blocks.6``) at
``--size`` (128x64), with the backbone's own normalisation, scored on the validation split every ``--eval-every``
iterations. A run is marked collapsed by ``snlib.collapse`` (its history's diagnostics) and compared with the
untrained network's validation rank-1 / mAP (ImageNet weights, pooled features: what every recipe starts from).

    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/baselines_check.py --dataset market1501 \\
        --data-root ../shared/data/cuhk03p1

writes ``results/<preset>/<data folder>/baselines_check.{md,csv}`` (one row per run: final and best validation
rank-1 / mAP, collapsed, above the untrained network, the diagnostics of the last logged iterations) and
``baselines_check.png`` (the validation mAP curves, one panel per recipe). Every run is recorded
(``results/runs/<preset>/<hash>.json``): a second call reads the records and only redraws. Cost on the 2-core CPU
at the defaults, measured on cuhk03p1: 18 runs of about 1.6 minutes each (1000 iterations at 12 a second and 10
evaluations), plus one trunk cache of the validation split's training images (shared with ``trunk_check.py``):
32 minutes.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from snlib import engine, settings  # noqa: E402
from snlib.collapse import GEOMETRY_COLUMNS, collapse_evidence  # noqa: E402
from snlib.models import initial_model  # noqa: E402
from snlib.presets import PAPER_RATES, TrainConfig  # noqa: E402
from snlib.recipes import apply_recipe  # noqa: E402
from snlib.reporting import save_table  # noqa: E402
from snlib.settings import atomic_write  # noqa: E402
from trunk_check import CHECKED, CHECKPOINT_EPOCHS, check_arguments, check_setup, recorded  # noqa: E402

RECIPES_CHECKED = ("sn", "ce", "triplet", "triplet-0.3", "bot", "contrastive")
RATE_STEPS = (1 / 3, 1.0, 3.0)
#: History columns shown for the end of a run: the batch geometry and the triplet terms' parts.
DIAGNOSTICS = GEOMETRY_COLUMNS + ("active",)


def run_config(base: TrainConfig, recipe: str, lr: float, iterations: int, eval_every: int,
               train_from: str, size: tuple[int, int]) -> TrainConfig:
    """``recipe`` (with its paper's set-up) at ``lr``, seed 0, on the validation split and the cached trunk; SN's k
    fixed as the trunk check fixes it (``trunk_check.CHECKED``: the paper's 10, as these runs were made)."""
    config = base.replace(split="val", normalization="backbone", lr=lr, seed=0, iterations=iterations,
                          warmup_iterations=max(1, iterations // 10), eval_every=0, eval_every_iterations=eval_every,
                          checkpoint_every=CHECKPOINT_EPOCHS, train_from=train_from, trunk_cache="disk",
                          height=size[0], width=size[1], **CHECKED)
    return apply_recipe(config, recipe)


def untrained_floor(config: TrainConfig) -> dict:
    """Validation rank-1 / mAP (percent) of the network every recipe starts from (``config``'s, pooled features)."""
    plain = config.replace(embedding_head="", bnneck=False, loss="sn", recipe="sn")
    data = engine.run_dataset(plain)
    return engine.evaluate_model(initial_model(plain), data.query, data.gallery, plain, "cpu").as_dict()


def _tail(history: list[dict], column: str, share: float = 0.1) -> float:
    """Mean of ``column`` over the last ``share`` of the logged rows that have it (a triplet term's parts are
    ``<term>/<part>``: the first such column)."""
    names = [c for c in (history[0] if history else {}) if c == column or c.endswith("/" + column)]
    if not names:
        return float("nan")
    values = [row[names[0]] for row in history if row.get(names[0]) is not None]
    tail = values[-max(1, int(len(values) * share)):]
    return float(np.mean(tail)) if tail else float("nan")


def row(recipe: str, step: float, record, floor: dict) -> dict:
    curve = pd.DataFrame(record.evaluations)
    evidence = collapse_evidence(record.history)
    best = curve["mAP"].max() if "mAP" in curve else float("nan")
    best_r1 = curve["rank1"].max() if "rank1" in curve else float("nan")
    final = record.metrics
    return {"recipe": recipe, "lr": record.config.lr, "rate step": step,
            "final rank1": final.get("rank1", np.nan), "final mAP": final.get("mAP", np.nan),
            "best rank1": max(best_r1, final.get("rank1", np.nan)), "best mAP": max(best, final.get("mAP", np.nan)),
            "collapsed (rule)": "yes" if evidence and evidence["collapsed"] else "no",
            "above untrained": "yes" if final.get("mAP", -1) > floor["mAP"] and final.get("rank1", -1) > floor["rank1"]
            else "no",
            **{f"end {c}": _tail(record.history, c) for c in DIAGNOSTICS},
            "loss at end": _tail(record.history, "loss"), "diverged": record.diverged, "run": record.hash}


def draw(records: dict, floor: dict, path: Path) -> None:
    """Validation mAP against iteration, one panel per recipe, one line per rate; the untrained floor dashed."""
    recipes = list(dict.fromkeys(r for r, _ in records))
    fig, axes = plt.subplots(1, len(recipes), figsize=(3.2 * len(recipes), 3.0), sharey=True, squeeze=False)
    for ax, recipe in zip(axes[0], recipes):
        for (name, lr), record in records.items():
            if name != recipe or not record.evaluations:
                continue
            curve = pd.DataFrame(record.evaluations)
            x = curve["iteration"] if "iteration" in curve else np.arange(1, len(curve) + 1)
            ax.plot(list(x) + [record.config.iterations], list(curve["mAP"]) + [record.metrics.get("mAP", np.nan)],
                    marker=".", label=f"lr {lr:.1e}")
        ax.axhline(floor["mAP"], color="grey", linestyle="--", label="untrained")
        ax.set_title(recipe)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("validation mAP (%)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check_arguments(parser, "baselines_check.md")
    parser.add_argument("--eval-every", type=int, default=100, help="validation every N iterations (the curves)")
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES_CHECKED))
    parser.add_argument("--rate-steps", nargs="*", type=float, default=list(RATE_STEPS),
                        help="multiples of each recipe's literature rate")
    parser.add_argument("--train-from", default="blocks.6")
    parser.add_argument("--size", default="128x64", metavar="HxW")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.recipes) - set(PAPER_RATES))
    if unknown:
        parser.error(f"no literature rate for {unknown}; recipes with one: {sorted(PAPER_RATES)}")
    size = tuple(int(v) for v in args.size.split("x"))
    base, records_root, out = check_setup(args)
    configs = {(recipe, PAPER_RATES[recipe][0] * step): (step, run_config(
        base, recipe, PAPER_RATES[recipe][0] * step, args.iterations, args.eval_every, args.train_from, size))
        for recipe in args.recipes for step in args.rate_steps}
    floor = untrained_floor(next(iter(configs.values()))[1])
    records = {key: recorded(config, records_root) for key, (_, config) in configs.items()}
    table = pd.DataFrame([row(recipe, configs[(recipe, lr)][0], record, floor)
                          for (recipe, lr), record in records.items()])
    save_table(table, out, "baselines_check")
    draw(records, floor, out / "baselines_check.png")
    best = table.loc[table.groupby("recipe", sort=False)["best mAP"].idxmax()]
    verdict = ", ".join(f"{r['recipe']} {'above' if r['above untrained'] == 'yes' else 'NOT above'}"
                        for _, r in best.iterrows())
    command = settings.portable_text(  # the committed header names no folder of this machine
        "python benchmarks/baselines_check.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])))
    markdown = (out / "baselines_check.md").read_text()
    atomic_write(out / "baselines_check.md", (
        f"`{command}`\n\n{base.dataset} validation identities, {args.iterations} iterations, seed 0, trunk frozen "
        f"before `{args.train_from}` (cached) at {args.size}, the backbone's normalisation, SN's k = "
        f"{CHECKED['sn_k']}; rates = literature "
        f"rate x {args.rate_steps}. Untrained network (the preset's initial weights, pooled features): rank-1 "
        f"{floor['rank1']:.1f}, mAP {floor['mAP']:.1f}. At its best rate (best validation mAP), final rank-1 and "
        f"mAP above the untrained network's: {verdict}. "
        f"`end ...` columns: mean over the last tenth of the logged iterations (`snlib.collapse`; `active`: share "
        f"of violated triplets). Curves: `baselines_check.png`.\n\n{markdown}"))
    print((out / "baselines_check.md").read_text())
    return table


if __name__ == "__main__":
    main()
