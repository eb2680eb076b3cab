"""Run records as the source of truth fail safely: a damaged, foreign, older-format or renamed record is named,
with what to do, and never read as another run."""
import json
import shutil

import pytest

from snlib import settings
from snlib.errors import DamagedRecordError
from snlib.presets import get_preset
from snlib.records import RECORD_FORMAT, RunRecord, load_record, read_record, write_record


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
