"""PK sampler (composition, replacement, epochs, determinism, distributed shares), transforms, ImageDataset,
build_loaders."""
from collections import Counter

import numpy as np
import pytest
import torch

from _data_fixtures import make_market
from snlib.data import (IMAGENET_MEAN, PAPER_MEAN, PAPER_STD, CorruptImageError, ImageDataset, PKSampler, Sample,
                        build_loaders, build_transforms, load_dataset)
from PIL import Image

# 10 identities; identity 3 has 1 image, identity 5 has 2 (fewer than k=4), the others 4..9
SIZES = {0: 6, 1: 4, 2: 9, 3: 1, 4: 5, 5: 2, 6: 7, 7: 4, 8: 8, 9: 5}
PIDS = [pid for pid, n in SIZES.items() for _ in range(n)]
rng = np.random.default_rng(0)
PIDS = [PIDS[i] for i in rng.permutation(len(PIDS))]  # identities interleaved in the data set


def _batches(sampler, p, k):
    indices = list(sampler)
    return [indices[i:i + p * k] for i in range(0, len(indices), p * k)]


def test_pk_batches_hold_p_distinct_identities_times_k():
    sampler = PKSampler(PIDS, p=3, k=4, seed=1)
    batches = _batches(sampler, 3, 4)
    assert len(batches) == len(SIZES) // 3 == sampler.num_batches
    assert len(sampler) == 3 * 3 * 4 == sum(map(len, batches))
    seen = []
    for batch in batches:
        labels = [PIDS[i] for i in batch]
        groups = [labels[j:j + 4] for j in range(0, 12, 4)]
        assert all(len(set(g)) == 1 for g in groups)  # grouped by identity, k each
        assert len({g[0] for g in groups}) == 3
        seen += [g[0] for g in groups]
        for group, start in zip(groups, range(0, 12, 4)):
            chosen = batch[start:start + 4]
            if SIZES[group[0]] >= 4:
                assert len(set(chosen)) == 4  # distinct images when there are enough
    assert len(set(seen)) == len(seen)  # one pass: no identity twice in an epoch


def test_pk_small_identities_drawn_with_replacement():
    pids = [0] * 1 + [1] * 2 + [2] * 6 + [3] * 5
    sampler = PKSampler(pids, p=4, k=4, seed=0)
    batch = list(sampler)
    counts = Counter(batch)
    assert [counts[0]] == [4]                                   # the single image, four times
    assert {i for i in batch if pids[i] == 1} <= {1, 2} and sum(pids[i] == 1 for i in batch) == 4
    draws = set()
    for epoch in range(30):  # over epochs both images of identity 1 are drawn, sometimes twice in a batch
        sampler.set_epoch(epoch)
        batch = [i for i in sampler if pids[i] == 1]
        draws.add(tuple(sorted(batch)))
    assert {i for d in draws for i in d} == {1, 2} and any(len(set(d)) < len(d) for d in draws)


def test_pk_epochs_are_seeded_and_differ():
    a, b = PKSampler(PIDS, p=2, k=4, seed=5), PKSampler(PIDS, p=2, k=4, seed=5)
    for epoch in range(3):
        a.set_epoch(epoch), b.set_epoch(epoch)
        assert list(a) == list(b)
    a.set_epoch(0)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    assert list(PKSampler(PIDS, p=2, k=4, seed=6)) != first


def test_pk_every_identity_appears_over_epochs():
    sampler = PKSampler(PIDS, p=3, k=2, seed=0)
    seen = set()
    for epoch in range(20):
        sampler.set_epoch(epoch)
        seen |= {PIDS[i] for i in sampler}
    assert seen == set(SIZES)


