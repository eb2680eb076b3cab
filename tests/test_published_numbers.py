"""The paper's Table 1 as package data (``snlib.paper.published("table1")``) against its transcription in
docs/paper.md, parsed independently: the Markdown table (SQ / MQ, with and without re-ranking) and the line of
the other rows ("LDNS 29.87/55.43, ...")."""
import math
import re
from pathlib import Path

from snlib.paper import published

DOC = (Path(__file__).resolve().parents[1] / "docs" / "paper.md").read_text()


def _doc_table1() -> dict[str, tuple]:
    section = DOC.split("## Results reported (Table 1, Market-1501)")[1]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"[\d.]+", cells[1]):
            rows[cells[0]] = tuple(math.nan if c == "-" else float(c) for c in cells[1:])
    other = section.split("Other rows of Table 1 (mAP / rank-1, SQ):")[1].split("\n\n")[0]
    for name, m_ap, rank1 in re.findall(r"([\w-]+) (\d+(?:\.\d+)?)/(\d+(?:\.\d+)?)", other):
        rows[name] = (float(m_ap), float(rank1), math.nan, math.nan)
    return rows


def test_table1_package_data_equals_the_transcription_in_docs():
    doc = _doc_table1()
    data = published("table1").set_index("method")
    assert sorted(doc) == sorted(data.index) and len(doc) == 17
    for method, values in doc.items():
        row = data.loc[method, ["sq_mAP", "sq_rank1", "mq_mAP", "mq_rank1"]].astype(float).tolist()
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(values, row)), method
    assert data.loc["SN loss", "sq_mAP"] == 73.43 and bool(data.loc["SN loss + re-ranking", "rerank"])
