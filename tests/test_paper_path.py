"""The path of ``make reproduce PRESET=paper DATASET=market1501``, end to end at a tiny size on the CPU: every
notebook executed with papermill at the ``paper`` preset (ResNet-50, the literature's fixed rates, the budget in
epochs) on a generated Market-1501 folder (``snlib.data.synthetic.generate_market_folder``: query, gallery with
junk and distractors, ``gt_bbox``, ``distractors_500k``), untrained weights, 32x16 images, a few iterations. It
checks that every notebook finishes and writes its tables and where the records go, not the numbers."""
from __future__ import annotations

import ast
import json

import nbformat
import pandas as pd
import pytest

from snlib.data import load_dataset
from snlib.data.synthetic import SyntheticConfig, generate_market_folder
from snlib.reproduce import list_notebooks, run_reproduction
from snlib.statistics import verdict

#: a few identities, every kind of image, at the smallest size the transforms take
TINY_MARKET = SyntheticConfig(num_train_ids=16, num_test_ids=12, num_cameras=3, images_per_camera=(2, 2),
                              height=32, width=16, num_distractors=3, num_junk=2)
#: the paper's protocol shrunk: every recipe at its literature rate, 2 iterations, one seed (two for the
#: convergence claims, which need a spread), two training shares
PROTOCOL_SIZES = {"epochs": None, "iterations": 2, "seeds": [0], "convergence_seeds": [0, 1],
                  "fractions": [0.5, 1.0], "evaluations": 2, "long_factor": 2, "gallery_steps": 2}
OVERRIDES = {"pretrained": False, "height": 32, "width": 16, "p": 4, "num_workers": 0, "eval_batch_size": 64,
             "sn_k": 3}


def test_the_market_folder_loads_as_market1501(tmp_path):
    root = generate_market_folder(tmp_path / "market", TINY_MARKET, num_extra=4)
    data = load_dataset("market1501", root)
    assert data.num_train_pids == 16 and len({s.pid for s in data.query}) == 12
    assert {0, -1} <= {s.pid for s in data.gallery} and data.multi_query
    extra = load_dataset("market1501", root, distractors_500k=True).extra_gallery
    assert len(extra) == 4 and {s.pid for s in extra} == {0}
    assert not (root / "synthetic.json").exists()


def _table_names(notebook) -> set[str]:
    """The tables a notebook saves under a literal name (``study.save_table(df, "name")``)."""
    source = "\n".join(c.source for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code")
    return {node.args[1].value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "save_table"
            and len(node.args) > 1 and isinstance(node.args[1], ast.Constant)}


@pytest.mark.slow
def test_every_notebook_runs_at_the_paper_preset_on_a_market_folder(tmp_path):
    root = generate_market_folder(tmp_path / "market", TINY_MARKET, num_extra=4)
    out, records = tmp_path / "out", tmp_path / "records"
    parameters = {"overrides": OVERRIDES, "protocol_sizes": PROTOCOL_SIZES, "seeds": [0], "datasets": [],
                  "k_values": [3], "alpha_values": [50.0], "lambda_values": [0.1], "noise_seeds": [0]}
    run_reproduction("paper", "market1501", root, out=out, extra_parameters=parameters,
                     cache_root=tmp_path / "cache", records_root=records)   # raises if a notebook fails
    manifest = json.loads((out / "manifest.json").read_text())
    assert {r["status"] for r in manifest["notebooks"].values()} == {"ok"}
    assert len(manifest["notebooks"]) == len(list_notebooks())
    for notebook in list_notebooks():
        missing = [name for name in _table_names(notebook) if not (out / f"{name}.csv").is_file()]
        assert not missing, f"{notebook.name} wrote no {missing}"
    # the records went to the folder given, under the preset; every one of the paper preset's model
    written = list((records / "paper").glob("*.json"))
    assert written and all(json.loads(p.read_text())["config"]["model"] == "resnet50" for p in written)
    rates = (out / "lr_selection.csv").read_text()
    assert "Hermans et al. 2017" in rates and "0.00035" in rates        # the literature's rates, no selection
    # the verdicts were computed, not merely a file written: Table 1's and the evaluation claims on both metrics,
    # each verdict the rule's on its own interval, and no stability claim (fixed rates: no selection to count)
    claims = pd.read_csv(out / "claims.csv")
    assert {"SN beats ce", "SN beats triplet", "SN beats contrastive", "multi-query raises SN"} <= set(claims["claim"])
    assert {"rank1", "mAP"} <= set(claims["metric"]) and not claims["claim"].str.contains("collapses").any()
    decided = claims.dropna(subset=["ci_low", "ci_high"])
    assert len(decided) and all(verdict(r.ci_low, r.ci_high, r.seeds, r.same_sign_seeds) == r.verdict
                                for r in decided.itertuples())
