"""PASCAL VOC 2012 segmentation (``voc``), with SBD's ``SegmentationClassAug`` for ``train_aug``.

Layout (``root`` is the ``VOC2012`` folder, or a folder holding ``VOC2012/`` or
``VOCdevkit/VOC2012/``, as the synthetic generator of :mod:`bas.data.synthetic_multi` writes it)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png          palette PNG: 0 background, c + 1 = class c, 255 ignore
    SegmentationClassAug/<id>.png       SBD's masks for train_aug (grayscale PNG, same values)
    Annotations/<id>.xml                optional: the objects (tags from XML)
    ImageSets/Segmentation/<split>.txt  one id per line (train, val, trainval, test, train_aug)
    class_names.txt                     optional: line k = name of mask value k (line 0 background)

A list line is an id, or an image path and a mask path relative to the VOC folder (the DeepLab
form ``/JPEGImages/<id>.jpg /SegmentationClassAug/<id>.png``; its leading ``/`` means that
folder). Without ``ImageSets/Segmentation/train_aug.txt``, ``train_aug`` is every mask of the
``aug_dir`` folder whose id is not in ``val.txt`` (the usual 10,582 images).

Classes (mask value ``c + 1`` is class ``c``): the names of the file of option ``classes`` (one a
line; a first line ``background`` is skipped), else those of the VOC folder's ``class_names.txt``
when present (the synthetic data writes one), else the 20 VOC classes in the devkit order.

Tags (option ``tags``): ``masks`` = the classes present in the image's mask (0 and 255 excluded;
what the authors' ``cls_labels.npy`` holds), ``xml`` = the classes of the objects of
``Annotations/<id>.xml`` (all of them, ``difficult`` ones included), ``auto`` (default) = the mask
where the image has one, else the XML. The mask is part of the sample whenever it exists.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bas.data.datasets import Location
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.formats.voc07 import VOC_CLASSES, read_class_names
from bas.data.multilabel import MultiLabelDataset, TagRecord, check_multilabel
from bas.data.parsing import Problems, read_lines
from bas.data.paths import check_inside
from bas.data.voc_xml import parse_voc_xml
from bas.errors import ConfigError, DataError
from bas.schema import Key

TAG_SOURCES = ("auto", "masks", "xml")
AUG_SPLIT = "train_aug"
LISTS = "ImageSets/Segmentation"


def voc_folder(root: Path) -> Path:
    """The folder holding ``JPEGImages/``: ``root``, ``root/VOC2012`` or ``root/VOCdevkit/VOC2012``."""
    for folder in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (folder / "JPEGImages").is_dir():
            check_inside(root, folder, root_name="the dataset root")
            return folder
    raise DataError(
        "not a VOC 2012 folder (no JPEGImages/ in it, nor in VOC2012/ or VOCdevkit/VOC2012/)", root
    )


def voc_classes(voc: Path, classes: str | None = None) -> list[str]:
    """The class names: the file ``classes``, else the VOC folder's ``class_names.txt``, else the
    20 VOC classes (:func:`bas.data.formats.voc07.read_class_names`: a ``background`` first line
    is skipped)."""
    path = Path(classes) if classes is not None else voc / "class_names.txt"
    if classes is None and not path.is_file():
        return list(VOC_CLASSES)
    if classes is None:
        check_inside(voc, path)
    return read_class_names(path)


def _list_entries(
    voc: Path, split: str, mask_dir: str, problems: Problems
) -> list[tuple[str, str, str, Location]]:
    """``(image id, image path, mask path, (file, line))`` of the split's list (paths relative to ``voc``)."""
    path = voc / LISTS / f"{split}.txt"
    if not path.is_file() and split == AUG_SPLIT:
        return _aug_entries(voc, mask_dir)
    check_inside(voc, path)
    entries = []
    for lineno, text in read_lines(path):
        fields = text.split()
        if len(fields) == 1:
            image_id = fields[0]
            if any(c in image_id for c in "/\\") or image_id in (".", ".."):
                problems.report(
                    f"expected an image id (a file name without folders), got {image_id!r}", path, lineno
                )
                continue
            image, mask = f"JPEGImages/{image_id}.jpg", f"{mask_dir}/{image_id}.png"
        elif len(fields) == 2:
            image, mask = (f.removeprefix("/") for f in fields)
            image_id = Path(image.replace("\\", "/")).stem
        else:
            problems.report(f"expected '<id>' or '<image path> <mask path>', got {text!r}", path, lineno)
            continue
        entries.append((image_id, image, mask, (str(path), lineno)))
    return entries


