"""Expected errors: bad input, missing data, a damaged file: what a user can fix, as opposed to a bug.

Each error class also derives from the built-in exception a caller would catch for it (``ValueError`` for a
bad file name, ``FileNotFoundError`` for missing data), so ``except ValueError`` keeps working.
"""
from __future__ import annotations


class SnlibError(Exception):
    """Base class of the errors a user can fix; the message says what was wrong, where, and what to do."""
