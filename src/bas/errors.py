"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed annotation line, a checkpoint
that does not fit, a NaN loss) is raised as a :class:`BASError` subclass with a one-line message.
The command line prints ``error: <message>`` and exits with status 2; the Python API lets it
propagate.
"""

from __future__ import annotations

from pathlib import Path


class BASError(Exception):
    """Base class of every error this package raises for bad input."""


class DataError(BASError):
    """A dataset, annotation or map file is missing or malformed."""

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class CheckpointError(BASError):
    """A checkpoint cannot be read or does not fit the model."""


class ConfigError(BASError):
    """A configuration value is missing, unknown or of the wrong type."""


class TrainingError(BASError):
    """Training cannot go on (for example a non-finite loss)."""
