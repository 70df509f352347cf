"""Reader of the standard WSOL metadata of Choe et al. (clovaai/wsolevaluation).

A split folder ``metadata/<CUB|ILSVRC|OpenImages>/<train|val|test>/`` holds, one record a line
(a comma separates the fields; the last line may lack its newline; blank lines are skipped):

* ``image_ids.txt``: ``<image_id>`` (a path relative to the image root), the order of the split.
* ``class_labels.txt``: ``<image_id>,<label>`` with an integer label >= 0.
* ``image_sizes.txt``: ``<image_id>,<width>,<height>``; may be empty (OpenImages) or absent.
* ``localization.txt``: may be absent (training splits). Either boxes,
  ``<image_id>,<x0>,<y0>,<x1>,<y1>``, one line per box (ILSVRC images have several), or masks
  (OpenImages), ``<image_id>,<mask_path>,<ignore_path>``, one line per instance mask, the ignore
  path usually given on the first line of an image and empty on the others.

Every id must be listed in ``image_ids.txt`` and every listed id must appear in
``class_labels.txt`` (and in ``image_sizes.txt`` / ``localization.txt`` when those are not
empty). Boxes must satisfy ``0 <= x0 <= x1`` and ``0 <= y0 <= y1`` and, when the image size is
known, ``x1 <= width`` and ``y1 <= height`` exactly (the standard metadata's boxes are in
image pixels; the other formats allow :data:`bas.data.parsing.BORDER_TOLERANCE`). Any violation raises :class:`bas.errors.DataError`
naming the file and line, and so does an id or mask path that is absolute or climbs out of its
root with ``..`` (see :mod:`bas.data.paths`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from bas.data.parsing import box_outside
from bas.data.paths import relative_parts
from bas.errors import DataError

__all__ = ["WSOLMetadata", "load_metadata"]

LocalizationKind = Literal["boxes", "masks"]


@dataclass
class WSOLMetadata:
    """The annotations of one split.

    Attributes:
        root: the split folder.
        image_ids: ids in the order of ``image_ids.txt``.
        labels: ``{image_id: class index}``.
        sizes: ``{image_id: (width, height)}``; empty when ``image_sizes.txt`` is empty or absent.
        boxes: ``{image_id: float64 array (M, 4)}`` of ``[x0, y0, x1, y1]`` in image pixels.
        masks: ``{image_id: [(mask_path, ignore_path or None), ...]}`` relative to the mask root.
        lines: ``{image_id: line}`` of ``image_ids.txt``; ``loc_lines``: the first line of each
            image in ``localization.txt``; ``label_lines``: each image's line of ``class_labels.txt``
            (for messages).
    """

    root: Path
    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)
    boxes: dict[str, np.ndarray] = field(default_factory=dict)
    masks: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    loc_lines: dict[str, int] = field(default_factory=dict)
    label_lines: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def kind(self) -> LocalizationKind | None:
        """``"boxes"``, ``"masks"`` or None when the split has no localization annotation."""
        if self.boxes:
            return "boxes"
        if self.masks:
            return "masks"
        return None


def _read_records(path: Path, required: bool) -> list[tuple[int, str]] | None:
    """Non-blank lines of ``path`` as ``(1-based line number, text)``; None if absent and optional."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        if required:
            raise DataError("metadata file not found", path) from None
        return None
    except IsADirectoryError:
        raise DataError("expected a metadata file, found a directory", path) from None
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path) from None
    return [(n, s) for n, line in enumerate(text.splitlines(), 1) if (s := line.strip())]


def _split(text: str, count: int, form: str, path: Path, lineno: int) -> list[str]:
    """Split ``text`` at its last ``count - 1`` commas (ids may hold commas, numbers do not)."""
    fields = text.rsplit(",", count - 1)
    if len(fields) != count or not fields[0]:
        raise DataError(f"expected '{form}', got {text!r}", path, lineno)
    return fields


def _int(token: str, what: str, path: Path, lineno: int, minimum: int) -> int:
    try:
        value = int(token)
    except ValueError:
        raise DataError(f"{what} must be an integer, got {token!r}", path, lineno) from None
    if value < minimum:
        raise DataError(f"{what} must be >= {minimum}, got {value}", path, lineno)
    return value


def _check_listed(image_id: str, known: dict[str, int], ids_file: Path, path: Path, lineno: int) -> None:
    if image_id not in known:
        raise DataError(f"image id {image_id!r} is not listed in {ids_file.name}", path, lineno)


def _check_complete(seen: set[str], id_lines: dict[str, int], ids_file: Path, other: Path) -> None:
    """Every id of image_ids.txt must appear in ``other``."""
    for image_id, lineno in id_lines.items():
        if image_id not in seen:
            raise DataError(f"image id {image_id!r} has no line in {other.name}", ids_file, lineno)


def _parse_box(fields: list[str], text: str, path: Path, lineno: int) -> list[float]:
    try:
        box = [float(f) for f in fields]
    except ValueError:
        raise DataError(f"box coordinates must be numbers, got {text!r}", path, lineno) from None
    if not all(math.isfinite(v) for v in box):
        raise DataError(f"box coordinates must be finite, got {text!r}", path, lineno)
    x0, y0, x1, y1 = box
    if x0 < 0 or y0 < 0:
        raise DataError(f"box {box} has a negative coordinate", path, lineno)
    if x1 <= x0 or y1 <= y0:
        raise DataError(f"box {box} is not [x0, y0, x1, y1] with x0 < x1 and y0 < y1", path, lineno)
    return box


