"""snlib.study (study, views, tables, figures): the logic the reproduction notebooks share (tables, summaries, multi-query and gallery-size
evaluation, train subsets, synthetic distractors), on a tiny synthetic set with features made by hand (no training).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from snlib import engine
from snlib.evaluation import AP_RULES, cuhk03_classic_cmc, evaluate_features, pairwise_distance
from snlib.study import figures, plans, style
from snlib.study.protocol import Protocol
from snlib.presets import config_hash
from snlib.records import RunRecord, write_record
from snlib.reporting import RETRAINED_FILE
from snlib.study.features import query_gallery
from snlib.study.recorded import TABLE1_VARIANTS
from snlib.study.study import TABLE1_SETTINGS, Study, find_datasets, open_study
from snlib.study.tables import (beside_published, convergence_summary, deviations_from_paper, format_mean_std,
                                mean_and_spread, paired_differences, paper_layout, relative_drop, summary_table,
                                training_curve)
from snlib.study.views import gallery_steps, synthetic_distractors
from snlib.paper import published
from snlib.presets import get_preset

DIM = 16
SMOKE_OPTIONS = get_preset("smoke").dataset_options  # the smoke synthetic set


# ------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke preset's tiny synthetic set, generated into a temporary folder."""
    root = tmp_path_factory.mktemp("data") / "synthetic"
    return open_study("smoke", data_root=root, output_dir=tmp_path_factory.mktemp("out"))


