"""Containment of the paths that annotation files name.

Every dataset format turns the relative paths of its annotation files (image ids, mask paths,
class folders) into files with :func:`resolve_in_root`, so that a line can never point outside the
dataset: an absolute path (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or one with a ``..`` component
(``../x``, ``a/../../x``, ``..\\x``) raises :class:`~bas.errors.DataError` naming the annotation
file and line. Backslashes count as separators, as in the Windows-made lists of some releases.
"""

from __future__ import annotations

import re
from pathlib import Path

from bas.errors import DataError

_DRIVE = re.compile(r"^[A-Za-z]:")


def relative_parts(relpath: str, *, file: str | Path | None = None, line: int | None = None) -> list[str]:
    """The components of a relative path from an annotation file; DataError if it is absolute,
    empty or climbs out with ``..``."""
    text = str(relpath).replace("\\", "/")
    if text.startswith("/") or _DRIVE.match(text):
        raise DataError(f"absolute path {relpath!r} (paths must be relative to the dataset root)", file, line)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"path {relpath!r} leaves the dataset root ('..')", file, line)
    if not parts:
        raise DataError(f"empty path {relpath!r}", file, line)
    return parts


def resolve_in_root(
    root: str | Path, relpath: str, *, file: str | Path | None = None, line: int | None = None
) -> Path:
    """``root / relpath`` for a path read from line ``line`` of annotation file ``file``.

    Raises:
        DataError: ``relpath`` is absolute or has a ``..`` component (``file:line: ...``).
    """
    return Path(root).joinpath(*relative_parts(relpath, file=file, line=line))


__all__ = ["relative_parts", "resolve_in_root"]
