"""snlib.integrations.pml: the SN loss as a pytorch-metric-learning loss, against snlib's own loss (the batch as
the reference) and against a plain loop over anchors (a reference set, a miner's pairs, a memory bank)."""
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners
from pytorch_metric_learning.distances import CosineSimilarity
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from _loss_fixtures import clustered_batch
from snlib.integrations.pml import CrossBatchMemory, SupportNeighborLoss
from snlib.losses import SQUEEZE_READINGS
from snlib.losses import SupportNeighborLoss as SnlibLoss


def _squeeze(reading, dist, pos, same, ref):
    """L_sqz of one anchor by docs/paper.md's readings, over its candidates (``same``: those of its identity)."""
    nearest = min(pos, key=lambda j: dist[j].item())
    if reading == "released":
        return dist[nearest]
    if reading == "neighbors":
        return dist[nearest] if len(pos) == 1 else max(dist[j] for j in pos) - dist[nearest]
    furthest = max(same, key=lambda j: dist[j].item())
    if reading == "paper":
        return dist[furthest] - dist[nearest]
    if reading == "pair":
        return torch.zeros((), dtype=ref.dtype) if nearest == furthest else (ref[nearest] - ref[furthest]).norm()
    return torch.zeros((), dtype=ref.dtype)                                              # "none"


def _loop_oracle(emb, labels, ref, ref_labels, candidates, k=10, alpha=50.0, lam=0.1, squeeze="released"):
    """The SN loss written as a loop over anchors: ``candidates[i]`` lists the reference indices anchor i may
    draw from; distances of the L2-normalised vectors, from their differences."""
    emb, ref = emb / emb.norm(dim=1, keepdim=True), ref / ref.norm(dim=1, keepdim=True)
    terms = []
    for i, cands in enumerate(candidates):
        dist = {j: (emb[i] - ref[j]).norm() for j in cands}
        same = [j for j in cands if ref_labels[j] == labels[i]]
        if not same:
            continue
        ranked = sorted(cands, key=lambda j: dist[j].item())
        support = cands if len(cands) <= k else [j for j in cands if dist[j] < dist[ranked[k]]]
        pos = [j for j in support if ref_labels[j] == labels[i]] or [min(same, key=lambda j: dist[j].item())]
        neg = [j for j in support if ref_labels[j] != labels[i]]
        num = torch.stack([torch.exp(-alpha * dist[j]) for j in pos]).sum()
        den = torch.stack([torch.exp(-alpha * dist[j]) for j in pos + neg]).sum()
        terms.append(-torch.log(num / den) + lam * _squeeze(squeeze, dist, pos, same, ref))
    return torch.stack(terms).mean()


def _value_and_grad(loss_fn, features, *args, **kwargs):
    x = features.clone().requires_grad_(True)
    value = loss_fn(x, *args, **kwargs)
    value.backward()
    return value.detach(), x.grad


def test_is_a_pml_loss_and_refuses_a_similarity():
    assert isinstance(SupportNeighborLoss(), pml_losses.BaseMetricLossFunction)
    with pytest.raises(ValueError, match="similarity"):
        SupportNeighborLoss(distance=CosineSimilarity())
    with pytest.raises(ValueError, match="squeeze"):
        SupportNeighborLoss(squeeze="tight")
    with pytest.raises(ValueError, match="lam"):
        SupportNeighborLoss(lam=-1.0)


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
@pytest.mark.parametrize("seed, k", [(0, 3), (1, 10), (2, 200)])
def test_equals_snlib_loss_on_the_batch(squeeze, seed, k):
    """No reference set, no miner: the same loss as snlib.losses.SupportNeighborLoss, values and gradients
    (float64; k=200 is beyond the batch: every other sample is a neighbour)."""
    features, labels = clustered_batch(seed, num_ids=8, dim=16, max_images=5)
    ours, ours_grad = _value_and_grad(SupportNeighborLoss(k=k, squeeze=squeeze), features, labels)
    theirs, theirs_grad = _value_and_grad(SnlibLoss(k=k, squeeze=squeeze), features, labels)
    assert ours.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours_grad, theirs_grad, rtol=1e-8, atol=1e-10)
    assert ours_grad.abs().sum() > 0


