"""The shared dataset class of weakly supervised semantic segmentation (multi-label tags).

The multi-label formats (``voc``, ``coco``, ``multilabel_folder`` in :mod:`bas.data.formats`)
parse their annotation files into a list of :class:`TagRecord` (one per image) and
:class:`MultiLabelDataset` turns a record into the *sample*, with the keys of the WSOL sample
(:mod:`bas.data.datasets`) so that one :func:`~bas.data.datasets.collate` batches both:

``image``
    float tensor ``(3, H, W)`` after the transform;
``label``
    float32 ``(K,)`` multi-hot tag vector (1 for every class present in the image);
``mask``
    uint8 ``(H, W)`` label mask aligned with ``image``, or ``None`` when the image has none:
    0 background, ``c + 1`` for class ``c`` (as VOC numbers them), 255 ignore (also the padding of
    a geometric transform);
``boxes`` / ``ignore``
    an empty ``(0, 4)`` box tensor and ``None`` (the WSOL keys, unused here);
``image_id``
    str, the image's id as the annotation files name it;
``orig_size``
    ``(W, H)`` of the original image file.

Tags come with the record (a tag list, XML objects, COCO annotations) or, when the record has
none (``tags=None``), from the classes present in the *whole* label mask (0 and 255 excluded),
read before any transform, so that a crop cannot change them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bas.data.datasets import Location, RecordDataset, make_tv_sample, open_rgb
from bas.errors import DataError
from bas.io import decode_images
from bas.wsss.masks import IGNORE_INDEX, read_label_png

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class TagRecord:
    """One image of a multi-label dataset: its id and file, its tags (0-based classes; None: the
    classes of its mask), its label-mask file (or None) and the annotation line it comes from."""

    image_id: str
    path: Path
    tags: tuple[int, ...] | None = None
    mask: Path | None = None
    where: Location | None = None


def tags_of_mask(mask: np.ndarray, num_classes: int) -> tuple[int, ...]:
    """The 0-based classes present in a label mask (values ``1..K``; 0 and 255 excluded)."""
    values = np.unique(mask)
    return tuple(int(v) - 1 for v in values if 0 < v <= num_classes)


def multi_hot(tags: Sequence[int], num_classes: int) -> torch.Tensor:
    """A float32 ``(K,)`` vector with 1 at ``tags``."""
    import torch

    vector = torch.zeros(num_classes, dtype=torch.float32)
    vector[list(tags)] = 1.0
    return vector


class MultiLabelDataset(RecordDataset):
    """A list of :class:`TagRecord` plus a transform; yields the sample dict described above.

    ``transform`` is a v2 transform applied to the tv_tensors dict of
    :func:`~bas.data.datasets.make_tv_sample` (the label mask is a uint8 ``tv_tensors.Mask``, so
    it follows every geometric step with nearest interpolation). ``None`` means
    :func:`~bas.data.transforms.normalize_transform`.
    """

    multi_label = True
    tags_required = False  # set by require_tags(): training needs a tag per image

    @property
    def has_boxes(self) -> bool:
        return False

    @property
    def has_masks(self) -> bool:
        return any(r.mask is not None for r in self.records)

    def label_mask(self, index: int, size: tuple[int, int]) -> np.ndarray | None:
        """The uint8 ``(H, W)`` label mask of image ``index`` of size ``(W, H)``, or None.

        Raises:
            DataError: naming the mask file, when it is unreadable, of another size than the
            image, or holds a value that is no class (``K + 1 .. 254``).
        """
        path = self.records[index].mask
        if path is None:
            return None
        mask = read_label_png(path)
        return self._checked(mask, size, path)

    def _checked(self, mask: np.ndarray, size: tuple[int, int], source: str | Path) -> np.ndarray:
        if (mask.shape[1], mask.shape[0]) != tuple(size):
            raise DataError(
                f"label mask is {mask.shape[1]}x{mask.shape[0]} but the image is {size[0]}x{size[1]}", source
            )
        bad = (mask > self.num_classes) & (mask != IGNORE_INDEX)
        if bad.any():
            y, x = np.argwhere(bad)[0]
            raise DataError(
                f"label mask value {int(mask[y, x])} at ({x}, {y}) is no class (0 background, "
                f"1..{self.num_classes}, {IGNORE_INDEX} ignore)",
                source,
            )
        return mask

    def tags(self, index: int, mask: np.ndarray | None = None) -> tuple[int, ...]:
        """The 0-based tags of image ``index``: its record's, or the classes of its ``mask``."""
        record = self.records[index]
        if record.tags is not None:
            return record.tags
        if mask is None:
            mask = self.label_mask(index, open_rgb(record.path).size)
        if mask is None:
            raise DataError(f"{record.image_id}: no tags and no mask", *(record.where or (record.path, None)))
        return tags_of_mask(mask, self.num_classes)

    def require_tags(self) -> None:
        """Refuse images without any tag (a training image needs one to draw from): at once for the
        records whose tags are known, when the sample is read for those whose tags come from its mask.

        Raises:
            DataError: naming the first known-tagless image and its annotation (file and line).
        """
        self.tags_required = True
        for record in self.records:
            if record.tags == ():
                raise no_tags_error(record, TRAINING_NEEDS_TAGS)

    def load(self, index: int) -> tuple[Image.Image, tuple[int, ...], np.ndarray | None]:
        """The original RGB image, its tags and its uint8 label mask (or None)."""
        image = open_rgb(self.records[index].path)
        mask = self.label_mask(index, image.size)
        return image, self.tags(index, mask), mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        self._check_index(index)
        image, tags, mask = self.load(index)
        if self.tags_required and not tags:
            raise no_tags_error(self.records[index], TRAINING_NEEDS_TAGS)
        out = self.transform(make_tv_sample(image, mask=mask))
        mask_t = out["mask"]
        return {
            "image": out["image"].as_subclass(torch.Tensor),
            "label": multi_hot(tags, self.num_classes),
            "boxes": torch.zeros((0, 4), dtype=torch.float32),
            "mask": None if mask_t is None else mask_t.as_subclass(torch.Tensor).to(torch.uint8),
            "ignore": None,
            "image_id": self.records[index].image_id,
            "orig_size": (int(image.size[0]), int(image.size[1])),
        }


