"""snlib.provenance: the commit of a git checkout and whether its tracked files changed (against git's own answer
in a repository made here), no failure and no wait where git is absent or hangs, no commit taken from a repository
snlib is merely installed inside; package versions (None where absent); the lines ``snlib runs`` prints."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time

import pytest

from snlib import provenance as prov
from snlib.presets import get_preset
from snlib.records import RunRecord, write_record

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(root, *args) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def repo(tmp_path):
    """A git repository with one committed file, ``a.txt``."""
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "a.txt").write_text("one\n")
    _git(root, "add", "a.txt")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_the_commit_and_the_dirty_flag_are_gits(repo):
    clean = prov.code_source(repo)
    assert clean == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False, "source": "git checkout"}
    (repo / "new.txt").write_text("untracked\n")                      # an untracked file: still clean
    assert prov.code_source(repo)["dirty"] is False
    (repo / "a.txt").write_text("two\n")                              # a tracked file changed
    assert prov.code_source(repo)["dirty"] is True
    _git(repo, "add", "a.txt")                                        # ... and staged
    assert prov.code_source(repo)["dirty"] is True
    _git(repo, "commit", "-q", "-m", "second")
    assert prov.code_source(repo) == {"commit": _git(repo, "rev-parse", "HEAD"), "dirty": False,
                                      "source": "git checkout"}
    assert prov.code_source(repo)["commit"] != clean["commit"]


@needs_git
def test_a_folder_inside_a_repository_is_not_its_checkout(repo):
    """snlib installed in a virtual environment inside some clone: that clone's commit is not snlib's."""
    inner = repo / ".venv" / "site-packages"
    inner.mkdir(parents=True)
    found = prov.code_source(inner)
    assert found["commit"] is None and found["dirty"] is None and "not a git checkout" in found["source"]
    installed = prov.code_source(None)
    assert installed["commit"] is None and "installed package" in installed["source"]


@needs_git
def test_a_repository_without_a_commit_gives_none(tmp_path):
    _git(tmp_path, "init", "-q")
    found = prov.code_source(tmp_path)
    assert found["commit"] is None and found["source"] == "git failed (no commit yet): the snlib version only"


def test_no_git_program_is_no_failure(repo, tmp_path, monkeypatch):
    """git absent from PATH: the record is written, with the package version and the reason there is no commit."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    found = prov.code_source(repo)
    assert found["commit"] is None and found["dirty"] is None and "FileNotFoundError" in found["source"]
    config = get_preset("smoke", iterations=3)
    record = RunRecord(config=config, dataset=config.dataset, split="test", metrics={}, evaluations=[], history=[],
                       wall_time_s=1.0)
    path = write_record(record, tmp_path / "records")
    assert path.is_file() and record.provenance["commit"] is None and record.provenance["snlib"]


def test_a_hanging_git_is_given_up_after_the_timeout(repo, tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "git"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setattr(prov, "GIT_TIMEOUT_S", 0.5)
    start = time.perf_counter()
    found = prov.code_source(repo)
    assert time.perf_counter() - start < 10
    assert found["commit"] is None and found["source"] == "git failed (no answer in 0.5 s): the snlib version only"


def test_an_absent_package_has_no_version():
    assert prov.package_version("snlib-no-such-package") is None
    assert prov.package_version("pytest") == pytest.__version__


def test_the_lines_snlib_runs_prints():
    p = {"snlib": "0.1.0", "commit": "ab" * 20, "dirty": True, "source": "git checkout", "python": "3.11.7",
         "torch": "2.4.0", "torchvision": "0.19.0", "timm": None, "numpy": "2.0.0", "machine": "x86_64",
         "processor": None, "cpu_capability": "AVX2"}
    assert prov.describe(p) == [
        f"  code: snlib 0.1.0, commit {'ab' * 20} (with uncommitted changes to tracked files)",
        "  packages: python 3.11.7, torch 2.4.0, torchvision 0.19.0, timm absent, numpy 2.0.0",
        "  processor: x86_64 / AVX2"]
    wheel = {**p, "commit": None, "dirty": None, "source": "installed package (no git checkout): the snlib version only"}
    assert prov.describe(wheel)[0] == "  code: snlib 0.1.0, installed package (no git checkout): the snlib version only"
