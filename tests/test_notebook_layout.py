"""The notebooks are plans (README, "How to add a notebook"): a claim, one ``parameters`` cell with the common
parameters, one ``setup`` call, narrative and short calls into ``snlib.study``; no branch on the preset (sizes per
preset live in ``snlib.study.plans``), no unused import, about 30 code lines. Static checks, no kernel."""
from __future__ import annotations

import ast

import nbformat
import pytest

from snlib import settings
from snlib.reproduce import COMMON_PARAMETERS

NOTEBOOKS = sorted(settings.notebooks_dir().glob("*.ipynb"))
MAX_CODE_LINES = 35


def _code_cells(path):
    return [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _statements(source: str) -> list[str]:
    return [line for line in source.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_the_template_is_there():
    assert settings.notebooks_dir() / "TEMPLATE.ipynb" in NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_a_plan(path):
    cells = _code_cells(path)
    params = [c for c in cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "one cell tagged 'parameters'"
    declared = {t.id for node in ast.parse(params[0].source).body if isinstance(node, ast.Assign)
                for t in node.targets}
    assert {*COMMON_PARAMETERS, "overrides"} <= declared
    body = [c.source for c in cells if c is not params[0]]
    code = "\n".join("\n".join(_statements(source)) for source in body)
    assert "smoke" not in code and "preset ==" not in code and "preset !=" not in code, "no branch on the preset"
    assert code.count("setup(") == 1 and "open_study(" not in code, "one setup call"
    assert sum(len(_statements(source)) for source in [params[0].source, *body]) <= MAX_CODE_LINES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_are_used(path):
    tree = ast.parse("\n".join(c.source for c in _code_cells(path)))
    imported = {(alias.asname or alias.name).split(".")[0] for node in ast.walk(tree)
                if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names}
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert imported <= used, f"unused imports: {sorted(imported - used)}"
