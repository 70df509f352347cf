"""The shared dataset class of weakly supervised object localization.

Every dataset is a :class:`WSOLDataset`: the constructor of its format (one module per kind in
:mod:`bas.data.formats`, behind a registry) parses the annotation
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
of raising (the offending lines are skipped); ``bas data check`` uses that to list them all. Paths
that annotation files name are contained in the dataset root by :mod:`bas.data.paths`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from bas.data.parsing import NO_BOXES, box_error, box_outside, read_lines
from bas.errors import DataError
from bas.io import decode_images, read_image

if TYPE_CHECKING:
    import torch
    from torchvision import tv_tensors

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SPLITS = ("train", "val", "test")
#: Grey value above which a mask pixel counts as foreground (masks are 0/255 PNGs).
MASK_THRESHOLD = 127

Location = tuple[str, int | None]


# ----------------------------------------------------------------------------- records


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
    boxes: np.ndarray = field(default_factory=lambda: NO_BOXES)
    masks: tuple[Path, ...] = ()
    ignore: Path | None = None
    size: tuple[int, int] | None = None
    where: Location | None = None


# ----------------------------------------------------------------------------- image and mask files


def open_rgb(path: str | Path) -> Image.Image:
    """A dataset image as RGB in its stored pixel frame (:func:`bas.io.read_image` without the EXIF
    rotation: annotation boxes are in that frame, as the reference code reads the images)."""
    return read_image(path, exif=False)


def read_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG as bool ``(H, W)`` (grey > 127), resized (nearest) to ``size = (W, H)``."""
    grey = read_image(path, "L", what="mask", exif=False)
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

    ``image`` is a PIL image or a uint8 ``(3, H, W)`` tensor; ``boxes`` ``(M, 4)`` XYXY pixels;
    ``mask`` a bool foreground mask or a uint8 label mask (kept uint8), ``ignore`` a bool mask.
    """
    import torch
    from torchvision import tv_tensors
    from torchvision.transforms import v2

    if isinstance(image, Image.Image):
        image = v2.functional.pil_to_tensor(image)
    height, width = image.shape[-2:]
    box_tensor = torch.tensor(np.asarray(NO_BOXES if boxes is None else boxes, dtype=np.float32))
    return {
        "image": tv_tensors.Image(image),
        "boxes": tv_tensors.BoundingBoxes(
            box_tensor.reshape(-1, 4), format="XYXY", canvas_size=(height, width)
        ),
        "mask": _as_mask(mask),
        "ignore": _as_mask(ignore),
    }


def _as_mask(mask: np.ndarray | torch.Tensor | None) -> tv_tensors.Mask | None:
    """A uint8 label mask stays uint8 (class indices, 255 ignore); any other mask becomes bool."""
    if mask is None:
        return None
    import torch
    from torchvision import tv_tensors

    t = torch.as_tensor(mask)
    return tv_tensors.Mask(t if t.dtype == torch.uint8 else t.bool())


def _plain(t: Any) -> Any:
    import torch

    return None if t is None else t.as_subclass(torch.Tensor)


# ----------------------------------------------------------------------------- the shared dataset


class RecordDataset:
    """What every dataset of the package shares: its records (one per image), its class names
    and its transform (``None``: :func:`~bas.data.transforms.normalize_transform`).

    A map-style dataset for :class:`torch.utils.data.DataLoader` (``__getitem__`` and
    ``__len__``; ``a + b`` concatenates, as for torch's datasets). It does not derive from torch's
    ``Dataset`` class so that the format registry (names, options) imports without torch.
    """

    def __init__(self, records: Sequence[Any], classes: Sequence[str], transform: Callable | None = None):
        from bas.data.transforms import normalize_transform

        self.records = list(records)
        self.classes = list(classes)
        self.transform = normalize_transform() if transform is None else transform

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_ids(self) -> list[str]:
        return [r.image_id for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def _check_index(self, index: int) -> None:
        if not -len(self.records) <= index < len(self.records):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.records)} images")

    def __add__(self, other: Any) -> Any:
        from torch.utils.data import ConcatDataset

        return ConcatDataset([self, other])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"


class WSOLDataset(RecordDataset):
    """A list of :class:`Record` plus a transform; yields the sample dict described above.

    ``transform`` is a v2 transform applied to the tv_tensors dict of :func:`make_tv_sample`
    (image, boxes and masks move together). ``None`` means :func:`normalize_transform`: the image
    keeps its size and boxes stay in original pixels.
    """

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    @property
    def has_boxes(self) -> bool:
        return any(len(r.boxes) for r in self.records)

    @property
    def has_masks(self) -> bool:
        return any(r.masks for r in self.records)

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
        import torch

        self._check_index(index)
        record = self.records[index]
        image, mask, ignore = self.load(index)
        for box in record.boxes:
            if (msg := box_error(box) or box_outside(box, image.size)) is not None:
                raise DataError(f"{record.image_id}: {msg}", *(record.where or (record.path, None)))
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


def collate(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (a top-level function, so DataLoader workers can pickle it).

    ``image`` ``(B, ...)``, ``label`` ``(B,)`` int64 (class indices) or ``(B, K)`` float32
    (multi-hot tags), ``boxes`` list of ``(Mi, 4)``, ``mask`` and ``ignore`` ``(B, H, W)`` (bool, or
    uint8 label masks) or None (None when any sample lacks one), ``image_id`` list, ``orig_size``
    ``(B, 2)`` int64 ``(W, H)``.
    """
    import torch

    if not batch:
        raise ValueError("collate: empty batch")

    def stack_optional(key: str) -> torch.Tensor | None:
        items = [s.get(key) for s in batch]
        return None if any(m is None for m in items) else torch.stack(items)

    return {
        "image": torch.stack([s["image"] for s in batch]),
        "label": _stack_labels([s["label"] for s in batch]),
        "boxes": [s["boxes"] for s in batch],
        "mask": stack_optional("mask"),
        "ignore": stack_optional("ignore"),
        "image_id": [s["image_id"] for s in batch],
        "orig_size": torch.tensor([list(s["orig_size"]) for s in batch], dtype=torch.int64).reshape(-1, 2),
    }


def _stack_labels(labels: Sequence[Any]) -> torch.Tensor:
    import torch

    if isinstance(labels[0], torch.Tensor) and labels[0].dim() == 1:
        return torch.stack(labels).to(torch.float32)
    return torch.tensor([int(label) for label in labels], dtype=torch.int64)


# ----------------------------------------------------------------------------- validation


def image_size(path: str | Path) -> tuple[int, int]:
    """``(W, H)`` of the fully decoded image in its stored frame (:func:`open_rgb`); DataError on failure."""
    return open_rgb(path).size


def check_dataset(dataset: WSOLDataset, progress: Callable[[int], None] | None = None) -> list[DataError]:
    """Every problem of a built dataset that does not need a model: unreadable or truncated images
    (each decoded fully, in a thread pool; ``progress(n)`` counts them), missing masks, labels out
    of range, duplicate ids, sizes that disagree with the annotation, boxes outside the image or
    inverted. Returns the problems; raises nothing."""
    problems: list[DataError] = []
    seen: dict[str, int] = {}
    decoded = decode_images([r.path for r in dataset.records], progress=progress, exif=False)
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
            msg = box_error(box)
            if msg is None and size is not None:
                msg = box_outside(box, size)
            if msg is not None:
                problems.append(DataError(f"{r.image_id}: {msg}", *where))
    return problems


def check_num_classes(dataset: WSOLDataset, num_classes: int, model: str = "the model") -> None:
    """DataError naming the annotation line of the first image whose label the model cannot
    predict (``label >= num_classes``): where a model meets a dataset (``bas evaluate``,
    ``bas train`` with a set ``model.num_classes`` or ``--resume``). A multi-label dataset's tag
    vectors have its class count, which the model must have."""
    if getattr(dataset, "multi_label", False):
        if dataset.num_classes != num_classes:
            raise DataError(
                f"the dataset has {dataset.num_classes} classes but {model} has {num_classes} "
                "(multi-hot tags need the same count; model.num_classes=null takes the dataset's)",
                getattr(dataset, "root", None),
            )
        return
    for r in getattr(dataset, "records", ()):
        if not 0 <= r.label < num_classes:
            file, line = r.where or (r.image_id, None)
            raise DataError(
                f"{r.image_id}: label {r.label} but {model} has {num_classes} classes (0..{num_classes - 1}); "
                f"the dataset has {dataset.num_classes}",
                file,
                line,
            )


# ----------------------------------------------------------------------------- format names

# The format modules import this one, so their names are re-exported lazily (existing imports
# such as ``from bas.data.datasets import CUBDataset`` keep working).
_FROM_FORMATS = {
    "BASListDataset": "bas_list",
    "read_label_list": "bas_list",
    "CUBDataset": "cub",
    "ImageFolderDataset": "folder",
    "ILSVRCTrainDataset": "ilsvrc",
    "ILSVRCValDataset": "ilsvrc",
    "detect_box_format": "ilsvrc",
    "load_wnids": "ilsvrc",
    "parse_loc_solution_csv": "ilsvrc",
    "parse_val_gt": "ilsvrc",
    "parse_val_xml_dir": "ilsvrc",
    "WSOLMetadataDataset": "wsol",
    "available_splits": "registry",
    "build_dataset": "registry",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name == "DATASET_KINDS":
        from bas.data.formats import list_formats

        return tuple(list_formats())
    if name in _FROM_FORMATS:
        importlib.import_module("bas.data.formats")
        return getattr(importlib.import_module(f"bas.data.formats.{_FROM_FORMATS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "IMAGE_EXTENSIONS",
    "SPLITS",
    "Record",
    "RecordDataset",
    "WSOLDataset",
    "check_dataset",
    "check_num_classes",
    "collate",
    "image_size",
    "make_tv_sample",
    "open_rgb",
    "read_lines",
    "read_mask",
]
