"""Many processes (torchrun + DistributedDataParallel) and the cross-rank batch of the SN loss.

Under ``torchrun --nproc_per_node=G -m snlib train ...`` every process trains on its share of each P x K batch
and DDP averages the parameter gradients. A metric loss then sees only the local share. ``GlobalBatchLoss`` lets
it see the whole batch instead: features, labels (and logits) are gathered from all ranks, every rank computes
the loss of the joint batch, and the gathered tensors hand back to each rank the gradient of its own rows,
multiplied by the world size so that DDP's averaging yields exactly the gradient of one process on the joint
batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``...).

    One process (no ``WORLD_SIZE`` or 1): nothing to do. Backend: NCCL with CUDA, gloo otherwise. Idempotent.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not dist.is_initialized():
        return DistInfo()
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def current() -> DistInfo:
    """The process group this process belongs to (one process when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def barrier() -> None:
    if current().enabled:
        dist.barrier()


class _GatherRows(torch.autograd.Function):
    """``all_gather`` along dim 0 whose backward returns ``world_size x`` the gradient of the local rows only.

    Every rank computes the same loss of the gathered batch, so the local rows' gradient is already the full
    gradient; the factor cancels DDP's averaging over ranks.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        info = current()
        ctx.rank, ctx.world_size, ctx.rows = info.rank, info.world_size, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        start = ctx.rank * ctx.rows
        return grad[start:start + ctx.rows] * ctx.world_size


def gather_rows(tensor: torch.Tensor, with_grad: bool = True) -> torch.Tensor:
    """Concatenate ``tensor`` of every rank (rank order); every rank must hold the same number of rows."""
    info = current()
    if not info.enabled:
        return tensor
    sizes = [torch.zeros(1, dtype=torch.long, device=tensor.device) for _ in range(info.world_size)]
    dist.all_gather(sizes, torch.tensor([tensor.shape[0]], device=tensor.device))
    if len({int(s) for s in sizes}) != 1:
        raise ValueError(f"gather_rows: ranks hold different batch sizes {[int(s) for s in sizes]}; the P x K "
                         "sampler must give every rank the same number of images (drop_last=True)")
    if with_grad and tensor.requires_grad:
        return _GatherRows.apply(tensor)
    parts = [torch.empty_like(tensor) for _ in range(info.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


class GlobalBatchLoss(nn.Module):
    """Wrap a ``CombinedLoss``-like module so that it is computed on the batch of all ranks.

    ``forward(features, labels, logits=None)`` gathers the three (with gradient for the local rows) and calls the
    wrapped loss; its value is the joint-batch loss on every rank. Loss parameters (centre-loss centres) get the
    joint-batch gradient on every rank directly. With one process it is the wrapped loss unchanged.
    """

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    @property
    def last(self) -> dict:
        return self.loss.last

    @property
    def needs_logits(self) -> bool:
        return getattr(self.loss, "needs_logits", False)

    def forward(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor | None = None):
        features, labels = gather_rows(features), gather_rows(labels, with_grad=False)
        if logits is None:
            return self.loss(features, labels)
        return self.loss(features, labels, logits=gather_rows(logits))


def average_gradients(parameters) -> None:
    """All-reduce-average the gradients of parameters DDP does not manage (per-rank losses' own parameters)."""
    info = current()
    if not info.enabled:
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= info.world_size


def gather_objects(obj) -> list:
    """Every rank's ``obj`` (picklable) as a list in rank order; ``[obj]`` with one process."""
    info = current()
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out
