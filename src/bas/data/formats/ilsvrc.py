"""ImageNet (ILSVRC 2012) for localization (``ilsvrc``).

Split ``train``: class folders ``root/train/<wnid>/<image>`` (or ``root`` itself). Other splits:
the validation images ``root/val`` (or ``root``) with their boxes, from the official per-image
Pascal-VOC XML folder, the Kaggle ``LOC_val_solution.csv`` or the BAS ``val_gt.txt``
(``wnid\\\\file width height ; x0 y0 x1 y1 [...]``, a literal double backslash), and labels from the
BAS ``val_list.txt`` (``path;label``) or from the wnids.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bas.data.datasets import Location, Record, WSOLDataset
from bas.data.formats.bas_list import read_label_list
from bas.data.formats.folder import ImageFolderDataset, class_folders
from bas.data.formats.registry import DatasetFormat, Option, first_existing, register_format
from bas.data.parsing import Problems, box_error, boxes_from_flat, parse_floats, parse_int, read_lines
from bas.data.paths import resolve_in_root
from bas.errors import DataError


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


# ----------------------------------------------------------------------------- validation


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
    report = Problems(problems)
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
            values = parse_floats(
                [(obj.findtext(f"bndbox/{k}") or "").strip() for k in ("xmin", "ymin", "xmax", "ymax")]
            )
            if not name or values is None or box_error(values):
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
        size_values = [parse_int((root.findtext(f"size/{k}") or "").strip()) for k in ("width", "height")]
        size = (size_values[0], size_values[1]) if None not in size_values else None
        filename = (root.findtext("filename") or path.stem).strip()
        image_id = filename if Path(filename).suffix else filename + ".JPEG"
        out.append(ValAnnotation(image_id, wnids, boxes, size, (str(path), None)))  # type: ignore[arg-type]
    return out


def parse_loc_solution_csv(path: str | Path, problems: list[DataError] | None = None) -> list[ValAnnotation]:
    """Kaggle ``LOC_val_solution.csv``: ``ImageId,PredictionString`` = ``wnid x0 y0 x1 y1`` repeated."""
    path = Path(path)
    report = Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        if lineno == 1 and text.replace(" ", "").lower().startswith("imageid,"):
            continue
        image_id, sep, prediction = text.partition(",")
        tokens = prediction.split()
        ok = bool(sep and image_id.strip() and tokens and len(tokens) % 5 == 0)
        groups = [tokens[i : i + 5] for i in range(0, len(tokens), 5)] if ok else []
        values = [parse_floats(g[1:]) for g in groups]
        if not ok or any(v is None or box_error(v) for v in values):
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
    report = Problems(problems)
    out = []
    for lineno, text in read_lines(path):
        head, sep, tail = text.partition(";")
        fields = head.split()
        size = [parse_int(t) for t in fields[1:]]
        values = parse_floats(tail.split())
        if not sep or len(fields) != 3 or None in size or not values or len(values) % 4:
            report.report(
                f"expected 'wnid\\\\file width height ; x0 y0 x1 y1 [...]', got {text!r}", path, lineno
            )
            continue
        bad = [b for b in boxes_from_flat(values) if box_error(b)]
        if bad:
            report.report(box_error(bad[0]) or "", path, lineno)
            continue
        if not report.contained(fields[0], path, lineno):
            continue
        image_id = "/".join(p for p in fields[0].replace("\\", "/").split("/") if p)
        out.append(ValAnnotation(image_id, [], values, (size[0], size[1]), (str(path), lineno)))  # type: ignore[arg-type]
    return out


def load_wnids(source: str | Path | Sequence[str]) -> list[str]:
    """The ordered wnid list: a list as given, a train folder (sorted sub-folders), or a synsets
    file (first token of each line, e.g. ``LOC_synset_mapping.txt`` or ``synsets.txt``, in file order)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            return class_folders(path)
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
        report = Problems(problems)
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

        entries = [
            e
            for e in entries
            if report.contained(e[0], *e[2].where) and (not e[3] or report.contained(e[3], *e[2].where))
        ]
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
                    boxes_from_flat(ann.boxes),
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
            lambda i, w: resolve_in_root(d, i),
            lambda i, w: resolve_in_root(d, _basename(i)),
            lambda i, w: resolve_in_root(d, f"{w}/{_basename(i)}"),
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


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, *, boxes, classes, val_list
) -> WSOLDataset:
    if split == "train":  # the validation options of a shared config do not apply
        train_dir = root / "train" if (root / "train").is_dir() else root
        return ILSVRCTrainDataset(train_dir, transform, classes=classes, problems=problems)
    boxes = boxes or first_existing(root / "LOC_val_solution.csv", root / "val_gt.txt")
    if boxes is None:
        raise DataError(
            "no ILSVRC validation boxes: pass boxes=<XML folder | LOC_val_solution.csv | val_gt.txt>", root
        )
    if classes is None:
        classes = first_existing(root / "train", root / "LOC_synset_mapping.txt")
    if val_list is None and detect_box_format(boxes) == "val_gt":
        val_list = first_existing(root / "val_list.txt")
    image_dir = root / "val" if (root / "val").is_dir() else root
    return ILSVRCValDataset(
        image_dir, boxes, transform, classes=classes, val_list=val_list, problems=problems
    )


def splits(root: Path, **options) -> list[str]:
    return ["train", "val"] if (root / "train").is_dir() and (root / "val").is_dir() else ["val"]


FORMAT = register_format(
    DatasetFormat(
        name="ilsvrc",
        summary="ImageNet: train class folders; val boxes from XML, LOC_val_solution.csv or val_gt.txt",
        build=build,
        splits=splits,
        options={
            "boxes": Option(None, "XML folder, LOC_val_solution.csv or val_gt.txt (default: found in root)"),
            "classes": Option(None, "train folder or synsets file giving the wnid order"),
            "val_list": Option(None, "BAS val_list.txt (path;label)"),
        },
    )
)
