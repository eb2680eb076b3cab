"""The synthetic default: determinism, counts and protocol, Market-1501 layout, idempotent atomic generation,
and difficulty (a colour histogram cannot match across cameras)."""
import json
import os
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from _image_helpers import color_histogram_baseline, color_histogram_features, render_identity_sheet
from snlib.data import SyntheticConfig, ensure_synthetic, generate_synthetic, load_dataset, read_image
from snlib.data.synthetic import CONFIG_FILE, config_tag

TINY = dict(num_train_ids=6, num_test_ids=5, num_cameras=3, images_per_camera=(2, 3), num_distractors=4,
            num_junk=3, height=64, width=32)
FOLDERS = ("bounding_box_train", "bounding_box_test", "query", "gt_bbox")


def _files(root: Path) -> dict[str, bytes]:
    return {f"{folder}/{name}": (root / folder / name).read_bytes()
            for folder in FOLDERS for name in sorted(os.listdir(root / folder))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("syn") / "tiny", SyntheticConfig(**TINY))


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
    again = generate_synthetic(tmp_path / "again", SyntheticConfig(**TINY))
    assert _files(again) == _files(tiny)
    other = _files(generate_synthetic(tmp_path / "other", SyntheticConfig(**{**TINY, "seed": 1})))
    assert other.keys() != _files(tiny).keys() or other != _files(tiny)
    shared = set(other) & set(_files(tiny))
    assert all(other[name] != _files(tiny)[name] for name in shared)


def test_counts_and_protocol(tiny):
    ds = load_dataset("market1501", tiny)  # the Market-1501 loader reads it unchanged
    config = SyntheticConfig(**TINY)
    assert ds.num_train_pids == 6 and sorted(ds.train_pid_map) == list(range(1, 7))
    assert {s.pid for s in ds.query} == set(range(7, 12)) and ds.num_gallery_pids == 5
    per_id_cams = defaultdict(set)
    per_pair = Counter()
    for s in ds.train + ds.query + ds.gallery:
        if s.pid > 0:
            per_id_cams[s.pid].add(s.camid)
            per_pair[s.pid, s.camid] += 1
    assert all(2 <= len(cams) <= 3 for cams in per_id_cams.values())
    assert all(2 <= n <= 3 for n in per_pair.values())
    query_pairs = Counter((s.pid, s.camid) for s in ds.query)
    assert set(query_pairs.values()) == {1}                         # one query per identity and camera
    assert set(query_pairs) == {pair for pair in per_pair if pair[0] >= 7}
    gallery = Counter(s.pid for s in ds.gallery)
    assert gallery[0] == 4 and gallery[-1] == 3                     # distractors and junk
    for pid, cam in query_pairs:                                    # a cross-camera match always exists
        assert any(s.pid == pid and s.camid != cam for s in ds.gallery)
    assert {(s.pid, s.camid) for s in ds.multi_query} == set(query_pairs)
    assert len(ds.multi_query) == sum(per_pair[p] for p in query_pairs)
    assert {s.camid for s in ds.train + ds.query + ds.gallery} == {0, 1, 2}
    sizes = {read_image(s.path).size for s in ds.query[:3] + ds.train[:3]}
    assert sizes == {(config.width, config.height)}


def test_ensure_is_idempotent_and_another_config_gets_its_own_folder(tmp_path):
    root = tmp_path / "data"
    first = ensure_synthetic(root, SyntheticConfig(**TINY))
    assert first == (root / f"synthetic-{config_tag(SyntheticConfig(**TINY))}").resolve()
    stamp = {p: p.stat().st_mtime_ns for p in first.rglob("*.jpg")}
    ensure_synthetic(root, SyntheticConfig(**TINY))
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.jpg")} == stamp
    second = ensure_synthetic(root, SyntheticConfig(**TINY), num_test_ids=2)
    stored = json.loads((second / CONFIG_FILE).read_text())
    assert stored["num_test_ids"] == 2 and stored["generator_version"] >= 1
    assert len({name[:4] for name in os.listdir(second / "query")}) == 2
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*.jpg")} == stamp  # the first set is left as it was
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == sorted([first.name, second.name])


def test_load_dataset_generates_and_resolves_a_parent(tmp_path):
    (tmp_path / "README.md").write_text("user data lives here")
    ds = load_dataset("synthetic", tmp_path, **TINY)        # a parent folder: the set goes to ./synthetic-<tag>
    assert Path(ds.root) == (tmp_path / f"synthetic-{config_tag(SyntheticConfig(**TINY))}").resolve()
    assert ds.num_train_pids == 6
    assert ds.info == {"seed": 0, "difficulty": 1.0, "num_cameras": 3}
    assert (tmp_path / "README.md").read_text() == "user data lives here"


def test_never_overwrites_foreign_data(tmp_path):
    (tmp_path / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="not a synthetic data set"):
        generate_synthetic(tmp_path, SyntheticConfig(**TINY))
    assert (tmp_path / "mine.txt").read_text() == "keep"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    from snlib.data import synthetic

    calls = []

    def failing(job, *args):
        calls.append(job)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return b"jpeg"

    monkeypatch.setattr(synthetic, "_encode", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(tmp_path / "syn", SyntheticConfig(**TINY))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [dict(num_cameras=10), dict(images_per_camera=1), dict(min_cameras_per_id=5),
                                 dict(difficulty=-1.0)])
def test_config_validation(bad):
    with pytest.raises(ValueError, match="invalid SyntheticConfig"):
        SyntheticConfig(**{**TINY, **bad})


def test_identity_sheet(tiny):
    ds = load_dataset("market1501", tiny)
    sheet = render_identity_sheet(ds, num_ids=3, subset="test", height=64, width=32)
    assert sheet.size == (44 + 3 * 36, 16 + 3 * 68)
    assert render_identity_sheet(ds, num_ids=3, seed=4).tobytes() == render_identity_sheet(ds, num_ids=3, seed=4).tobytes()


def _rank1_oracle(qf, gf, q, g):
    """Rank-1 by brute force: nearest gallery image that is neither junk nor the query's identity+camera."""
    hits = []
    for i in range(len(q)):
        keep = [j for j in range(len(g)) if g[j].pid != -1 and not (g[j].pid == q[i].pid and g[j].camid == q[i].camid)]
        dist = ((gf[keep] - qf[i]) ** 2).sum(axis=1)
        if any(g[j].pid == q[i].pid for j in keep):
            hits.append(g[keep[int(np.argmin(dist))]].pid == q[i].pid)
    return 100.0 * np.mean(hits)


@pytest.mark.slow
def test_colour_histograms_fail_across_cameras(tmp_path):
    """The default set: colour alone identifies people under neutral cameras (difficulty 0), but the default
    cameras (difficulty 1) leave a colour histogram near chance, far below 50 % rank-1."""
    default = load_dataset("synthetic", tmp_path / "default")
    result = color_histogram_baseline(default, space="hsv")
    qf, gf = (color_histogram_features(s, space="hsv") for s in (default.query, default.gallery))
    assert 100 * result.rank(1) == pytest.approx(_rank1_oracle(qf, gf, default.query, default.gallery), abs=1e-6)
    neutral = color_histogram_baseline(load_dataset("synthetic", tmp_path / "neutral", difficulty=0.0), space="hsv")
    hard, easy = result.as_dict(), neutral.as_dict()
    assert hard["rank1"] < 10 and hard["mAP"] < 10
    assert easy["rank1"] > 2 * hard["rank1"] + 10
