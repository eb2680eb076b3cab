"""snlib.study (geometry, pools, composition, embeddings, ranking, explorer): the numbers behind the figures
(sets, gradients, layouts, composition, clustering, ranked lists, the explorer's state), checked against plain
loops, finite differences and snlib's own evaluator."""
from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

from snlib import settings
from snlib.study import composition, embeddings, geometry, images, pools, ranking
from snlib.study.explorer import SupportNeighborExplorer
from snlib.data import Sample, images_allowed, sample_pk_batch
from snlib.evaluation import evaluate_rank
from snlib.losses import SQUEEZE_READINGS, support_neighbor_loss_reference

matplotlib.use("Agg")


def clustered(num_ids=6, per_id=4, dim=8, spread=0.35, seed=0):
    """Random features around one centre per identity (float64)."""
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_ids, dim, generator=gen, dtype=torch.float64)
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=gen, dtype=torch.float64), labels


def sets_by_loop(features, labels, anchor, k, normalize):
    """Plain per-anchor support sets, straight from docs/paper.md."""
    x = features / features.norm(dim=1, keepdim=True) if normalize else features
    d = [float((x[anchor] - x[j]).norm()) for j in range(len(x))]
    others = sorted((j for j in range(len(x)) if j != anchor), key=lambda j: d[j])
    threshold = d[others[k]] if k < len(others) else math.inf
    support = [j for j in others if d[j] < threshold]
    same = [j for j in others if labels[j] == labels[anchor]]
    pos = [j for j in support if labels[j] == labels[anchor]] or [min(same, key=lambda j: d[j])]
    neg = [j for j in support if labels[j] != labels[anchor]]
    return d, threshold, pos, neg, max(same, key=lambda j: d[j])


# ------------------------------------------------------------------------------------------- one anchor

@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("k", [3, 6, 30])
def test_anchor_view_matches_plain_loop(k, normalize):
    features, labels = clustered(spread=0.8)
    for anchor in range(len(labels)):
        view = geometry.anchor_view(features, labels, anchor, k=k, normalize=normalize)
        d, threshold, pos, neg, furthest = sets_by_loop(features, labels.tolist(), anchor, k, normalize)
        assert view.positive.tolist() == sorted(pos, key=lambda j: d[j])
        assert view.negative.tolist() == sorted(neg, key=lambda j: d[j])
        assert view.furthest_positive == furthest
        assert view.threshold == pytest.approx(threshold, abs=1e-9)
        np.testing.assert_allclose(np.delete(view.distances, anchor), np.delete(d, anchor), atol=1e-9)


@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_anchor_terms_average_to_the_reference_loss(squeeze):
    features, labels = clustered(spread=0.9, seed=1)
    totals = [geometry.anchor_view(features, labels, a, k=5, lam=0.3, squeeze=squeeze).total for a in range(len(labels))]
    reference = support_neighbor_loss_reference(features, labels, k=5, lam=0.3, squeeze=squeeze)
    assert np.mean(totals) == pytest.approx(float(reference), rel=1e-9)


def test_anchor_without_positive_is_refused():
    features, labels = clustered()
    labels = labels.clone()
    labels[0] = 99
    with pytest.raises(ValueError, match="no other image of its identity"):
        geometry.anchor_view(features, labels, 0)
    with pytest.raises(ValueError, match="not a row"):
        geometry.anchor_view(features, labels, len(labels))


