"""Images in class sub-folders (``folder``), optionally with a CSV of boxes.

``root/<class>/**/<image>`` or ``root/<split>/<class>/**/<image>``; class index = sorted folder
name order. Option ``boxes_csv``: ``image_id,x0,y0,x1,y1`` lines (header optional, one line per box).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from bas.data.datasets import IMAGE_EXTENSIONS, SPLITS, Record, WSOLDataset
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.parsing import Problems, box_error, boxes_from_flat, parse_floats, read_lines
from bas.errors import DataError


def _scan_images(folder: Path) -> list[str]:
    """Relative posix paths of the image files under ``folder`` (recursive, sorted)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        base = Path(dirpath).relative_to(folder)
        for name in sorted(filenames):
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
                found.append((base / name).as_posix())
    return found


def class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _read_box_csv(path: Path, root: Path, problems: Problems) -> dict[str, tuple[list[list[float]], int]]:
    """``image_id,x0,y0,x1,y1`` lines (header optional) -> ``{id: (boxes, first line)}``; ids that
    would leave ``root`` are reported."""
    boxes: dict[str, tuple[list[list[float]], int]] = {}
    for lineno, text in read_lines(path):
        fields = [f.strip() for f in next(csv.reader([text]))]
        values = parse_floats(fields[1:]) if len(fields) == 5 else None
        if values is None:
            if lineno == 1 and len(fields) == 5:  # a header such as image_id,x0,y0,x1,y1
                continue
            problems.report(f"expected 'image_id,x0,y0,x1,y1', got {text!r}", path, lineno)
            continue
        if (msg := box_error(values)) is not None:
            problems.report(msg, path, lineno)
            continue
        if problems.resolve(root, fields[0], path, lineno) is None:
            continue
        boxes.setdefault(fields[0].replace("\\", "/"), ([], lineno))[0].append(values)
    return boxes


class ImageFolderDataset(WSOLDataset):
    """Images in class sub-folders (``<folder>/<class>/**/<image>``), class index = sorted name order.

    With ``split``, the folder is ``root/<split>`` when it exists (else ``root`` itself), and the
    class list is the sorted union of the class folders of ``root/{train,val,test}`` so that every
    split numbers the classes alike. ``classes`` overrides the class list. ``boxes_csv`` gives
    evaluation boxes, ``image_id,x0,y0,x1,y1`` (header optional, one line per box, ids relative to
    the split folder, or to ``root`` with the split prefix). Extensions: jpg, jpeg, png, bmp, webp.
    """

    def __init__(
        self,
        root: str | Path,
        split: str | None = None,
        transform: Callable | None = None,
        boxes_csv: str | Path | None = None,
        classes: Sequence[str] | None = None,
        problems: list[DataError] | None = None,
    ):
        self.root = root = Path(root)
        if not root.is_dir():
            raise DataError("image folder not found", root)
        folder = root
        if split is not None and (root / split).is_dir():
            folder = root / split
        if classes is None:
            split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
            if folder != root and split_dirs:
                classes = sorted({c for d in split_dirs for c in class_folders(d)})
            else:
                classes = class_folders(folder)
        classes = list(classes)
        if not classes:
            raise DataError("no class sub-folders found", folder)
        self.folder = folder
        index = {name: k for k, name in enumerate(classes)}
        records = []
        for name in class_folders(folder):
            if name not in index:
                Problems(problems).report(f"class folder {name!r} is not in the class list", folder / name)
                continue
            for rel in _scan_images(folder / name):
                image_id = f"{name}/{rel}"
                records.append(Record(image_id, folder / image_id, index[name]))
        if boxes_csv is not None:
            records = self._attach_boxes(records, Path(boxes_csv), root, split, Problems(problems))
        super().__init__(records, classes, transform)

    @staticmethod
    def _attach_boxes(
        records: list[Record], path: Path, root: Path, split: str | None, report: Problems
    ) -> list[Record]:
        """Boxes of this split's images; lines of another split's images (one CSV may serve all) are skipped."""
        table = _read_box_csv(path, root, report)
        known = {r.image_id for r in records}
        others = [s for s in SPLITS if s != split and (root / s).is_dir()]
        by_id: dict[str, tuple[list[list[float]], int]] = {}
        for key, entry in table.items():
            image_id = key[len(split) + 1 :] if split and key.startswith(f"{split}/") else key
            if image_id not in known:
                if any(key.startswith(f"{s}/") or (root / s / key).is_file() for s in others):
                    continue
                report.report(f"unknown image id {key!r}", path, entry[1])
                continue
            by_id[image_id] = entry
        out = []
        for r in records:
            if r.image_id in by_id:
                values, line = by_id[r.image_id]
                r = Record(
                    r.image_id, r.path, r.label, boxes_from_flat(sum(values, [])), where=(str(path), line)
                )
            out.append(r)
        return out


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, **options
) -> ImageFolderDataset:
    return ImageFolderDataset(root, split, transform, problems=problems, **options)


def splits(root: Path, **options) -> list[str]:
    return [s for s in SPLITS if (root / s).is_dir()] or ["all"]


FORMAT = register_format(
    DatasetFormat(
        name="folder",
        summary="images in class sub-folders, optional CSV of boxes (image_id,x0,y0,x1,y1)",
        build=build,
        splits=splits,
        options={
            "boxes_csv": Option(None, "CSV of image_id,x0,y0,x1,y1"),
            "classes": Option(None, "class list (default: the sorted class folders)", None),
        },
    )
)