@pytest.mark.parametrize("world_size", [2, 4])
def test_pk_distributed_shares_disjoint_and_covering(world_size):
    p, k = 4, 3
    single = PKSampler(PIDS, p=p, k=k, seed=3)
    single.set_epoch(2)
    full = _batches(single, p, k)
    shares = []
    for rank in range(world_size):
        sampler = PKSampler(PIDS, p=p, k=k, seed=3, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shares.append(_batches(sampler, p // world_size, k))
        assert len(sampler) == len(single) // world_size
    for b, batch in enumerate(full):
        parts = [share[b] for share in shares]
        identities = [{PIDS[i] for i in part} for part in parts]
        assert all(len(ids) == p // world_size for ids in identities)
        assert len(set().union(*identities)) == p                   # disjoint
        assert sum(parts, []) == batch                              # the ranks' shares make the batch


def test_pk_rejects_impossible_settings():
    with pytest.raises(ValueError, match="cannot fill"):
        PKSampler(PIDS, p=11, k=4)
    with pytest.raises(ValueError, match="world_size"):
        PKSampler(PIDS, p=3, k=4, world_size=2)
    with pytest.raises(ValueError, match="rank"):
        PKSampler(PIDS, p=4, k=4, rank=2, world_size=2)


def test_transforms_paper_defaults():
    image = Image.fromarray(np.full((40, 20, 3), 128, dtype=np.uint8))
    out = build_transforms()(image)
    assert out.shape == (3, 256, 128) and out.dtype == torch.float32
    expected = (128 / 255 - np.array(PAPER_MEAN)) / np.array(PAPER_STD)
    np.testing.assert_allclose(out.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    names = [type(t).__name__ for t in build_transforms().transforms]
    assert names == ["Resize", "RandomHorizontalFlip", "ToTensor", "Normalize"]  # flip only, as the paper
    assert [type(t).__name__ for t in build_transforms(train=False).transforms] == ["Resize", "ToTensor", "Normalize"]


def test_transforms_options():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 32, 3), dtype=np.uint8))
    tf = build_transforms(64, 32, pad_crop=True, random_erasing=True, flip=False, mean=IMAGENET_MEAN, erasing_p=1.0)
    names = [type(t).__name__ for t in tf.transforms]
    assert names == ["Resize", "Pad", "RandomCrop", "ToTensor", "Normalize", "RandomErasing"]
    torch.manual_seed(0)
    plain = build_transforms(64, 32, flip=False, mean=IMAGENET_MEAN)(image)
    erased = tf(image)
    assert erased.shape == plain.shape == (3, 64, 32) and not torch.equal(erased, plain)


def test_flip_mirrors_the_image():
    pixels = np.zeros((8, 4, 3), dtype=np.uint8)
    pixels[:, 0] = 255
    tf = build_transforms(8, 4)
    outs = set()
    torch.manual_seed(1)
    for _ in range(20):
        outs.add(bool(tf(Image.fromarray(pixels))[0, 0, 0] > tf.transforms[-1].mean[0]))
    assert outs == {True, False}


def test_image_dataset_and_corrupt_image_named(tmp_path):
    ds = load_dataset("market1501", make_market(tmp_path / "m", gt_bbox=False))
    item = ImageDataset(ds.query, build_transforms(32, 16, train=False))[1]
    assert item[0].shape == (3, 32, 16) and item[1:] == (ds.query[1].pid, ds.query[1].camid, 1)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(open(ds.query[0].path, "rb").read()[:50])
    with pytest.raises(CorruptImageError, match=str(broken)):
        ImageDataset([Sample(str(broken), 1, 0)])[0]
    with pytest.raises(CorruptImageError, match="missing.jpg"):
        ImageDataset([Sample(str(tmp_path / "missing.jpg"), 1, 0)])[0]


def test_build_loaders_batches(tmp_path):
    ds = load_dataset("market1501", make_market(tmp_path / "m", gt_bbox=False))
    torch.manual_seed(0)  # workers=0: augmentation follows torch's global generator
    loaders = build_loaders(ds, height=32, width=16, p=2, k=2, batch_size_test=2, workers=0, seed=0)
    (images, pids, camids, index), = list(loaders.train)  # 3 identities // p=2: one batch per epoch
    assert images.shape == (4, 3, 32, 16) and pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
    assert [ds.train[i].pid for i in index.tolist()] == pids.tolist()
    assert sum(len(b[1]) for b in loaders.query) == ds.num_query_imgs
    assert sum(len(b[1]) for b in loaders.gallery) == ds.num_gallery_imgs
    again = build_loaders(ds, height=32, width=16, p=2, k=2, workers=0, seed=0)
    torch.manual_seed(0)
    assert torch.equal(next(iter(again.train))[0], images)  # augmentation and sampling reproducible
