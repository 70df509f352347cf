"""Containment of the paths that annotation files name.

Every dataset format turns the relative paths of its annotation files (image ids, mask paths,
class folders) into files with :func:`resolve_in_root`, so that a line can never point outside the
dataset: an absolute path (``/etc/x``, ``C:\\x``, ``\\\\server\\x``) or one with a ``..`` component
(``../x``, ``a/../../x``, ``..\\x``) raises :class:`~bas.errors.DataError` naming the annotation
file and line. Backslashes count as separators, as in the Windows-made lists of some releases.
A symbolic link inside the root that points outside it is refused the same way: the joined path
is resolved (links followed) and must stay under the resolved root.
"""

from __future__ import annotations

import functools
import os
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
        DataError: ``relpath`` is absolute, has a ``..`` component or goes through a symbolic
        link that leads outside ``root`` (``file:line: ...``).
    """
    path = Path(root).joinpath(*relative_parts(relpath, file=file, line=line))
    check_inside(root, path, file=file, line=line, what=relpath)
    return path


def check_inside(
    root: str | Path,
    path: str | Path,
    *,
    file: str | Path | None = None,
    line: int | None = None,
    what: str | None = None,
    root_name: str = "the dataset root",
) -> None:
    """DataError unless ``path`` (under ``root``), with its symbolic links followed, stays inside
    the resolved ``root``. The error names ``file:line`` (default: ``path`` itself)."""
    base = _real(os.fspath(root))
    parent, name = os.path.split(os.fspath(path))
    real = os.path.join(_real(parent), name)
    if os.path.islink(real):
        real = os.path.realpath(real)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        shown = what if what is not None else os.fspath(path)
        raise DataError(
            f"path {shown!r} is a symbolic link that leads outside {root_name} (to {real})",
            file if file is not None else path,
            line,
        )


def _real(folder: str) -> str:
    """``os.path.realpath`` of a folder; cached for existing folders (a dataset names many files
    per folder), so that the check costs one ``stat`` and one ``lstat`` per file."""
    return _real_cached(folder) if os.path.isdir(folder) else os.path.realpath(folder)


@functools.lru_cache(maxsize=4096)
def _real_cached(folder: str) -> str:
    return os.path.realpath(folder)


__all__ = ["check_inside", "relative_parts", "resolve_in_root"]