def test_pick_anchor_cases():
    features, labels = geometry.toy_batch(seed=6)
    mixed = geometry.anchor_view(features, labels, geometry.pick_anchor(features, labels, k=5, normalize=False), k=5,
                            normalize=False)
    assert not mixed.fallback and len(mixed.negative) > 0
    assert mixed.furthest_positive not in mixed.neighbors
    fallback = geometry.anchor_view(features, labels, geometry.pick_anchor(features, labels, k=5, want="fallback",
                                                                 normalize=False), k=5, normalize=False)
    assert fallback.fallback and len(fallback.positive) == 1
    assert fallback.positive[0] not in fallback.neighbors
    # perfectly separated identities: no fallback; a tuple of cases falls through to the next one
    far, labels = clustered(spread=0.01)
    with pytest.raises(LookupError, match="fallback"):
        geometry.pick_anchor(far, labels, k=3, want="fallback")
    assert geometry.pick_anchor(far, labels, k=3, want=("fallback", "hardest")) in range(len(labels))
    with pytest.raises(ValueError, match="want"):
        geometry.pick_anchor(far, labels, want="nope")


# ---------------------------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("squeeze", SQUEEZE_READINGS)
def test_anchor_gradient_parts_sum_and_touch_only_the_sets(squeeze):
    features, labels = clustered(spread=0.9, seed=2)
    anchor, k = 3, 5
    opts = dict(k=k, squeeze=squeeze, lam=0.5)
    whole = geometry.sn_gradients(features, labels, anchor, **opts)
    parts = sum(geometry.sn_gradients(features, labels, anchor, part=p, **opts) for p in ("separation", "squeeze"))
    np.testing.assert_allclose(whole, parts, atol=1e-12)
    view = geometry.anchor_view(features, labels, anchor, **opts)
    involved = {anchor, *view.positive.tolist(), *view.negative.tolist()}
    if squeeze in ("paper", "pair"):
        involved.add(view.furthest_positive)
    moved = set(np.flatnonzero(np.abs(whole).sum(axis=1) > 0).tolist())
    assert moved <= involved


def test_anchor_gradient_matches_finite_differences():
    features, labels = clustered(spread=0.9, seed=3)
    anchor, opts = 2, dict(k=5, squeeze="paper", lam=0.5, alpha=5.0)
    grad = geometry.sn_gradients(features, labels, anchor, **opts)

    def loss(x):
        return geometry.anchor_view(x, labels, anchor, **opts).total

    eps = 1e-6
    for i, j in [(anchor, 0), (int(geometry.anchor_view(features, labels, anchor, **opts).positive[0]), 1)]:
        step = torch.zeros_like(features)
        step[i, j] = eps
        numeric = (loss(features + step) - loss(features - step)) / (2 * eps)
        assert grad[i, j] == pytest.approx(numeric, rel=1e-4, abs=1e-7)


def test_batch_gradient_is_the_mean_of_anchor_gradients():
    features, labels = clustered(spread=0.9, seed=4)
    batch = geometry.sn_gradients(features, labels, None, k=5)
    anchors = [geometry.sn_gradients(features, labels, a, k=5) for a in range(len(labels))]
    np.testing.assert_allclose(batch, np.mean(anchors, axis=0), atol=1e-12)
    with pytest.raises(ValueError, match="part"):
        geometry.sn_gradients(features, labels, None, part="squeeze")


def test_radial_velocity_matches_a_small_descent_step():
    features, labels = clustered(spread=0.9, seed=5)
    anchor = 1
    grads = geometry.sn_gradients(features, labels, anchor, k=5)
    velocity = geometry.radial_velocity(features, grads, anchor)
    eps = 1e-6
    before = geometry.anchor_view(features, labels, anchor, k=5).distances
    after = geometry.anchor_view(features - eps * torch.from_numpy(grads), labels, anchor, k=5).distances
    np.testing.assert_allclose(velocity, (after - before) / eps, rtol=1e-3, atol=1e-6)
    assert velocity[anchor] == 0


@pytest.mark.parametrize("squeeze", ["paper", "neighbors", "released", "pair"])
def test_squeeze_pairs_say_which_way_the_squeeze_moves(squeeze):
    features, labels = clustered(num_ids=4, per_id=6, spread=0.9, seed=6)
    checked = 0
    for anchor in range(len(labels)):
        view = geometry.anchor_view(features, labels, anchor, k=8, squeeze=squeeze)
        grads = geometry.sn_gradients(features, labels, anchor, k=8, squeeze=squeeze, part="squeeze")
        for a, b, sign in geometry.squeeze_pairs(view):
            assert a == (view.positive[0] if squeeze == "pair" else anchor)
            assert np.sign(geometry.radial_velocity(features, grads, a)[b]) == -sign
            checked += 1
    assert checked >= len(labels)