def _identity_features(pids: np.ndarray, camids: np.ndarray, noise: float, seed: int) -> torch.Tensor:
    """A unit vector per identity (distractors and junk get random ones) plus camera-dependent noise."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(10_000, DIM, generator=torch.Generator().manual_seed(123))
    feats = base[torch.from_numpy(pids % 10_000)] + noise * torch.randn(len(pids), DIM, generator=gen)
    feats[torch.from_numpy(pids <= 0)] = torch.randn(int((pids <= 0).sum()), DIM, generator=gen)
    return torch.nn.functional.normalize(feats + 0.1 * torch.from_numpy(camids).float()[:, None], dim=1)


@pytest.fixture
def fake_run(study, tmp_path, monkeypatch):
    """A finished run whose 'model' maps each image to a noisy identity vector; counts the extractions."""
    calls = []

    def extract(model, loader, device=None, flip=False, normalize=True, desc="features"):
        samples = loader.dataset.samples
        pids = np.array([s.pid for s in samples])
        camids = np.array([s.camid for s in samples])
        calls.append(desc)
        return _identity_features(pids, camids, noise=0.9, seed=len(samples)), pids, camids

    monkeypatch.setattr(engine, "extract_features", extract)
    monkeypatch.setattr(Study, "_model", lambda self, run, device: None)
    run = engine.RunResult(config=study.config("sn", 0), run_dir=tmp_path, history=[], evaluations=[], metrics={},
                           wall_time_s=0.0)
    run.calls = calls
    return run


# ------------------------------------------------------------------------------------------- summaries
def test_mean_and_spread_by_hand():
    df = pd.DataFrame({"loss": ["a", "a", "a", "b"], "rank1": [1.0, 2.0, 3.0, 5.0], "mAP": [2.0, 2.0, 2.0, 7.0]})
    out = mean_and_spread(df, "loss").set_index("loss")
    assert out.loc["a", "rank1_mean"] == 2.0 and out.loc["a", "rank1_std"] == pytest.approx(1.0)  # ddof=1
    assert out.loc["a", "mAP_std"] == 0.0 and out.loc["a", "rank1_count"] == 3
    assert math.isnan(out.loc["b", "rank1_std"]) and out.loc["b", "mAP_mean"] == 7.0
    assert list(out.index) == ["a", "b"]  # first-seen order, not sorted


def test_format_and_summary_table():
    assert format_mean_std(73.4321, 1.25) == "73.4 ± 1.2"  # round-half-even of 1.25 -> 1.2
    assert format_mean_std(73.4321, float("nan"), digits=2) == "73.43"
    assert format_mean_std(float("nan"), float("nan")) == "-"
    df = pd.DataFrame({"loss": ["sn", "sn", "ce"], "rank1": [10.0, 20.0, 30.0], "mAP": [1.0, 3.0, 5.0],
                       "mINP": [0.0, 0.0, 1.0]})
    table = summary_table(df).set_index("loss")
    assert table.loc["sn", "rank1"] == "15.0 ± 7.1" and table.loc["ce", "mAP"] == "5.0"
    assert table.loc["sn", "method"] == style.LOSS_LABELS["sn"] and table.loc["sn", "seeds"] == 2


def test_paired_differences_pairs_by_seed():
    df = pd.DataFrame({"loss": ["sn", "sn", "sn", "tri", "tri", "tri", "ce"],
                       "seed": [0, 1, 2, 2, 1, 0, 0],               # order must not matter
                       "rank1": [50.0, 60.0, 70.0, 71.0, 55.0, 40.0, 45.0], "mAP": [1.0] * 7})
    out = paired_differences(df, reference="sn").set_index("loss")
    # sn - tri per seed: 10, 5, -1
    assert out.loc["tri", "rank1_diff_mean"] == pytest.approx(14 / 3)
    assert out.loc["tri", "rank1_diff_std"] == pytest.approx(np.std([10, 5, -1], ddof=1))
    assert out.loc["tri", "rank1_ahead"] == "2/3" and out.loc["tri", "mAP_ahead"] == "0/3"
    assert out.loc["ce", "pairs"] == 1 and out.loc["ce", "rank1_diff_mean"] == 5.0


def _long_table():
    rows = []
    for loss, level in (("sn", 60.0), ("triplet", 50.0), ("ce", 40.0)):
        for seed in (0, 1):
            for query, rerank in TABLE1_SETTINGS:
                for ap in AP_RULES:
                    shift = 5 * (query == "multi") + 10 * rerank + seed - (ap == "market")
                    rows.append({"loss": loss, "seed": seed, "query": query, "rerank": rerank, "ap": ap,
                                 "rank1": level + shift + 20, "mAP": level + shift})
    return pd.DataFrame(rows)


def test_paper_layout_and_beside_published():
    layout = paper_layout(_long_table(), ap="market")
    assert list(layout["loss"]) == ["sn", "triplet", "ce", "sn", "triplet", "ce"]
    assert list(layout["rerank"]) == [False] * 3 + [True] * 3
    sn_rr = layout[(layout["loss"] == "sn") & layout["rerank"]].iloc[0]
    assert sn_rr["sq_mAP"] == pytest.approx(60 + 10 - 1 + 0.5) and sn_rr["mq_rank1"] == pytest.approx(94.5)
    assert sn_rr["sq_mAP_std"] == pytest.approx(np.std([0, 1], ddof=1)) and sn_rr["seeds"] == 2
    assert sn_rr["method"].endswith("+ re-ranking")

    table = beside_published(layout, "repro")
    paper = published("table1").set_index("method")
    # the paper's row stands right above the reproduced row of its family; softmax has none
    assert list(table["method"][:5]) == ["SN loss", layout["method"][0], "TriNet (batch-hard triplet)",
                                         layout["method"][1], layout["method"][2]]
    assert table.iloc[0]["sq_mAP"] == f"{paper.loc['SN loss', 'sq_mAP']:.2f}"
    assert table.iloc[1]["sq_mAP"] == "59.5 ± 0.7" and table.iloc[1]["source"] == "repro"
    assert "SN loss + re-ranking" in set(table["method"]) and len(table) == 10
    alone = beside_published(layout, "repro", with_paper=False)
    assert len(alone) == 6 and set(alone["source"]) == {"repro"}


def test_convergence_summary_by_hand():
    rows = []
    for seed, final in ((0, 80.0), (1, 60.0)):  # epoch 1 not evaluated (NaN), epoch 2 at 90 % of the final value
        for epoch, value in ((1, float("nan")), (2, 0.9 * final), (3, final)):
            rows.append({"loss": "sn", "train_fraction": 1.0, "seed": seed, "epoch": epoch, "rank1": value})
    rows += [{**row, "train_fraction": 0.5, "rank1": row["rank1"] / 2 if row["epoch"] == 3 else 1.0} for row in rows]
    out = convergence_summary(pd.DataFrame(rows), x="epoch").set_index("train_fraction")
    full = out.loc[1.0]
    assert full["final_rank1_mean"] == 70.0 and full["final_rank1_std"] == pytest.approx(np.std([80, 60], ddof=1))
    assert full["final_rank1"] == "70.0 ± 14.1" and full["seeds"] == 2 and full["epochs_to_90pct"] == 2
    assert full["rank1_std_over_epochs"] == pytest.approx(np.mean([np.std([72, 54], ddof=1), np.std([80, 60], ddof=1)]))
    assert out.loc[0.5, "epochs_to_90pct"] == 3 and out.loc[0.5, "final_rank1_mean"] == 35.0


def test_relative_drop_of_the_papers_figure4():
    drops = relative_drop(published("figure4"), by="method").set_index("method")
    assert drops.loc["SN loss", "mAP_drop_pct"] == pytest.approx(100 * (73.4 - 60.4) / 73.4)
    assert drops.loc["TriNet (batch-hard triplet)", "rank1_end"] == 74.7
    assert drops.loc["SN loss", "gallery_start"] == 19732 and drops.loc["SN loss", "gallery_end"] == 519732


def test_training_curve_from_history(tmp_path):
    history = [{"epoch": e, "iteration": i, "loss": float(l)} for i, (e, l) in
               enumerate([(1, 4.0), (1, 2.0), (2, 1.5), (2, 1.5), (3, 1.0), (3, 0.5)], start=1)]
    run = engine.RunResult(config=get_preset("smoke", loss="triplet"), run_dir=tmp_path, history=history,
                           evaluations=[{"epoch": 2, "rank1": 10.0}, {"epoch": 3, "rank1": 20.0}], metrics={},
                           wall_time_s=0.0)
    curve = training_curve(run)
    assert list(curve["train_loss"]) == [3.0, 1.5, 0.75]
    assert list(curve["train_loss_rel"]) == [1.0, 0.5, 0.25]
    assert math.isnan(curve["rank1"][0]) and list(curve["rank1"][1:]) == [10.0, 20.0]
    assert set(curve["loss"]) == {"triplet"}


def test_deviations_from_paper():
    assert deviations_from_paper(get_preset("paper")).empty
    cpu = deviations_from_paper(get_preset("cpu")).set_index("field")
    assert cpu.loc["model", "paper"] == "resnet50" and cpu.loc["model", "this study"] == "efficientnet_lite0"
    # operational fields and where the data lives are not deviations; a changed learning rate is
    assert "data_root" not in cpu.index and "num_workers" not in cpu.index
    assert cpu.loc["lr", "paper"] == 2e-4 and cpu.loc["lr", "this study"] == get_preset("cpu").lr
    rates = deviations_from_paper(get_preset("cpu"), {"sn": 1e-3, "ce": 3e-3}).set_index("field")
    assert rates.loc["lr of each recipe", "this study"] == "sn 0.001, ce 0.003"


def test_the_deviations_a_notebook_shows_are_those_of_its_runs(tmp_path):
    """The budget and the selected rate that the runs use, not the preset's defaults (100 iterations at the
    selected rate, not 12 epochs at 0.001)."""
    from snlib.study.protocol import Protocol
    study = dataclasses.replace(open_study("cpu", "synthetic", tmp_path / "d", tmp_path / "o"),
                                protocol=Protocol(iterations=100), rates={"sn": 3e-4})
    shown = deviations_from_paper(study.config("sn"), study.rates).set_index("field")
    assert shown.loc["iterations", "this study"] == 100 and shown.loc["lr", "this study"] == 3e-4


def test_open_study_keeps_options_of_another_dataset(tmp_path):
    s = open_study("smoke", "cuhk03", tmp_path / "c", tmp_path / "o", dataset_options={"protocol": "classic"})
    assert s.base.dataset == "cuhk03" and s.base.dataset_options == {"protocol": "classic"}
    assert open_study("smoke", "cuhk03", tmp_path / "c", tmp_path / "o").base.dataset_options == {}
    assert open_study("smoke", output_dir=tmp_path / "o").base.dataset_options == SMOKE_OPTIONS


# ------------------------------------------------------------------------------------------- data views
def test_find_datasets_splits_present_and_absent(study, tmp_path):
    present, skipped = find_datasets([("synthetic", study.base.data_root, SMOKE_OPTIONS),
                                      ("dukemtmc", tmp_path / "nothing")])
    assert present == [("synthetic", study.base.data_root, SMOKE_OPTIONS)]
    assert skipped[0][:2] == ("dukemtmc", str(tmp_path / "nothing")) and "no data set found" in skipped[0][2]


def test_synthetic_distractors_are_new_people(study):
    extra = synthetic_distractors(study.base.data_root, SMOKE_OPTIONS, 7)
    original = {Path(s.path).name for s in study.data.gallery}
    assert len(extra) == 7 and all(s.pid == 0 for s in extra)
    assert not original & {Path(s.path).name for s in extra}
    assert all(Path(s.path).is_file() for s in extra)
    assert [s.path for s in study.distractors(7)] == [s.path for s in extra]



def test_training_images_stand_in_as_distractors_where_a_data_set_has_none(monkeypatch):
    from types import SimpleNamespace

    from snlib.data import DataNotFoundError, ReIDDataset, Sample
    from snlib.study import plans, views

    data = ReIDDataset(name="market1501", root="x", train=[Sample(f"t{i}", i % 3 + 7, 0) for i in range(6)],
                       query=[Sample("q", 1, 0)], gallery=[Sample("g", 1, 1), Sample("g0", 0, 1)])
    chosen = views.distractors(data, get_preset("cpu"), 4, source="train")
    assert [(s.path, s.pid) for s in chosen] == [("t0", 7), ("t1", 8), ("t2", 9), ("t3", 7)]  # original ids, not 0..2
    with pytest.raises(ValueError, match="one of"):
        views.distractors(data, get_preset("cpu"), source="elsewhere")
    clash = ReIDDataset(name="market1501", root="x", train=[Sample("t", 1, 0)], query=data.query, gallery=data.gallery)
    with pytest.raises(ValueError, match=r"identities \[1\] are in both"):
        views.training_distractors(clash)

    def none_of_its_own(*args, **kwargs):
        raise DataNotFoundError("no distractor set")

    monkeypatch.setattr(views, "distractors", none_of_its_own)
    study = SimpleNamespace(preset="cpu", dataset_name="market1501", data=data, base=get_preset("cpu"))
    protocol = plans.study_protocol(study)
    assert (protocol.num_distractors, protocol.distractor_source) == (6, "train")
    monkeypatch.setattr(views, "distractors", lambda data, config, count=None, source="own": [Sample("d", 0, 0)] * 50)
    assert (plans.study_protocol(study).num_distractors, plans.study_protocol(study).distractor_source) == (50, "own")

# ------------------------------------------------------------------------------------------- evaluation paths
def test_multi_query_pools_each_identity_camera(study, fake_run):
    feats = study.features(fake_run)
    qf, q_pids, q_camids = feats["query"]
    mf, m_pids, m_camids = feats["multi_query"]
    gf, g_pids, g_camids = feats["gallery"]
    # oracle: a plain loop over the (identity, camera) groups of the multi-query images
    keys = sorted({(int(p), int(c)) for p, c in zip(m_pids, m_camids)})
    pooled = torch.stack([mf[(m_pids == p) & (m_camids == c)].mean(0) for p, c in keys])
    pids, camids = np.array([k[0] for k in keys]), np.array([k[1] for k in keys])
    expected = evaluate_features(pooled, gf, pids, g_pids, camids, g_camids, ap="market")
    got = study.evaluate(fake_run, multi_query=True, ap="market")
    assert got.num_valid_q == len(keys) == len({(p, c) for p, c in zip(q_pids, q_camids)})
    np.testing.assert_allclose(got.cmc, expected.cmc)
    assert got.mAP == pytest.approx(expected.mAP)
    assert study.evaluate(fake_run).num_valid_q == len(qf)


def _record_of(study, run, variants):
    """The record ``Study.record`` would write for ``run`` with ``variants`` (no training, no file)."""
    return RunRecord(config=run.config, dataset=run.config.dataset, split="test", metrics={}, evaluations=[],
                     history=[], wall_time_s=0.0, per_query={v: study.variant_per_query(run, v) for v in variants})


def test_evaluation_table_from_records_equals_the_live_evaluation(study, fake_run):
    """Table 1 from a record's per-query results (what a fresh clone computes) is the evaluation of the network's
    features itself (``Study.evaluate``, the oracle), in every setting and under both AP rules."""
    table = study.evaluation_table([_record_of(study, fake_run, TABLE1_VARIANTS)])
    assert len(table) == 8 and set(table["ap"]) == {"standard", "market"}
    for _, row in table.iterrows():
        live = study.evaluate(fake_run, multi_query=row["query"] == "multi", rerank=row["rerank"], ap=row["ap"])
        for metric, value in live.as_dict().items():
            assert row[metric] == pytest.approx(value, abs=1e-3), (row["query"], row["rerank"], row["ap"], metric)
    for _, pair in table.groupby(["query", "rerank"]):
        std, market = pair.set_index("ap").loc["standard"], pair.set_index("ap").loc["market"]
        assert std["rank1"] == market["rank1"] and market["mAP"] <= std["mAP"] + 1e-9  # trapezoid <= standard
    # extracted once, then read back; the multi-query images are byte copies of query / gallery images here, so
    # they take those features instead of another pass
    assert fake_run.calls == ["query", "gallery"]
    assert (fake_run.run_dir / "features_multi_query.pt").is_file()
    feats = study.features(fake_run)
    by_name = {Path(s.path).name: f for split in ("query", "gallery")
               for s, f in zip(getattr(study.data, split), feats[split][0])}
    for sample, feature in zip(study.data.multi_query, feats["multi_query"][0]):
        assert torch.equal(feature, by_name[Path(sample.path).name])


def test_an_older_record_without_the_variants_is_named(study, fake_run):
    record = _record_of(study, fake_run, ["sq"])
    record.per_query["sq"].pop("ap_market")
    with pytest.raises(KeyError, match="no 'ap_market'"):
        study.evaluation_table([record])
    with pytest.raises(KeyError, match="has no per-query results for 'mq'"):
        record.variant_metrics("mq")


def test_classic_cmc_matches_the_evaluator(study, fake_run):
    feats = study.features(fake_run)
    (qf, q_pids, q_camids), (gf, g_pids, g_camids) = feats["query"], feats["gallery"]
    expected = cuhk03_classic_cmc(pairwise_distance(qf, gf), q_pids, g_pids, q_camids, g_camids, num_repeats=5,
                                  max_rank=10, seed=0)
    row = study.classic_cmc([fake_run], num_repeats=5, ranks=(1, 5, 10)).iloc[0]
    assert row["rank1"] == pytest.approx(100 * expected[0]) and row["rank10"] == pytest.approx(100 * expected[9])


def test_gallery_size_curve_from_records_equals_the_live_evaluation(study, fake_run):
    """The curve from records (variants ``distractors-<n>``) is the evaluation of the query features against the
    gallery plus the first n of the study's 7 distractors, shuffled once (the oracle), and it only falls."""
    seven = dataclasses.replace(study, protocol=Protocol(num_distractors=7))
    record = _record_of(seven, fake_run, ["sq", "distractors-3", "distractors-7"])
    curve = seven.gallery_size_curve([record], steps=[0, 3, 7], ap_rules=("standard",))
    assert list(curve["distractors"]) == [0, 3, 7]
    assert list(curve["gallery_size"]) == [len(study.data.gallery) + n for n in (0, 3, 7)]
    order = np.random.default_rng(0).permutation(7)
    qf, gf, q_pids, g_pids, q_camids, g_camids = query_gallery(study.features(fake_run))
    xf, x_pids, x_camids = study.extract(fake_run, study.distractors(7), "distractors")
    for n, row in zip((0, 3, 7), curve.itertuples()):
        take = torch.from_numpy(order[:n])
        live = evaluate_features(qf, torch.cat([gf, xf[take]]), q_pids, np.concatenate([g_pids, x_pids[order[:n]]]),
                                 q_camids, np.concatenate([g_camids, x_camids[order[:n]]]))
        assert row.mAP == pytest.approx(100 * live.mAP, abs=1e-3) and row.rank1 == pytest.approx(100 * live.cmc[0])
    assert (np.diff(curve["mAP"]) <= 1e-9).all() and (np.diff(curve["rank1"]) <= 1e-9).all()
    with pytest.raises(ValueError, match="8 distractors asked for, but the study has 7"):
        seven.with_distractors(fake_run, 8)


