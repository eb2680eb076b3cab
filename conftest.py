"""Repository-wide pytest set-up.

Notebooks run under nbval (``make test``) at the ``smoke`` preset: the ``preset = None`` of every notebook's
parameters cell stands for ``SNLIB_PRESET`` (default ``cpu``, the preset of the committed outputs;
``settings.default_preset``), and the run cache goes to a fresh
temporary folder so that CI trains what the notebooks need instead of reusing a stale run.
"""
import os
import tempfile


def pytest_configure(config):
    if config.getoption("nbval_lax", default=False) or config.getoption("nbval", default=False):
        os.environ.setdefault("SNLIB_PRESET", "smoke")
        os.environ.setdefault("SNLIB_CACHE", tempfile.mkdtemp(prefix="snlib-nbval-cache-"))
        os.environ.setdefault("MPLBACKEND", "Agg")
