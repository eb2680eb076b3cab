"""snlib.reporting: tables written as exact CSV and readable Markdown."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from snlib.reporting import save_table


def test_table_csv_is_exact_and_markdown_keeps_small_values(tmp_path):
    df = pd.DataFrame({"sn_lambda": [1e-4, 1e-3, 10.0], "rank1": [42.6815, 36.94, 38.5], "loss": ["sn"] * 3})
    save_table(df, tmp_path, "sweep")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "sweep.csv"), df)
    rows = (tmp_path / "sweep.md").read_text().splitlines()[2:]
    lambdas = [row.split("|")[1].strip() for row in rows]
    ranks = [row.split("|")[2].strip() for row in rows]
    assert lambdas == ["0.0001", "0.001", "10"]      # ".2f" would print 0.00 twice
    assert ranks == ["42.68", "36.94", "38.50"]      # the default two decimals elsewhere


def test_zero_and_missing_values_keep_the_default_format(tmp_path):
    df = pd.DataFrame({"mAP": [0.0, float("nan"), 12.346]})
    save_table(df, tmp_path, "t")
    rows = [row.split("|")[1].strip() for row in (tmp_path / "t.md").read_text().splitlines()[2:]]
    assert rows[0] == "0.00" and rows[2] == "12.35"


def test_pipes_are_escaped_in_the_markdown_and_kept_in_the_csv(tmp_path):
    """``|S+|`` (a set size) in a name or a cell must not end a Markdown cell; the CSV keeps the text as it is."""
    df = pd.DataFrame({"term": ["|S+|", "L_sep"], "|S-| after": [3.0, 0.5]})
    save_table(df, tmp_path, "terms")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "terms.csv"), df)
    assert (tmp_path / "terms.csv").read_text().splitlines()[:2] == ["term,|S-| after", "|S+|,3.0"]
    lines = (tmp_path / "terms.md").read_text().splitlines()
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    assert cells[0] == [r"term", r"\|S-\| after"] and cells[2] == [r"\|S+\|", "3.00"]
    assert all(len(row) == 2 for row in cells)  # two columns on every line: no stray cell


def test_generated_sections_are_rewritten_from_their_files(tmp_path, monkeypatch):
    from snlib import reporting, settings

    monkeypatch.setattr(settings, "REPO_ROOT", tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "claims.md").write_text("| x |\n|---|\n| new |\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- include: a/claims.md -->\n| old |\n<!-- end include -->\n"
                      "<!-- include: b/claims.md -->\nkept\n<!-- end include -->\nend\n")
    assert reporting.update_includes(readme, under=tmp_path / "a") == ["a/claims.md"]
    assert readme.read_text() == ("intro\n<!-- include: a/claims.md -->\n| x |\n|---|\n| new |\n<!-- end include -->\n"
                                  "<!-- include: b/claims.md -->\nkept\n<!-- end include -->\nend\n")
    reporting.update_includes(readme)
    assert "b/claims.md is not there yet" in readme.read_text() and readme.read_text().endswith("end\n")
    readme.write_text("<!-- include: a/claims.md -->\nno end\n")
    with pytest.raises(ValueError, match="has no"):
        reporting.update_includes(readme)



def test_readme_verdict_tables_are_generated_not_typed():
    """README's generated sections equal the files they name (``snlib readme`` rewrites them)."""
    from snlib import reporting, settings

    text = (settings.repo_root() / "README.md").read_text()
    sections = list(reporting.INCLUDE_START.finditer(text))
    assert sections, "README has no generated verdict table"
    for match in sections:
        body = text[match.end():text.index(reporting.INCLUDE_END, match.end())]
        assert body == settings.repo_path(match["path"]).read_text(), f"{match['path']}: run `python -m snlib readme`"
