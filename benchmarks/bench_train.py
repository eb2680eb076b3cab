"""Training throughput (images per second) of each preset on this machine.

One training step = forward of the preset's model on a P x K batch at the preset's resolution, its loss,
backward, Adam step, on random images: the step is measured, not the data loading (JPEG decoding of a 64-image
batch at 128x64 takes ~0.1 s on this 2-core CPU, against ~0.9 s for the step; the engine's per-iteration history
records the end-to-end images/s of real runs).
Reference in the same run: the same step with a trivial loss (mean of squared features), so the ratio
``loss step / reference`` is the cost of the re-ID loss on top of the network. On CUDA (channels-last, as the
engine) the paper preset is also timed with bf16 / fp16 autocast, as speed-ups over fp32.

    python benchmarks/bench_train.py                 # smoke, cpu, paper (paper batch reduced on a CPU)
    python benchmarks/bench_train.py --paper-batch 32 --iters 20   # the paper's 32 x 4 batch
"""
from __future__ import annotations

import argparse
import time

import torch

from snlib.engine import _autocast, build_loss_for, resolve_device
from snlib.distributed import DistInfo
from snlib.models import build_model
from snlib.presets import get_preset


def _labels(p: int, k: int, device) -> torch.Tensor:
    return torch.arange(p, device=device).repeat_interleave(k)


def step_throughput(config, iters: int, warmup: int, trivial_loss: bool = False) -> float:
    """Images per second of full training steps (median of per-step times after ``warmup`` steps)."""
    device = resolve_device(config, DistInfo())
    torch.manual_seed(0)
    num_classes = max(config.p, 8)
    model = build_model(config.model, pretrained=False, last_stride=config.last_stride, bnneck=config.bnneck)
    loss = build_loss_for(config, num_classes, model.feat_dim)
    if loss.needs_logits:
        model.add_classifier(num_classes)
    model, loss = model.to(device).train(), loss.to(device)
    channels_last = device.type == "cuda" and config.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=config.lr)
    autocast, _ = _autocast(config, device)
    images = torch.randn(config.p * config.k, 3, config.height, config.width, device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = _labels(config.p, config.k, device)
    times = []
    for i in range(warmup + iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            out = model(images)
        f = out["features"].float()
        value = f.pow(2).mean() if trivial_loss else loss(f, labels, logits=None if out["logits"] is None
                                                              else out["logits"].float())
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    times.sort()
    return config.p * config.k / times[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--paper-batch", type=int, default=None,
                        help="P for the paper preset (K=4); default 32 on CUDA, 4 on a CPU")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    paper_p = args.paper_batch or (32 if cuda else 4)
    device = torch.cuda.get_device_name(0) if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device}; median of {args.iters} steps after {args.warmup} warm-up step(s)\n")
    rows = [("smoke", get_preset("smoke")), ("cpu", get_preset("cpu")),
            (f"paper (P={paper_p})", get_preset("paper", p=paper_p))]
    if cuda:
        rows += [(f"paper bf16 (P={paper_p})", get_preset("paper", p=paper_p, amp="bf16")),
                 (f"paper fp16 (P={paper_p})", get_preset("paper", p=paper_p, amp="fp16"))]
    print(f"{'preset':<24}{'model':<20}{'input':>9}{'batch':>7}{'loss':>7}{'img/s':>9}{'ref img/s':>11}"
          f"{'ratio':>7}")
    fp32 = None
    for name, config in rows:
        with_loss = step_throughput(config, args.iters, args.warmup)
        reference = step_throughput(config, args.iters, args.warmup, trivial_loss=True)
        print(f"{name:<24}{config.model:<20}{f'{config.height}x{config.width}':>9}{config.p * config.k:>7}"
              f"{config.loss:>7}{with_loss:>9.1f}{reference:>11.1f}{with_loss / reference:>7.2f}")
        if name.startswith("paper ("):
            fp32 = with_loss
        elif fp32:
            print(f"{'':<24}speed-up over fp32: {with_loss / fp32:.2f}x")


if __name__ == "__main__":
    main()
