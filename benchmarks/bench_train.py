"""Training throughput (images per second) of each preset's model in each memory layout and precision, and the
end-to-end throughput of a short ``cpu``-preset run, the old path against the default.

Step table: one training step = forward of the model on a P x K batch at the preset's resolution, its loss,
backward, Adam step, on random images (the step, not the data loading), median of ``--iters`` steps after
``--warmup``. Variants: NCHW fp32, channels-last fp32, bf16 autocast NCHW / channels-last (on CUDA fp16 too),
each in a fresh process; ratios to NCHW fp32 of the same run; ``*`` marks the variant the engine uses for the
preset on this device (``snlib.precision.resolve_precision``); memory: on a CPU the growth of the peak resident set
(VmHWM) over the built model and inputs, on CUDA ``max_memory_allocated`` over the same. ``ref`` (NCHW fp32
only): the same step with a trivial loss (mean of squared features), so ``step / ref`` is the re-ID loss's cost.
On a CPU it ends with the ``snlib.precision.CPU_STEP_SPEED`` entries of the measured sizes.

End-to-end: ``cpu`` preset trained end to end (``END_TO_END``, as the step table's ``cpu`` row), ``--e2e-epochs``
epochs on its synthetic set, a temporary cache root, each run in a fresh process: the old path
(``--set channels_last=false --set decoded_cache=off``: NCHW, JPEG decoded every draw) against the preset's
default, and the default with only one of the two undone (``channels_last=false``: measurably slower?;
``decoded_cache=off``). ``train img/s``: trained images / the engine's training time (epochs);
``total img/s``: trained images / the whole ``train()`` call (data set, decoded cache, model, final evaluation).

Frozen trunk (``--trunk``): the ``cpu`` preset's step (P=16 x K=4, its layout and precision) with ``train_from`` =
``--trunk-stages`` fed from the trunk cache (the step starts from the trunk's output: random tensors of its shape)
against the end-to-end step, at each of ``--trunk-sizes``; ratios to the end-to-end step of the same size and to
the ``cpu`` preset's (end to end at 128x64), all in this run. ``build``: the one-time cost of the cache of the
first ``--trunk-build-images`` training images of the ``cpu`` preset's synthetic set with their mirrors (decoding,
resizing, the trunk's forward; ``snlib.trunk``), seconds and source images per second.

    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bench_train.py     # CPU: paper model on P=4 x K=4
    flock /tmp/snlib-cpu.lock .venv/bin/python benchmarks/bench_train.py --models --also --skip-end-to-end --trunk
    python benchmarks/bench_train.py --models paper --paper-batch 32 --variants fp32 fp32-cl bf16-cl fp16-cl \\
        --skip-end-to-end --json train.json                                    # a GPU, the paper's 32 x 4 batch
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import tempfile
import time

import torch

from bench_loss import _resident_mib
from snlib import trunk
from snlib.data import load_dataset
from snlib.distributed import DistInfo
from snlib.engine import resolve_device, train
from snlib.precision import CPU_STEP_SPEED, resolve_precision
from snlib.losses import loss_from_config
from snlib.models import build_model
from snlib.presets import TrainConfig, get_preset

#: Variant name -> (channels_last, amp).
VARIANTS = {"fp32": (False, "off"), "fp32-cl": (True, "off"), "bf16": (False, "bf16"), "bf16-cl": (True, "bf16"),
            "fp16": (False, "fp16"), "fp16-cl": (True, "fp16")}
#: The old data path of the end-to-end comparison (before channels-last on the CPU and the decoded cache).
OLD_PATH = {"channels_last": False, "decoded_cache": "off"}
#: The ``cpu`` preset trained end to end, as it stood before the frozen trunk became its default (2026-12-01: no
#: trunk cache, the explicit ResNet normalisation, k = 10): what the step table's ``cpu`` row and the data-path
#: comparisons (channels-last, the decoded cache; here, ``bench_data.py``, ``cpu_parity.py``) measure, since a
#: frozen trunk computes each image once into its cache. The committed records of those measurements used it.
END_TO_END = {"train_from": "", "trunk_cache": "off", "normalization": "explicit", "sn_k": 10}


def _labels(p: int, k: int, device) -> torch.Tensor:
    return torch.arange(p, device=device).repeat_interleave(k)


def _peak_reset(device: torch.device) -> float:
    """Start a peak-memory window; returns the baseline (MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/clear_refs", "w") as clear:   # resets VmHWM to the current resident size (Linux)
        clear.write("5")
    return _resident_mib("VmRSS")


def _peak(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _resident_mib("VmHWM")


def step_throughput(config: TrainConfig, iters: int, warmup: int, trivial_loss: bool = False) -> tuple[float, float]:
    """``(images per second, peak memory growth MiB)`` of full training steps in ``config``'s layout and
    precision (``resolve_precision``): median of the per-step times after ``warmup`` steps."""
    device = resolve_device(config, DistInfo())
    precision = resolve_precision(config, device)
    torch.manual_seed(0)
    num_classes = max(config.p, 8)
    model = build_model(config.model, pretrained=False, last_stride=config.last_stride, bnneck=config.bnneck)
    loss = loss_from_config(config, num_classes, model.feat_dim)
    if loss.needs_logits:
        model.add_classifier(num_classes)
    model, loss = model.to(device).train(), loss.to(device)
    if precision.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net, shape = model, (3, config.height, config.width)
    if config.train_from:   # the cached step: from the frozen trunk's output on
        frozen = trunk.freeze(model, config.train_from)
        with torch.no_grad():
            shape = frozen(torch.zeros(1, *shape, device=device)).shape[1:]
        net = trunk.FromTrunk(model, config.train_from)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(trained + list(loss.parameters()), lr=config.lr)
    images = torch.randn(config.p * config.k, *shape, device=device)
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = _labels(config.p, config.k, device)
    base = _peak_reset(device)
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with precision.autocast(device):
            out = net(images)
        f = out.features.float()
        value = f.pow(2).mean() if trivial_loss else loss(f, labels, logits=None if out.logits is None
                                                              else out.logits.float())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return config.p * config.k / times[len(times) // 2], _peak(device) - base


def _in_fresh_process(target, *args):
    """``target(*args)`` in a fresh process (its own allocator, peak memory and thread pools: forked on a CPU, no
    second import of torch; spawned once CUDA is in use); what it returned, or ``{"error": ...}``."""
    context = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
    queue = context.Queue()
    worker = context.Process(target=_run_and_report, args=(target, args, queue))
    worker.start()
    try:
        while True:
            try:
                return queue.get(timeout=1)
            except queue_module.Empty:
                if not worker.is_alive():  # killed (out of memory?) before reporting
                    try:
                        return queue.get(timeout=1)
                    except queue_module.Empty:
                        return {"error": f"the measuring process died (exit code {worker.exitcode})"}
    finally:
        worker.join()


def _run_and_report(target, args, queue) -> None:
    try:
        queue.put(target(*args))
    except Exception as exc:  # reported in the table, the other measurements go on
        queue.put({"error": f"{type(exc).__name__}: {exc}"})


def _step_worker(config_dict: dict, iters: int, warmup: int, trivial: bool) -> dict:
    rate, memory = step_throughput(TrainConfig.from_dict(config_dict), iters, warmup, trivial_loss=trivial)
    return {"images_per_s": rate, "peak_mib": memory}


def _end_to_end_worker(overrides: dict, epochs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-train-") as cache_root:
        config = get_preset("cpu", epochs=epochs, **END_TO_END, **overrides)
        base = _peak_reset(torch.device("cpu"))
        start = time.perf_counter()
        run = train(config, cache_root=cache_root, fresh=True, progress=False)
        total = time.perf_counter() - start
        images = len(run.history) * config.p * config.k
        return {"images": images, "train_images_per_s": images / run.wall_time_s, "total_images_per_s": images / total,
                "train_s": run.wall_time_s, "total_s": total, "eval_s": run.extra["eval_time_s"],
                "peak_mib": _peak(torch.device("cpu")) - base, "rank1": run.metrics["rank1"],
                "precision": {k: run.extra[k] for k in ("channels_last", "amp", "precision_rule")}}


def _trunk_build_worker(config_dict: dict, count: int) -> dict:
    """Seconds to build the trunk cache (memory) of the first ``count`` training images and their mirrors."""
    config = TrainConfig.from_dict(config_dict)
    device = resolve_device(config, DistInfo())
    samples = load_dataset(config.dataset, config.data_root, **config.dataset_options).train[:count]
    model = build_model(config.model, pretrained=False).to(device)
    trunk.freeze(model, config.train_from)
    start = time.perf_counter()
    trunk.training_set(model, samples, config, device, resolve_precision(config, device))
    seconds = time.perf_counter() - start
    return {"images": len(samples), "build_s": seconds, "build_images_per_s": len(samples) / seconds}


def trunk_rows(args, cuda: bool) -> list[dict]:
    """The frozen-trunk rows (module docstring), each measurement in a fresh process."""
    device = "cuda" if cuda else "cpu"
    print(f"\nfrozen trunk: cpu preset step (P=16 x K=4) from the cached trunk output vs end to end; cache build of "
          f"{args.trunk_build_images} training images + mirrors", flush=True)
    print(f"{'input':>9}{'train_from':>12}{'img/s':>9}{'x e2e':>8}{'x cpu':>8}{'build s':>9}{'build img/s':>13}",
          flush=True)
    _in_fresh_process(_prepare_data)
    rows, reference = [], None
    for size in args.trunk_sizes:
        height, width = (int(v) for v in size.split("x"))
        base = get_preset("cpu", height=height, width=width, device=device)
        end_to_end = None
        for stage in ("", *args.trunk_stages):
            config = base.replace(train_from=stage, trunk_cache="memory" if stage else "off")
            row = {"input": size, "train_from": stage or "end to end",
                   **_in_fresh_process(_step_worker, config.to_dict(), args.iters, args.warmup, False)}
            if stage and "error" not in row:
                row.update(_in_fresh_process(_trunk_build_worker, config.to_dict(), args.trunk_build_images))
            rows.append(row)
            if "error" in row:
                print(f"{size:>9}{row['train_from']:>12}  {row['error']}", flush=True)
                continue
            end_to_end = end_to_end or row["images_per_s"]
            if (height, width) == (128, 64) and not stage:
                reference = row["images_per_s"]
            row["ratio_to_end_to_end"] = row["images_per_s"] / end_to_end
            row["ratio_to_cpu_preset"] = row["images_per_s"] / reference if reference else None
            cpu_ratio = f"{row['ratio_to_cpu_preset']:>7.2f}x" if reference else f"{'-':>8}"
            build = (f"{row['build_s']:>9.1f}{row['build_images_per_s']:>13.1f}" if "build_s" in row else "")
            print(f"{size:>9}{row['train_from']:>12}{row['images_per_s']:>9.1f}{row['ratio_to_end_to_end']:>7.2f}x"
                  f"{cpu_ratio}{build}", flush=True)
    return rows


def _prepare_data() -> dict:
    config = get_preset("cpu")
    load_dataset(config.dataset, config.data_root, **config.dataset_options)
    return {}


def model_rows(args, cuda: bool) -> list[tuple[str, TrainConfig]]:
    """(label, config) of each measured model: the presets' and the ``--also`` sizes (paper recipe)."""
    paper_p = args.paper_batch or (32 if cuda else 4)
    presets = {"smoke": get_preset("smoke"), "cpu": get_preset("cpu", **END_TO_END),
               "paper": get_preset("paper", p=paper_p)}
    rows = [(name, presets[name]) for name in args.models]
    for spec in args.also:
        model, _, size = spec.partition(":")
        height, width = (int(v) for v in size.split("x"))
        rows.append((f"{model} {size}", get_preset("paper", model=model, height=height, width=width, p=paper_p)))
    if args.size:
        height, width = (int(v) for v in args.size.split("x"))
        rows = [(label, config.replace(height=height, width=width)) for label, config in rows]
    return [(label, config.replace(device="cuda" if cuda else "cpu")) for label, config in rows]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    parser.add_argument("--models", nargs="*", default=["smoke", "cpu", "paper"], choices=["smoke", "cpu", "paper"],
                        help="presets whose model is measured")
    parser.add_argument("--also", nargs="*", default=["resnet50:128x64"], metavar="MODEL:HxW",
                        help="more (model, size) pairs, in the paper preset's recipe (default: resnet50:128x64)")
    parser.add_argument("--size", default=None, metavar="HxW", help="override every row's input size (tiny runs)")
    parser.add_argument("--paper-batch", type=int, default=None,
                        help="P of the paper preset's rows (K=4); default 32 on CUDA, 4 on a CPU")
    parser.add_argument("--variants", nargs="*", default=None, choices=list(VARIANTS),
                        help="default: fp32, fp32-cl, bf16, bf16-cl (+ fp16, fp16-cl on CUDA)")
    parser.add_argument("--no-reference", action="store_true", help="skip the trivial-loss reference steps")
    parser.add_argument("--skip-end-to-end", action="store_true")
    parser.add_argument("--e2e-epochs", type=int, default=2)
    parser.add_argument("--trunk", action="store_true", help="also measure the frozen-trunk rows (cpu preset)")
    parser.add_argument("--trunk-stages", nargs="*", default=["blocks.5", "blocks.6", "head"])
    parser.add_argument("--trunk-sizes", nargs="*", default=["128x64", "256x128"],
                        help="input sizes of the trunk rows (128x64 first: the cpu preset's reference)")
    parser.add_argument("--trunk-build-images", type=int, default=1024)
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda" or (args.device is None and torch.cuda.is_available())
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    variants = args.variants or [v for v in VARIANTS if cuda or not v.startswith("fp16")]
    device_name = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device_name}; torch {torch.__version__}; median of {args.iters} steps after {args.warmup} "
          f"warm-up step(s); each variant in a fresh process\n", flush=True)
    report = {"device": device_name, "torch": torch.__version__, "iters": args.iters, "steps": [], "end_to_end": {}}
    print(f"{'model':<22}{'input':>9}{'batch':>7}{'variant':>9}{'img/s':>9}{'x fp32':>8}{'peak MiB':>10}"
          f"{'ref img/s':>11}{'step/ref':>9}", flush=True)
    for label, config in model_rows(args, cuda):
        device = torch.device("cuda" if cuda else "cpu")
        chosen = resolve_precision(config, device)
        measured = {}
        for variant in variants:
            channels_last, amp = VARIANTS[variant]
            if amp == "fp16" and not cuda:
                continue
            vconfig = config.replace(channels_last=channels_last, amp=amp)
            row = _in_fresh_process(_step_worker, vconfig.to_dict(), args.iters, args.warmup, False)
            if variant == "fp32" and not args.no_reference and "error" not in row:
                ref = _in_fresh_process(_step_worker, vconfig.to_dict(), args.iters, args.warmup, True)
                row["reference_images_per_s"] = ref.get("images_per_s")
            measured[variant] = row
            mark = "*" if (channels_last, amp) == (chosen.channels_last, chosen.amp) else " "
            entry = {"model": label, "arch": config.model, "input": f"{config.height}x{config.width}",
                     "batch": config.p * config.k, "variant": variant, "chosen": mark == "*", **row}
            if "error" in row:
                print(f"{label:<22}{entry['input']:>9}{entry['batch']:>7}{variant:>8}{mark} {row['error']}", flush=True)
            else:
                fp32 = measured.get("fp32", {}).get("images_per_s")
                entry["ratio_to_fp32"] = row["images_per_s"] / fp32 if fp32 else None
                ref = row.get("reference_images_per_s")
                print(f"{label:<22}{entry['input']:>9}{entry['batch']:>7}{variant:>8}{mark}{row['images_per_s']:>9.1f}"
                      + (f"{entry['ratio_to_fp32']:>7.2f}x" if fp32 else f"{'-':>8}") + f"{row['peak_mib']:>10.0f}"
                      + (f"{ref:>11.1f}{row['images_per_s'] / ref:>9.2f}" if ref else ""), flush=True)
            report["steps"].append(entry)
        report.setdefault("chosen", {})[label] = {"channels_last": chosen.channels_last, "amp": chosen.amp,
                                                 "rule": chosen.rule}
    if not cuda:
        _print_table_entries(report["steps"])
    if args.trunk:
        report["trunk"] = trunk_rows(args, cuda)
    if not args.skip_end_to_end:
        report["end_to_end"] = end_to_end(args.e2e_epochs)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
    return report


def _print_table_entries(steps: list[dict]) -> None:
    """The ``CPU_STEP_SPEED`` entries of every (model, size) measured in all four CPU variants."""
    groups: dict[tuple, dict] = {}
    for s in steps:
        if "images_per_s" in s:
            height, width = (int(v) for v in s["input"].split("x"))
            groups.setdefault((s["arch"], height, width, s["batch"]), {})[VARIANTS[s["variant"]]] = s["images_per_s"]
    print("\nsnlib.precision.CPU_STEP_SPEED entries from this run (now in the table: "
          f"{', '.join(str(key) for key in CPU_STEP_SPEED)}):")
    for (arch, height, width, batch), figures in groups.items():
        if len(figures) == 4:
            values = ", ".join(f"{key}: {value:.1f}" for key, value in sorted(figures.items(), key=lambda kv: kv[0][::-1]))
            print(f"    {(arch, height, width)!r}: {{{values}}},  # batch {batch}")


def end_to_end(epochs: int) -> dict:
    """Old path vs default of a short ``cpu``-preset run (module docstring), each in a fresh process; between
    them, the default with one of the two changes undone (what each contributes)."""
    print(f"\nend to end: cpu preset, {epochs} epochs on its synthetic set, temporary cache root", flush=True)
    print(f"{'path':<46}{'train img/s':>12}{'total img/s':>12}{'train s':>9}{'total s':>9}{'peak MiB':>10}"
          f"{'rank-1':>8}", flush=True)
    _in_fresh_process(_prepare_data)   # generated once, outside the timed runs
    paths = {"old": ("old: " + " ".join(f"{k}={v}" for k, v in OLD_PATH.items()), OLD_PATH)}
    paths.update({f"{k}={v}": (f"default but {k}={v}", {k: v}) for k, v in OLD_PATH.items()})
    paths["default"] = ("default: " + _describe_default(), {})
    out = {}
    for key, (name, overrides) in paths.items():
        row = _in_fresh_process(_end_to_end_worker, overrides, epochs)
        out[key] = {"label": name, **row}
        if "error" in row:
            print(f"{name:<46}{row['error']}", flush=True)
            continue
        print(f"{name:<46}{row['train_images_per_s']:>12.1f}{row['total_images_per_s']:>12.1f}{row['train_s']:>9.1f}"
              f"{row['total_s']:>9.1f}{row['peak_mib']:>10.0f}{row['rank1']:>8.1f}", flush=True)
    new = out["default"]
    for key in (k for k in paths if k != "default"):
        if "error" in out[key] or "error" in new:
            continue
        train = new["train_images_per_s"] / out[key]["train_images_per_s"]
        total = new["total_images_per_s"] / out[key]["total_images_per_s"]
        if key == "old":
            out["train_speedup"], out["total_speedup"] = train, total
        print(f"default / {paths[key][0].split(':')[0]}: {train:.2f}x training, {total:.2f}x whole run", flush=True)
    return out


def _describe_default() -> str:
    config = get_preset("cpu", **END_TO_END)
    return f"channels_last={config.channels_last} amp={config.amp} decoded_cache={config.decoded_cache}"


if __name__ == "__main__":
    main()
