"""CUB-200-2011 in its release layout (``cub``).

``root`` holds ``images.txt`` (``<id> <path>``), ``image_class_labels.txt`` (``<id> <class id>``,
1-based), ``train_test_split.txt`` (``<id> <1 = train, 0 = test>``), ``classes.txt``
(``<class id> <name>``), optionally ``bounding_boxes.txt`` (``<id> <x> <y> <w> <h>``, floats, the
top-left corner) and ``images/``; optionally ``masks/<image path with .png>`` (0/255 PNG). A box
``x y w h`` becomes ``[x, y, x + w, y + h]``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bas.data.datasets import SPLITS, Location, Record, WSOLDataset
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.parsing import NO_BOXES, Problems, parse_floats, parse_int, read_lines
from bas.errors import ConfigError, DataError


def _id_table(path: Path, problems: Problems, fmt: str) -> dict[int, tuple[int, list[str]] | None]:
    """Parse CUB ``<id> <value> ...`` lines (``fmt`` e.g. ``"<id> <x> <y> <w> <h>"``) into
    ``{id: (line number, values)}``. A format ending in ``<path>`` or ``<name>`` takes the rest of
    the line as one value (it may contain spaces). A malformed line whose id is readable maps to
    None: it has been reported, and the images it belongs to are skipped without further errors.
    """
    n_values = len(re.findall(r"<[^>]*>", fmt)) - 1
    rest = fmt.endswith(("<path>", "<name>"))
    table: dict[int, tuple[int, list[str]] | None] = {}
    lines: dict[int, int] = {}
    for lineno, text in read_lines(path):
        fields = text.split(maxsplit=n_values) if rest else text.split()
        key = parse_int(fields[0])
        if key is not None and key in lines:
            problems.report(f"id {key} already defined on line {lines[key]}", path, lineno)
            continue
        if key is None or len(fields) != n_values + 1:
            problems.report(f"expected {fmt!r}, got {text!r}", path, lineno)
            if key is not None:
                table[key], lines[key] = None, lineno
            continue
        table[key], lines[key] = (lineno, fields[1:]), lineno
    return table


def _choose_held_out(ids_by_class: dict[int, list[str]], per_class: int | float, seed: int) -> set[str]:
    """Deterministic held-out ids: per class, those with the smallest ``sha1(seed:id)``.

    ``per_class`` is a count (int) or a fraction of the class (float in [0, 1)); at most half of a
    class is held out, so every class keeps training images. The choice depends on the seed and
    the ids only, not on file order.
    """
    held: set[str] = set()
    for ids in ids_by_class.values():
        n = len(ids)
        k = per_class if isinstance(per_class, int) else int(round(per_class * n))
        k = min(k, n // 2)
        ranked = sorted(ids, key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
        held.update(ranked[:k])
    return held


class CUBDataset(WSOLDataset):
    """CUB-200-2011 in its release layout (also the layout of :mod:`bas.data.synthetic`).

    ``root`` holds ``images.txt``, ``image_class_labels.txt`` (1-based classes),
    ``train_test_split.txt`` (1 = train), ``classes.txt``, ``bounding_boxes.txt`` (``x y w h``,
    optional) and ``images/``; optionally ``masks/<image path with .png>`` (0/255 PNG).

    Splits: ``test`` = the official test images; ``val`` = ``val_per_class`` images per class held
    out of the official *train* images (a count, or a fraction if a float; at most half a class),
    chosen deterministically from ``seed``; ``train`` = the other train images. ``val_per_class=0``
    gives the papers' setting (``train`` = all official train images, ``val`` empty).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        val_per_class: int | float = 5,
        seed: int = 0,
        load_masks: bool = True,
        problems: list[DataError] | None = None,
    ):
        if split not in SPLITS:
            raise ConfigError(f"unknown CUB split {split!r}; expected one of {', '.join(SPLITS)}")
        if (
            isinstance(val_per_class, bool)
            or val_per_class < 0
            or (isinstance(val_per_class, float) and val_per_class >= 1)
        ):
            raise ConfigError(
                f"val_per_class must be an int >= 0 or a fraction in [0, 1), got {val_per_class!r}"
            )
        self.root = root = Path(root)
        self.split = split
        report = Problems(problems)
        if not root.is_dir():
            raise DataError("CUB dataset folder not found", root)

        class_table = _id_table(root / "classes.txt", report, "<class id> <name>")
        class_ids = sorted(class_table)
        if class_ids != list(range(1, len(class_ids) + 1)):
            report.report(
                f"class ids must be 1..{len(class_ids)}, got {class_ids[:5]}...", root / "classes.txt"
            )
        classes = [entry[1][0] if entry else str(k) for k, entry in sorted(class_table.items())]

        label_file, split_file = root / "image_class_labels.txt", root / "train_test_split.txt"
        images = _id_table(root / "images.txt", report, "<id> <path>")
        labels = _id_table(label_file, report, "<id> <class id>")
        is_train = _id_table(split_file, report, "<id> <is train>")
        box_file = root / "bounding_boxes.txt"
        boxes = _id_table(box_file, report, "<id> <x> <y> <w> <h>") if box_file.is_file() else None
        mask_root = root / "masks"
        use_masks = load_masks and mask_root.is_dir()

        records: dict[str, list[Record]] = {"train": [], "test": []}
        for image_id, image_entry in sorted(images.items()):
            tables = {"class label": labels, "train/test flag": is_train, "bounding box": boxes or {}}
            if boxes is None:
                del tables["bounding box"]
            missing = [name for name, table in tables.items() if image_id not in table]
            if image_entry is None or missing:
                if image_entry is not None:
                    report.report(
                        f"image {image_id} has no {' and no '.join(missing)}",
                        root / "images.txt",
                        image_entry[0],
                    )
                continue
            if any(table[image_id] is None for table in tables.values()):
                continue  # its malformed line has been reported
            rel = image_entry[1][0].replace("\\", "/")
            image_path = report.resolve(
                root / "images", image_entry[1][0], root / "images.txt", image_entry[0]
            )
            if image_path is None:
                continue
            where: Location = (str(root / "images.txt"), image_entry[0])

            lab_line, (lab_text,) = labels[image_id]
            label = parse_int(lab_text)
            if label is None or not 1 <= label <= len(classes):
                report.report(
                    f"class id must be in 1..{len(classes)}, got {lab_text!r}", label_file, lab_line
                )
                continue
            flag_line, (flag,) = is_train[image_id]
            if flag not in ("0", "1"):
                report.report(f"train/test flag must be 0 or 1, got {flag!r}", split_file, flag_line)
                continue
            box = NO_BOXES
            if boxes is not None:
                box_line, values = boxes[image_id]
                xywh = parse_floats(values)
                if xywh is None or xywh[2] < 0 or xywh[3] < 0:
                    report.report(
                        f"expected '<id> <x> <y> <w> <h>' with w, h >= 0, got {values}", box_file, box_line
                    )
                    continue
                x, y, w, h = xywh
                box = np.array([[x, y, x + w, y + h]], dtype=np.float32)
                where = (str(box_file), box_line)
            masks = ((mask_root / rel).with_suffix(".png"),) if use_masks else ()
            record = Record(rel, image_path, label - 1, box, masks=masks, where=where)
            records["train" if flag == "1" else "test"].append(record)

        if split == "test":
            chosen = records["test"]
        else:
            by_class: dict[int, list[str]] = {}
            for r in records["train"]:
                by_class.setdefault(r.label, []).append(r.image_id)
            held = _choose_held_out(by_class, val_per_class, seed)
            chosen = [r for r in records["train"] if (r.image_id in held) == (split == "val")]
        super().__init__(chosen, classes, transform)


def count_or_fraction(text: str) -> int | float:
    """``"5"`` -> 5, ``"0.1"`` -> 0.1 (the command-line form of ``val_per_class``)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


#: The options of the CUB layout (also used by the synthetic data, which is written in it).
CUB_OPTIONS = {
    "val_per_class": Option(5, "held-out val images per class (a count, or a fraction)", count_or_fraction),
    "seed": Option(0, "seed of the held-out val split", int),
    "load_masks": Option(True, "read masks/ when present", None),
}


def build(root: Path, split: str, transform: Callable | None, problems: list | None, **options) -> CUBDataset:
    return CUBDataset(root, split, transform, problems=problems, **options)


def splits(root: Path, **options) -> list[str]:
    return list(SPLITS)


FORMAT = register_format(
    DatasetFormat(
        name="cub",
        summary="CUB-200-2011 release layout (images.txt, bounding_boxes.txt, ...)",
        build=build,
        splits=splits,
        options=CUB_OPTIONS,
    )
)