def _aug_entries(voc: Path, mask_dir: str) -> list[tuple[str, str, str, Location]]:
    """train_aug without a list: the masks of ``mask_dir`` whose id is not in ``val.txt``."""
    folder = voc / mask_dir
    if not folder.is_dir():
        raise DataError(
            f"no {LISTS}/{AUG_SPLIT}.txt and no {mask_dir}/ folder (SBD's masks) for the train_aug split", voc
        )
    val_list = voc / LISTS / "val.txt"
    val = {text.split()[0] for _, text in read_lines(val_list)} if val_list.is_file() else set()
    ids = sorted(p.stem for p in folder.glob("*.png") if p.stem not in val)
    return [(i, f"JPEGImages/{i}.jpg", f"{mask_dir}/{i}.png", (str(folder / f"{i}.png"), None)) for i in ids]


class VOCSegmentationDataset(MultiLabelDataset):
    """One split of PASCAL VOC 2012 segmentation (module docstring: layout, classes, tags)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        tags: str = "auto",
        aug_dir: str = "SegmentationClassAug",
        classes: str | None = None,
        problems: list[DataError] | None = None,
    ):
        if tags not in TAG_SOURCES:
            raise ConfigError(f"voc option tags must be one of {', '.join(TAG_SOURCES)}, got {tags!r}")
        self.root = root = Path(root)
        if not root.is_dir():
            raise DataError("VOC dataset folder not found", root)
        self.voc = voc = voc_folder(root)
        self.split = split
        names = voc_classes(voc, classes)
        index = {name: k for k, name in enumerate(names)}
        mask_dir = aug_dir if split == AUG_SPLIT else "SegmentationClass"
        report = Problems(problems)
        records = []
        for image_id, image_rel, mask_rel, (file, line) in _list_entries(voc, split, mask_dir, report):
            image = report.resolve(voc, image_rel, file, line)
            mask = report.resolve(voc, mask_rel, file, line)
            if image is None or mask is None:
                continue
            mask = mask if mask.is_file() else None
            record_tags = None
            if tags == "xml" or (tags == "auto" and mask is None):
                xml = report.resolve(voc, f"Annotations/{image_id}.xml", file, line)
                if xml is None:
                    continue
                if tags == "auto" and not xml.is_file():
                    report.report(f"{image_id}: no mask ({mask_rel}) and no annotation file", file, line)
                    continue
                record_tags = _xml_tags(xml, index, report)
                if record_tags is None:
                    continue
            elif mask is None:
                report.report(f"{image_id}: mask not found ({mask_rel})", file, line)
                continue
            records.append(TagRecord(image_id, image, record_tags, mask, (file, line)))
        super().__init__(records, names, transform)


def _xml_tags(path: Path, index: dict[str, int], report: Problems) -> tuple[int, ...] | None:
    """The sorted classes of the objects of a VOC annotation file; None once a problem is reported."""
    try:
        annotation = parse_voc_xml(path, classes=list(index))
    except DataError as exc:
        report.add(exc)
        return None
    return tuple(sorted({index[name] for name in annotation.names}))


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, **options
) -> VOCSegmentationDataset:
    return VOCSegmentationDataset(root, split, transform, problems=problems, **options)


def splits(root: Path, *, aug_dir: str, **options) -> list[str]:
    voc = voc_folder(root)
    found = sorted(p.stem for p in (voc / LISTS).glob("*.txt"))
    if AUG_SPLIT not in found and (voc / aug_dir).is_dir():
        found.append(AUG_SPLIT)
    return found


FORMAT = register_format(
    DatasetFormat(
        name="voc",
        summary="PASCAL VOC 2012 segmentation (JPEGImages, SegmentationClass[Aug], ImageSets/Segmentation)",
        build=build,
        splits=splits,
        options={
            "tags": Option(
                "auto",
                "image tags from the masks, the Annotations XML, or auto (the mask where there is one)",
                str,
                Key("str", "auto", choices=TAG_SOURCES),
            ),
            "aug_dir": Option("SegmentationClassAug", "folder of SBD's masks for the train_aug split"),
            "classes": Option(
                None, "file of class names, one per line (default: class_names.txt or VOC's 20)"
            ),
        },
        check=check_multilabel,
    )
)
