"""Repository-wide pytest set-up.

Notebooks run under nbval (``make test``) at the ``smoke`` preset: the ``preset = None`` of every notebook's
parameters cell stands for ``SNLIB_PRESET`` (default ``cpu``, the preset of the committed outputs;
``settings.default_preset``), and the run cache goes to a fresh
temporary folder so that CI trains what the notebooks need instead of reusing a stale run.

nbval waits a fixed 5 s (``IPyNbCell.output_timeout``, no option sets it) for each output message of a cell after
the kernel has replied; on a loaded 2-core CI machine a cell that trained its runs once missed that wait although it
had finished (``Timeout of 5 seconds exceeded waiting for output``). The wait is raised here; the cell's own time
limit stays ``--nbval-cell-timeout``.
"""
import os
import tempfile

#: Seconds nbval waits for a cell's next output message once the cell has finished (nbval's own: 5).
NBVAL_OUTPUT_WAIT_S = 120


def pytest_configure(config):
    if config.getoption("nbval_lax", default=False) or config.getoption("nbval", default=False):
        os.environ.setdefault("SNLIB_PRESET", "smoke")
        os.environ.setdefault("SNLIB_CACHE", tempfile.mkdtemp(prefix="snlib-nbval-cache-"))
        os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if hasattr(item, "output_timeout"):     # nbval's notebook cells
            item.output_timeout = NBVAL_OUTPUT_WAIT_S
