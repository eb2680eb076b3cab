"""The measurement records (``results/benchmarks/*.md``) say when and by which command they were made, the command
names a script of this repository (or a valid ``snlib`` command line), and every file README.md cites under
``results/`` exists: a figure in README is only as good as the record behind it."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

from snlib.__main__ import build_parser

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted((ROOT / "results" / "benchmarks").glob("*.md"))
COMMAND = re.compile(r"^    (flock /tmp/snlib-cpu\.lock .+?)\\?$", re.M)


def test_every_benchmark_record_says_when_and_by_which_command():
    assert len(RECORDS) >= 5
    parser = build_parser()
    for path in RECORDS:
        text = path.read_text()
        assert re.search(r"Measured \d{4}-\d{2}-\d{2}", text), f"{path.name}: no date"
        commands = COMMAND.findall(text)
        assert commands, f"{path.name}: no command"
        for command in commands:
            scripts = re.findall(r"benchmarks/[\w.]+\.(?:py|sh)", command)
            for script in scripts:
                assert (ROOT / script).is_file(), f"{path.name}: {script} is not in the repository"
            if " -m snlib " in command:
                parser.parse_args(shlex.split(command.split(" -m snlib ", 1)[1]))
            else:
                assert scripts or " -m pytest" in command, f"{path.name}: {command}"


def test_every_results_file_the_readme_cites_exists():
    text = (ROOT / "README.md").read_text()
    cited = {ref for ref in re.findall(r"results/[\w/.<>-]+\.(?:md|csv|txt|json|png)", text) if "<" not in ref}
    assert len(cited) >= 15
    assert not [ref for ref in sorted(cited) if not (ROOT / ref).is_file()]