def test_a_retrained_network_is_compared_with_its_record_and_the_record_kept(study, fake_run, tmp_path, monkeypatch):
    monkeypatch.setattr(type(study), "records_root", property(lambda self: tmp_path / "records"))
    here = dataclasses.replace(study, output_dir=tmp_path / "out", protocol=Protocol(seeds=(0, 1)))
    (tmp_path / "out").mkdir()
    for seed, (rank1, mAP) in enumerate([(40.0, 30.0), (50.0, 34.0)]):
        write_record(RunRecord(config=fake_run.config.replace(seed=seed), dataset="synthetic", split="test",
                               metrics={"rank1": rank1, "mAP": mAP}, evaluations=[], history=[], wall_time_s=1.0),
                     tmp_path / "records")
    written = (tmp_path / "records" / f"{config_hash(fake_run.config)}.json").read_text()
    fake_run.metrics = {"rank1": 45.0, "mAP": 36.0}
    monkeypatch.setattr(engine, "train", lambda config, progress=True: fake_run)
    here.run("sn", 0)
    check = json.loads((tmp_path / "out" / RETRAINED_FILE).read_text())[config_hash(fake_run.config)]
    assert (check["rank1_diff"], check["mAP_diff"], check["rank1_seed_spread"], check["mAP_seed_spread"]) == \
        (5.0, 6.0, 10.0, 4.0)
    assert check["inside_seed_spread"] is False and check["seeds"] == 2      # mAP 36 lies above both seeds' values
    assert (tmp_path / "records" / f"{config_hash(fake_run.config)}.json").read_text() == written


