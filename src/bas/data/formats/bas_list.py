"""The lists of the BAS repository (``bas_list``).

``<split>_list.txt``: ``path;label`` lines (images under ``image_root``); optionally
``<split>_bounding_box.txt``: ``x0 y0 x1 y1 height width`` lines in the same order (several boxes
per line allowed: ``x0 y0 x1 y1`` repeated, then ``height width``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bas.data.datasets import SPLITS, Record, WSOLDataset
from bas.data.formats.registry import DatasetFormat, Option, first_existing, register_format
from bas.data.parsing import (
    Problems,
    box_error,
    boxes_from_flat,
    classes_from_ids,
    parse_floats,
    parse_int,
    read_lines,
)
from bas.data.paths import resolve_in_root
from bas.errors import DataError


def read_label_list(path: str | Path, problems: list[DataError] | None = None) -> list[tuple[str, int, int]]:
    """BAS ``*_list.txt`` (``path;label``) -> ``[(image id, label, line number)]``."""
    path = Path(path)
    report = Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        image_id, sep, label_text = text.rpartition(";")
        label = parse_int(label_text.strip())
        if not sep or not image_id.strip() or label is None or label < 0:
            report.report(f"expected 'path;label' with label >= 0, got {text!r}", path, lineno)
            continue
        if not report.contained(image_id.strip(), path, lineno):
            continue
        out.append((image_id.strip().replace("\\", "/"), label, lineno))
    return out


class BASListDataset(WSOLDataset):
    """The BAS repository lists: ``list_file`` lines ``path;label`` (images under ``image_root``)
    and optionally ``box_file`` lines ``x0 y0 x1 y1 height width`` in the same order (several boxes
    per line allowed: ``x0 y0 x1 y1`` repeated, then ``height width``)."""

    def __init__(
        self,
        image_root: str | Path,
        list_file: str | Path,
        box_file: str | Path | None = None,
        transform: Callable | None = None,
        num_classes: int | None = None,
        problems: list[DataError] | None = None,
    ):
        self.image_root = image_root = Path(image_root)
        report = Problems(problems)
        listed = read_label_list(list_file, problems)
        records = [
            Record(
                i,
                resolve_in_root(image_root, i, file=list_file, line=line),
                label,
                where=(str(list_file), line),
            )
            for i, label, line in listed
        ]
        if box_file is not None:
            box_lines = read_lines(box_file)
            if len(box_lines) != len(listed):
                report.report(f"{len(box_lines)} box lines for {len(listed)} images in {list_file}", box_file)
            with_boxes = []
            for record, (lineno, text) in zip(records, box_lines):
                values = parse_floats(text.split())
                if values is None or len(values) < 6 or (len(values) - 2) % 4:
                    report.report(f"expected 'x0 y0 x1 y1 height width', got {text!r}", box_file, lineno)
                    continue
                boxes = boxes_from_flat(values[:-2])
                if (msg := next((m for b in boxes if (m := box_error(b))), None)) is not None:
                    report.report(msg, box_file, lineno)
                    continue
                height, width = int(values[-2]), int(values[-1])
                with_boxes.append(
                    Record(
                        record.image_id,
                        record.path,
                        record.label,
                        boxes,
                        size=(width, height),
                        where=(str(box_file), lineno),
                    )
                )
            records = with_boxes
        if num_classes is None:
            num_classes = max((r.label for r in records), default=-1) + 1
        for r in records:
            if r.label >= num_classes:
                report.report(f"{r.image_id}: label {r.label} outside 0..{num_classes - 1}", *r.where)  # type: ignore[misc]
        records = [r for r in records if r.label < num_classes]
        super().__init__(records, classes_from_ids(records, num_classes), transform)


def build(
    root: Path,
    split: str,
    transform: Callable | None,
    problems: list | None,
    *,
    list_file,
    box_file,
    image_root,
    num_classes,
) -> BASListDataset:
    list_file = list_file or root / f"{split}_list.txt"
    box_file = box_file or first_existing(root / f"{split}_bounding_box.txt")
    image_root = image_root or (root / "images" if (root / "images").is_dir() else root)
    return BASListDataset(
        image_root, list_file, box_file, transform, num_classes=num_classes, problems=problems
    )


def splits(root: Path, **options) -> list[str]:
    return [s for s in SPLITS if (root / f"{s}_list.txt").is_file()]


FORMAT = register_format(
    DatasetFormat(
        name="bas_list",
        summary="BAS repository lists (<split>_list.txt path;label, <split>_bounding_box.txt)",
        build=build,
        splits=splits,
        options={
            "list_file": Option(None, "path;label list (default: root/<split>_list.txt)"),
            "box_file": Option(
                None, "x0 y0 x1 y1 height width lines (default: root/<split>_bounding_box.txt)"
            ),
            "image_root": Option(
                None, "folder the list paths are relative to (default: root/images or root)"
            ),
            "num_classes": Option(None, "number of classes (default: largest label + 1)", int),
        },
    )
)