def test_all_pairs_tuple_is_the_default():
    features, labels = clustered_batch(3, num_ids=6, dim=8)
    loss = SupportNeighborLoss(k=4)
    assert torch.equal(loss(features, labels, lmu.get_all_pairs_indices(labels)), loss(features, labels))


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_a_miners_tuple_restricts_the_candidates(squeeze):
    """A miner's triplets: each anchor draws its neighbours from the samples its triplets name (loop oracle),
    every squeeze reading."""
    features, labels = clustered_batch(4, num_ids=6, dim=8, max_images=4, spread=1.0)
    triplets = miners.TripletMarginMiner(margin=0.2, type_of_triplets="semihard")(features, labels)
    assert 0 < len(triplets[0]) < len(lmu.get_all_triplets_indices(labels)[0])
    candidates = [sorted({int(j) for a, p, n in zip(*triplets) if a == i for j in (p, n)})
                  for i in range(len(labels))]
    loss = SupportNeighborLoss(k=3, squeeze=squeeze)
    ours, ours_grad = _value_and_grad(loss, features, labels, triplets)
    oracle, oracle_grad = _value_and_grad(
        lambda x: _loop_oracle(x, labels, x, labels, candidates, k=3, squeeze=squeeze), features)
    torch.testing.assert_close(ours, oracle, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours_grad, oracle_grad, rtol=1e-8, atol=1e-10)
    assert not torch.isclose(ours, loss(features, labels))  # the restriction changed the loss


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_reference_set_matches_loop_oracle(squeeze):
    """``ref_emb``: every reference sample is a candidate (the batch itself is not); every squeeze reading."""
    features, labels = clustered_batch(5, num_ids=5, dim=8, max_images=3)
    ref, ref_labels = clustered_batch(6, num_ids=7, dim=8, max_images=4)
    ref_labels[:4] = labels[:4]  # some anchors find positives in the reference set, others none
    candidates = [list(range(len(ref)))] * len(labels)
    loss = SupportNeighborLoss(k=5, squeeze=squeeze)
    ours, ours_grad = _value_and_grad(loss, features, labels, ref_emb=ref, ref_labels=ref_labels)
    oracle, oracle_grad = _value_and_grad(
        lambda x: _loop_oracle(x, labels, ref, ref_labels, candidates, k=5, squeeze=squeeze), features)
    torch.testing.assert_close(ours, oracle, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ours_grad, oracle_grad, rtol=1e-8, atol=1e-10)


def test_no_anchor_with_a_positive_candidate_gives_a_connected_zero():
    features, _ = clustered_batch(7, num_ids=4, dim=8)
    labels = torch.arange(len(features))
    x = features.clone().requires_grad_(True)
    value = SupportNeighborLoss()(x, labels)
    value.backward()
    assert value.item() == 0.0 and torch.equal(x.grad, torch.zeros_like(x))


def test_cross_batch_memory_draws_neighbours_from_the_memory():
    """In PML's CrossBatchMemory the reference is the memory (past batches and this one), each anchor's own copy
    left out; the loss is the loop oracle's over that memory, and the gradient reaches the batch."""
    with pytest.raises(Exception, match="not supported"):  # why snlib subclasses it
        pml_losses.CrossBatchMemory(SupportNeighborLoss(), embedding_size=8)
    first, first_labels = clustered_batch(8, num_ids=4, dim=8, max_images=3)
    second, second_labels = clustered_batch(9, num_ids=4, dim=8, max_images=3)
    second_labels[:3] = first_labels[:3]   # positives in the memory from the first batch
    memory = CrossBatchMemory(SupportNeighborLoss(k=4), embedding_size=8, memory_size=64).double()
    memory(first, first_labels)
    x = second.clone().requires_grad_(True)
    value = memory(x, second_labels)
    value.backward()
    bank, bank_labels = torch.cat([first, second]), torch.cat([first_labels, second_labels])
    offset = len(first)
    candidates = [[j for j in range(len(bank)) if j != offset + i] for i in range(len(second))]
    oracle, oracle_grad = _value_and_grad(
        lambda y: _loop_oracle(y, second_labels, bank, bank_labels, candidates, k=4), second)
    torch.testing.assert_close(value.detach(), oracle, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, oracle_grad, rtol=1e-8, atol=1e-10)