def test_the_seed_dots_do_not_depend_on_the_kernels_random_state():
    """The same table draws the same picture whatever ran before (a trained run moves numpy's global generator),
    and drawing it leaves the caller's generator where it was."""
    import io

    import matplotlib.pyplot as plt

    single = _long_table()
    single = single[(single["query"] == "single") & ~single["rerank"] & (single["ap"] == "standard")]
    pictures = []
    for seed in (1, 2):
        np.random.seed(seed)
        fig = figures.metric_bars(single, order=["sn", "triplet", "ce"])
        after = np.random.uniform()
        np.random.seed(seed)
        assert after == np.random.uniform()                                  # the caller's generator is untouched
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", metadata={"Software": None})
        plt.close(fig)
        pictures.append(buffer.getvalue())
    assert pictures[0] == pictures[1]
    dots = [c.get_offsets() for c in figures.metric_bars(single).axes[0].collections if len(c.get_offsets())]
    assert len(dots) and all(np.ptp(d[:, 1]) > 0 for d in dots if len(d) > 1)   # jittered all the same


def test_gallery_steps_grow_geometrically():
    steps = gallery_steps(1000, 7000, num_steps=4)  # galleries 1000, 2000, 4000, 8000
    assert steps == [0, 1000, 3000, 7000]
    assert gallery_steps(1000, 0) == [0]
    assert gallery_steps(10, 3, num_steps=10) == [0, 1, 2, 3]  # rounding never repeats a step