def test_squeeze_readings_table():
    features, labels = geometry.toy_batch(seed=6)
    table = geometry.squeeze_readings(features, labels, 8, k=5, normalize=False)
    assert table["reading"].tolist() == list(SQUEEZE_READINGS)
    assert table["L_sep"].nunique() == 1          # the squeeze reading leaves the separation term alone
    assert table.set_index("reading").loc["none", "L_sqz"] == 0
    np.testing.assert_allclose(table["anchor loss"], table["L_sep"] + table["lambda * L_sqz"])
    # every reading of every anchor that has a positive, from the plain sets of docs/paper.md
    ids = labels.tolist()
    for anchor in (i for i in range(len(ids)) if ids.count(ids[i]) > 1):
        d, _, pos, neg, furthest = sets_by_loop(features, ids, anchor, 5, False)
        near = min(pos, key=lambda j: d[j])
        d_pos = [d[j] for j in pos]
        expected = {"none": 0.0, "released": min(d_pos),
                    "neighbors": min(d_pos) if len(pos) == 1 else max(d_pos) - min(d_pos),
                    "paper": d[furthest] - min(d_pos),
                    "pair": 0.0 if near == furthest else float((features[near] - features[furthest]).norm())}
        separation = -math.log(sum(math.exp(-50 * d[j]) for j in pos) / sum(math.exp(-50 * d[j]) for j in pos + neg))
        table = geometry.squeeze_readings(features, labels, anchor, k=5, normalize=False).set_index("reading")
        for reading, value in expected.items():
            assert table.loc[reading, "L_sqz"] == pytest.approx(value, rel=1e-6, abs=1e-9), (anchor, reading)
            assert table.loc[reading, "L_sep"] == pytest.approx(separation, rel=1e-6, abs=1e-9), (anchor, reading)


# ------------------------------------------------------------------------------------------------ layouts

def test_project_2d_is_pca():
    from sklearn.decomposition import PCA
    features, _ = clustered(dim=10, seed=7)
    xy, components = geometry.project_2d(features)
    expected = PCA(n_components=2).fit_transform(features.numpy())
    np.testing.assert_allclose(np.abs(xy), np.abs(expected), atol=1e-8)
    np.testing.assert_allclose(components @ components.T, np.eye(2), atol=1e-10)


@pytest.mark.parametrize("normalize", [True, False])
def test_anchor_layout_keeps_the_anchor_distances(normalize):
    features, labels = clustered(dim=16, seed=8)
    view = geometry.anchor_view(features, labels, 5, k=6, normalize=normalize)
    xy = geometry.anchor_layout(features, view, normalize=normalize)
    np.testing.assert_allclose(np.linalg.norm(xy - xy[5], axis=1), view.distances, atol=1e-9)
    zoomed = geometry.anchor_layout(features, view, normalize=normalize, offset=view.zoom_offset)
    radius = np.linalg.norm(zoomed, axis=1)
    assert radius[5] == 0 and (np.delete(radius, 5) > 0).all()
    np.testing.assert_allclose(np.delete(radius, 5), np.delete(view.distances, 5) - view.zoom_offset, atol=1e-9)


# -------------------------------------------------------------------------------------------- test pools

