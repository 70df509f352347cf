"""Datasets for weakly supervised object localization.

Every dataset here is a :class:`WSOLDataset`: the format-specific constructor parses the annotation
files into a list of :class:`Record` (one per image) and the shared :meth:`WSOLDataset.__getitem__`
turns a record into the *sample* the trainer and evaluator consume:

``image``
    float tensor ``(3, H, W)`` after the transform (normalised with the ImageNet mean/std by every
    transform of :mod:`bas.data.transforms`; ``(10, 3, S, S)`` with the ten-crop transform);
``label``
    int, 0-based class index;
``boxes``
    float32 tensor ``(M, 4)``, ``XYXY`` in pixel coordinates of the *transformed* image
    (``M = 0`` when the dataset has no boxes for the image); see :mod:`bas.data.transforms` for
    the conventions;
``mask`` / ``ignore``
    bool tensor ``(H, W)`` aligned with ``image``, or ``None`` (``ignore`` marks the OpenImages
    ignore region, foreground pixels excluded, as in wsolevaluation);
``image_id``
    str, the image's relative path as the annotation files name it;
``orig_size``
    ``(W, H)`` of the original image file.

Annotation boxes are stored in :class:`Record` as ``XYXY`` in the original image's pixels, with the
source formats converted as follows: CUB ``x y w h`` -> ``(x, y, x + w, y + h)``; BAS lists, the
standard metadata, ILSVRC XML / CSV / ``val_gt.txt`` and folder CSVs are already ``x0 y0 x1 y1``
and are taken as they are.

Errors: a malformed annotation line raises :class:`~bas.errors.DataError` naming the file and line
when the dataset is built; a missing or unreadable image or mask raises it, naming the file, when
the sample is loaded. Constructors accept ``problems=[]`` to collect the annotation errors instead
of raising (the offending lines are skipped); ``bas data check`` uses that to list them all.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from bas.data.transforms import normalize_transform
from bas.errors import ConfigError, DataError
from bas.io import decode_images, read_image

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "val", "test")
DATASET_KINDS = ("cub", "wsol", "ilsvrc", "bas_list", "folder")
#: Grey value above which a mask pixel counts as foreground (masks are 0/255 PNGs).
MASK_THRESHOLD = 127

_NO_BOXES = np.zeros((0, 4), dtype=np.float32)
_NO_BOXES.setflags(write=False)
Location = tuple[str, int | None]


# ----------------------------------------------------------------------------- records, problems


@dataclass(frozen=True, eq=False)
class Record:
    """One image of a dataset, as parsed from its annotation files.

    ``boxes`` is ``(M, 4)`` float32 ``XYXY`` in the original image's pixels. ``masks`` are mask
    files OR-ed into one foreground mask; ``ignore`` an optional ignore-region mask. ``size`` is the
    ``(W, H)`` the annotations state, if they state one. ``where`` is the annotation line the boxes
    (or, without boxes, the label) come from, for error messages.
    """

    image_id: str
    path: Path
    label: int
    boxes: np.ndarray = field(default_factory=lambda: _NO_BOXES)
    masks: tuple[Path, ...] = ()
    ignore: Path | None = None
    size: tuple[int, int] | None = None
    where: Location | None = None


class _Problems:
    """Raise annotation errors at once (default) or collect them into a list and carry on."""

    def __init__(self, collect: list[DataError] | None):
        self.collect = collect

    def report(self, message: str, path: str | Path, line: int | None = None) -> None:
        error = DataError(message, path, line)
        if self.collect is None:
            raise error
        self.collect.append(error)


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


def _floats(tokens: Sequence[str]) -> list[float] | None:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _int(token: str) -> int | None:
    try:
        return int(token)
    except ValueError:
        return None


def _boxes_from_flat(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 4)


def _box_error(box: Sequence[float]) -> str | None:
    x0, y0, x1, y1 = box
    if x1 < x0 or y1 < y0:
        return f"box {_fmt_box(box)} has x1 < x0 or y1 < y0"
    return None


def _fmt_box(box: Iterable[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in box) + "]"


def _classes_from_ids(records: Sequence[Record], num_classes: int | None = None) -> list[str]:
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


# ----------------------------------------------------------------------------- image and mask files


open_rgb = read_image  # the package's one image reader (bas.io.read_image), under its old name


def read_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG as bool ``(H, W)`` (grey > 127), resized (nearest) to ``size = (W, H)``."""
    grey = read_image(path, "L", what="mask")
    if grey.size != tuple(size):
        grey = grey.resize(tuple(size), Image.NEAREST)
    return np.asarray(grey) > MASK_THRESHOLD