# ------------------------------------------------------------------------------------------- figures
def test_plots_draw_the_long_tables():
    long = _long_table()
    single = long[(long["query"] == "single") & ~long["rerank"] & (long["ap"] == "standard")]
    fig = figures.metric_bars(single, order=["sn", "triplet", "ce"])
    assert len(fig.axes) == 2
    sweep = pd.DataFrame({"sn_k": [2, 5, 10, 2], "seed": [0, 0, 0, 1], "rank1": [1.0, 2, 3, 4], "mAP": [1.0, 2, 3, 4]})
    noise = mean_and_spread(single[single["loss"] == "sn"], "loss")
    assert len(figures.sweep_curves(sweep, "sn_k", default=10, noise=noise).axes) == 2
    curves = pd.DataFrame({"loss": ["sn"] * 4, "seed": [0, 0, 1, 1], "epoch": [1, 2, 1, 2], "train_fraction": 1.0,
                           "train_loss_rel": [1.0, 0.5, 1.0, 0.6], "rank1": [10.0, 20, 12, 18]})
    assert len(figures.training_curves(curves, col="train_fraction").axes) == 2
    # the selection's curves: one panel per recipe, each with its own rates in its own legend, a rate's colour the
    # same in every panel
    rates = pd.DataFrame({"loss": ["sn", "sn", "ce", "ce"], "lr": [1e-3, 1e-2, 1e-4, 1e-3], "seed": 0,
                          "iteration": 10, "rank1": [1.0, 2, 3, 4]})
    sn, ce = figures.training_curves(rates, y=("rank1",), col="loss", hue="lr", x="iteration").axes
    assert [t.get_text() for t in sn.get_legend().get_texts()] == ["0.001", "0.01"]
    assert [t.get_text() for t in ce.get_legend().get_texts()] == ["0.0001", "0.001"]
    assert sn.lines[0].get_color() is not None and np.allclose(sn.lines[0].get_color(), ce.lines[2].get_color())
    gallery = pd.DataFrame({"loss": ["sn", "sn"], "seed": 0, "gallery_size": [100, 400], "mAP": [50.0, 40],
                            "rank1": [70.0, 60]})
    assert len(figures.gallery_curves(gallery, published=published("figure4")).axes) == 2
    relative = figures.gallery_curves(gallery, metrics=("mAP",), relative=True).axes[0].lines[0].get_ydata()
    np.testing.assert_allclose(relative, [100.0, 80.0])
    import matplotlib.pyplot as plt
    plt.close("all")


