"""Baseline losses against independent oracles (pytorch-metric-learning, plain loops), and the invariances of every
loss (batch order, identity labels)."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import distances, losses as pml_losses, miners, reducers
from _loss_fixtures import clustered_batch

from snlib.losses import (
    SQUEEZE_READINGS, CenterLoss, ContrastiveLoss, CrossEntropyLoss, SupportNeighborLoss, TripletLoss,
)

TOL = dict(rtol=1e-9, atol=1e-10)


def _value_and_grads(loss_fn, inputs, labels):
    inputs = inputs.detach().clone().requires_grad_(True)
    value = loss_fn(inputs, labels)
    params = list(loss_fn.parameters()) if isinstance(loss_fn, torch.nn.Module) else []
    grads = torch.autograd.grad(value, [inputs, *params])
    return value.detach(), grads


# ---- batch-hard triplet vs pytorch-metric-learning -----------------------------------------------------------

def _pml_batch_hard(features, labels, margin, soft, normalize):
    """pml's batch-hard triplet: the miner picks the hardest positive / negative per anchor; MeanReducer averages
    over all mined anchors (pml's default AvgNonZeroReducer would drop the zero hinges). Soft margin in pml is
    softplus(dp - dn + margin), so margin 0 gives Hermans et al.'s soft margin."""
    distance = distances.LpDistance(normalize_embeddings=normalize)
    loss_fn = pml_losses.TripletMarginLoss(margin=0.0 if soft else margin, smooth_loss=soft, distance=distance,
                                           reducer=reducers.MeanReducer())
    miner = miners.BatchHardMiner(distance=distances.LpDistance(normalize_embeddings=normalize))
    return loss_fn(features, labels, miner(features, labels))


@pytest.mark.parametrize("soft", [False, True], ids=["margin", "soft"])
@pytest.mark.parametrize("normalize", [False, True], ids=["raw", "normalized"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_triplet_matches_pytorch_metric_learning(seed, normalize, soft):
    features, labels = clustered_batch(seed, num_ids=[16, 32, 5][seed], dim=[128, 2048, 8][seed], max_images=6)
    ours = TripletLoss(margin=0.3, soft=soft, normalize=normalize)
    value, (grad,) = _value_and_grads(ours, features, labels)
    reference, (ref_grad,) = _value_and_grads(
        lambda f, y: _pml_batch_hard(f, y, 0.3, soft, normalize), features, labels)
    torch.testing.assert_close(value, reference, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)
    assert 0 < ours.last["anchors"] <= len(labels)


def test_triplet_without_a_valid_anchor_is_a_connected_zero():
    features = torch.randn(4, 6, requires_grad=True)
    for labels in (torch.arange(4), torch.zeros(4, dtype=torch.long)):
        loss_fn = TripletLoss()
        value = loss_fn(features, labels)
        assert value.item() == 0.0 and value.grad_fn is not None and loss_fn.last["anchors"] == 0


# ---- contrastive, center, cross-entropy vs plain loops -------------------------------------------------------

@pytest.mark.parametrize("normalize", [False, True])
def test_contrastive_matches_pair_loop(normalize):
    features, labels = clustered_batch(3, num_ids=6, dim=12, max_images=4)
    loss_fn = ContrastiveLoss(margin=0.7, normalize=normalize)
    f = F.normalize(features, dim=1) if normalize else features
    pos, neg = [], []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            d = torch.linalg.vector_norm(f[i] - f[j]).item()
            (pos if labels[i] == labels[j] else neg).append(d)
    expected = 0.5 * np.mean(np.square(pos)) + 0.5 * np.mean(np.square(np.maximum(0.7 - np.array(neg), 0)))
    assert loss_fn(features, labels).item() == pytest.approx(expected, rel=1e-12)
    assert loss_fn.last["active_neg"] == pytest.approx(np.mean(np.array(neg) < 0.7))


def test_contrastive_with_one_kind_of_pair():
    features = torch.randn(5, 4, dtype=torch.float64)
    only_neg = ContrastiveLoss(margin=2.0)(features, torch.arange(5))
    dist = torch.cdist(F.normalize(features, dim=1), F.normalize(features, dim=1))
    off_diagonal = ~torch.eye(5, dtype=torch.bool)
    torch.testing.assert_close(only_neg, 0.5 * (2.0 - dist[off_diagonal]).pow(2).mean(), **TOL)
    only_pos = ContrastiveLoss()(features, torch.zeros(5, dtype=torch.long))
    torch.testing.assert_close(only_pos, 0.5 * dist[off_diagonal].pow(2).mean(), **TOL)


def test_center_loss_matches_loop_and_trains_its_centres():
    torch.manual_seed(0)
    loss_fn = CenterLoss(num_classes=5, feat_dim=3).double()
    features = torch.randn(8, 3, dtype=torch.float64)
    labels = torch.tensor([0, 4, 4, 1, 2, 2, 0, 3])
    centres = loss_fn.centers.detach()
    expected = np.mean([0.5 * ((features[i] - centres[labels[i]]) ** 2).sum().item() for i in range(8)])
    value, (grad_features, grad_centres) = _value_and_grads(loss_fn, features, labels)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(grad_features, (features - centres[labels]) / 8, **TOL)
    # dL/dc_j = -1/8 sum over the samples of class j of (f_i - c_j), summed in a plain loop
    expected_centres = torch.zeros(5, 3, dtype=torch.float64)
    for i in range(8):
        expected_centres[labels[i]] -= (features[i] - centres[labels[i]]) / 8
    torch.testing.assert_close(grad_centres, expected_centres, **TOL)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_label_smoothing(smoothing):
    logits = torch.randn(10, 7, dtype=torch.float64)
    labels = torch.randint(0, 7, (10,))
    log_p = logits.log_softmax(dim=1)
    expected = -((1 - smoothing) * log_p[torch.arange(10), labels] + smoothing * log_p.mean(dim=1)).mean()
    loss_fn = CrossEntropyLoss(label_smoothing=smoothing)
    torch.testing.assert_close(loss_fn(logits, labels), expected, **TOL)
    assert loss_fn.last["accuracy"] == pytest.approx((logits.argmax(1) == labels).double().mean().item())


@pytest.mark.parametrize("loss_fn", [TripletLoss(margin=0.2), TripletLoss(soft=True, normalize=True),
                                     ContrastiveLoss(margin=0.8)], ids=["triplet", "triplet-soft", "contrastive"])
def test_gradcheck_baselines(loss_fn):
    features, labels = clustered_batch(4, num_ids=3, dim=4, max_images=3, spread=0.5)
    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (features.requires_grad_(True),))


# ---- invariances of every loss -------------------------------------------------------------------------------

METRIC_LOSSES = {
    **{f"sn-{squeeze}": lambda s=squeeze: SupportNeighborLoss(k=5, squeeze=s) for squeeze in SQUEEZE_READINGS},
    "triplet": lambda: TripletLoss(),
    "triplet-soft": lambda: TripletLoss(soft=True),
    "contrastive": lambda: ContrastiveLoss(),
}


@pytest.mark.parametrize("name", list(METRIC_LOSSES))
def test_metric_losses_ignore_batch_order_and_label_values(name):
    features, labels = clustered_batch(8, num_ids=10, dim=32, max_images=5)
    loss_fn = METRIC_LOSSES[name]()
    value, (grad,) = _value_and_grads(loss_fn, features, labels)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    permuted, (permuted_grad,) = _value_and_grads(loss_fn, features[order], labels[order])
    torch.testing.assert_close(permuted, value, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(permuted_grad, grad[order], rtol=1e-12, atol=1e-12)
    ids = labels.unique()
    new_ids = dict(zip(ids.tolist(), (torch.randperm(len(ids)) * 7919 - 1000).tolist()))
    relabelled = torch.tensor([new_ids[y] for y in labels.tolist()])
    torch.testing.assert_close(_value_and_grads(loss_fn, features, relabelled)[0], value, rtol=0, atol=0)


def test_class_losses_follow_a_permutation_of_the_classes():
    """Center and CE losses index classes: relabelling must permute the centres / logit columns with them."""
    features, labels = clustered_batch(8, num_ids=6, dim=5, max_images=4)
    _, labels = labels.unique(return_inverse=True)
    order = torch.randperm(len(labels))
    classes = torch.randperm(6)                      # class c becomes classes[c]
    inverse = torch.argsort(classes)

    center = CenterLoss(num_classes=6, feat_dim=5).double()
    value = center(features, labels)
    torch.testing.assert_close(center(features[order], labels[order]), value, rtol=1e-12, atol=0)
    center.centers.data = center.centers.data[inverse]
    torch.testing.assert_close(center(features, classes[labels]), value, rtol=0, atol=0)

    ce = CrossEntropyLoss(label_smoothing=0.1)
    logits = torch.randn(len(labels), 6, dtype=torch.float64)
    value = ce(logits, labels)
    torch.testing.assert_close(ce(logits[order], labels[order]), value, rtol=1e-12, atol=0)
    torch.testing.assert_close(ce(logits[:, inverse], classes[labels]), value, rtol=1e-12, atol=0)


# ---- half precision ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_baselines_compute_in_float32_under_autocast(dtype):
    layer = torch.nn.Linear(16, 32)
    labels = torch.arange(8).repeat_interleave(4)
    for loss_fn, out in ((TripletLoss(), 32), (ContrastiveLoss(), 32), (CenterLoss(8, 32), 32),
                         (CrossEntropyLoss(0.1), 8)):
        with torch.autocast("cpu", dtype=dtype):
            outputs = layer(torch.randn(32, 16))[:, :out]
            value = loss_fn(outputs, labels)
        assert outputs.dtype == dtype and value.dtype == torch.float32 and math.isfinite(value.item())