def test_sample_pk_batch():
    pids = np.array([1] * 5 + [2] * 2 + [3] * 1 + [4] * 6 + [5] * 3)
    batch = sample_pk_batch(pids, p=3, k=4, seed=0)
    assert len(set(batch.tolist())) == len(batch)
    chosen = np.unique(pids[batch])
    assert len(chosen) == 3 and 3 not in chosen               # identity 3 has a single image
    for pid in chosen:
        assert (pids[batch] == pid).sum() == min(4, (pids == pid).sum())
    np.testing.assert_array_equal(batch, sample_pk_batch(pids, p=3, k=4, seed=0))
    assert len(np.unique(pids[sample_pk_batch(pids, p=10, k=2)])) == 4   # all eligible identities
    with pytest.raises(ValueError, match="two identities"):
        sample_pk_batch(np.array([1, 1, 2]), p=2, k=2)


def test_identity_pool_drops_junk_and_distractors():
    class Data:
        query = [Sample(f"q{i}", pid, 0) for i, pid in enumerate([1, 2])]
        gallery = [Sample(f"g{i}", pid, 1) for i, pid in enumerate([1, -1, 0, 2, 2])]
        junk_pids, distractor_pids = (-1,), (0,)

    feats = {"query": (torch.arange(2.0)[:, None], np.array([1, 2]), np.zeros(2, int)),
             "gallery": (torch.arange(2.0, 7.0)[:, None], np.array([1, -1, 0, 2, 2]), np.ones(5, int))}
    pool = pools.identity_pool(feats, Data())
    assert pool.pids.tolist() == [1, 2, 1, 2, 2]
    assert [s.path for s in pool.samples] == ["q0", "q1", "g0", "g3", "g4"]
    assert pool.features.flatten().tolist() == [0, 1, 2, 5, 6]
    Data.gallery = Data.gallery[:-1]
    with pytest.raises(ValueError, match="another version"):
        pools.identity_pool(feats, Data())


def test_support_composition_of_separated_identities():
    features, labels = clustered(num_ids=8, per_id=4, dim=32, spread=0.01)
    measured = composition.support_composition(features, labels.numpy(), k=10, p=5, batch_k=4, num_batches=3)
    assert measured == pytest.approx({"knn_without_positive": 0.0, "support_pos": 3.0, "support_neg": 7.0})
    mixed = composition.support_composition(torch.randn(64, 4), np.repeat(np.arange(16), 4), k=3, p=16, num_batches=4)
    assert 0 < mixed["knn_without_positive"] < 1 and mixed["support_pos"] + mixed["support_neg"] == pytest.approx(3)


def test_composition_history_reads_the_sn_term():
    history = pd.DataFrame({"epoch": [1, 1], "iteration": [1, 2], "loss": [3.0, 2.0],
                            "sn-paper/knn_without_positive": [0.5, 0.4], "sn-paper/support_pos": [1.0, 1.5],
                            "sn-paper/support_neg": [9.0, 8.5]})
    curves = composition.composition_history(history)
    assert curves.columns.tolist() == ["iteration", "epoch", *composition.COMPOSITION]
    assert curves["support_pos"].tolist() == [1.0, 1.5]
    with pytest.raises(ValueError, match="SN term"):
        composition.composition_history(history[["epoch", "iteration", "loss"]])


# ---------------------------------------------------------------------------------------------- embeddings

def test_cluster_quality():
    features, labels = clustered(num_ids=5, per_id=4, spread=0.05)
    tight = embeddings.cluster_quality(features, labels.numpy())
    assert tight["silhouette"] > 0.9 and tight["nn_same_identity"] == 1.0
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))].numpy()
    assert embeddings.cluster_quality(features, shuffled)["silhouette"] < 0.2
    # nearest neighbour by a plain loop, identities with a single image not counted
    x, y = torch.randn(30, 3, dtype=torch.float64), np.array(list(range(10)) * 2 + list(range(20, 30)))
    hits = [y[min((j for j in range(30) if j != i), key=lambda j: float((x[i] - x[j]).norm()))] == y[i]
            for i in range(30) if (y == y[i]).sum() > 1]
    assert embeddings.cluster_quality(x, y)["nn_same_identity"] == pytest.approx(np.mean(hits))


