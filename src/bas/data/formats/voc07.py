"""PASCAL VOC with object boxes (``voc07``): several objects of several classes per image.

Layout (VOC 2007; VOC 2012 and the synthetic multi-object data, :mod:`bas.data.synthetic_multi`,
are the same with ``VOC2012``)::

    VOCdevkit/VOC2007/JPEGImages/<id>.jpg
    VOCdevkit/VOC2007/Annotations/<id>.xml         one <object> per object (bas.data.voc_xml)
    VOCdevkit/VOC2007/ImageSets/Main/<split>.txt   one id per line (train, val, trainval, test)

``root`` is the folder holding ``VOCdevkit``, ``VOCdevkit`` itself or the ``VOC<year>`` folder.
Options: ``year`` (``auto``: VOC2007 when present, else VOC2012; or ``2007`` / ``2012``),
``image_set`` (``auto``: ``ImageSets/Main`` when it has the split, else ``ImageSets/Segmentation``,
which is where the synthetic data and VOC 2012's segmentation subset list their ids), ``classes``
(a file with one class name per line, a first line ``background`` skipped; default: the VOC
folder's ``class_names.txt`` when present, as the synthetic data writes it, else the 20 VOC
classes) and ``difficult`` (false: objects flagged difficult are left out of CorLoc, as is
standard; true: they count like the others).

Each record holds every object of its image: ``boxes`` ``(M, 4)`` (``[x0, y0, x1, y1]``, 0-based,
x1 / y1 exclusive: VOC's 1-based inclusive corners converted), ``box_labels`` ``(M,)`` and
``difficult`` ``(M,)`` in file order; ``tags`` are the classes present (difficult objects
included, as in VOC's classification labels) and ``label`` is the first object's class (what the
single-label tools read). A sample adds ``tags`` (multi-hot float32 ``(K,)``), ``box_labels`` and
``difficult`` to the shared sample of :mod:`bas.data.datasets`; ``boxes`` follow the transform.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bas.data.datasets import Record, WSOLDataset
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.parsing import NO_BOXES, Problems, read_lines
from bas.data.paths import check_inside
from bas.data.voc_xml import parse_voc_xml
from bas.errors import ConfigError, DataError
from bas.schema import Key

#: The 20 classes of PASCAL VOC, in the devkit's order.
VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
YEARS = ("2007", "2012")
IMAGE_SETS = ("Main", "Segmentation")
_NO_LABELS = np.zeros(0, dtype=np.int64)
_NO_FLAGS = np.zeros(0, dtype=bool)


@dataclass(frozen=True, eq=False)
class ObjectRecord(Record):
    """A :class:`Record` with the class and the difficult flag of each of its ``boxes``."""

    box_labels: np.ndarray = field(default_factory=lambda: _NO_LABELS)
    difficult: np.ndarray = field(default_factory=lambda: _NO_FLAGS)

    @property
    def tags(self) -> list[int]:
        """Sorted classes present in the image (difficult objects included)."""
        return sorted({int(k) for k in self.box_labels})


class VOCObjectDataset(WSOLDataset):
    """VOC images with all their objects (see the module doc).

    Args:
        voc_dir: the ``VOC<year>`` folder. split: the id list's name. transform: as for every
            dataset. classes: the class names (an object of another name is an error).
        image_set: ``Main`` or ``Segmentation``. include_difficult: whether CorLoc counts
            difficult objects. problems: collect annotation errors instead of raising.
    """

    multi_object = True

    def __init__(
        self,
        voc_dir: str | Path,
        split: str,
        transform: Callable | None = None,
        *,
        classes: Sequence[str] = VOC_CLASSES,
        image_set: str = "Main",
        include_difficult: bool = False,
        problems: list[DataError] | None = None,
    ):
        self.voc_dir = voc_dir = Path(voc_dir)
        self.include_difficult = bool(include_difficult)
        report = Problems(problems)
        id_file = voc_dir / "ImageSets" / image_set / f"{split}.txt"
        check_inside(voc_dir, id_file)
        index = {name: k for k, name in enumerate(classes)}
        records = []
        for lineno, text in read_lines(id_file):
            image_id = text.split()[0]  # VOC's per-class lists add a flag after the id
            image = report.resolve(voc_dir / "JPEGImages", f"{image_id}.jpg", id_file, lineno)
            xml = report.resolve(voc_dir / "Annotations", f"{image_id}.xml", id_file, lineno)
            if image is None or xml is None:
                continue
            try:
                ann = parse_voc_xml(xml, classes=classes)
            except DataError as exc:
                report.add(exc)
                continue
            if not ann.objects:
                report.report("no <object> in the file", xml)
                continue
            records.append(
                ObjectRecord(
                    image_id,
                    image,
                    index[ann.objects[0].name],
                    np.asarray([o.box for o in ann.objects], dtype=np.float32).reshape(-1, 4),
                    size=ann.size,
                    where=(str(xml), ann.objects[0].line),
                    box_labels=np.asarray([index[o.name] for o in ann.objects], dtype=np.int64),
                    difficult=np.asarray([o.difficult for o in ann.objects], dtype=bool),
                )
            )
        super().__init__(records, classes, transform)

    def tags(self, index: int) -> np.ndarray:
        """Multi-hot float32 ``(K,)`` of image ``index``."""
        out = np.zeros(self.num_classes, dtype=np.float32)
        out[self.records[index].box_labels] = 1.0
        return out

    def objects(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The boxes ``(M, 4)`` (original pixels) and classes ``(M,)`` of image ``index`` that CorLoc
        counts: every object, or those not flagged difficult (``include_difficult`` False)."""
        r = self.records[index]
        keep = np.ones(len(r.boxes), bool) if self.include_difficult else ~r.difficult
        return (r.boxes[keep] if len(r.boxes) else NO_BOXES), r.box_labels[keep]

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch  # here, so that the format registry imports without torch

        sample = super().__getitem__(index)
        record = self.records[index]
        sample["tags"] = torch.from_numpy(self.tags(index))
        sample["box_labels"] = torch.from_numpy(record.box_labels)
        sample["difficult"] = torch.from_numpy(record.difficult)
        return sample


