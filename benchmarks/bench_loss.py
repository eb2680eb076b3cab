"""Speed and memory of the SN loss (forward + backward), as ratios against references measured in the same run.

    python benchmarks/bench_loss.py                      # CPU, N = 128 (32 x 4) and 512 (128 x 4), dim 2048
    python benchmarks/bench_loss.py --device cuda        # on a GPU (the ResNet-50 step then runs at the full N)

References, all forward + backward on the same (N, 2048) float32 features:
  distance  the bare computation the loss is built on: L2-normalise, Gram-matrix distances, clamp, sqrt
  loop      snlib.losses.support_neighbor_loss_reference, a loop over anchors with a sort per anchor
            (its distances come from torch.cdist without the matrix product, timed apart as "loop distance")
  resnet50  one training step (forward, loss, backward, Adam) of torchvision's ResNet-50, random weights, last
            stride 1, 256 x 128 inputs. On CPU it runs on --resnet-batch images (default 16: 128 images need ~20 GB)
            and its time is scaled linearly to N (conv nets cost the same per image); the scaling is printed.
Goals (issue 2): SN <= 2x distance, loop / SN >= 3 at N = 512 on CPU (>= 50 on a GPU), SN < 1% of the step.
Peak memory: on CUDA torch.cuda.max_memory_allocated; on CPU the growth of the peak resident set size (VmHWM,
reset through /proc/self/clear_refs, Linux only) while the case runs once, in a fresh process per case, inputs
and model excluded.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from snlib.losses import SupportNeighborLoss, support_neighbor_loss_reference


def make_batch(n: int, dim: int, device: str):
    generator = torch.Generator().manual_seed(n)
    features = torch.randn(n, dim, generator=generator).to(device).requires_grad_(True)
    labels = torch.arange(n // 4, device=device).repeat_interleave(4)
    return features, labels


def bare_distance(features, labels):
    f = F.normalize(features, dim=1)
    sq_norms = f.pow(2).sum(dim=1)
    sq_dist = torch.addmm(sq_norms[:, None] + sq_norms[None, :], f, f.T, alpha=-2.0)
    sq_dist.clamp(min=1e-12).sqrt().sum().backward()


def sn_loss(features, labels, _loss=SupportNeighborLoss()):
    _loss(features, labels).backward()


def loop_loss(features, labels):
    support_neighbor_loss_reference(features, labels).backward()


def loop_distance(features, labels):
    torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist").sum().backward()


def resnet_step_factory(batch: int, device: str):
    """A closure running one ResNet-50 (last stride 1) training step with the SN loss on ``batch`` images."""
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.layer4[0].conv2.stride = (1, 1)
    model.layer4[0].downsample[0].stride = (1, 1)
    model.fc = torch.nn.Identity()
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=5e-4)
    images = torch.randn(batch, 3, 256, 128, device=device)
    labels = torch.arange(batch // 4, device=device).repeat_interleave(4)
    loss_fn = SupportNeighborLoss()

    def step(*_):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
    return step


CASES = {"distance": bare_distance, "sn": sn_loss, "loop": loop_loss, "loop distance": loop_distance}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def time_cases(cases: dict, args, device: str, repeats: dict, warmup: int = 2) -> dict:
    """Median wall time in seconds of each ``fn(*args)``; the cases are interleaved round by round, so that a
    change in the machine's load affects them alike. Gradients are cleared between calls."""
    times = {name: [] for name in cases}
    for round_ in range(warmup + max(repeats.values())):
        for name, fn in cases.items():
            if round_ >= warmup + repeats[name]:
                continue
            for a in args:
                if isinstance(a, torch.Tensor):
                    a.grad = None
            _sync(device)
            start = time.perf_counter()
            fn(*args)
            _sync(device)
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def _resident_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def _peak_memory_worker(case: str, n: int, dim: int, device: str, resnet_batch: int, queue) -> None:
    torch.manual_seed(0)
    if case == "resnet50":
        fn, args = resnet_step_factory(resnet_batch, device), ()
    else:
        fn, args = CASES[case], make_batch(n, dim, device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(*args)
        torch.cuda.synchronize()
        queue.put((torch.cuda.max_memory_allocated() - base) / 2**20)
    else:
        base = _resident_mib("VmRSS")
        with open("/proc/self/clear_refs", "w") as clear:   # resets VmHWM to the current resident size
            clear.write("5")
        fn(*args)
        queue.put(_resident_mib("VmHWM") - base)


def peak_memory_mib(case: str, n: int, dim: int, device: str, resnet_batch: int) -> float:
    """Peak extra memory of one run of ``case``, measured in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    worker = context.Process(target=_peak_memory_worker, args=(case, n, dim, device, resnet_batch, queue))
    worker.start()
    worker.join()
    if worker.exitcode != 0:
        return float("nan")
    return queue.get()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 512], help="batch sizes N (multiples of 4)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--resnet-batch", type=int, default=None,
                        help="images in the ResNet-50 step (default: 16 on CPU, N on CUDA); 0 skips it")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads:
        torch.set_num_threads(args.threads)

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {args.device} ({device_name}), {torch.get_num_threads()} threads, "
          f"dim {args.dim}, median of {args.repeats}")
    rows, resnet_seconds = [], {}          # resnet_seconds: images in the step -> seconds per step
    for n in args.sizes:
        features, labels = make_batch(n, args.dim, args.device)
        repeats = {case: max(2, args.repeats // 3) if case.startswith("loop") else args.repeats for case in CASES}
        times = time_cases(CASES, (features, labels), args.device, repeats)
        for case, seconds in times.items():
            print(f"  N={n:4d} {case:14s} {seconds * 1e3:9.2f} ms", flush=True)
        resnet_batch = args.resnet_batch if args.resnet_batch is not None else (n if args.device == "cuda" else 16)
        if resnet_batch:
            if resnet_batch not in resnet_seconds:
                step = resnet_step_factory(resnet_batch, args.device)
                resnet_seconds[resnet_batch] = time_cases({"step": step}, (), args.device, {"step": 2},
                                                          warmup=1)["step"]
                del step
            times["resnet50"] = resnet_seconds[resnet_batch] * n / resnet_batch
            print(f"  N={n:4d} resnet50 step  {resnet_seconds[resnet_batch] * 1e3:9.1f} ms on {resnet_batch} "
                  f"images -> {times['resnet50'] * 1e3:.1f} ms scaled to {n}", flush=True)
        memory = {}
        if not args.no_memory:
            for case in [*CASES, *(["resnet50"] if resnet_batch else [])]:
                memory[case] = peak_memory_mib(case, n, args.dim, args.device, resnet_batch)
            print("  peak extra memory (MiB): " + ", ".join(f"{c} {m:.0f}" for c, m in memory.items()), flush=True)
        rows.append((n, times, memory))

    print("\nloop*/SN: the loop with its exact cdist replaced by the bare distance time (loop - loop distance +"
          " distance)")
    print(f"{'N':>5} {'SN ms':>8} {'dist ms':>8} {'SN/dist':>8} {'loop/SN':>8} {'loop*/SN':>8} {'SN/step':>9}"
          f"  peak MiB: SN / distance / loop")
    for n, times, memory in rows:
        share = f"{100 * times['sn'] / times['resnet50']:.3f}%" if "resnet50" in times else "-"
        loop_on_gram = times["loop"] - times["loop distance"] + times["distance"]
        mem = " / ".join(f"{memory[c]:.0f}" for c in ("sn", "distance", "loop")) if memory else "-"
        print(f"{n:>5d} {times['sn'] * 1e3:8.2f} {times['distance'] * 1e3:8.2f} "
              f"{times['sn'] / times['distance']:7.2f}x {times['loop'] / times['sn']:7.1f}x "
              f"{loop_on_gram / times['sn']:7.1f}x {share:>9s}  {mem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
