"""The download helper: fails fast with instructions, checks MD5, unpacks; never touches the real network
(local file:// URLs and a refused localhost port stand in for the mirrors)."""
import dataclasses
import hashlib
import socket
import time
import zipfile

import pytest

from _data_fixtures import make_market
from snlib.data import SOURCES, DataNotFoundError, download, load_dataset
from snlib.data import sources
from snlib.errors import ConfigError


def _market_zip(tmp_path):
    make_market(tmp_path / "src" / "Market-1501-v15.09.15", gt_bbox=False)
    archive = tmp_path / "Market-1501-v15.09.15.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((tmp_path / "src").rglob("*")):
            zf.write(path, path.relative_to(tmp_path / "src"))
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def _refused_url():
    with socket.socket() as sock:  # a port nobody listens on: the connection is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/Market-1501-v15.09.15.zip"


def _with_source(monkeypatch, **changes):
    source = dataclasses.replace(SOURCES["market1501"], **changes)
    monkeypatch.setitem(SOURCES, "market1501", source)
    return source


def test_unreachable_mirrors_fail_fast_with_instructions(tmp_path, monkeypatch):
    _with_source(monkeypatch, urls=(_refused_url(), _refused_url()))
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as err:
        download("market1501", tmp_path, timeout=2)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert "could not download" in message and "project_reid.html" in message and "bounding_box_train" in message
    assert not list((tmp_path / "market1501").iterdir())  # no partial archive left


def test_checksum_mismatch_is_refused_and_removed(tmp_path, monkeypatch):
    archive, _ = _market_zip(tmp_path)
    _with_source(monkeypatch, urls=(archive.as_uri(),), md5="0" * 32)
    with pytest.raises(DataNotFoundError, match="MD5"):
        download("market1501", tmp_path / "data")
    assert not (tmp_path / "data" / "market1501" / archive.name).exists()


def test_download_verifies_unpacks_and_loads(tmp_path, monkeypatch):
    archive, md5 = _market_zip(tmp_path)
    _with_source(monkeypatch, urls=(_refused_url(), archive.as_uri()), md5=md5)  # first mirror down
    folder = download("market1501", tmp_path / "data")
    assert (folder / archive.name).is_file()
    assert load_dataset("market1501", tmp_path / "data").num_query_imgs == 3
    _with_source(monkeypatch, urls=(), md5=md5)  # an archive already there needs no network
    download("market1501", tmp_path / "data")


def test_sources_on_request_explain_themselves(tmp_path):
    for name in ("cuhk01", "msmt17", "market1501_500k"):
        with pytest.raises(DataNotFoundError, match="cannot be downloaded automatically"):
            download(name, tmp_path)
    with pytest.raises(ConfigError, match="market1501"):
        download("viper", tmp_path)
    assert all(len(s.md5) == 32 for s in SOURCES.values() if s.urls)


def test_stalled_host_lookup_is_bounded(tmp_path, monkeypatch):
    _with_source(monkeypatch, urls=("http://mirror.invalid/Market-1501-v15.09.15.zip",))
    monkeypatch.setattr(sources.socket, "getaddrinfo", lambda *args: time.sleep(3))  # a resolver that hangs
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError, match="looking up mirror.invalid took more than 0.5 s"):
        download("market1501", tmp_path, timeout=0.5)
    assert time.perf_counter() - start < 2.5
    assert sources.DEFAULT_TIMEOUT <= 15
