"""Expected errors: bad input, missing data, a damaged file. The command line prints their message and exits 2
(``--debug`` or ``SNLIB_DEBUG=1`` shows the traceback); any other exception is a bug and keeps its traceback.

Each error also derives from the built-in exception a caller would catch for it (``ValueError`` for a bad
configuration, ``FileNotFoundError`` for missing data), so ``except ValueError`` keeps working.
"""
from __future__ import annotations

import difflib


class SnlibError(Exception):
    """Base class of the errors a user can fix; the message says what was wrong, where, and what to do."""


class ConfigError(SnlibError, ValueError):
    """A configuration field (``TrainConfig``, ``--set``, ``--param``) has a value snlib cannot use."""


class DamagedFileError(SnlibError, OSError):
    """A file snlib wrote (checkpoint, model, cache) cannot be read back."""


class UsageError(SnlibError, ValueError):
    """Command-line arguments that do not fit together."""


class RunNotFoundError(SnlibError, FileNotFoundError):
    """A run folder, or a file it should hold (``model.pt``, ``config.json``), does not exist."""


class DamagedRecordError(DamagedFileError):
    """A run record (``results/runs/<preset>/<hash>.json``) is damaged, foreign, or of another format."""


class ProtocolVersionError(SnlibError, ValueError):
    """A study met run records made under another version of the study protocol than its own
    (``snlib.records.check_protocol_version``)."""


class NotebooksFailedError(SnlibError, RuntimeError):
    """``snlib reproduce`` finished with notebooks that failed (the manifest and the executed copies say where)."""


def did_you_mean(word: str, known) -> str:
    """`` (did you mean 'lr'?)`` for the closest of ``known`` to the unknown ``word`` (``difflib``), else ``""``:
    the tail of an "unknown name" message."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
