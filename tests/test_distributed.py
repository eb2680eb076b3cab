"""snlib.distributed on the CPU: two gloo processes (torch.multiprocessing) against one process on the joint batch."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from snlib.distributed import GlobalBatchLoss, average_gradients, gather_rows
from snlib.losses import build_loss

WORLD = 2
NUM_IDS, PER_ID, DIM, CLASSES = 6, 4, 8, 6
#: Loss specs checked: the SN loss alone, with the paper's squeeze, and mixed with terms that take logits
#: (cross-entropy) or own parameters (centre loss).
SPECS = ("sn", "sn-paper+0.5*ce", "sn+0.01*center", "triplet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Net(nn.Module):
    """Features + identity logits; no batch-dependent layer, so the joint-batch gradient is well defined."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(DIM, DIM)
        self.classify = nn.Linear(DIM, CLASSES)

    def forward(self, x):
        f = self.embed(x)
        return f, self.classify(f)


def _joint_batch():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(NUM_IDS).repeat_interleave(PER_ID)
    x = torch.randn(NUM_IDS * PER_ID, DIM, generator=g) + 0.8 * torch.randn(NUM_IDS, DIM, generator=g)[labels]
    # rank r holds rows r, r + WORLD, ...: every rank sees every identity, but only half of each
    order = torch.cat([torch.arange(r, len(labels), WORLD) for r in range(WORLD)])
    return x[order], labels[order]


def _step(net, loss, x, y, wrapped):
    """Forward + backward; returns (loss value, gradients of the network, gradients of the loss)."""
    criterion = GlobalBatchLoss(loss) if wrapped else loss
    f, logits = net(x)
    value = criterion(f, y, logits=logits)
    value.backward()
    if not wrapped:
        average_gradients(loss.parameters())
    grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in net.parameters()]
    loss_grads = [p.grad.clone() for p in loss.parameters()]
    return value.detach(), grads, loss_grads


def _fresh(spec):
    torch.manual_seed(1)
    return _Net(), build_loss(spec, num_classes=CLASSES, feat_dim=DIM)


def _worker(rank, port, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        x, y = _joint_batch()
        rows = slice(rank * len(y) // WORLD, (rank + 1) * len(y) // WORLD)
        results = {}
        for spec in SPECS:
            for wrapped in (True, False):
                net, loss = _fresh(spec)
                # "sn" leaves the classifier unused
                ddp = nn.parallel.DistributedDataParallel(net, find_unused_parameters=True)
                results[spec, wrapped] = _step(ddp, loss, x[rows], y[rows], wrapped)
        # gather_rows without gradient, and its refusal of unequal batches
        results["gathered"] = gather_rows(torch.full((2,), float(rank)), with_grad=False)
        try:
            gather_rows(torch.zeros(rank + 1))
            results["unequal"] = "no error"
        except ValueError as exc:
            results["unequal"] = str(exc)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("spec", SPECS)
def test_global_batch_loss_matches_one_process_on_the_joint_batch(ranks, spec):
    x, y = _joint_batch()
    net, loss = _fresh(spec)
    expected_value, expected_grads, expected_loss_grads = _step(net, loss, x, y, wrapped=False)
    for rank in ranks:
        value, grads, loss_grads = rank[spec, True]
        torch.testing.assert_close(value, expected_value, rtol=1e-5, atol=1e-6)
        for got, want in zip(grads, expected_grads):  # after DDP's averaging over the ranks
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
        for got, want in zip(loss_grads, expected_loss_grads):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_per_rank_losses_differ_from_the_joint_batch(ranks):
    """The comparison above can fail: the SN loss of half batches is another loss."""
    x, y = _joint_batch()
    net, loss = _fresh("sn")
    expected_value, expected_grads, _ = _step(net, loss, x, y, wrapped=False)
    value, grads, _ = ranks[0]["sn", False]
    assert not torch.allclose(value, expected_value, rtol=1e-3)
    assert not torch.allclose(grads[0], expected_grads[0], rtol=1e-3)


def test_gather_rows_order_and_unequal_batches(ranks):
    for rank in ranks:
        assert rank["gathered"].tolist() == [0.0, 0.0, 1.0, 1.0]
        assert "different batch sizes [1, 2]" in rank["unequal"]


# ------------------------------------------------------------------------------ the engine under two ranks


def _train_worker(rank, port, data_root, run_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    from snlib.engine import train
    from snlib.presets import get_preset

    torch.set_num_threads(1)
    try:
        config = get_preset("smoke", data_root=data_root, epochs=2, height=32, width=16, p=8, sn_global=True)
        result = train(config, run_dir=run_dir, progress=False)
        torch.save({"history": result.history, "metrics": result.metrics}, os.path.join(run_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_engine_trains_under_ddp_with_global_support_neighbours(tmp_path):
    from snlib.data import load_dataset
    from snlib.presets import get_preset

    smoke = get_preset("smoke")
    data_root = str(tmp_path / "data")
    load_dataset("synthetic", data_root, **smoke.dataset_options)  # generated once, before the ranks start
    run_dir = tmp_path / "run"
    mp.spawn(_train_worker, args=(_free_port(), data_root, str(run_dir)), nprocs=WORLD, join=True)
    ranks = [torch.load(run_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    history = ranks[0]["history"]
    assert len(history) == 2 * (smoke.dataset_options["num_train_ids"] // 8)
    # the SN loss saw the anchors of the joint batch of 8 x 4 images (each rank holds half of them)
    assert all(row["sn/anchors"] == 8 * smoke.k for row in history)
    assert ranks[0]["metrics"] == ranks[1]["metrics"] and (run_dir / "model.pt").is_file()
