"""The conda description (environment.yml) and the pip description (pyproject.toml) name the same packages."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += extra
    return reqs


def _environment_pip_requirements():
    reqs, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if re.match(r"^\s*-\s*pip:\s*$", line):
            in_pip = True
            continue
        m = re.match(r"^\s+-\s+(\S.*)$", line)
        if in_pip and m and not m.group(1).startswith("-e"):
            reqs.append(m.group(1).strip())
    return reqs


def test_environment_yml_matches_pyproject():
    py, env = _pyproject_requirements(), _environment_pip_requirements()
    assert len(py) == len(set(py)), "duplicate requirement in pyproject.toml"
    assert sorted(py) == sorted(env), (
        f"only in pyproject.toml: {sorted(set(py) - set(env))}; only in environment.yml: {sorted(set(env) - set(py))}"
    )


def test_torch_and_torchvision_pinned_together():
    py = _pyproject_requirements()
    assert "torch==2.14.1" in py and "torchvision==0.29.1" in py


def test_installed_versions_match_pins():
    from importlib.metadata import version

    for req in _pyproject_requirements():
        name, pinned = req.split("==")
        assert version(name) == pinned, f"{name}: installed {version(name)}, pyproject pins {pinned}"
