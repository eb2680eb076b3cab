"""snlib.collapse: the batch geometry every iteration logs (against plain loops), its place in a run's history and
a record's thinned history, ``snlib runs <hash>``, and the collapse rule on hand-made histories."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from snlib import collapse, engine, settings
from snlib.__main__ import main as cli
from snlib.collapse import (GAP_TOLERANCE, SHRINK_RATIO, batch_geometry, collapse_evidence, history_collapsed,
                            is_diagnostic)
from snlib.data import load_dataset
from snlib.presets import get_preset
from snlib.records import RunRecord, load_record, thin_history, write_record
from snlib.study.protocol import collapsed

DIAGNOSTICS = {"feature_norm", "pair_dist", "hard_gap", "triplet/hardest_pos_dist", "triplet/hardest_neg_dist",
               "triplet/active"}


def _geometry_by_loops(features: list[list[float]], labels: list[int]) -> dict[str, float]:
    """The oracle: every quantity of ``batch_geometry`` with plain Python loops."""
    n = len(features)
    norms = [math.sqrt(sum(v * v for v in f)) for f in features]
    dist = [[math.dist(a, b) for b in features] for a in features]
    pairs = [dist[i][j] for i, j in itertools.permutations(range(n), 2)]
    gaps = []
    for i in range(n):
        pos = [dist[i][j] for j in range(n) if j != i and labels[j] == labels[i]]
        neg = [dist[i][j] for j in range(n) if labels[j] != labels[i]]
        if pos and neg:
            gaps.append(min(neg) - max(pos))
    return {"feature_norm": sum(norms) / n, "pair_dist": sum(pairs) / len(pairs),
            "hard_gap": sum(gaps) / len(gaps) if gaps else math.nan}


def test_batch_geometry_matches_plain_loops():
    torch.manual_seed(0)
    features = torch.randn(9, 5, dtype=torch.float64) * 3
    features[4] = features[3] + 1e-4                       # a near-duplicate pair (the exact-distance path)
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 3]                   # identity 3: one image, an anchor without positive
    got = batch_geometry(features, torch.tensor(labels))
    expected = _geometry_by_loops(features.tolist(), labels)
    assert got.keys() == expected.keys() == set(collapse.GEOMETRY_COLUMNS)
    for key in expected:
        assert got[key] == pytest.approx(expected[key], rel=1e-5), key
    single = batch_geometry(torch.ones(3, 4), torch.tensor([0, 1, 2]))   # no positive anywhere
    assert single["pair_dist"] == pytest.approx(1e-6) and math.isnan(single["hard_gap"])
    assert single["feature_norm"] == pytest.approx(2.0)


def test_diagnostic_columns():
    assert all(is_diagnostic(c) for c in DIAGNOSTICS | {"triplet-soft/active", "triplet-soft/hardest_pos_dist"})
    assert not any(is_diagnostic(c) for c in ("loss", "lr", "triplet", "ce/accuracy", "active", "images_per_s",
                                              "sn/separation"))


# ------------------------------------------------------------------------------------- a run and its record


@pytest.fixture(scope="module")
def triplet_run(tmp_path_factory):
    """A smoke run of the batch-hard triplet loss (1 epoch of 4 iterations, p=4), its cache in a temporary folder."""
    root = tmp_path_factory.mktemp("collapse")
    data_root = root / "synthetic-smoke"
    config = get_preset("smoke", data_root=str(data_root), epochs=1, height=32, width=16, p=4, loss="triplet")
    load_dataset(config.dataset, data_root, **config.dataset_options)
    return engine.train(config, cache_root=root / "cache", progress=False)


def test_every_iteration_logs_the_diagnostics_and_a_record_keeps_them(triplet_run, tmp_path):
    history = triplet_run.history
    assert len(history) == 4 and all(DIAGNOSTICS <= row.keys() for row in history)
    for row in history:   # every anchor of a P x K batch has a positive and a negative: the same hardest pairs
        assert row["hard_gap"] == pytest.approx(row["triplet/hardest_neg_dist"] - row["triplet/hardest_pos_dist"],
                                                rel=1e-5, abs=1e-6)
        assert row["pair_dist"] > 0 and row["feature_norm"] > 0 and 0 <= row["triplet/active"] <= 1
    stored = engine.RunResult.load(triplet_run.run_dir).history          # history.csv
    assert DIAGNOSTICS <= stored[0].keys()
    config = triplet_run.config
    record = RunRecord(config=config, dataset=config.dataset, split=config.split, metrics=triplet_run.metrics,
                       evaluations=[], history=thin_history(history, rows=2), wall_time_s=1.0)
    loaded = load_record(write_record(record, tmp_path))
    assert [row["iteration"] for row in loaded.history] == [2, 4]
    for row in loaded.history:
        assert set(row) == {"iteration", "epoch", "lr", "loss"} | DIAGNOSTICS
        assert row == {key: history[row["iteration"] - 1][key] for key in row}
    assert collapse_evidence(loaded.history) is not None


def test_snlib_runs_prints_the_diagnostics_of_the_last_iterations(triplet_run, capsys):
    run_dir = triplet_run.run_dir
    cli(["runs", run_dir.name, "--cache-root", str(run_dir.parent)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    start = lines.index("diagnostics of the last 4 iterations:")
    header = lines[start + 1].split()
    assert header[:2] == ["iteration", "loss"] and DIAGNOSTICS <= set(header)
    last = dict(zip(header, lines[start + 5].split()))
    assert last["iteration"] == "4" and float(last["pair_dist"]) == pytest.approx(
        triplet_run.history[-1]["pair_dist"], rel=1e-3)
    assert lines[start + 6].startswith("collapse rule: ")


# ------------------------------------------------------------------------------------------------- the rule


def _history(pair_dist, hard_gap, iterations=1000, rows=50):
    """A thinned history: ``pair_dist(x)`` and ``hard_gap(x)`` at x = the share of training done."""
    its = np.linspace(iterations / rows, iterations, rows).round().astype(int)
    return [{"iteration": int(t), "epoch": 1, "lr": 1e-3, "loss": 0.5, "pair_dist": pair_dist(t / iterations),
             "hard_gap": hard_gap(t / iterations), "feature_norm": 10.0} for t in its]


def test_the_rule_on_a_collapsed_and_a_healthy_history():
    # collapsed: the spread runs down from 10 to 1e-4 (the features merge) and the hardest negative stays no
    # farther than the hardest positive
    fell = _history(lambda x: 10 * 1e-5 ** x, lambda x: -0.5 * 1e-5 ** x)
    evidence = collapse_evidence(fell)
    assert evidence["collapsed"] and history_collapsed(fell)
    assert evidence["tail_from"] == 820 and evidence["gap_ratio"] < 0 and evidence["shrink"] < SHRINK_RATIO
    # healthy: the spread grows and the hardest negative moves beyond the hardest positive
    healthy = _history(lambda x: 10 + 4 * x, lambda x: -2 + 5 * x)
    evidence = collapse_evidence(healthy)
    assert not evidence["collapsed"] and evidence["gap_ratio"] > GAP_TOLERANCE and evidence["shrink"] > 1
    # one sign alone is not a collapse: a shrinking scale that still separates (a loss on normalised features) ...
    assert not history_collapsed(_history(lambda x: 10 * (1 - x) + 0.5, lambda x: 0.2 * (1 - x) + 0.1))
    # ... nor a slow run whose hardest pairs are not yet separated while the spread holds
    assert not history_collapsed(_history(lambda x: 10.0, lambda x: -1.0))
    # ... nor a scale falling tenfold with the gap near 0 (SN at its best rate on cuhk03p1: 0.15 of its spread,
    # gap ratio 0.03, validation rank-1 33)
    scaled = _history(lambda x: 10 * (1 - 0.85 * x), lambda x: 0.03 * 10 * (1 - 0.85 * x))
    evidence = collapse_evidence(scaled)
    assert not evidence["collapsed"] and evidence["gap_ratio"] <= GAP_TOLERANCE and 0.1 < evidence["shrink"] < 0.25
    # the spread falling to 0 with no separation left
    assert history_collapsed(_history(lambda x: 10 * (1 - x) ** 6, lambda x: 0.0))


def test_the_rule_is_not_knife_edge_on_the_committed_records():
    """Every committed record with diagnostics keeps its spread ratio at least fivefold away from the limit on
    either side (module docstring: the merged runs at most 1.4e-4, all others at least 1.1e-2); a record near the
    limit means the rule must be measured again."""
    ratios = []
    for path in sorted((settings.repo_root() / "results" / "runs" / "cpu").glob("*.json")):
        evidence = collapse_evidence(load_record(path).history)
        if evidence is not None:
            ratios.append((evidence["shrink"], path.stem))
    assert len(ratios) > 100 and min(ratios)[0] < SHRINK_RATIO   # the published studies hold merged runs too
    near = [(round(r, 5), name) for r, name in ratios if SHRINK_RATIO / 5 < r < SHRINK_RATIO * 5]
    assert not near, near


def test_records_without_diagnostics_still_read_and_do_not_collapse_by_the_rule():
    records = [load_record(p) for p in sorted((settings.repo_root() / "results" / "runs" / "cpu").glob("*.json"))]
    older = [r for r in records if not any(c in row for row in r.history for c in collapse.GEOMETRY_COLUMNS)][:20]
    assert older                                          # the committed studies' records predate the diagnostics
    for record in older:
        assert collapse_evidence(record.history) is None and not history_collapsed(record.history)
    nulls = _history(lambda x: 1.0, lambda x: 0.0)
    for row in nulls:
        row["pair_dist"] = row["hard_gap"] = None        # NaN written as null
    assert collapse_evidence(nulls) is None


def test_the_protocol_counts_a_run_collapsed_by_the_rule():
    config = get_preset("smoke")
    floor = {"rank1": 10.0, "mAP": 10.0}

    def record(history):
        return RunRecord(config=config, dataset="synthetic", split="val", metrics={"rank1": 50.0, "mAP": 40.0},
                         evaluations=[], history=history, wall_time_s=1.0)

    assert collapsed(record(_history(lambda x: 10 * 1e-5 ** x, lambda x: -0.1 * 1e-5 ** x)), floor)
    assert not collapsed(record(_history(lambda x: 10 * (1 - x) + 0.2, lambda x: -0.1)), floor)   # shrunk 0.04
    assert not collapsed(record(_history(lambda x: 10 + 4 * x, lambda x: -2 + 5 * x)), floor)
    assert not collapsed(record([{"iteration": 1, "loss": 0.3}]), floor)   # a record of before: the floor alone
