"""The command line called in the test's own process (``snlib.__main__.main``), for the tests of its commands."""
from __future__ import annotations

from snlib.__main__ import main as cli


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``snlib *argv`` in this process: (exit status, stdout, stderr)."""
    try:
        cli(list(argv))
        status = 0
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err