def make_tv_sample(
    image: Image.Image | torch.Tensor,
    boxes: np.ndarray | torch.Tensor | None = None,
    mask: np.ndarray | torch.Tensor | None = None,
    ignore: np.ndarray | torch.Tensor | None = None,
) -> dict[str, Any]:
    """Wrap an image and its annotations as the tv_tensors dict the transforms expect.

    ``image`` is a PIL image or a uint8 ``(3, H, W)`` tensor; ``boxes`` ``(M, 4)`` XYXY pixels.
    """
    if isinstance(image, Image.Image):
        image = v2.functional.pil_to_tensor(image)
    height, width = image.shape[-2:]
    box_tensor = torch.tensor(np.asarray(_NO_BOXES if boxes is None else boxes, dtype=np.float32))
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(
            box_tensor.reshape(-1, 4), format="XYXY", canvas_size=(height, width)
        ),
        "mask": None if mask is None else tv_tensors.Mask(torch.as_tensor(mask, dtype=torch.bool)),
        "ignore": None if ignore is None else tv_tensors.Mask(torch.as_tensor(ignore, dtype=torch.bool)),
    }


def _plain(t: Any) -> Any:
    return None if t is None else t.as_subclass(torch.Tensor)


# ----------------------------------------------------------------------------- the shared dataset