def test_tsne_is_deterministic():
    features, _ = clustered(num_ids=4, per_id=5)
    first = embeddings.tsne_2d(features, seed=3, max_iter=250)
    assert first.shape == (20, 2)
    np.testing.assert_array_equal(first, embeddings.tsne_2d(features, seed=3, max_iter=250))


# -------------------------------------------------------------------------------------------- ranked lists

def test_ranked_lists_follow_the_market_protocol():
    qf = np.array([[0.0], [10.0]])
    gf = np.array([[0.1], [0.2], [0.3], [0.2], [9.0], [10.0]])
    g_pids = np.array([1, -1, 1, 2, 2, 7])
    g_cams = np.array([0, 1, 1, 1, 0, 0])
    ranked = ranking.ranked_lists(qf, gf, [1, 2], g_pids, [0, 0], g_cams, topk=5)
    # query 0 (id 1, cam 0): gallery 0 removed (same id + camera), 1 junk; ties (0.2) keep gallery order
    assert ranked.index[0].tolist() == [3, 2, 4, 5, -1]
    assert ranked.correct[0].tolist() == [False, True, False, False, False]
    # query 1 (id 2, cam 0): gallery 4 removed
    assert ranked.index[1].tolist() == [5, 2, 3, 0, -1]
    assert ranked.correct[1].tolist() == [False, False, True, False, False]


def test_ranked_lists_agree_with_evaluate_rank():
    gen = np.random.default_rng(0)
    qf, gf = gen.normal(size=(40, 6)), gen.normal(size=(150, 6))
    q_pids, g_pids = gen.integers(0, 20, 40), gen.integers(-1, 20, 150)
    q_cams, g_cams = gen.integers(0, 3, 40), gen.integers(0, 3, 150)
    ranked = ranking.ranked_lists(qf, gf, q_pids, g_pids, q_cams, g_cams, topk=10)
    result = evaluate_rank(np.sqrt(((qf[:, None] - gf[None]) ** 2).sum(-1)), q_pids, g_pids, q_cams, g_cams)
    valid = np.isfinite(result.ap)
    for k in (1, 5, 10):
        assert ranked.correct[valid, :k].any(axis=1).mean() == pytest.approx(result.rank(k))


def test_choose_queries():
    correct = np.array([[True, False], [False, True], [True, True], [False, False], [True, False], [False, False]])
    ap = np.array([0.9, 0.5, 1.0, 0.1, 0.9, np.nan])
    chosen = ranking.choose_queries(correct, ap, num_success=2, num_failure=5)
    assert chosen["query"].tolist() == [2, 0, 3, 1]
    assert chosen["kind"].tolist() == ["success", "success", "failure", "failure"]
    assert chosen["hits in top-k"].tolist() == [2, 1, 0, 1]


# --------------------------------------------------------------------------------------------------- explorer

def make_pool(features, labels, cams):
    return pools.Pool(features.float(), labels.numpy(), cams, [Sample(f"img{i}", int(p), int(c))
                                                            for i, (p, c) in enumerate(zip(labels, cams))])


def test_explorer_state():
    features, labels = clustered(num_ids=6, per_id=4, dim=16, spread=0.6, seed=9)
    cams = np.tile([0, 1], 12)
    networks = {"a": make_pool(features, labels, cams), "b": make_pool(-features, labels, cams)}
    batch = np.arange(4, 20)
    explorer = SupportNeighborExplorer(networks, batch, topk=5, k=4)
    state = explorer.state("b", 3, k=4, alpha=20.0, lam=0.2, squeeze="paper")
    expected = geometry.anchor_view(-features[batch].float().double(), labels[batch], 3, 4, 20.0, 0.2, "paper")
    assert state["view"].positive.tolist() == expected.positive.tolist()
    assert state["view"].total == pytest.approx(expected.total)
    assert state["query"] == batch[3]
    ranked = state["ranked"]
    assert state["query"] not in ranked.index[0]      # the anchor itself is removed (same identity, same camera)
    assert (labels.numpy()[ranked.index[0]] == labels[batch[3]].item()).tolist() == ranked.correct[0].tolist()
    fig = explorer.render(**explorer.defaults)         # draws headless (Agg)
    assert len(fig.axes) >= 3
    with pytest.raises(ValueError, match="different test sets"):
        SupportNeighborExplorer({"a": networks["a"], "c": networks["a"].subset(np.arange(5))}, batch)