def test_open_study_applies_overrides_to_every_run(tmp_path):
    s = open_study("smoke", output_dir=tmp_path / "o", lr=2e-4, epochs=3)
    assert (s.base.lr, s.base.epochs) == (2e-4, 3)
    config = s.config("triplet", seed=1)
    assert (config.lr, config.epochs, config.loss, config.recipe, config.seed) == (2e-4, 3, "triplet-soft", "triplet", 1)
    with pytest.raises((TypeError, ValueError)):
        open_study("smoke", output_dir=tmp_path / "o", learning_rate=2e-4)   # not a TrainConfig field


def _settled(study, rates, protocol=None):
    """``study`` as :func:`snlib.study.protocol.settle` leaves it, with hand-made ``rates`` (no selection run)."""
    return dataclasses.replace(study, protocol=protocol or Protocol(iterations=5), rates=rates)


def test_a_notebooks_overrides_win_over_the_selected_rate(tmp_path):
    """``overrides={"lr": ...}`` reaches every run the protocol does not vary itself (the selection passes its grid
    rate explicitly); the recipe's selected rate and budget apply otherwise."""
    rates = {"sn": 8e-3, "ce": 4e-3}
    study = _settled(open_study("smoke", output_dir=tmp_path / "out", lr=2e-4), rates)
    assert (study.config("sn").lr, study.config("sn").iterations) == (2e-4, 5)
    assert study.config("sn", lr=1e-3).lr == 1e-3
    plain = _settled(open_study("smoke", output_dir=tmp_path / "out2"), rates)
    assert plain.config("ce").lr == 4e-3 and plain.config("sn").iterations == 5
    # another data set keeps them; the study's line says the selection is not used
    assert study.with_dataset("synthetic", tmp_path / "other").overrides == {"lr": 2e-4}
    # ... and starts from the preset, not from this study's protocol fields (the synthetic study's 64x32 and head)
    protocol_fields = dataclasses.replace(study, base=study.base.replace(height=32, width=16, train_from="head"))
    other = protocol_fields.with_dataset("synthetic", tmp_path / "other").base
    preset = get_preset("smoke")
    assert (other.height, other.width, other.train_from) == (preset.height, preset.width, preset.train_from)
    assert other.lr == 2e-4
    assert "every recipe at lr 0.0002 (forced by the overrides" in study.describe()
    assert "each recipe at its validation-selected rate" in plain.describe() and "forced" not in plain.describe()