# ------------------------------------------------------------------------------------- layout


def find_voc_dir(root: Path, year: str = "auto") -> Path:
    """The ``VOC<year>`` folder under ``root`` (see the module doc); DataError naming what was looked for."""
    if year not in ("auto", *YEARS):
        raise ConfigError(f"data.options.year must be auto, 2007 or 2012, got {year!r}")
    years = YEARS if year == "auto" else (year,)
    candidates = [base / f"VOC{y}" for y in years for base in (root / "VOCdevkit", root)]
    if year == "auto" or root.name == f"VOC{year}":
        candidates.append(root)
    for path in candidates:
        if (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir():
            return path
    looked = ", ".join(str(p.relative_to(root)) if p != root else "." for p in candidates)
    raise DataError(f"no VOC folder with Annotations/ and JPEGImages/ (looked in {looked})", root)


def _image_set(voc_dir: Path, split: str, image_set: str) -> str:
    if image_set not in ("auto", *IMAGE_SETS):
        raise ConfigError(f"data.options.image_set must be auto, Main or Segmentation, got {image_set!r}")
    if image_set != "auto":
        return image_set
    found = [s for s in IMAGE_SETS if (voc_dir / "ImageSets" / s / f"{split}.txt").is_file()]
    if not found:
        raise DataError(
            f"no id list for the split {split!r} (ImageSets/Main or ImageSets/Segmentation)", voc_dir
        )
    return found[0]


def read_class_names(path: Path) -> list[str]:
    """One class name per line; a first line ``background`` is skipped (the synthetic data's file)."""
    names = [text for _, text in read_lines(path)]
    if names and names[0].lower() == "background":
        names = names[1:]
    if not names:
        raise DataError("no class names", path)
    if len(set(names)) != len(names):
        raise DataError("duplicate class names", path)
    return names


def _classes(voc_dir: Path, classes: str | None) -> list[str]:
    if classes is not None:
        return read_class_names(Path(classes))
    default = voc_dir / "class_names.txt"
    if not default.is_file():
        return list(VOC_CLASSES)
    check_inside(voc_dir, default)
    return read_class_names(default)


def build(
    root: Path,
    split: str,
    transform: Callable | None,
    problems: list | None,
    *,
    year: str,
    image_set: str,
    classes: str | None,
    difficult: bool,
) -> VOCObjectDataset:
    voc_dir = find_voc_dir(root, str(year))
    return VOCObjectDataset(
        voc_dir,
        split,
        transform,
        classes=_classes(voc_dir, classes),
        image_set=_image_set(voc_dir, split, image_set),
        include_difficult=difficult,
        problems=problems,
    )


def splits(root: Path, *, year: str, image_set: str, **options: Any) -> list[str]:
    voc_dir = find_voc_dir(root, str(year))
    sets = IMAGE_SETS if image_set == "auto" else (image_set,)
    found = {p.stem for s in sets for p in (voc_dir / "ImageSets" / s).glob("*.txt") if "_" not in p.stem}
    return [s for s in ("train", "val", "trainval", "test") if s in found] + sorted(
        found - {"train", "val", "trainval", "test"}
    )


FORMAT = register_format(
    DatasetFormat(
        name="voc07",
        summary="PASCAL VOC boxes (VOCdevkit/VOC2007 or VOC2012: JPEGImages, Annotations XML, ImageSets)",
        build=build,
        splits=splits,
        options={
            "year": Option(
                "auto",
                "VOC folder: auto (VOC2007, else VOC2012), 2007 or 2012",
                str,
                Key(("str", "int"), "auto", help="auto, 2007 or 2012"),
            ),
            "image_set": Option(
                "auto",
                "id lists: auto, Main or Segmentation",
                str,
                Key("str", "auto", choices=("auto", *IMAGE_SETS)),
            ),
            "classes": Option(
                None, "file of class names, one per line (default: class_names.txt or VOC's 20)"
            ),
            "difficult": Option(False, "count difficult objects in CorLoc", None, Key("bool")),
        },
    )
)
