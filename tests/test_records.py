"""Run records as the source of truth fail safely: a damaged, foreign, older-format or renamed record is named,
with what to do, and never read as another run; a record says where it came from (provenance) and which protocol
version made it, and a study never mixes versions."""
import json
import platform
import shutil
import subprocess

import numpy as np
import pytest
import torch

import snlib
from snlib import settings
from snlib.errors import DamagedRecordError, ProtocolVersionError
from snlib.presets import PROTOCOL_VERSION, get_preset
from snlib.records import (FIRST_PROTOCOL_VERSION, RECORD_FORMAT, RunRecord, check_protocol_version, load_record,
                           read_record, write_record)


def _written(tmp_path):
    config = get_preset("smoke", iterations=3)
    record = RunRecord(config=config, dataset=config.dataset, split="test", metrics={"rank1": 50.0, "mAP": 40.0},
                       evaluations=[], history=[{"iteration": 3, "loss": 1.0}], wall_time_s=1.0,
                       per_query={"sq": {"pid": [1], "camid": [0], "ap": [0.4], "first": [0]}})
    return record, write_record(record, tmp_path)


def test_a_record_round_trips(tmp_path):
    record, path = _written(tmp_path)
    again = load_record(path)
    assert again.hash == record.hash == path.stem and again.per_query == record.per_query
    assert read_record(record.config, tmp_path).metrics == record.metrics


@pytest.mark.parametrize("damage, message", [
    (lambda text: text[: len(text) // 2], r"cannot be read \(JSONDecodeError"),         # truncated
    (lambda text: "[1, 2]", "is not an snlib run record"),                              # foreign JSON
    (lambda text: text.replace(RECORD_FORMAT, "snlib-record-1"), "found 'snlib-record-1'"),   # older format
    (lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "metrics"}), "is incomplete"),
    (lambda text: "\udcff" + text, r"cannot be read \(UnicodeDecodeError"),                # not UTF-8
])
def test_a_damaged_record_is_named_with_the_way_out(tmp_path, damage, message):
    _, path = _written(tmp_path)
    path.write_bytes(damage(path.read_text()).encode("utf-8", "surrogateescape"))
    with pytest.raises(DamagedRecordError, match=message) as err:
        load_record(path)
    text = str(err.value)
    assert path.name in text and "git checkout --" in text and "delete it and run again" in text
    assert "\n" not in text


def test_a_copied_record_is_not_read_as_another_run(tmp_path):
    _, path = _written(tmp_path)
    copy = path.with_name("0123456789abcdef.json")
    shutil.copy(path, copy)
    with pytest.raises(DamagedRecordError, match="holds run .* not 0123456789abcdef"):
        load_record(copy)


def test_a_truncated_published_record_fails_the_claims_notebook_with_one_line(tmp_path, monkeypatch):
    """The issue's case: a committed record truncated; reading it through the study names the file."""
    published = sorted((settings.results_dir() / "runs" / "cpu").glob("*.json"))
    if not published:
        pytest.skip("no published records")
    path = tmp_path / published[0].name
    path.write_text(published[0].read_text()[:500])
    with pytest.raises(DamagedRecordError, match=f"run record .*{published[0].stem}.json cannot be read"):
        load_record(path)


# ------------------------------------------------------------------------------ provenance, protocol version


def _git(*args) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(settings.REPO_ROOT), *args], capture_output=True, text=True)


def test_a_written_record_says_where_it_came_from(tmp_path):
    """The commit (``git rev-parse HEAD``) and whether tracked files differ from it (``git diff HEAD``), the
    package versions as each package reports itself, the processor; read back as written."""
    record, path = _written(tmp_path)
    written = json.loads(path.read_text())
    assert written["protocol_version"] == PROTOCOL_VERSION == record.protocol_version
    p = written["provenance"]
    assert p == record.provenance == load_record(path).provenance
    assert (p["python"], p["numpy"], p["machine"]) == (platform.python_version(), np.__version__, platform.machine())
    assert p["torch"] == torch.__version__.split("+")[0] and p["snlib"] == snlib.__version__
    assert p["torchvision"] is not None and "timm" in p and p["cpu_capability"]
    if settings.REPO_ROOT is not None and (settings.REPO_ROOT / ".git").exists() and shutil.which("git"):
        assert p["commit"] == _git("rev-parse", "HEAD").stdout.strip() and p["source"] == "git checkout"
        assert p["dirty"] is (_git("diff", "--quiet", "HEAD").returncode == 1)
    else:
        assert p["commit"] is None and p["dirty"] is None


def test_a_record_from_before_provenance_reads_as_protocol_version_1(tmp_path):
    """Records written before the fields (the version-1 studies' committed ones) read as protocol version 1, no
    provenance."""
    _, path = _written(tmp_path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in data.items() if k not in ("protocol_version", "provenance")}))
    old = load_record(path)
    assert (old.protocol_version, old.provenance) == (FIRST_PROTOCOL_VERSION, None) == (1, None)
    # the committed records written before versions (the version-1 studies') read as version 1
    published = sorted((settings.results_dir() / "runs" / "cpu").glob("*.json"))
    before = [f for f in published if "protocol_version" not in json.loads(f.read_text())]
    assert before or not published
    for file in before[:3]:
        assert "provenance" not in json.loads(file.read_text()) and load_record(file).protocol_version == 1


def _versioned(tmp_path, seed: int, version: int) -> RunRecord:
    record, _ = _written(tmp_path)
    record.config, record.protocol_version = record.config.replace(seed=seed), version
    return record


def test_records_of_one_protocol_version_pass_and_mixed_ones_are_named(tmp_path):
    ones = [_versioned(tmp_path, seed, 1) for seed in (0, 1)]
    check_protocol_version(ones, 1, tmp_path)                                 # one version: nothing
    check_protocol_version([], 3, tmp_path)
    two = _versioned(tmp_path, 2, 2)
    with pytest.raises(ProtocolVersionError) as err:
        check_protocol_version([*ones, two], 1, tmp_path)
    text = str(err.value)
    assert "this study runs protocol version 1, but 1 of the run records" in text
    assert "versions found: 1 in 2 record(s), 2 in 1 record(s)" in text
    assert f"{two.hash}.json ({two.name}, seed 2): version 2" in text and ones[0].hash not in text
    assert "\n" not in text
    six = r"versions found: 1 in 6 record\(s\)\).*; and 1 more\. A study never mixes"   # five named, one counted
    with pytest.raises(ProtocolVersionError, match=six):
        check_protocol_version([_versioned(tmp_path, seed, 1) for seed in range(6)], 2, tmp_path)
