"""The SN loss against its per-anchor reference loop (docs/paper.md), its edge cases and its numerical stability.

The reference (``support_neighbor_loss_reference``) is a plain loop over anchors with a Python sort per anchor,
``torch.cdist`` distances and the literal ``-log(sum exp / sum exp)``; the loss under test builds masks over a
Gram-matrix distance and uses logsumexp. Baselines: test_losses_baselines.py; build_loss and errors:
test_losses_build.py.
"""
import math

import numpy as np
import pytest
import torch

from _loss_fixtures import clustered_batch
from snlib.losses import (
    SQUEEZE_READINGS, SupportNeighborLoss, euclidean_distance_matrix, support_neighbor_loss_reference,
    support_neighbors,
)

TOL = dict(rtol=1e-9, atol=1e-9)


def _value_and_grad(fn, features, labels, **kwargs):
    features = features.clone().requires_grad_(True)
    value = fn(features, labels, **kwargs)
    (grad,) = torch.autograd.grad(value, features)
    return value.detach(), grad


def _loss(features, labels, **kwargs):
    return SupportNeighborLoss(**kwargs)(features, labels)


# ---- against the reference loop, many random batches ---------------------------------------------------------

def _random_case(seed: int) -> dict:
    rng = np.random.default_rng(1000 + seed)
    num_ids = [1, 2, 32, 32][seed % 4] if seed < 8 else int(rng.integers(1, 33))
    dim = [2, 2048, 3, 512][seed // 2 % 4] if seed < 8 else int(rng.choice([2, 5, 16, 64, 300, 2048]))
    return dict(seed=seed, num_ids=num_ids, dim=dim, k=int(rng.choice([1, 2, 5, 10, 30, 1000])),
                alpha=float(rng.choice([1.0, 10.0, 50.0, 100.0])), lam=float(rng.choice([0.0, 0.1, 1.0, 10.0])),
                squeeze=SQUEEZE_READINGS[seed % len(SQUEEZE_READINGS)], normalize=bool(seed % 7 != 3))


RANDOM_CASES = [_random_case(seed) for seed in range(48)]


@pytest.mark.parametrize("case", RANDOM_CASES, ids=lambda c: "seed{seed}-P{num_ids}-d{dim}-k{k}-{squeeze}".format(**c))
def test_matches_reference_loop(case):
    features, labels = clustered_batch(case["seed"], case["num_ids"], case["dim"])
    options = {key: case[key] for key in ("k", "alpha", "lam", "squeeze", "normalize")}
    value, grad = _value_and_grad(_loss, features, labels, **options)
    ref_value, ref_grad = _value_and_grad(support_neighbor_loss_reference, features, labels, **options)
    torch.testing.assert_close(value, ref_value, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_gradcheck(squeeze):
    features, labels = clustered_batch(7, num_ids=3, dim=5, max_images=3, spread=0.5)
    features.requires_grad_(True)
    loss_fn = SupportNeighborLoss(k=3, alpha=5.0, lam=0.5, squeeze=squeeze)
    assert torch.autograd.gradcheck(lambda f: loss_fn(f, labels), (features,))


def test_last_parts_match_definitions():
    features, labels = clustered_batch(3, num_ids=6, dim=8, max_images=4, spread=0.3)
    loss_fn = SupportNeighborLoss(k=4, lam=0.3, squeeze="paper")
    value = loss_fn(features, labels)
    sets = support_neighbors(features, labels, k=4, squeeze="paper")
    anchors = sets.has_positive
    last = loss_fn.last
    assert last["loss"] == pytest.approx(value.item(), abs=1e-12)
    assert last["loss"] == pytest.approx(last["separation"] + 0.3 * last["squeeze"], abs=1e-12)
    assert last["separation"] == pytest.approx(sets.separation[anchors].mean().item(), abs=1e-12)
    assert last["anchors"] == anchors.sum().item()
    same = labels[:, None] == labels[None, :]
    off_diagonal = ~torch.eye(len(labels), dtype=torch.bool)
    assert last["pos_dist"] == pytest.approx(sets.distances[same & off_diagonal].mean().item(), abs=1e-12)
    assert last["neg_dist"] == pytest.approx(sets.distances[~same].mean().item(), abs=1e-12)
    assert last["no_positive"] == pytest.approx((~anchors).double().mean().item())
    knn_pos = (sets.neighbors & same).sum(1)[anchors].double()
    assert last["knn_without_positive"] == pytest.approx((knn_pos == 0).double().mean().item())
    assert last["support_pos"] + last["support_neg"] == pytest.approx(
        sets.neighbors.sum(1)[anchors].double().mean().item())


# ---- the "pair" reading: L_sqz(i) = D_nf -------------------------------------------------------------------

def _pk_batch(seed, num_ids, per_id, dim, spread=0.6):
    """P x K float64 batch: one Gaussian centre per identity plus noise, rows shuffled."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    features = torch.randn(num_ids, dim, generator=gen, dtype=torch.float64)[labels]
    features = features + spread * torch.randn(len(labels), dim, generator=gen, dtype=torch.float64)
    order = torch.randperm(len(labels), generator=gen)
    return features[order], labels[order]


@pytest.mark.parametrize("seed, num_ids, per_id, dim, k, normalize", [
    (0, 2, 2, 2, 1, True), (1, 4, 3, 3, 2, False), (2, 8, 4, 16, 5, True), (3, 16, 4, 64, 10, True),
    (4, 6, 6, 8, 3, False), (5, 3, 8, 5, 30, True), (6, 32, 4, 128, 10, False), (7, 5, 2, 2048, 4, True),
])
def test_pair_matches_reference_loop(seed, num_ids, per_id, dim, k, normalize):
    features, labels = _pk_batch(seed, num_ids, per_id, dim)
    options = dict(k=k, alpha=10.0, lam=1.0, squeeze="pair", normalize=normalize)
    value, grad = _value_and_grad(_loss, features, labels, **options)
    ref_value, ref_grad = _value_and_grad(support_neighbor_loss_reference, features, labels, **options)
    torch.testing.assert_close(value, ref_value, **TOL)
    torch.testing.assert_close(grad, ref_grad, **TOL)


@pytest.mark.parametrize("lam", [-0.1, math.nan, math.inf])
def test_the_loss_and_its_reference_refuse_a_squeeze_weight_that_is_not_a_finite_non_negative_number(lam):
    features, labels = _pk_batch(0, 4, 2, 8)
    with pytest.raises(ValueError, match="lam"):
        SupportNeighborLoss(lam=lam)
    with pytest.raises(ValueError, match="lam"):
        support_neighbor_loss_reference(features, labels, lam=lam)


def test_pair_by_hand():
    """Identity 1: 0 (0, 0), 1 (1, 0), 2 (0, 3); identity 2: 3 (0, -1.5), 4 (5, 5); k = 2, unnormalised.
    Anchor 0: 2-NN {1, 3}, n = 1, f = 2: D_12 = sqrt(10). Anchor 1: 2-NN {0, 3}, n = 0, f = 2: D_02 = 3.
    Anchor 2: 2-NN {0, 1}, n = 0, f = 1: D_01 = 1. Anchors 3 and 4: one positive, n = f: 0."""
    features = torch.tensor([(0, 0), (1, 0), (0, 3), (0, -1.5), (5, 5)], dtype=torch.float64)
    labels = torch.tensor([1, 1, 1, 2, 2])
    sets = support_neighbors(features, labels, k=2, squeeze="pair", normalize=False)
    torch.testing.assert_close(sets.squeeze, torch.tensor([math.sqrt(10), 3, 1, 0, 0], dtype=torch.float64),
                               **TOL)
    paper = support_neighbors(features, labels, k=2, squeeze="paper", normalize=False)
    assert paper.squeeze[0].item() == pytest.approx(3 - 1, abs=1e-12)   # D_02 - D_01, not D_12
    loss_fn = SupportNeighborLoss(k=2, squeeze="pair", normalize=False)
    loss_fn(features, labels)
    assert loss_fn.last["squeeze"] == pytest.approx((math.sqrt(10) + 4) / 5, abs=1e-12)


def test_pair_is_an_exact_zero_with_zero_gradient_when_n_is_f():
    # identity 0: two images (n = f); identity 1: anchor 2's two positives tie at distance 1, so the nearest and
    # the furthest are both sample 3 (lowest index); identity 7: one image (no positive)
    features = torch.tensor([(4, 4), (4, 5), (0, 0), (1, 0), (0, 1), (9, 9)], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 1, 7])
    x = features.clone().requires_grad_(True)
    sets = support_neighbors(x, labels, k=2, squeeze="pair", normalize=False)
    assert sets.positive[2].nonzero().flatten().tolist() == [3, 4]
    assert sets.squeeze[0].item() == sets.squeeze[1].item() == sets.squeeze[2].item() == 0.0
    assert math.isnan(sets.squeeze[5].item())
    (grad,) = torch.autograd.grad(sets.squeeze[:3].sum(), x)
    assert torch.equal(grad, torch.zeros_like(grad))
    torch.testing.assert_close(_loss(features, labels, k=2, squeeze="pair", normalize=False),
                               support_neighbor_loss_reference(features, labels, k=2, squeeze="pair",
                                                               normalize=False), **TOL)
    # every identity of two images: the squeeze is 0 for every anchor, normalised or not, with a zero gradient
    pairs, pair_labels = _pk_batch(10, num_ids=5, per_id=2, dim=8)
    for normalize in (True, False):
        x = pairs.clone().requires_grad_(True)
        squeeze = support_neighbors(x, pair_labels, k=3, squeeze="pair", normalize=normalize).squeeze
        assert torch.equal(squeeze, torch.zeros_like(squeeze))
        (grad,) = torch.autograd.grad(squeeze.sum(), x)
        assert torch.equal(grad, torch.zeros_like(grad))


@pytest.mark.parametrize("normalize", [True, False])
def test_pair_gradcheck(normalize):
    features, labels = _pk_batch(8, num_ids=3, per_id=4, dim=4)
    keep = (labels != 0) | (torch.cumsum(labels == 0, dim=0) <= 2)   # identities of 2, 4, 4 images: n = f, n != f
    features, labels = features[keep], labels[keep]
    features.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda f: support_neighbors(f, labels, k=3, squeeze="pair", normalize=normalize).squeeze, (features,))


@pytest.mark.parametrize("normalize", [True, False])
def test_pair_gradient_pulls_n_and_f_together(normalize):
    features, labels = _pk_batch(9, num_ids=4, per_id=5, dim=6, spread=0.8)
    checked = 0
    for anchor in range(len(labels)):
        x = features.clone().requires_grad_(True)
        sets = support_neighbors(x, labels, k=4, squeeze="pair", normalize=normalize)
        d = sets.distances.detach()
        positives = d[anchor].masked_fill(~sets.positive[anchor], math.inf)
        n_idx = int(positives.argmin())
        f_idx = int(d[anchor].masked_fill(~sets.same_identity[anchor], -math.inf).argmax())
        if n_idx == f_idx:
            continue
        (grad,) = torch.autograd.grad(sets.squeeze[anchor], x)
        moved = (grad != 0).any(dim=1).nonzero().flatten().tolist()
        assert moved == sorted([n_idx, f_idx])                 # the anchor itself is not moved
        after = euclidean_distance_matrix(features - 1e-3 * grad, normalize=normalize)
        assert after[n_idx, f_idx] < d[n_idx, f_idx]
        checked += 1
    assert checked >= len(labels) // 2


# ---- edge cases ----------------------------------------------------------------------------------------------

def test_k_at_least_batch_minus_one_takes_every_other_sample():
    features, labels = clustered_batch(11, num_ids=3, dim=4, max_images=3, spread=1.0)
    n = len(labels)
    values = []
    for k in (n - 1, n, 1000):
        sets = support_neighbors(features, labels, k=k)
        assert torch.isinf(sets.threshold).all()
        assert torch.equal(sets.neighbors, ~torch.eye(n, dtype=torch.bool))
        values.append(_loss(features, labels, k=k))
        torch.testing.assert_close(values[-1], support_neighbor_loss_reference(features, labels, k=k), **TOL)
    assert values[0] == values[1] == values[2]


def _cross_example():
    """Anchor 0 at the origin; four samples at distance 1 (one positive), one positive at distance 3."""
    points = [(0, 0), (1, 0), (0, 1), (-1, 0), (0, -1), (3, 0)]
    labels = [5, 5, 7, 9, 7, 5]
    return torch.tensor(points, dtype=torch.float64), torch.tensor(labels)


def test_ties_across_the_threshold_drop_out_together():
    features, labels = _cross_example()
    sets = support_neighbors(features, labels, k=2, alpha=50.0, normalize=False)
    # t_0 = 3rd smallest distance = 1 and no distance is < 1: the k-NN is empty, S+ falls back to sample 1.
    assert sets.threshold[0] == 1.0
    assert not sets.neighbors[0].any()
    assert sets.positive[0].nonzero().flatten().tolist() == [1]
    assert not sets.negative[0].any()
    assert sets.separation[0].item() == 0.0
    assert sets.squeeze[0].item() == pytest.approx(1.0, abs=1e-12)

    sets = support_neighbors(features, labels, k=4, alpha=50.0, normalize=False)
    # t_0 = 5th smallest = 3: the four tied samples are all in.
    assert sets.neighbors[0].nonzero().flatten().tolist() == [1, 2, 3, 4]
    assert sets.positive[0].nonzero().flatten().tolist() == [1]
    assert sets.negative[0].nonzero().flatten().tolist() == [2, 3, 4]
    assert sets.separation[0].item() == pytest.approx(math.log(4.0), abs=1e-12)


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_ties_follow_the_reference_rule(k, squeeze):
    """Distinct integer lattice points, unnormalised: many exactly tied distances, computed exactly by both."""
    rng = np.random.default_rng(k)
    grid = np.array(np.meshgrid(*[np.arange(3)] * 3)).reshape(3, -1).T
    points = grid[rng.choice(len(grid), size=18, replace=False)]
    features = torch.tensor(points, dtype=torch.float64)
    labels = torch.tensor(rng.integers(0, 5, size=18))
    options = dict(k=k, alpha=2.0, squeeze=squeeze, normalize=False)
    torch.testing.assert_close(_loss(features, labels, **options),
                               support_neighbor_loss_reference(features, labels, **options), **TOL)


def test_anchors_without_positive_are_left_out():
    features, labels = clustered_batch(5, num_ids=6, dim=6, max_images=3)
    singles = torch.tensor([10**6, 10**6 + 1])
    features = torch.cat([features, torch.randn(2, 6, dtype=torch.float64)])
    labels = torch.cat([labels, singles])
    sets = support_neighbors(features, labels, k=3, squeeze="paper")
    assert not sets.has_positive[-2:].any()
    assert torch.isnan(sets.separation[-2:]).all() and torch.isnan(sets.squeeze[-2:]).all()
    loss_fn = SupportNeighborLoss(k=3, squeeze="paper")
    value = loss_fn(features, labels)
    counted = sets.has_positive
    expected = (sets.separation[counted] + 0.1 * sets.squeeze[counted]).mean()
    torch.testing.assert_close(value, expected, **TOL)
    torch.testing.assert_close(value, support_neighbor_loss_reference(features, labels, k=3, squeeze="paper"), **TOL)
    assert loss_fn.last["no_positive"] == pytest.approx((~counted).double().mean().item())
    assert loss_fn.last["anchors"] == counted.sum().item()


@pytest.mark.parametrize("features", [torch.randn(7, 5), torch.randn(1, 5)], ids=["distinct-ids", "one-sample"])
def test_no_anchor_with_a_positive_gives_a_connected_zero(features):
    features.requires_grad_(True)
    loss_fn = SupportNeighborLoss()
    value = loss_fn(features, torch.arange(len(features)) * 3)
    assert value.item() == 0.0 and value.grad_fn is not None
    value.backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
    assert loss_fn.last["anchors"] == 0 and loss_fn.last["no_positive"] == 1.0
    assert math.isnan(loss_fn.last["knn_without_positive"])


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_single_identity_batch_has_no_negatives(squeeze):
    features = torch.randn(6, 8, dtype=torch.float64)
    labels = torch.full((6,), 42)
    sets = support_neighbors(features, labels, k=3, squeeze=squeeze)
    assert not sets.negative.any()
    assert torch.equal(sets.separation, torch.zeros(6, dtype=torch.float64))
    loss_fn = SupportNeighborLoss(k=3, lam=0.5, squeeze=squeeze)
    torch.testing.assert_close(loss_fn(features, labels), 0.5 * sets.squeeze.mean(), **TOL)
    assert math.isnan(loss_fn.last["neg_dist"])


def test_empty_negative_set_among_several_identities():
    # two tight, far apart clusters of 4: each anchor's 3 nearest neighbours are its positives
    features = torch.cat([torch.randn(4, 3) * 0.01 + 5, torch.randn(4, 3) * 0.01 - 5]).double()
    labels = torch.tensor([1, 1, 1, 1, 2, 2, 2, 2])
    sets = support_neighbors(features, labels, k=3, normalize=False)
    assert not sets.negative.any()
    assert torch.equal(sets.positive, sets.same_identity)
    assert torch.equal(sets.separation, torch.zeros(8, dtype=torch.float64))
    sets = support_neighbors(features, labels, k=4, normalize=False)
    assert sets.negative.sum(1).tolist() == [1] * 8


def test_nearest_positive_fallback():
    features, labels = _cross_example()
    loss_fn = SupportNeighborLoss(k=2, normalize=False)
    loss_fn(features, labels)
    sets = support_neighbors(features, labels, k=2, normalize=False)
    fallback = sets.has_positive & ~sets.knn_has_positive
    assert fallback[0]
    assert (sets.positive.sum(1)[fallback] == 1).all()
    counted = sets.has_positive
    assert loss_fn.last["knn_without_positive"] == pytest.approx(fallback[counted].double().mean().item())


def test_labels_need_not_be_contiguous():
    features, labels = clustered_batch(9, num_ids=5, dim=10)
    _, contiguous = torch.unique(labels, return_inverse=True)
    for squeeze in SQUEEZE_READINGS:
        value, grad = _value_and_grad(_loss, features, labels, k=4, squeeze=squeeze)
        value_0, grad_0 = _value_and_grad(_loss, features, contiguous, k=4, squeeze=squeeze)
        assert torch.equal(value, value_0) and torch.equal(grad, grad_0)


# ---- numerical stability -------------------------------------------------------------------------------------

def _assert_finite_value_and_grad(features, labels, **options):
    features = features.detach().clone().requires_grad_(True)
    value = SupportNeighborLoss(**options)(features, labels)
    value.backward()
    assert torch.isfinite(value), value
    assert torch.isfinite(features.grad).all()
    return value


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_alpha_100_is_finite(squeeze):
    for seed, spread in ((0, 0.05), (1, 3.0)):
        features, labels = clustered_batch(seed, num_ids=16, dim=64, max_images=4, spread=spread,
                                           dtype=torch.float32)
        _assert_finite_value_and_grad(features, labels, alpha=100.0, squeeze=squeeze)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_identical_and_duplicated_features_are_finite(squeeze, normalize):
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    _assert_finite_value_and_grad(torch.ones(8, 16), labels, alpha=100.0, squeeze=squeeze, normalize=normalize)
    duplicated = torch.randn(4, 16).repeat(2, 1) + 1e-7 * torch.randn(8, 16)
    _assert_finite_value_and_grad(duplicated, labels, k=3, alpha=100.0, squeeze=squeeze, normalize=normalize)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_half_precision_features(dtype):
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 128)
    inputs = torch.randn(64, 32)
    labels = torch.arange(16).repeat_interleave(4)
    loss_fn = SupportNeighborLoss(alpha=100.0)
    with torch.autocast("cpu", dtype=dtype):
        features = layer(inputs)
        value = loss_fn(features, labels)
    assert features.dtype == dtype and value.dtype == torch.float32
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(p.grad).all() for p in layer.parameters())
    # inside autocast the loss is computed in float32 from the half-precision features, as outside
    torch.testing.assert_close(value.detach(), loss_fn(features.detach().float(), labels), rtol=0, atol=0)
    # half-precision input without autocast is promoted too
    assert loss_fn(features.detach(), labels).dtype == torch.float32


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_cuda_matches_cpu(squeeze):
    features, labels = clustered_batch(2, num_ids=32, dim=2048, max_images=4, dtype=torch.float32)
    options = dict(k=10, squeeze=squeeze)
    cpu_value, cpu_grad = _value_and_grad(_loss, features, labels, **options)
    gpu_value, gpu_grad = _value_and_grad(_loss, features.cuda(), labels.cuda(), **options)
    assert gpu_value.device.type == "cuda"
    torch.testing.assert_close(gpu_value.cpu(), cpu_value, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad, rtol=1e-3, atol=1e-6)
    features64, labels64 = clustered_batch(2, num_ids=32, dim=256, max_images=4)
    torch.testing.assert_close(_loss(features64.cuda(), labels64.cuda(), **options).cpu(),
                               _loss(features64, labels64, **options), **TOL)


# ---- the distance matrix -------------------------------------------------------------------------------------

def test_distance_matrix_is_exact_for_near_duplicates():
    """The Gram identity alone loses half the digits for close pairs; the recomputed pairs keep them."""
    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 16))
    features = torch.tensor(np.concatenate([base, base[:5] + 1e-6 * rng.standard_normal((5, 16))]))
    exact = torch.cdist(features, features, compute_mode="donot_use_mm_for_euclid_dist")
    dist = euclidean_distance_matrix(features)
    off_diagonal = ~torch.eye(25, dtype=torch.bool)
    torch.testing.assert_close(dist[off_diagonal], exact[off_diagonal], rtol=1e-12, atol=0)
    assert torch.equal(dist.diagonal(), torch.full((25,), 1e-6, dtype=torch.float64))


def test_duplicated_features_get_no_gradient_from_their_pair():
    features = torch.randn(3, 8).repeat(2, 1).requires_grad_(True)
    dist = euclidean_distance_matrix(features, normalize=True)
    assert dist[0, 3] == dist[1, 4] == 1e-6
    dist[0, 3].backward()
    assert torch.equal(features.grad, torch.zeros_like(features))