def _detect_kind(records: list[tuple[int, str]], path: Path) -> LocalizationKind:
    lineno, text = records[0]
    commas = text.count(",")
    if commas == 2:
        return "masks"
    if commas >= 4:
        return "boxes"
    raise DataError(
        f"expected 'image_id,x0,y0,x1,y1' or 'image_id,mask_path,ignore_path', got {text!r}", path, lineno
    )


def load_metadata(metadata_dir: str | Path, kind: LocalizationKind | None = None) -> WSOLMetadata:
    """Read and cross-check one split folder of the standard WSOL metadata.

    Args:
        metadata_dir: the split folder (holding ``image_ids.txt`` ...).
        kind: ``"boxes"`` or ``"masks"`` to require that form of ``localization.txt``; None
            detects it from the first line.

    Raises:
        DataError: a missing required file, a malformed line (``file:line: ...``), ids that
            differ between the files, or a box outside its image.
    """
    root = Path(metadata_dir)
    if not root.is_dir():
        raise DataError("metadata folder not found", root)
    ids_file = root / "image_ids.txt"
    labels_file = root / "class_labels.txt"
    sizes_file = root / "image_sizes.txt"
    loc_file = root / "localization.txt"

    id_lines: dict[str, int] = {}
    for lineno, image_id in _read_records(ids_file, required=True) or []:
        relative_parts(image_id, file=ids_file, line=lineno)
        if image_id in id_lines:
            raise DataError(
                f"image id {image_id!r} already listed on line {id_lines[image_id]}", ids_file, lineno
            )
        id_lines[image_id] = lineno
    if not id_lines:
        raise DataError("no image id", ids_file)

    labels: dict[str, int] = {}
    label_lines: dict[str, int] = {}
    for lineno, text in _read_records(labels_file, required=True) or []:
        image_id, label = _split(text, 2, "image_id,label", labels_file, lineno)
        _check_listed(image_id, id_lines, ids_file, labels_file, lineno)
        if image_id in labels:
            raise DataError(f"second label for image id {image_id!r}", labels_file, lineno)
        labels[image_id] = _int(label, "the class label", labels_file, lineno, 0)
        label_lines[image_id] = lineno
    _check_complete(set(labels), id_lines, ids_file, labels_file)

    sizes: dict[str, tuple[int, int]] = {}
    for lineno, text in _read_records(sizes_file, required=False) or []:
        image_id, width, height = _split(text, 3, "image_id,width,height", sizes_file, lineno)
        _check_listed(image_id, id_lines, ids_file, sizes_file, lineno)
        if image_id in sizes:
            raise DataError(f"second size for image id {image_id!r}", sizes_file, lineno)
        sizes[image_id] = (
            _int(width, "the width", sizes_file, lineno, 1),
            _int(height, "the height", sizes_file, lineno, 1),
        )
    if sizes:
        _check_complete(set(sizes), id_lines, ids_file, sizes_file)

    boxes: dict[str, list[list[float]]] = {}
    masks: dict[str, list[tuple[str, str | None]]] = {}
    loc_lines: dict[str, int] = {}
    records = _read_records(loc_file, required=False) or []
    if records:
        kind = kind or _detect_kind(records, loc_file)
    for lineno, text in records:
        if kind == "masks":
            loc_lines.setdefault(text.split(",", 1)[0], lineno)
            fields = text.split(",")
            if len(fields) != 3 or not fields[0] or not fields[1]:
                raise DataError(f"expected 'image_id,mask_path,ignore_path', got {text!r}", loc_file, lineno)
            image_id, mask_path, ignore_path = fields
            _check_listed(image_id, id_lines, ids_file, loc_file, lineno)
            for relpath in (mask_path, ignore_path) if ignore_path else (mask_path,):
                relative_parts(relpath, file=loc_file, line=lineno)
            masks.setdefault(image_id, []).append((mask_path, ignore_path or None))
            continue
        fields = _split(text, 5, "image_id,x0,y0,x1,y1", loc_file, lineno)
        image_id = fields[0]
        _check_listed(image_id, id_lines, ids_file, loc_file, lineno)
        box = _parse_box(fields[1:], text, loc_file, lineno)
        if image_id in sizes:
            if (msg := box_outside(box, sizes[image_id], tolerance=0)) is not None:
                raise DataError(f"{msg} given in {sizes_file.name}", loc_file, lineno)
        boxes.setdefault(image_id, []).append(box)
        loc_lines.setdefault(image_id, lineno)
    if records:
        _check_complete(set(boxes) | set(masks), id_lines, ids_file, loc_file)

    return WSOLMetadata(
        root=root,
        image_ids=list(id_lines),
        labels=labels,
        sizes=sizes,
        boxes={k: np.asarray(v, dtype=np.float64).reshape(-1, 4) for k, v in boxes.items()},
        masks=masks,
        lines=id_lines,
        loc_lines=loc_lines,
        label_lines=label_lines,
    )
