"""The checks of a GPU machine, in one command (``benchmarks/gpu_check.sh``, which runs this with ``PYTHONPATH=.``).

There: the machine's python (torch, torchvision, timm preinstalled, not the pinned versions, nothing installable);
snlib runs from the source tree, and a step whose packages are missing is skipped and says which. Steps (each in
a subprocess with its own time limit, all within ``--budget-s``, 480 s by default):

1. ``cuda_tests``: ``pytest -m cuda`` (CUDA vs CPU losses, evaluation, the engine's AMP paths); without pytest,
   a plain-python check (SN loss on CUDA vs CPU, one bf16 and one fp16 training step).
2. ``bench_loss``: ``benchmarks/bench_loss.py --device cuda`` (goal: the SN loss >= 50x faster than the
   per-anchor loop; its share of a ResNet-50 step).
3. ``bench_train``: the ``paper`` preset's training step at P=32 x K=4, 256x128, in fp32 / bf16 / fp16 autocast,
   NCHW and channels-last (``benchmarks/bench_train.py``).
4. ``paper_epoch``: one epoch of the ``paper`` preset on the synthetic set with ``pretrained=false`` (no ImageNet
   download there), through the command line.
5. ``market_epoch``: one epoch of the ``paper`` preset on a Market-size synthetic set written as a Market-1501
   folder (``generate_market_folder``: 751 training identities, about 17 images each, at Market's 128x64; few test
   identities, so that the final evaluation stays short), the decoded-image cache in memory and 16 loader workers:
   the images/s of the whole loop (data, step, schedule; the trained images over the training time), then
   ``snlib reproduce --plan`` on that folder and the projected time of ``make reproduce PRESET=paper``: the plan's
   iterations x 128 images / that rate (the evaluations not counted).

Writes ``gpu_check.json`` and ``gpu_check.md`` into the folder given as argument (``gpu_check.sh``: else
``$OUT``, else the current folder). ``--dry-run``: on the CPU, every step at tiny sizes (the tests only collected), the CUDA parts skipped and
listed as skipped: what shows that the real run will start.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
#: What snlib needs to import beyond torch (a step that needs a missing one is skipped).
SNLIB_NEEDS = ("torch", "torchvision", "timm", "numpy", "pandas", "PIL", "tqdm", "scipy", "sklearn")
CUDA_TEST_FILES = ("tests/test_losses.py", "tests/test_evaluation.py", "tests/test_engine_cpu_precision.py")
#: Seconds each step may take at most (also capped by what is left of the budget).
STEP_LIMITS = {"cuda_tests": 120, "bench_loss": 110, "bench_train": 100, "paper_epoch": 90, "market_epoch": 150}
#: The Market-size synthetic set of ``market_epoch`` (SyntheticConfig fields) and, in a dry run, a tiny one.
MARKET_SIZE = {"num_train_ids": 751, "num_test_ids": 20, "num_cameras": 6, "min_cameras_per_id": 2,
               "images_per_camera": [3, 5], "height": 128, "width": 64, "num_distractors": 20, "num_junk": 10}
MARKET_TINY = {"num_train_ids": 16, "num_test_ids": 6, "num_cameras": 3, "images_per_camera": [2, 2],
               "height": 32, "width": 16, "num_distractors": 3, "num_junk": 2}
TAIL = 3000


def missing(modules) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def environment() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "missing_packages": missing(
        (*SNLIB_NEEDS, "pytest", "matplotlib"))}
    try:
        import torch
        info.update(torch=torch.__version__, cuda=torch.cuda.is_available(), cuda_version=torch.version.cuda,
                    device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    bf16_supported=torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    except ImportError as exc:
        info.update(torch=None, cuda=False, error=str(exc))
    return info


def run_step(command: list[str], limit: float) -> dict:
    """Run ``command`` from the repository root (``gpu_check.sh`` exports ``PYTHONPATH=.``) for at most ``limit``
    seconds."""
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=limit)
        out, rc = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        out = ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or "")
        out, rc = out + f"\n[timed out after {limit:.0f} s]", "timeout"
    return {"status": "ok" if rc == 0 else "failed", "rc": rc, "seconds": round(time.perf_counter() - start, 1),
            "command": shlex.join(command), "output_tail": out[-TAIL:]}


def skipped(reason: str, command: list[str] | None = None) -> dict:
    return {"status": "skipped", "reason": reason, **({"command": shlex.join(command)} if command else {})}


# ------------------------------------------------------------------------------------------------ steps


def cuda_tests(py: str, dry: bool, cuda: bool, limit: float) -> dict:
    if importlib.util.find_spec("pytest") is not None:
        command = [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", "-o", "addopts=",
                   *CUDA_TEST_FILES]
        if dry or not cuda:
            result = run_step([*command, "--collect-only"], limit)
            result["note"] = "collected only (no CUDA device): the cuda tests run on a GPU machine"
            return result
        result = run_step(command, limit)
        found = re.findall(r"(\d+) (passed|failed|skipped|error)", result["output_tail"])
        result["counts"] = {kind: int(n) for n, kind in found}
        return result
    command = [py, "-c", "import sys; sys.path.insert(0, 'benchmarks'); import gpu_check; "
                         "sys.exit(gpu_check.plain_cuda_check())"]
    if not cuda:
        return skipped("no CUDA device (plain-python check needs one); pytest not installed", command)
    return run_step(command, limit)


def plain_cuda_check() -> int:
    """Without pytest: SN loss on CUDA vs CPU (value and gradient), one bf16 and one fp16 training step."""
    import torch

    from snlib.losses import SupportNeighborLoss
    from snlib.models import build_model

    generator = torch.Generator().manual_seed(0)
    features = torch.randn(64, 128, generator=generator, dtype=torch.float64)
    labels = torch.arange(16).repeat_interleave(4)
    values, grads = [], []
    for device in ("cpu", "cuda"):
        f = features.to(device).requires_grad_(True)
        value = SupportNeighborLoss()(f, labels.to(device))
        value.backward()
        values.append(value.item())
        grads.append(f.grad.cpu())
    torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-8)
    print(f"SN loss CPU {values[0]:.6f} vs CUDA {values[1]:.6f}: equal")
    for dtype in (torch.bfloat16, torch.float16):
        model = build_model("resnet50", pretrained=False).cuda().to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
        images = torch.randn(16, 3, 256, 128, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype):
            out = model(images)
        loss = SupportNeighborLoss()(out.features.float(), torch.arange(4, device="cuda").repeat_interleave(4))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        assert out.features.dtype == dtype and torch.isfinite(loss), (dtype, loss)
        print(f"{dtype} training step: loss {loss.item():.4f}, parameters {next(model.parameters()).dtype}")
    return 0


def bench_loss(py: str, dry: bool, cuda: bool, limit: float) -> dict:
    if dry or not cuda:
        command = [py, str(BENCH / "bench_loss.py"), "--device", "cpu", "--sizes", "8", "--dim", "16",
                   "--repeats", "1", "--resnet-batch", "0", "--no-memory"]
        result = run_step(command, limit)
        result["note"] = "tiny sizes on the CPU; the CUDA run: " + shlex.join(_bench_loss_cuda(py))
    else:
        result = run_step(_bench_loss_cuda(py), limit)
    rows = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)x\s+([\d.]+)x\s+([\d.]+)x\s+(\S+)",
                      result["output_tail"], flags=re.M)
    result["rows"] = [{"N": int(n), "sn_ms": float(sn), "distance_ms": float(d), "sn_over_distance": float(r1),
                       "loop_over_sn": float(r2), "loop_on_gram_over_sn": float(r3), "sn_share_of_step": share}
                      for n, sn, d, r1, r2, r3, share in rows]
    if rows and cuda and not dry:
        result["goal_loop_over_sn_ge_50"] = all(r["loop_over_sn"] >= 50 for r in result["rows"])
    return result


def _bench_loss_cuda(py: str) -> list[str]:
    return [py, str(BENCH / "bench_loss.py"), "--device", "cuda", "--repeats", "5", "--no-memory"]


def bench_train(py: str, dry: bool, cuda: bool, out: Path, limit: float) -> dict:
    json_path = out / "bench_train.json"
    if dry or not cuda:
        command = [py, str(BENCH / "bench_train.py"), "--device", "cpu", "--models", "paper", "--also",
                   "--size", "64x32", "--paper-batch", "2", "--variants", "fp32", "bf16-cl", "--iters", "1",
                   "--warmup", "0", "--no-reference", "--skip-end-to-end", "--json", str(json_path)]
        cuda_only = ["fp16", "fp16-cl"]
    else:
        command = [py, str(BENCH / "bench_train.py"), "--device", "cuda", "--models", "paper", "--also",
                   "--paper-batch", "32", "--variants", "fp32", "fp32-cl", "bf16", "bf16-cl", "fp16", "fp16-cl",
                   "--iters", "10", "--warmup", "3", "--no-reference", "--skip-end-to-end", "--json", str(json_path)]
        cuda_only = []
    result = run_step(command, limit)
    if json_path.is_file():
        result["steps"] = json.loads(json_path.read_text())["steps"]
        json_path.unlink()   # folded into gpu_check.json
    if cuda_only:
        result["skipped_variants"] = {v: "fp16 autocast is CUDA-only" for v in cuda_only}
    return result


def paper_epoch(py: str, dry: bool, cuda: bool, limit: float) -> dict:
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        command = [py, "-m", "snlib", "train", "--preset", "paper", "--dataset", "synthetic", "--data-root",
                   str(Path(tmp) / "data"), "--epochs", "1", "--set", "pretrained=false", "--cache-root",
                   str(Path(tmp) / "cache"), "--no-progress"]
        if dry or not cuda:
            command += ["--device", "cpu", "--set", "height=64", "--set", "width=32", "--set", "p=4",
                        "--set", "num_workers=0", "--set",
                        'dataset_options={"num_train_ids": 8, "num_test_ids": 4, "num_distractors": 0, '
                        '"num_junk": 0}']
        result = run_step(command, limit)
        results = list((Path(tmp) / "cache").glob("*/result.json"))
        if results:
            summary = json.loads(results[0].read_text())
            with open(results[0].parent / "history.csv", newline="") as fh:
                rates = [float(row["images_per_s"]) for row in csv.DictReader(fh)]
            warm = sorted(rates[1:] or rates)   # the first iteration warms up
            result.update(metrics=summary["metrics"], extra=summary["extra"], wall_time_s=summary["wall_time_s"],
                          iterations=len(rates), median_images_per_s=warm[len(warm) // 2])
    result["note"] = "pretrained=false (no ImageNet download on the GPU machine); the synthetic set, 1 epoch" + (
        "; tiny sizes on the CPU (dry run)" if dry or not cuda else "")
    return result


def market_epoch(py: str, dry: bool, cuda: bool, limit: float) -> dict:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-market-") as tmp:
        root, small = Path(tmp) / "market1501", dry or not cuda
        sizes = MARKET_TINY if small else MARKET_SIZE
        make = run_step([py, "-c", "import json, sys; from snlib.data.synthetic import SyntheticConfig, "
                         "generate_market_folder; c = json.loads(sys.argv[2]); c['images_per_camera'] = "
                         "tuple(c['images_per_camera']); generate_market_folder(sys.argv[1], SyntheticConfig(**c), "
                         "num_extra=20)", str(root), json.dumps(sizes)], limit)
        if make["status"] != "ok":
            return {**make, "note": "generating the Market-layout set failed"}
        command = [py, "-m", "snlib", "train", "--preset", "paper", "--dataset", "market1501", "--data-root",
                   str(root), "--epochs", "1", "--set", "pretrained=false", "--set", "decoded_cache=memory",
                   "--cache-root", str(Path(tmp) / "cache"), "--no-progress"]
        command += (["--device", "cpu", "--set", "height=32", "--set", "width=16", "--set", "p=4",
                     "--set", "num_workers=0"] if small else ["--set", "num_workers=16"])
        result = run_step(command, limit - (time.perf_counter() - start))
        results = list((Path(tmp) / "cache").glob("*/result.json"))
        if results:
            summary = json.loads(results[0].read_text())
            config = json.loads((results[0].parent / "config.json").read_text())
            with open(results[0].parent / "history.csv", newline="") as fh:
                iterations = sum(1 for _ in csv.DictReader(fh))
            rate = iterations * config["p"] * config["k"] / summary["wall_time_s"]
            result.update(iterations=iterations, wall_time_s=summary["wall_time_s"], loop_images_per_s=rate,
                          generation_s=make["seconds"], extra=summary["extra"])
            plan = run_step([py, "-m", "snlib", "reproduce", "--preset", "paper", "--dataset", "market1501",
                             "--data-root", str(root), "--records-root", str(Path(tmp) / "records"), "--plan"]
                            + (["--param", "overrides={height: 32, width: 16, p: 4, pretrained: false}"]
                               if small else ["--param", "overrides={pretrained: false}"]),
                            max(10.0, limit - (time.perf_counter() - start)))
            total = re.search(r"for (\d+) iterations of (\d+) images", plan["output_tail"])
            result["plan"] = {k: plan[k] for k in ("status", "seconds", "command", "output_tail")}
            if total:
                images = int(total.group(1)) * int(total.group(2))
                result.update(plan_iterations=int(total.group(1)), projected_hours=images / rate / 3600)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["note"] = ("Market-size synthetic set in Market-1501 layout, decoded cache in memory, 16 workers; "
                      "projected: the plan's iterations at the whole loop's images/s") + (
        "; tiny sizes on the CPU (dry run)" if small else "")
    return result


# --------------------------------------------------------------------------------------------- summary


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# GPU check ({'dry run on the CPU' if report['dry_run'] else env.get('device')})", "",
             f"torch {env.get('torch')}, CUDA {env.get('cuda_version')}, python {env['python']}, "
             f"missing packages: {', '.join(env['missing_packages']) or 'none'}; {report['seconds']} s in all", "",
             "| step | status | seconds | note |", "|---|---|---|---|"]
    for name, step in report["steps"].items():
        note = step.get("reason") or step.get("note") or ""
        lines.append(f"| {name} | {step['status']} | {step.get('seconds', '')} | {note} |")
    lines += ["", "Skipped: " + ("; ".join(report["skipped"]) or "nothing")]
    train = report["steps"].get("bench_train", {}).get("steps", [])
    if train:
        lines += ["", "## Training step (bench_train.py)", "", "| model | input | batch | variant | img/s | x fp32 |",
                  "|---|---|---|---|---|---|"]
        for s in train:
            ratio = f"{s['ratio_to_fp32']:.2f}" if s.get("ratio_to_fp32") else "-"
            speed = f"{s['images_per_s']:.1f} | {ratio}" if "images_per_s" in s else f"{s['error']} |"
            lines.append(f"| {s['model']} | {s['input']} | {s['batch']} | {s['variant']} | {speed} |")
    rows = report["steps"].get("bench_loss", {}).get("rows", [])
    if rows:
        lines += ["", "## SN loss (bench_loss.py)", "", "| N | SN ms | loop / SN | SN share of a ResNet-50 step |",
                  "|---|---|---|---|"]
        lines += [f"| {r['N']} | {r['sn_ms']} | {r['loop_over_sn']}x | {r['sn_share_of_step']} |" for r in rows]
    epoch = report["steps"].get("paper_epoch", {})
    if "extra" in epoch:
        lines += ["", "## One epoch of the paper preset", "",
                  f"{epoch['iterations']} iterations, median {epoch['median_images_per_s']:.1f} img/s, training "
                  f"{epoch['wall_time_s']:.1f} s, channels_last={epoch['extra'].get('channels_last')}, "
                  f"amp={epoch['extra'].get('amp')}; rank-1 {epoch['metrics'].get('rank1', float('nan')):.1f}"]
    market = report["steps"].get("market_epoch", {})
    if "loop_images_per_s" in market:
        lines += ["", "## One paper epoch on a Market-size set, and the projected reproduction", "",
                  f"{market['iterations']} iterations in {market['wall_time_s']:.1f} s: {market['loop_images_per_s']:.1f} "
                  f"img/s for the whole loop (data generated in {market['generation_s']} s)"]
        if "projected_hours" in market:
            lines.append(f"`make reproduce PRESET=paper DATASET=market1501`: {market['plan_iterations']} iterations "
                         f"-> about {market['projected_hours']:.1f} h of training at that rate (evaluations not counted)")
    lines += ["", "Commands and output tails: gpu_check.json.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", help="output folder (gpu_check.sh: the argument, else $OUT, else the current one)")
    parser.add_argument("--dry-run", action="store_true", help="on the CPU at tiny sizes, CUDA parts skipped")
    parser.add_argument("--budget-s", type=float, default=560.0, help="seconds for all the steps together")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    env = environment()
    cuda = bool(env.get("cuda")) and not args.dry_run
    py = sys.executable
    report = {"dry_run": args.dry_run, "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "environment": env,
              "steps": {}, "skipped": []}
    if not args.dry_run and not env.get("cuda"):
        report["skipped"].append("no CUDA device: every step ran as in --dry-run")
    elif args.dry_run:
        report["skipped"] += ["pytest -m cuda (collected only)", "bench_loss.py --device cuda (tiny CPU run)",
                              "bench_train.py fp16 variants and the CUDA sizes (tiny CPU run)",
                              "the paper epoch on CUDA (tiny CPU run)", "the Market-size epoch (tiny CPU run)"]
    steps = {"cuda_tests": lambda limit: cuda_tests(py, args.dry_run, cuda, limit),
             "bench_loss": lambda limit: bench_loss(py, args.dry_run, cuda, limit),
             "bench_train": lambda limit: bench_train(py, args.dry_run, cuda, out, limit),
             "paper_epoch": lambda limit: paper_epoch(py, args.dry_run, cuda, limit),
             "market_epoch": lambda limit: market_epoch(py, args.dry_run, cuda, limit)}
    lacking = missing(SNLIB_NEEDS)
    for name, step in steps.items():
        left = args.budget_s - (time.perf_counter() - start)
        if name != "cuda_tests" and lacking:
            report["steps"][name] = skipped(f"snlib needs {', '.join(lacking)}, not installed here")
        elif left < 10:
            report["steps"][name] = skipped(f"the {args.budget_s:.0f} s budget is spent")
        else:
            report["steps"][name] = step(min(STEP_LIMITS[name], left))
        print(f"{name}: {report['steps'][name]['status']} ({report['steps'][name].get('seconds', 0)} s)", flush=True)
        if report["steps"][name]["status"] == "skipped":
            report["skipped"].append(f"{name}: {report['steps'][name]['reason']}")
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["ok"] = all(s["status"] != "failed" for s in report["steps"].values())
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(markdown(report))
    print(f"wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}: {'ok' if report['ok'] else 'FAILED'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