TRAINING_NEEDS_TAGS = "; a training image needs at least one (bas data check lists every such image)"


def no_tags_error(record: TagRecord, why: str = "") -> DataError:
    """The error of an image without tags, at its annotation (the list line, else its mask or file)."""
    source = "the image's annotation" if record.tags is not None else f"its mask {record.mask}"
    where = record.where or (record.mask or record.path, None)
    return DataError(f"{record.image_id}: no tags (no class in {source}){why}", *where)


def check_multilabel(
    dataset: MultiLabelDataset, progress: Callable[[int], None] | None = None
) -> list[DataError]:
    """Every problem of a built multi-label split that needs no model: unreadable or truncated
    images (``progress(n)`` counts them), missing, unreadable or wrongly sized masks, mask values
    that are no class, images without any tag, duplicate ids. Returns the problems; raises nothing.
    """
    problems: list[DataError] = []
    seen: set[str] = set()
    for r in dataset.records:
        if r.image_id in seen:
            problems.append(DataError(f"{r.image_id}: duplicate image id", *(r.where or (r.path, None))))
        seen.add(r.image_id)
    sizes = decode_images([r.path for r in dataset.records], progress=progress, exif=False)

    def one(k: int) -> list[DataError]:
        r, size = dataset.records[k], sizes[k]
        if isinstance(size, DataError):
            return [size]
        try:
            tags = dataset.tags(k, dataset.label_mask(k, size))
        except DataError as exc:
            return [exc]
        return [no_tags_error(r)] if not tags else []

    with ThreadPoolExecutor(max_workers=4) as pool:
        for found in pool.map(one, range(len(dataset.records))):
            problems.extend(found)
    return problems


__all__ = ["MultiLabelDataset", "TagRecord", "check_multilabel", "multi_hot", "tags_of_mask"]