def test_explicit_settings_beat_recipe_fields(tmp_path):
    """The order of precedence (``snlib.recipes.run_config``): base < budget < recipe fields < selected rate <
    overrides < the call's keyword arguments."""
    study = _settled(open_study("smoke", output_dir=tmp_path / "out"), {"ce": 4e-3, "bot": 1e-3},
                     Protocol(iterations=5, overrides={"p": 4}))
    assert study.config("ce").label_smoothing == 0.1 and study.config("ce").bnneck       # the recipe's fields
    assert study.config("ce", label_smoothing=0.0).label_smoothing == 0.0                # ... lose to the call
    assert study.config("bot", triplet_margin=0.5).triplet_margin == 0.5
    forced = _settled(open_study("smoke", output_dir=tmp_path / "o2", label_smoothing=0.2, iterations=7),
                      {"ce": 4e-3})
    assert (forced.config("ce").label_smoothing, forced.config("ce").iterations) == (0.2, 7)  # overrides win too
    assert forced.config("ce").lr == 4e-3 and forced.config("ce", lr=1e-4).lr == 1e-4


def test_run_config_layers_in_order():
    from snlib.recipes import run_config

    base = get_preset("smoke")
    assert run_config(base, "ce").label_smoothing == 0.1
    assert run_config(base, "ce", budget={"label_smoothing": 0.3}).label_smoothing == 0.1   # recipe > budget
    assert run_config(base, "sn", budget={"lr": 1.0}, lr=2e-3).lr == 2e-3                   # rate > budget
    assert run_config(base, "sn", lr=2e-3, overrides={"lr": 5e-4}).lr == 5e-4                # overrides > rate
    assert run_config(base, "sn", overrides={"lr": 5e-4}, call={"lr": 1e-4}).lr == 1e-4     # call > overrides
    assert run_config(base, "sn+0.5*ce").loss == "sn+0.5*ce"                                 # a plain loss spec


