"""benchmarks/gpu_check.sh --dry-run: every step of the GPU machine's check starts on the CPU at tiny sizes, the
CUDA parts listed as skipped, one JSON + Markdown summary written."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_writes_the_summary(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert done.returncode == 0, done.stdout + done.stderr + json.dumps(report["steps"], indent=1)[-4000:]
    assert report["dry_run"] and report["ok"]
    assert set(report) >= {"environment", "steps", "skipped", "seconds", "started"}
    assert list(report["steps"]) == ["cuda_tests", "bench_loss", "bench_train", "paper_epoch", "market_epoch"]
    assert all(step["status"] == "ok" for step in report["steps"].values())
    assert any("fp16" in item for item in report["skipped"])
    # each step measured what it is there for, at tiny sizes
    assert report["steps"]["bench_loss"]["rows"][0]["N"] == 8
    assert {s["variant"] for s in report["steps"]["bench_train"]["steps"]} == {"fp32", "bf16-cl"}
    assert set(report["steps"]["bench_train"]["skipped_variants"]) == {"fp16", "fp16-cl"}
    epoch = report["steps"]["paper_epoch"]
    assert epoch["iterations"] >= 1 and "rank1" in epoch["metrics"] and epoch["extra"]["device"] == "cpu"
    market = report["steps"]["market_epoch"]
    assert market["iterations"] >= 1 and market["loop_images_per_s"] > 0 and market["plan"]["status"] == "ok"
    assert market["plan_iterations"] > 0 and market["projected_hours"] > 0    # the paper's budget, projected
    assert "--collect-only" in report["steps"]["cuda_tests"]["command"]
    markdown = (tmp_path / "gpu_check.md").read_text()
    assert "dry run" in markdown and "| paper_epoch | ok |" in markdown
    assert not (tmp_path / "bench_train.json").exists()  # folded into gpu_check.json
