"""MS COCO instances (``coco``): image-level tags and label masks rendered from the polygons / RLE.

Layout (COCO 2014, as released)::

    annotations/instances_<split>.json     images, annotations (segmentation, iscrowd), categories
    <split>/<file_name>                    the images, e.g. train2014/COCO_train2014_000000000009.jpg

``split`` is ``train2014`` / ``val2014`` (``train`` / ``val`` mean the same with option ``year``,
default 2014). Classes: the JSON's categories in increasing id order, mapped to contiguous
indices (COCO's 80 ids 1..90 with gaps become 0..79), named by their ``name``.

Tags: the categories of every annotation of the image (crowd ones included: the class is in the
image). Images without annotations are left out (their tag vector would be empty), unless
``keep_empty`` is true. Masks (option ``masks``, default true) are rendered when a sample is
loaded, with pycocotools (the ``coco`` extra): 0 background, ``c + 1`` for class ``c``, crowd
regions 255 (ignore), then the objects painted over them from the largest to the smallest area,
so a small object in front of a large one keeps its pixels.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bas._optional import require
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.multilabel import MultiLabelDataset, TagRecord, check_multilabel
from bas.data.parsing import Problems
from bas.data.paths import check_inside
from bas.errors import DataError
from bas.schema import Key
from bas.wsss.masks import IGNORE_INDEX

#: One object of an image: (class index, segmentation, is crowd, area).
Annotation = tuple[int, Any, bool, float]


def split_name(split: str, year: str) -> str:
    """``train`` -> ``train2014`` (with ``year`` 2014); a name that ends in digits is kept."""
    return split if split[-1:].isdigit() else f"{split}{year}"


def _load_json(path: Path) -> dict:
    try:
        with path.open("rb") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise DataError("COCO annotation file not found", path) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON ({exc.msg}, column {exc.colno})", path, exc.lineno) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise DataError(f"cannot read the COCO annotation file ({exc})", path) from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "categories")):
        raise DataError("not a COCO instances file (needs the lists 'images' and 'categories')", path)
    return data


def _int_field(entry: Any, key: str) -> int | None:
    value = entry.get(key) if isinstance(entry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class COCODataset(MultiLabelDataset):
    """One split of a COCO instances release (module docstring: layout, classes, tags, masks)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train2014",
        transform: Callable | None = None,
        year: str = "2014",
        masks: bool = True,
        keep_empty: bool = False,
        problems: list[DataError] | None = None,
    ):
        self.root = root = Path(root)
        if not root.is_dir():
            raise DataError("COCO dataset folder not found", root)
        self.split = name = split_name(split, str(year))
        self.json_path = path = root / "annotations" / f"instances_{name}.json"
        check_inside(root, path)
        data = _load_json(path)
        report = Problems(problems)

        categories: dict[int, str] = {}
        for k, entry in enumerate(data["categories"]):
            cid, cname = _int_field(entry, "id"), entry.get("name") if isinstance(entry, dict) else None
            if cid is None or not isinstance(cname, str) or cid in categories:
                report.report(
                    f"categories[{k}]: needs a new integer 'id' and a 'name', got {entry!r:.80}", path
                )
                continue
            categories[cid] = cname
        ids = sorted(categories)
        index = {cid: k for k, cid in enumerate(ids)}
        self.category_ids = ids

        objects: dict[int, list[Annotation]] = {}
        for k, ann in enumerate(data.get("annotations") or []):
            image_id, cid = _int_field(ann, "image_id"), _int_field(ann, "category_id")
            if image_id is None or cid not in index:
                got = ann.get("category_id") if isinstance(ann, dict) else ann
                report.report(
                    f"annotations[{k}]: needs an integer image_id and a known category_id, got {got!r:.80}",
                    path,
                )
                continue
            if masks and not isinstance(ann.get("segmentation"), (list, dict)):
                report.report(f"annotations[{k}] (id {ann.get('id')}): no segmentation", path)
                continue
            area = ann.get("area")
            crowd = bool(ann.get("iscrowd", 0))
            objects.setdefault(image_id, []).append(
                (
                    index[cid],
                    ann.get("segmentation"),
                    crowd,
                    float(area) if isinstance(area, (int, float)) else 0.0,
                )
            )

        images = root / name
        records, self.objects, self.sizes = [], [], []
        seen: set[int] = set()
        for k, entry in enumerate(data["images"]):
            image_id, width, height = (_int_field(entry, key) for key in ("id", "width", "height"))
            file_name = entry.get("file_name") if isinstance(entry, dict) else None
            if (
                image_id is None
                or not isinstance(file_name, str)
                or not width
                or not height
                or image_id in seen
            ):
                report.report(
                    f"images[{k}]: needs a new integer 'id', 'file_name', 'width' and 'height', got {entry!r:.80}",
                    path,
                )
                continue
            seen.add(image_id)
            found = objects.get(image_id, [])
            if not found and not keep_empty:
                continue
            image = report.resolve(images, file_name, path, None)
            if image is None:
                continue
            tags = tuple(sorted({obj[0] for obj in found}))
            records.append(TagRecord(file_name, image, tags, None, (str(path), None)))
            self.objects.append(found)
            self.sizes.append((width, height))
        unknown = set(objects) - seen
        if unknown:
            report.report(
                f"{len(unknown)} annotation(s) name an image id not in 'images', e.g. {min(unknown)}", path
            )
        self.render_masks = bool(masks)
        super().__init__(records, [categories[c] for c in ids], transform)

    @property
    def has_masks(self) -> bool:
        return self.render_masks and bool(self.records)

    def label_mask(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        """The label mask rendered from the image's annotations (module docstring), or None."""
        if not self.render_masks:
            return None
        width, height = self.sizes[index]
        mask = render_mask(self.objects[index], width, height, self.records[index].image_id)
        return self._checked(mask, size, f"{self.json_path} (image {self.records[index].image_id})")


def render_mask(objects: list[Annotation], width: int, height: int, what: str = "") -> np.ndarray:
    """uint8 ``(height, width)``: crowd regions 255, then the objects (``c + 1``) largest first."""
    mask_utils = require("pycocotools.mask", "coco", "COCO masks")
    mask = np.zeros((height, width), dtype=np.uint8)
    ordered = sorted(objects, key=lambda o: (not o[2], -o[3]))  # crowd first, then by decreasing area
    if not ordered:
        return mask
    try:
        rles = [_rle(mask_utils, segmentation, height, width) for _, segmentation, _, _ in ordered]
        with warnings.catch_warnings():  # pycocotools' own NumPy 2 deprecation, not the user's
            warnings.filterwarnings("ignore", "__array__ implementation", DeprecationWarning)
            pixels = mask_utils.decode(rles).astype(bool)  # (H', W', N), one decode for all objects
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise DataError(f"image {what}: unreadable segmentation ({exc})") from None
    if pixels.shape[:2] != mask.shape:
        raise DataError(
            f"image {what}: a segmentation of size {pixels.shape[1::-1]} in a {width}x{height} image"
        )
    for k, (label, _, crowd, _) in enumerate(ordered):
        mask[pixels[:, :, k]] = IGNORE_INDEX if crowd else label + 1
    return mask


def _rle(mask_utils: Any, segmentation: Any, height: int, width: int) -> dict:
    """One compressed RLE of a polygon list, an uncompressed RLE or a compressed one."""
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation.get("counts"), list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, **options
) -> COCODataset:
    return COCODataset(root, split, transform, problems=problems, **options)


def splits(root: Path, **options) -> list[str]:
    folder = root / "annotations"
    return sorted(p.stem.removeprefix("instances_") for p in folder.glob("instances_*.json"))


FORMAT = register_format(
    DatasetFormat(
        name="coco",
        summary="MS COCO instances (annotations/instances_<split>.json, <split>/ images), masks via pycocotools",
        build=build,
        splits=splits,
        options={
            "year": Option("2014", "year of the split names: train -> train<year>"),
            "masks": Option(
                True, "render the label masks (needs pycocotools: the 'coco' extra)", None, Key("bool")
            ),
            "keep_empty": Option(
                False, "keep the images without annotations (empty tags)", None, Key("bool")
            ),
        },
        check=check_multilabel,
    )
)