def test_explorer_widget_redraws_through_model_state(monkeypatch):
    """The widget's text and PNG change with a control (no Output capture involved); a failing redraw shows its
    traceback in the text; a batch run builds no widget."""
    pytest.importorskip("ipywidgets")
    monkeypatch.delenv(settings.BATCH_ENV, raising=False)
    features, labels = clustered(num_ids=6, per_id=4, dim=16, spread=0.6, seed=9)
    cams = np.tile([0, 1], 12)
    explorer = SupportNeighborExplorer({"a": make_pool(features, labels, cams)}, np.arange(4, 20), topk=5, k=4)
    box = explorer.widget()
    (_, anchor, k), _, (text, figure) = box.children[0].children, box.children[1], box.children[2:]
    assert text.value.startswith("<pre>a: anchor 0 ") and "k=4 " in text.value
    assert figure.value[:8] == b"\x89PNG\r\n\x1a\n"
    first = (text.value, figure.value)
    anchor.value = 1
    assert text.value.startswith("<pre>a: anchor 1 ") and figure.value != first[1]
    monkeypatch.setattr(explorer, "state", lambda **values: 1 / 0)
    k.value = 5
    assert "ZeroDivisionError" in text.value and "Traceback" in text.value
    monkeypatch.setenv(settings.BATCH_ENV, "1")
    assert explorer.widget() is None


def test_images_allowed_only_for_synthetic():
    assert images_allowed("synthetic")
    assert not any(images_allowed(name) for name in ("market1501", "cuhk03", "dukemtmc", "msmt17", "cuhk01"))


# ------------------------------------------------------------------------------------------------ epoch 0

@pytest.mark.slow
def test_initial_run_is_the_seeded_untrained_model(tmp_path, monkeypatch):
    from snlib.study import open_study
    from snlib.models import build_model
    monkeypatch.setenv("SNLIB_CACHE", str(tmp_path / "cache"))
    study = open_study("smoke", output_dir=tmp_path / "out", pretrained=False)   # a seeded random initialisation
    run = study.initial_run(seed=3)
    assert run.run_dir.parent == tmp_path / "cache" and run.model_path.is_file()
    config = run.config
    torch.manual_seed(3)
    expected = build_model(config.model, pretrained=False, last_stride=config.last_stride,
                           bnneck=config.bnneck).state_dict()
    loaded = run.load_model().state_dict()
    assert all(torch.equal(loaded[name], value) for name, value in expected.items())
    assert study.initial_run(seed=3).model_path.stat().st_mtime_ns == run.model_path.stat().st_mtime_ns
    first_weight = next(iter(expected))
    assert not torch.equal(study.initial_run(seed=4).load_model().state_dict()[first_weight],
                           expected[first_weight])


def test_identity_thumbnails_one_per_identity(tmp_path):
    from PIL import Image
    pids = np.array([5, 5, 2, 9, 2, 9, 7])
    samples = []
    for i, pid in enumerate(pids):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (4, 8), (i, 0, 0)).save(path)
        samples.append(Sample(str(path), int(pid), 0))
    pool = pools.Pool(torch.zeros(len(pids), 2), pids, np.zeros(len(pids), int), samples)
    thumbs = images.identity_thumbnails(pool, max_ids=3)
    assert [i for i, t in enumerate(thumbs) if t is not None] == [0, 2, 3]
    assert thumbs[3][0, 0].tolist() == [3, 0, 0] and thumbs[3].shape == (8, 4, 3)
