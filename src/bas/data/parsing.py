"""Helpers shared by the annotation parsers of :mod:`bas.data.formats`.

Lines are read with :func:`read_lines`; malformed values are reported through :class:`Problems`,
which raises the first :class:`~bas.errors.DataError` (the default) or collects them all (what
``bas data check`` does); paths named by a line go through :meth:`Problems.resolve`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bas.data.paths import check_inside, relative_parts, resolve_in_root
from bas.errors import DataError

if TYPE_CHECKING:
    from bas.data.datasets import Record

NO_BOXES = np.zeros((0, 4), dtype=np.float32)
NO_BOXES.setflags(write=False)


class Problems:
    """Raise annotation errors at once (default) or collect them into a list and carry on."""

    def __init__(self, collect: list[DataError] | None):
        self.collect = collect

    def add(self, error: DataError) -> None:
        if self.collect is None:
            raise error
        self.collect.append(error)

    def report(self, message: str, path: str | Path, line: int | None = None) -> None:
        self.add(DataError(message, path, line))

    def contained(self, relpath: str, file: str | Path, line: int | None) -> bool:
        """Whether ``relpath`` stays inside its root (see :mod:`bas.data.paths`); reports it if not."""
        try:
            relative_parts(relpath, file=file, line=line)
        except DataError as exc:
            self.add(exc)
            return False
        return True

    def inside(
        self, root: str | Path, path: str | Path, file: str | Path | None = None, line: int | None = None
    ) -> bool:
        """Whether ``path`` stays inside ``root`` with its symbolic links followed
        (:func:`~bas.data.paths.check_inside`); reports it if not."""
        try:
            check_inside(root, path, file=file, line=line)
        except DataError as exc:
            self.add(exc)
            return False
        return True

    def resolve(self, root: str | Path, relpath: str, file: str | Path, line: int | None) -> Path | None:
        """:func:`~bas.data.paths.resolve_in_root`, or None once a bad path has been collected."""
        try:
            return resolve_in_root(root, relpath, file=file, line=line)
        except DataError as exc:
            self.add(exc)
            return None


def read_lines(path: str | Path) -> list[tuple[int, str]]:
    """Non-blank lines of a text file as ``(1-based line number, stripped text)``.

    Accepts a last line without a newline, ``\\r\\n`` endings and a UTF-8 byte-order mark.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError("annotation file not found", path) from None
    except IsADirectoryError:
        raise DataError("expected an annotation file, found a directory", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    return [(i, s) for i, line in enumerate(text.splitlines(), 1) if (s := line.strip())]


def parse_floats(tokens: Sequence[str]) -> list[float] | None:
    """The tokens as finite floats, or None."""
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def parse_int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def boxes_from_flat(values: Sequence[float]) -> np.ndarray:
    """Flat ``x0 y0 x1 y1 ...`` -> float32 ``(M, 4)``."""
    return np.asarray(values, dtype=np.float32).reshape(-1, 4)


def box_error(box: Sequence[float]) -> str | None:
    """Why ``[x0, y0, x1, y1]`` is not a box (inverted or empty: x1 <= x0 or y1 <= y0), or None."""
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return f"box {format_box(box)} is empty or inverted (needs x0 < x1 and y0 < y1)"
    return None


#: How far (pixels) a box may reach past the image border: the releases' boxes touch it, and
#: 1-based inclusive corners (ILSVRC XML, CUB ``x + w``) can end one pixel past it.
BORDER_TOLERANCE = 1.0


def box_outside(
    box: Sequence[float], size: tuple[int, int], tolerance: float = BORDER_TOLERANCE
) -> str | None:
    """Why ``[x0, y0, x1, y1]`` is not inside a ``(W, H)`` image (within ``tolerance`` pixels), or None."""
    x0, y0, x1, y1 = (float(v) for v in box)
    width, height = size
    t = tolerance
    if x0 < -t or y0 < -t or x1 > width + t or y1 > height + t:
        return f"box {format_box(box)} outside the {width}x{height} image"
    return None


def positive_size(tokens: Sequence[str]) -> tuple[int, ...] | None:
    """Image dimensions as integers >= 1, or None (also for ``40.5`` or ``0``)."""
    values = [parse_int(t) for t in tokens]
    if any(v is None or v < 1 for v in values):
        return None
    return tuple(values)  # type: ignore[arg-type]


def format_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def classes_from_ids(records: Sequence[Record], num_classes: int | None = None) -> list[str]:
    """Class names from the image ids' parent folder names (e.g. ``001.Black_footed_Albatross``).

    A label whose images sit in no folder (or in several different ones) is named by its index.
    """
    count = num_classes if num_classes is not None else max((r.label for r in records), default=-1) + 1
    folders: dict[int, set[str]] = {}
    for r in records:
        parent = r.image_id.split("/")[-2] if "/" in r.image_id else ""
        folders.setdefault(r.label, set()).add(parent)
    names = []
    for k in range(count):
        found = folders.get(k, set())
        names.append(next(iter(found)) if len(found) == 1 and "" not in found else str(k))
    return names
