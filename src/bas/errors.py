"""User-facing errors.

Every problem caused by the user's input (a missing file, a malformed annotation line, a checkpoint
that does not fit, a NaN loss) is raised as a :class:`BASError` subclass with a one-line message.
The command line prints ``error: <message>`` and exits with status 2; the Python API lets it
propagate.
"""

from __future__ import annotations

import errno
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


# errno values of an OSError that is the user's environment, not a bug: the message names the path.
_USER_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "EACCES",
        "EPERM",
        "ENOENT",
        "ENOTDIR",
        "EISDIR",
        "EEXIST",
        "ENAMETOOLONG",
        "EMFILE",
        "ENFILE",
        "EIO",
        "EXDEV",
    )
    if hasattr(errno, name)
)


def user_message(exc: BaseException) -> str | None:
    """The one-line message the command line prints for ``exc``, or None when ``exc`` is a bug.

    User errors are :class:`BASError`, a safetensors ``SafetensorError`` (a corrupt file), an
    ``OSError`` of the environment (disk full, read-only folder, permission, missing path; the
    path is named) and PIL's ``DecompressionBombError``.
    """
    if isinstance(exc, BASError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.errno in _USER_ERRNOS:
        where = exc.filename if exc.filename2 is None else f"{exc.filename} -> {exc.filename2}"
        text = f"{where}: {exc.strerror}" if where is not None else str(exc.strerror)
    elif type(exc).__name__ == "SafetensorError":
        text = f"corrupt safetensors file: {exc}"
    elif type(exc).__name__ == "DecompressionBombError":
        text = f"image refused as a possible decompression bomb: {exc}"
    else:
        return None
    return " ".join(text.split()) or type(exc).__name__