class WSOLDataset(Dataset):
    """A list of :class:`Record` plus a transform; yields the sample dict described above.

    ``transform`` is a v2 transform applied to the tv_tensors dict of :func:`make_tv_sample`
    (image, boxes and masks move together). ``None`` means :func:`normalize_transform`: the image
    keeps its size and boxes stay in original pixels.
    """

    def __init__(self, records: Sequence[Record], classes: Sequence[str], transform: Callable | None = None):
        self.records = list(records)
        self.classes = list(classes)
        self.transform = normalize_transform() if transform is None else transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    @property
    def image_ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    @property
    def has_boxes(self) -> bool:
        return any(len(r.boxes) for r in self.records)

    @property
    def has_masks(self) -> bool:
        return any(r.masks for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[Image.Image, np.ndarray | None, np.ndarray | None]:
        """The original RGB image with its foreground and ignore masks (bool ``(H, W)`` or None)."""
        record = self.records[index]
        image = open_rgb(record.path)
        mask = ignore = None
        if record.masks:
            mask = np.logical_or.reduce([read_mask(p, image.size) for p in record.masks])
        if record.ignore is not None:
            ignore = read_mask(record.ignore, image.size)
            if mask is not None:
                ignore &= ~mask
        return image, mask, ignore

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.records)} images")
        record = self.records[index]
        image, mask, ignore = self.load(index)
        out = self.transform(make_tv_sample(image, record.boxes, mask, ignore))
        boxes = out["boxes"].as_subclass(torch.Tensor).to(torch.float32).reshape(-1, 4)
        mask_t, ignore_t = _plain(out["mask"]), _plain(out["ignore"])
        return {
            "image": out["image"].as_subclass(torch.Tensor),
            "label": int(record.label),
            "boxes": boxes,
            "mask": None if mask_t is None else mask_t.bool(),
            "ignore": None if ignore_t is None else ignore_t.bool(),
            "image_id": record.image_id,
            "orig_size": (int(image.size[0]), int(image.size[1])),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (a top-level function, so DataLoader workers can pickle it).

    ``image`` ``(B, ...)``, ``label`` ``(B,)`` int64, ``boxes`` list of ``(Mi, 4)``, ``mask`` and
    ``ignore`` ``(B, H, W)`` bool or None (None when any sample lacks one), ``image_id`` list,
    ``orig_size`` ``(B, 2)`` int64 ``(W, H)``.
    """
    if not batch:
        raise ValueError("collate: empty batch")

    def stack_optional(key: str) -> torch.Tensor | None:
        items = [s.get(key) for s in batch]
        return None if any(m is None for m in items) else torch.stack(items)

    return {
        "image": torch.stack([s["image"] for s in batch]),
        "label": torch.tensor([int(s["label"]) for s in batch], dtype=torch.int64),
        "boxes": [s["boxes"] for s in batch],
        "mask": stack_optional("mask"),
        "ignore": stack_optional("ignore"),
        "image_id": [s["image_id"] for s in batch],
        "orig_size": torch.tensor([list(s["orig_size"]) for s in batch], dtype=torch.int64).reshape(-1, 2),
    }


# ----------------------------------------------------------------------------- CUB-200-2011


def _id_table(path: Path, problems: _Problems, fmt: str) -> dict[int, tuple[int, list[str]] | None]:
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
        key = _int(fields[0])
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
        report = _Problems(problems)
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
            where: Location = (str(root / "images.txt"), image_entry[0])

            lab_line, (lab_text,) = labels[image_id]
            label = _int(lab_text)
            if label is None or not 1 <= label <= len(classes):
                report.report(
                    f"class id must be in 1..{len(classes)}, got {lab_text!r}", label_file, lab_line
                )
                continue
            flag_line, (flag,) = is_train[image_id]
            if flag not in ("0", "1"):
                report.report(f"train/test flag must be 0 or 1, got {flag!r}", split_file, flag_line)
                continue
            box = _NO_BOXES
            if boxes is not None:
                box_line, values = boxes[image_id]
                xywh = _floats(values)
                if xywh is None or xywh[2] < 0 or xywh[3] < 0:
                    report.report(
                        f"expected '<id> <x> <y> <w> <h>' with w, h >= 0, got {values}", box_file, box_line
                    )
                    continue
                x, y, w, h = xywh
                box = np.array([[x, y, x + w, y + h]], dtype=np.float32)
                where = (str(box_file), box_line)
            masks = ((mask_root / rel).with_suffix(".png"),) if use_masks else ()
            record = Record(rel, root / "images" / rel, label - 1, box, masks=masks, where=where)
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


# ----------------------------------------------------------------------------- standard metadata


class WSOLMetadataDataset(WSOLDataset):
    """The standard WSOL metadata of Choe et al. (``metadata/<CUB|ILSVRC|OpenImages>/<split>/``).

    Images are ``image_root/<image_id>``. Boxes come from ``localization.txt``; for OpenImages the
    mask PNGs of an image are OR-ed into one foreground mask and its ignore PNG gives the ignore
    region. Mask paths are resolved as wsolevaluation does, under ``<mask_root>/OpenImages/`` if that
    folder exists, else under ``mask_root`` itself; ``mask_root`` defaults to ``image_root``.
    ``num_classes`` defaults to the largest label + 1.
    """

    def __init__(
        self,
        metadata_dir: str | Path,
        image_root: str | Path,
        transform: Callable | None = None,
        mask_root: str | Path | None = None,
        num_classes: int | None = None,
        problems: list[DataError] | None = None,
    ):
        from bas.data.metadata import load_metadata

        self.metadata_dir = metadata_dir = Path(metadata_dir)
        self.image_root = image_root = Path(image_root)
        meta = load_metadata(metadata_dir)
        mask_base = Path(mask_root) if mask_root is not None else image_root
        if (mask_base / "OpenImages").is_dir():
            mask_base = mask_base / "OpenImages"
        loc = str(metadata_dir / "localization.txt")
        records = []
        for image_id in meta.image_ids:
            boxes = np.asarray(meta.boxes.get(image_id, _NO_BOXES), dtype=np.float32).reshape(-1, 4)
            entries = meta.masks.get(image_id, [])
            masks = tuple(mask_base / m for m, _ in entries)
            ignore = next((mask_base / i for _, i in entries if i), None)
            size = meta.sizes.get(image_id)
            records.append(
                Record(
                    image_id,
                    image_root / image_id,
                    int(meta.labels[image_id]),
                    boxes,
                    masks=masks,
                    ignore=ignore,
                    size=None if size is None else (int(size[0]), int(size[1])),
                    where=(loc, None),
                )
            )
        if num_classes is None:
            num_classes = max((r.label for r in records), default=-1) + 1
        report = _Problems(problems)
        for r in records:
            if not 0 <= r.label < num_classes:
                report.report(
                    f"{r.image_id}: label {r.label} outside 0..{num_classes - 1}",
                    metadata_dir / "class_labels.txt",
                )
        super().__init__(
            [r for r in records if 0 <= r.label < num_classes],
            _classes_from_ids(records, num_classes),
            transform,
        )


# ----------------------------------------------------------------------------- class folders


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


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


def _read_box_csv(path: Path, problems: _Problems) -> dict[str, tuple[list[list[float]], int]]:
    """``image_id,x0,y0,x1,y1`` lines (header optional) -> ``{id: (boxes, first line)}``."""
    boxes: dict[str, tuple[list[list[float]], int]] = {}
    for lineno, text in read_lines(path):
        fields = [f.strip() for f in next(csv.reader([text]))]
        values = _floats(fields[1:]) if len(fields) == 5 else None
        if values is None:
            if lineno == 1 and len(fields) == 5:  # a header such as image_id,x0,y0,x1,y1
                continue
            problems.report(f"expected 'image_id,x0,y0,x1,y1', got {text!r}", path, lineno)
            continue
        if (msg := _box_error(values)) is not None:
            problems.report(msg, path, lineno)
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
                classes = sorted({c for d in split_dirs for c in _class_folders(d)})
            else:
                classes = _class_folders(folder)
        classes = list(classes)
        if not classes:
            raise DataError("no class sub-folders found", folder)
        self.folder = folder
        index = {name: k for k, name in enumerate(classes)}
        records = []
        for name in _class_folders(folder):
            if name not in index:
                _Problems(problems).report(f"class folder {name!r} is not in the class list", folder / name)
                continue
            for rel in _scan_images(folder / name):
                image_id = f"{name}/{rel}"
                records.append(Record(image_id, folder / image_id, index[name]))
        if boxes_csv is not None:
            records = self._attach_boxes(records, Path(boxes_csv), root, split, _Problems(problems))
        super().__init__(records, classes, transform)

    @staticmethod
    def _attach_boxes(
        records: list[Record], path: Path, root: Path, split: str | None, report: _Problems
    ) -> list[Record]:
        """Boxes of this split's images; lines of another split's images (one CSV may serve all) are skipped."""
        table = _read_box_csv(path, report)
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
                    r.image_id, r.path, r.label, _boxes_from_flat(sum(values, [])), where=(str(path), line)
                )
            out.append(r)
        return out


class ILSVRCTrainDataset(ImageFolderDataset):
    """ImageNet training images, ``root/<wnid>/<image>``; class index = sorted wnid order, or the
    order of ``classes`` (a wnid list, a synsets file or another train folder, see :func:`load_wnids`)."""

    def __init__(
        self,
        root: str | Path,
        transform: Callable | None = None,
        classes: str | Path | Sequence[str] | None = None,
        problems: list[DataError] | None = None,
    ):
        wnids = None if classes is None else load_wnids(classes)
        super().__init__(root, None, transform, classes=wnids, problems=problems)


# ----------------------------------------------------------------------------- ILSVRC validation


@dataclass
class ValAnnotation:
    """One ILSVRC validation image as a box file states it (boxes flat, original pixels)."""

    image_id: str  # file name ("ILSVRC2012_val_00000001.JPEG") or "wnid/file"
    wnids: list[str]  # one per box (may be empty for val_gt.txt)
    boxes: list[float]  # flat x0 y0 x1 y1 ...
    size: tuple[int, int] | None
    where: Location


def parse_val_xml_dir(folder: str | Path, problems: list[DataError] | None = None) -> list[ValAnnotation]:
    """The official per-image Pascal-VOC XML files (``<object><name>wnid</name><bndbox>...``)."""
    folder = Path(folder)
    report = _Problems(problems)
    files = sorted(folder.glob("*.xml"))
    if not files:
        report.report("no XML annotation files", folder)
    out = []
    for path in files:
        try:
            tree = ET.parse(path)
        except ET.ParseError as exc:
            report.report(f"malformed XML ({exc})", path, exc.position[0])
            continue
        root = tree.getroot()
        wnids, boxes = [], []
        bad = False
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            values = _floats(
                [(obj.findtext(f"bndbox/{k}") or "").strip() for k in ("xmin", "ymin", "xmax", "ymax")]
            )
            if not name or values is None or _box_error(values):
                report.report(
                    "an <object> needs <name> and numeric <bndbox> xmin <= xmax, ymin <= ymax", path
                )
                bad = True
                break
            wnids.append(name)
            boxes.extend(values)
        if bad:
            continue
        if not wnids:
            report.report("no <object> in the file", path)
            continue
        size_values = [_int((root.findtext(f"size/{k}") or "").strip()) for k in ("width", "height")]
        size = (size_values[0], size_values[1]) if None not in size_values else None
        filename = (root.findtext("filename") or path.stem).strip()
        image_id = filename if Path(filename).suffix else filename + ".JPEG"
        out.append(ValAnnotation(image_id, wnids, boxes, size, (str(path), None)))  # type: ignore[arg-type]
    return out


def parse_loc_solution_csv(path: str | Path, problems: list[DataError] | None = None) -> list[ValAnnotation]:
    """Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` = ``wnid x0 y0 x1 y1`` repeated."""
    path = Path(path)
    report = _Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        if lineno == 1 and text.replace(" ", "").lower().startswith("imageid,"):
            continue
        image_id, sep, prediction = text.partition(",")
        tokens = prediction.split()
        ok = bool(sep and image_id.strip() and tokens and len(tokens) % 5 == 0)
        groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)] if ok else []
        values = [_floats(g[1:]) for g in groups]
        if not ok or any(v is None or _box_error(v) for v in values):
            report.report(
                f"expected 'ImageId,wnid x0 y0 x1 y1 [wnid x0 y0 x1 y1 ...]', got {text!r}", path, lineno
            )
            continue
        image_id = image_id.strip()
        image_id = image_id if Path(image_id).suffix else image_id + ".JPEG"
        flat = [c for v in values for c in v]  # type: ignore[union-attr]
        out.append(ValAnnotation(image_id, [g[0] for g in groups], flat, None, (str(path), lineno)))
    return out


def parse_val_gt(path: str | Path, problems: list[DataError] | None = None) -> list[ValAnnotation]:
    """BAS ``val_gt.txt``: ``wnid\\\\file width height ; x0 y0 x1 y1 [x0 y0 x1 y1 ...]``.

    The path holds a literal double backslash; the image id becomes ``wnid/file``.
    """
    path = Path(path)
    report = _Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        head, sep, tail = text.partition(";")
        fields = head.split()
        size = [_int(t) for t in fields[1:]]
        values = _floats(tail.split())
        if not sep or len(fields) != 3 or None in size or not values or len(values) % 4:
            report.report(
                f"expected 'wnid\\\\file width height ; x0 y0 x1 y1 [...]', got {text!r}", path, lineno
            )
            continue
        bad = [b for b in _boxes_from_flat(values) if _box_error(b)]
        if bad:
            report.report(_box_error(bad[0]) or "", path, lineno)
            continue
        image_id = "/".join(p for p in fields[0].replace("\\", "/").split("/") if p)
        out.append(ValAnnotation(image_id, [], values, (size[0], size[1]), (str(path), lineno)))  # type: ignore[arg-type]
    return out


def read_label_list(path: str | Path, problems: list[DataError] | None = None) -> list[tuple[str, int, int]]:
    """BAS ``*_list.txt`` (``path;label``) -> ``[(image id, label, line number)]``."""
    path = Path(path)
    report = _Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        image_id, sep, label_text = text.rpartition(";")
        label = _int(label_text.strip())
        if not sep or not image_id.strip() or label is None or label < 0:
            report.report(f"expected 'path;label' with label >= 0, got {text!r}", path, lineno)
            continue
        out.append((image_id.strip().replace("\\", "/"), label, lineno))
    return out


def load_wnids(source: str | Path | Sequence[str]) -> list[str]:
    """The ordered wnid list: a list as given, a train folder (sorted sub-folders), or a synsets
    file (first token of each line, e.g. ``LOC_synset_mapping.txt`` or ``synsets.txt``, in file order)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return _class_folders(path)
        return [text.split()[0] for _, text in read_lines(path)]
    return list(source)


def detect_box_format(path: str | Path) -> str:
    """``xml`` (a folder), ``csv`` (``.csv``) or ``val_gt`` (any other text file)."""
    path = Path(path)
    if path.is_dir():
        return "xml"
    if not path.exists():
        raise DataError("ILSVRC box annotations not found", path)
    return "csv" if path.suffix.lower() == ".csv" else "val_gt"


class ILSVRCValDataset(WSOLDataset):
    """ImageNet validation images with their boxes.

    ``boxes`` is the official XML folder, ``LOC_val_solution.csv`` or BAS ``val_gt.txt`` (detected
    by :func:`detect_box_format`). Labels come from ``val_list`` (BAS ``val_list.txt``,
    ``path;label``) if given, else from the wnid of the image's (first) box -> its index in
    ``classes`` (a train folder, a synsets file or a list; default: the sorted wnids of the
    annotations, right only when every class occurs, as in the full 50,000-image set).
    Images are looked up as ``image_dir/<id>``, ``image_dir/<file name>`` (flat folder) or
    ``image_dir/<wnid>/<file name>``, whichever layout the first image is found in.
    """

    def __init__(
        self,
        image_dir: str | Path,
        boxes: str | Path,
        transform: Callable | None = None,
        classes: str | Path | Sequence[str] | None = None,
        val_list: str | Path | None = None,
        problems: list[DataError] | None = None,
    ):
        self.image_dir = image_dir = Path(image_dir)
        report = _Problems(problems)
        kind = detect_box_format(boxes)
        parser = {"xml": parse_val_xml_dir, "csv": parse_loc_solution_csv, "val_gt": parse_val_gt}[kind]
        annotations = parser(boxes, problems)

        def wnid_of(ann: ValAnnotation, image_id: str) -> str:
            return ann.wnids[0] if ann.wnids else _wnid_of(image_id)

        if classes is not None:
            wnids = load_wnids(classes)
        else:
            wnids = sorted({wnid_of(a, a.image_id) for a in annotations} - {""})
        index = {w: k for k, w in enumerate(wnids)}

        entries = []
        if val_list is not None:
            by_name = {_basename(a.image_id): a for a in annotations}
            for image_id, label, lineno in read_label_list(val_list, problems):
                ann = by_name.get(_basename(image_id))
                if ann is None:
                    report.report(f"{image_id}: no boxes in {boxes}", val_list, lineno)
                    continue
                wnid = wnid_of(ann, image_id)
                if classes is not None and wnid in index and index[wnid] != label:
                    report.report(
                        f"{image_id}: label {label} but {wnid} is class {index[wnid]} of the class list",
                        val_list,
                        lineno,
                    )
                    continue
                entries.append((image_id, label, ann, wnid))
            if classes is None:
                wnids = self._wnids_from_list(entries)
        else:
            for ann in annotations:
                wnid = wnid_of(ann, ann.image_id)
                if wnid not in index:
                    report.report(f"{ann.image_id}: unknown class {wnid!r}", *ann.where)
                    continue
                entries.append((ann.image_id, index[wnid], ann, wnid))

        layout = self._layout(entries)
        records = []
        for image_id, label, ann, wnid in entries:
            if not 0 <= label < max(len(wnids), 1):
                report.report(f"{image_id}: label {label} outside 0..{len(wnids) - 1}", *ann.where)
                continue
            records.append(
                Record(
                    image_id,
                    layout(image_id, wnid),
                    label,
                    _boxes_from_flat(ann.boxes),
                    size=ann.size,
                    where=ann.where,
                )
            )
        super().__init__(records, wnids, transform)

    @staticmethod
    def _wnids_from_list(entries: list) -> list[str]:
        by_label: dict[int, str] = {}
        for _, label, _, wnid in entries:
            by_label.setdefault(label, wnid)
        count = max(by_label, default=-1) + 1
        return [by_label.get(k, str(k)) for k in range(count)]

    def _layout(self, entries: list) -> Callable[[str, str], Path]:
        """Choose how ids map to files from the first image that exists."""
        d = self.image_dir
        layouts: list[Callable[[str, str], Path]] = [
            lambda i, w: d / i,
            lambda i, w: d / _basename(i),
            lambda i, w: d / w / _basename(i),
        ]
        for image_id, _, _, wnid in entries[:1]:
            for layout in layouts:
                if layout(image_id, wnid).is_file():
                    return layout
        return layouts[0]


def _basename(image_id: str) -> str:
    return image_id.rsplit("/", 1)[-1]


def _wnid_of(image_id: str) -> str:
    return image_id.split("/")[0] if "/" in image_id else ""


# ----------------------------------------------------------------------------- BAS lists


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
        report = _Problems(problems)
        listed = read_label_list(list_file, problems)
        records = [
            Record(i, image_root / i, label, where=(str(list_file), line)) for i, label, line in listed
        ]
        if box_file is not None:
            box_lines = read_lines(box_file)
            if len(box_lines) != len(listed):
                report.report(f"{len(box_lines)} box lines for {len(listed)} images in {list_file}", box_file)
            with_boxes = []
            for record, (lineno, text) in zip(records, box_lines):
                values = _floats(text.split())
                if values is None or len(values) < 6 or (len(values) - 2) % 4:
                    report.report(f"expected 'x0 y0 x1 y1 height width', got {text!r}", box_file, lineno)
                    continue
                boxes = _boxes_from_flat(values[:-2])
                if (msg := next((m for b in boxes if (m := _box_error(b))), None)) is not None:
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
        super().__init__(records, _classes_from_ids(records, num_classes), transform)


# ----------------------------------------------------------------------------- factory


def _first_existing(*paths: Path) -> Path | None:
    return next((p for p in paths if p.exists()), None)


def build_dataset(
    name: str, root: str | Path, split: str = "train", transform: Callable | None = None, **options: Any
) -> WSOLDataset:
    """Build a dataset by kind; ``options`` go to the class.

    * ``cub`` (CUB release layout, also the synthetic data): :class:`CUBDataset` (``root``, ``split``).
    * ``wsol``: :class:`WSOLMetadataDataset`; ``root`` is the image root, option ``metadata`` the
      folder with ``<split>/`` sub-folders (e.g. ``metadata/CUB``) or a split folder itself.
    * ``ilsvrc``: ``split="train"``: :class:`ILSVRCTrainDataset` on ``root/train`` (or ``root``);
      otherwise :class:`ILSVRCValDataset` on ``root/val`` (or ``root``), options ``boxes`` (default
      ``root/LOC_val_solution.csv`` or ``root/val_gt.txt``), ``classes`` (default ``root/train``
      or ``root/LOC_synset_mapping.txt``) and ``val_list`` (default ``root/val_list.txt`` when the
      boxes are ``val_gt.txt``).
    * ``bas_list``: :class:`BASListDataset`; options ``list_file`` (default
      ``root/<split>_list.txt``), ``box_file`` (default ``root/<split>_bounding_box.txt`` if present),
      ``image_root`` (default ``root/images`` if present, else ``root``).
    * ``folder``: :class:`ImageFolderDataset` (``root``, ``split``).
    """
    root = Path(root)
    if name == "cub":
        return _construct(CUBDataset, root, split, transform, **options)
    if name == "wsol":
        metadata = options.pop("metadata", None)
        if metadata is None:
            raise ConfigError("the 'wsol' dataset needs the option metadata=<metadata/DATASET folder>")
        metadata = Path(metadata)
        split_dir = metadata if (metadata / "image_ids.txt").is_file() else metadata / split
        return _construct(WSOLMetadataDataset, split_dir, root, transform, **options)
    if name == "ilsvrc":
        boxes = options.pop("boxes", None)
        val_list = options.pop("val_list", None)
        if split == "train":  # the validation options of a shared config do not apply
            train_dir = root / "train" if (root / "train").is_dir() else root
            return _construct(ILSVRCTrainDataset, train_dir, transform, **options)
        boxes = boxes or _first_existing(root / "LOC_val_solution.csv", root / "val_gt.txt")
        if boxes is None:
            raise DataError(
                "no ILSVRC validation boxes: pass boxes=<XML folder | LOC_val_solution.csv | val_gt.txt>",
                root,
            )
        if options.get("classes") is None:
            options["classes"] = _first_existing(root / "train", root / "LOC_synset_mapping.txt")
        if val_list is None and detect_box_format(boxes) == "val_gt":
            val_list = _first_existing(root / "val_list.txt")
        image_dir = root / "val" if (root / "val").is_dir() else root
        return _construct(ILSVRCValDataset, image_dir, boxes, transform, val_list=val_list, **options)
    if name == "bas_list":
        list_file = options.pop("list_file", None) or root / f"{split}_list.txt"
        box_file = options.pop("box_file", None) or _first_existing(root / f"{split}_bounding_box.txt")
        image_root = options.pop("image_root", None) or (
            root / "images" if (root / "images").is_dir() else root
        )
        return _construct(BASListDataset, image_root, list_file, box_file, transform, **options)
    if name == "folder":
        return _construct(ImageFolderDataset, root, split, transform, **options)
    raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_KINDS)}")


def _construct(cls: type[WSOLDataset], *args: Any, **options: Any) -> WSOLDataset:
    """``cls(*args, **options)``, with a ConfigError naming the accepted options for an unknown one."""
    accepted = [n for n in inspect.signature(cls.__init__).parameters if n != "self"][len(args) :]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; accepted: {', '.join(accepted)}"
        )
    return cls(*args, **options)


def available_splits(name: str, root: str | Path, **options: Any) -> list[str]:
    """The splits :func:`build_dataset` can build for this dataset on disk."""
    root = Path(root)
    if name == "cub":
        return list(SPLITS)
    if name == "wsol":
        metadata = Path(options.get("metadata") or root)
        if (metadata / "image_ids.txt").is_file():
            return [metadata.name]
        return [s for s in SPLITS if (metadata / s).is_dir()]
    if name == "ilsvrc":
        return ["train", "val"] if (root / "train").is_dir() and (root / "val").is_dir() else ["val"]
    if name == "bas_list":
        return [s for s in SPLITS if (root / f"{s}_list.txt").is_file()]
    if name == "folder":
        return [s for s in SPLITS if (root / s).is_dir()] or ["all"]
    raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(DATASET_KINDS)}")


# ----------------------------------------------------------------------------- validation


def image_size(path: str | Path) -> tuple[int, int]:
    """``(W, H)`` of the fully decoded, oriented image (:func:`bas.io.read_image`); DataError on failure."""
    return read_image(path).size


def check_dataset(dataset: WSOLDataset, progress: Callable[[int], None] | None = None) -> list[DataError]:
    """Every problem of a built dataset that does not need a model: unreadable or truncated images
    (each decoded fully, in a thread pool; ``progress(n)`` counts them), missing masks, labels out
    of range, duplicate ids, sizes that disagree with the annotation, boxes outside the image or
    inverted. Returns the problems; raises nothing."""
    problems: list[DataError] = []
    seen: dict[str, int] = {}
    decoded = decode_images([r.path for r in dataset.records], progress=progress)
    for k, r in enumerate(dataset.records):
        where = r.where or (r.image_id, None)
        if r.image_id in seen:
            problems.append(DataError(f"{r.image_id}: duplicate image id", *where))
        seen.setdefault(r.image_id, k)
        if not 0 <= r.label < dataset.num_classes:
            problems.append(
                DataError(f"{r.image_id}: label {r.label} outside 0..{dataset.num_classes - 1}", *where)
            )
        size = decoded[k]
        if isinstance(size, DataError):
            problems.append(size)
            size = r.size
        else:
            if r.size is not None and tuple(r.size) != size:
                problems.append(
                    DataError(
                        f"{r.image_id}: annotated size {r.size[0]}x{r.size[1]} but the image is {size[0]}x{size[1]}",
                        *where,
                    )
                )
        for mask in (*r.masks, *((r.ignore,) if r.ignore is not None else ())):
            if not mask.is_file():
                problems.append(DataError(f"mask not found (image {r.image_id})", mask))
        for box in r.boxes:
            msg = _box_error(box)
            if msg is None and size is not None:
                x0, y0, x1, y1 = (float(v) for v in box)
                if x0 < 0 or y0 < 0 or x1 > size[0] or y1 > size[1]:
                    msg = f"box {_fmt_box(box)} outside the {size[0]}x{size[1]} image"
            if msg is not None:
                problems.append(DataError(f"{r.image_id}: {msg}", *where))
    return problems


__all__ = [
    "DATASET_KINDS",
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "BASListDataset",
    "CUBDataset",
    "ILSVRCTrainDataset",
    "ILSVRCValDataset",
    "ImageFolderDataset",
    "Record",
    "WSOLDataset",
    "WSOLMetadataDataset",
    "available_splits",
    "build_dataset",
    "check_dataset",
    "collate",
    "detect_box_format",
    "image_size",
    "load_wnids",
    "make_tv_sample",
    "open_rgb",
    "parse_loc_solution_csv",
    "parse_val_gt",
    "parse_val_xml_dir",
    "read_label_list",
    "read_lines",
    "read_mask",
]
