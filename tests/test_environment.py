"""The three descriptions of the environment agree: pyproject.toml (compatible ranges), requirements.lock (the
exact versions every published figure was measured with, what `make` installs) and environment.yml (the lock,
for conda); the environment running the tests is the lock's."""
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> list[Requirement]:
    """Every requirement of pyproject.toml (runtime and extras), less the extras' references to snlib itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra if Requirement(r).name != project["name"]]
    return reqs


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        name, sep, pinned = line.strip().partition("==")
        assert sep and name and pinned, f"not an exact pin: {line!r}"
        assert name not in pins, f"{name} pinned twice"
        pins[name] = pinned
    return pins


def _lock() -> dict[str, str]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return _pins(line for line in lines if line.strip() and not line.lstrip().startswith("#"))


def _environment_yml() -> dict[str, str]:
    lines, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\s*-\s*pip:\s*$", line):
            in_pip = True
            continue
        m = re.match(r"^\s+-\s+(\S.*)$", line)
        if in_pip and m and not m.group(1).startswith("-e"):
            lines.append(m.group(1))
    return _pins(lines)


def test_environment_yml_equals_the_lock():
    assert _environment_yml() == _lock()


def test_pyproject_states_ranges_the_lock_satisfies():
    """Every requirement is a range (no exact pin), names a locked package, and admits the locked version; every
    locked package is a requirement of snlib or of one of its extras."""
    lock, reqs = _lock(), _pyproject_requirements()
    for req in reqs:
        assert not any(spec.operator == "==" for spec in req.specifier), f"{req}: pinned in pyproject.toml"
        assert req.name in lock, f"{req.name} is required by pyproject.toml but not in requirements.lock"
        assert req.specifier.contains(lock[req.name]), f"{req} does not admit the locked {lock[req.name]}"
    assert sorted(lock) == sorted({r.name for r in reqs})


def test_torch_and_torchvision_locked_together():
    lock = _lock()
    assert (lock["torch"], lock["torchvision"]) == ("2.14.1", "0.29.1")


def test_make_installs_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "-r requirements.lock -e '.[test]'" in makefile
    assert re.search(r"^\$\(STAMP\):.*requirements\.lock", makefile, re.M)


def test_installed_versions_match_the_lock():
    for name, pinned in _lock().items():
        assert version(name) == pinned, f"{name}: installed {version(name)}, requirements.lock has {pinned}"
