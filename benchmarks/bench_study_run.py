"""One run of the synthetic study as ``make reproduce`` trains it, the per-sample path against the default.

The ``cpu`` preset's study on the synthetic set trains only the head on a cached 64x32 trunk (``train_from="head"``,
``snlib.presets.PROTOCOLS``), so a step takes milliseconds and what surrounds it counts. The run: SN at the
protocol's budget (600 iterations, warm-up over the first tenth) on the validation identities, scored 10 times
during training as the rate selection scores it. The reference: each training sample fetched on its own
(``TrunkDataset.__getitem__``, collated by torch) and the trunk's weights hashed and its output shape probed at every
evaluation; the default: a batch fetched at once (``TrunkDataset.__getitems__``) and the trunk described once per
model (``snlib.trunk``). Both train the same network: the table says whether their metrics are identical.
The caches are built by a short warm-up run first; then reference and default alternate (``--repeats`` each,
ABBA order), each with a fresh run folder; the table gives the median seconds of the whole ``train()`` call.

    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bench_study_run.py
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import contextmanager, nullcontext
from unittest import mock

from torch.utils.data import default_collate

from snlib import trunk
from snlib.engine import train
from snlib.presets import PROTOCOLS, get_preset
from snlib.recipes import run_config
from snlib.study.protocol import Protocol


def study_run(iterations: int):
    """The configuration of one synthetic selection run of the ``cpu`` study (SN at the preset's rate)."""
    protocol = Protocol(overrides=PROTOCOLS["cpu"]["on_synthetic"]["overrides"], iterations=iterations)
    return run_config(get_preset("cpu", split="val"), "sn", budget=protocol.budget(curves=True))


@contextmanager
def per_sample_path():
    """The path before batched fetching and the once-per-model trunk description."""
    def described_every_time(model, frozen, config, device):
        return trunk.weights_digest(frozen), trunk._output_shape(frozen, config, device)

    with mock.patch.object(trunk.TrunkDataset, "__getitems__", None), \
            mock.patch.object(trunk.TrunkDataset, "collate", staticmethod(default_collate)), \
            mock.patch.object(trunk, "_identity", described_every_time):
        yield


def timed_run(config, reference: bool) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory() as folder, (per_sample_path() if reference else nullcontext()):
        start = time.perf_counter()
        result = train(config, run_dir=folder, progress=False)
        return time.perf_counter() - start, result.metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config = study_run(args.iterations)
    with tempfile.TemporaryDirectory() as folder:   # builds the trunk caches in memory
        train(config.replace(iterations=20, warmup_iterations=2, eval_every_iterations=10), run_dir=folder,
              progress=False)
    times, metrics = {"reference": [], "default": []}, {}
    for i in range(args.repeats):
        for name in (("reference", "default") if i % 2 == 0 else ("default", "reference")):
            seconds, metrics[name] = timed_run(config, name == "reference")
            times[name].append(seconds)
    ref, new = statistics.median(times["reference"]), statistics.median(times["default"])
    same = metrics["reference"] == metrics["default"]
    print(f"| path | seconds a run (median of {args.repeats}) | x reference |\n|---|---|---|")
    print(f"| per-sample fetch, trunk described at every evaluation (reference) | {ref:.2f} | 1.00 |")
    print(f"| batched fetch, trunk described once (default) | {new:.2f} | {ref / new:.2f} |")
    print(f"\n{args.iterations} iterations, 10 evaluations; identical metrics: {same} "
          f"(rank-1 {metrics['default']['rank1']:.2f}, mAP {metrics['default']['mAP']:.2f})")


if __name__ == "__main__":
    main()