def test_a_forced_rate_skips_the_selection(tmp_path, monkeypatch):
    """``setup`` with ``overrides={"lr": ...}`` trains no selection run (except notebook 00's plan, which is the
    selection) and says the rate was forced."""
    from snlib.study import protocol as P

    def no_selection(*args, **kwargs):
        raise AssertionError("the selection ran although the rate was forced")

    monkeypatch.setattr(P, "select_rates", no_selection)
    monkeypatch.setattr(plans, "study_protocol", lambda study, changes=None: Protocol(iterations=5))
    study, plan = plans.setup("table1", "smoke", output_dir=tmp_path / "out", overrides={"lr": 3e-4})
    assert study.selection is None and study.rates == {} and study.config("triplet").lr == 3e-4
    assert "forced by the overrides" in study.describe()
    with pytest.raises(AssertionError, match="the selection ran"):
        plans.setup("lr_selection", "smoke", output_dir=tmp_path / "out", overrides={"lr": 3e-4})


def test_a_settled_study_does_not_change(tmp_path):
    study = _settled(open_study("smoke", output_dir=tmp_path / "out"), {"sn": 1e-3})
    with pytest.raises(dataclasses.FrozenInstanceError):
        study.rates = {}


def test_the_k_sweep_scales_with_the_batch():
    """The paper's k = 10 of 128: 5 at 64; the sweep, three points, holds that share and the paper's 10 at 64 to
    256; the cpu preset's k is that share of its batch."""
    assert [plans.batch_scaled_k(b) for b in (32, 64, 128, 256)] == [3, 5, 10, 20]
    assert plans.k_sweep(64) == (3, 5, 10)
    assert plans.k_sweep(128) == (5, 10, 20)
    assert all(10 in plans.k_sweep(b) and len(plans.k_sweep(b)) == 3 for b in (64, 128, 256))
    assert plans.k_sweep(8) == (1, 2)  # rounded half up, at least 1, no repeats
    cpu = get_preset("cpu")
    assert cpu.sn_k == plans.batch_scaled_k(cpu.p * cpu.k) == round(10 * 64 / 128)
