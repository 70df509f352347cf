"""Evaluate saved score maps with the standard WSOL protocol (clovaai/wsolevaluation layout).

Inputs:

* Score maps: one ``.npy`` per image at ``<maps_root>/<image_id>.npy``, the id keeping its own
  extension (``001.Black_footed_Albatross/X.jpg.npy``); a square float array (``S x S``, 224 in
  the papers, any side accepted, the same for every image) with values in [0, 1] covering the
  whole image resized to ``S x S`` (no crop).
* Metadata: a split folder of the standard metadata (:mod:`bas.data.metadata`).
  ``bas evaluate --save-maps DIR`` writes both: the maps under ``DIR`` and the metadata in
  ``DIR/metadata`` (:func:`write_metadata`).
* CUB / ILSVRC boxes are moved to map coordinates as wsolevaluation's ``resize_bbox`` does
  (:func:`boxes_to_map`): ``int(x * S / width)`` for x0 and x1, ``int(y * S / height)`` for y0
  and y1, with the size from ``image_sizes.txt`` (or, when it has none, read from
  ``<image_root>/<image_id>``).
* OpenImages masks: every PNG is read as grayscale, resized to ``S x S`` with nearest-neighbour
  interpolation and binarised with ``> 0.5``; the instance masks of an image are OR-ed into the
  foreground, and the ignore region is the OR of its ignore PNGs minus the foreground. Paths are
  relative to ``<mask_root>/OpenImages/`` (wsolevaluation's layout) when that folder exists, else
  to ``mask_root`` itself.

MaxBoxAcc is multi-contour by default (every contour's box, the best IoU counts), as MaxBoxAccV2
defines it; the mean over the IoU thresholds is named by :func:`box_summary_name`.

``protocol="cvpr2022-code"`` / ``"ijcv2023-code"`` (:mod:`bas.protocols`) score the boxes as the
papers' scripts do instead: at one fixed ``threshold``, ``map > threshold``, the largest
8-connected component (raster order on equal areas), the protocol's ground-truth arithmetic
(applied to maps of the whole image: ``x * S / W``, no crop offset), its IoU comparison and its
mean. The conventions that act before a map exists (input resizing, crop, normalisation eps,
top-k, ten-crop) cannot be applied to saved maps; the maps are taken as they are.

Every input is checked before it is used; a problem raises :class:`bas.errors.DataError` naming
the file. Reading writes nothing; the writers (:func:`write_score_maps`, :func:`write_metadata`,
:func:`write_curve_csv`) write atomically.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from bas.data.metadata import WSOLMetadata, load_metadata
from bas.data.paths import resolve_in_root
from bas.errors import ConfigError, DataError
from bas.io import atomic_open, path_inside, write_text
from bas.metrics import BoxEvaluator, MaskEvaluator, best_iou, iou_fractions, iou_percent
from bas.protocols import STANDARD, Protocol, box_accuracy, get_protocol, protocol_boxes

__all__ = [
    "DATASETS",
    "MAP_SIZE",
    "METADATA_FOLDER",
    "STANDARD_IOU_THRESHOLDS",
    "box_summary_name",
    "boxes_to_map",
    "evaluate_score_maps",
    "load_score_map",
    "score_map_path",
    "write_curve_csv",
    "write_metadata",
    "write_score_maps",
]

DATASETS = ("CUB", "ILSVRC", "OpenImages")
#: Map side of the papers (maps of any square side are accepted).
MAP_SIZE = 224
#: Where ``bas evaluate --save-maps DIR`` puts the metadata of the saved maps: ``DIR/metadata``.
METADATA_FOLDER = "metadata"
#: The IoU thresholds of MaxBoxAccV2.
STANDARD_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
# Maps read from disk before each accumulate call (256 float32 maps = 51 MB).
_LOAD_BATCH = 256


def box_summary_name(multi_contour: bool, iou_thresholds: Sequence[float]) -> str:
    """Name of the mean of MaxBoxAcc over the IoU thresholds.

    ``"MaxBoxAccV2"`` only for multi-contour boxes at IoU 0.3/0.5/0.7 (its definition);
    ``"MaxBoxAcc (largest contour)"`` for the largest contour at those thresholds; otherwise the
    contour mode and the thresholds are spelled out (``"MaxBoxAcc (multi-contour, IoU 50)"``).
    """
    thresholds = iou_fractions(iou_thresholds)
    standard = thresholds == STANDARD_IOU_THRESHOLDS
    if multi_contour and standard:
        return "MaxBoxAccV2"
    mode = "multi-contour" if multi_contour else "largest contour"
    return (
        f"MaxBoxAcc ({mode})"
        if standard
        else f"MaxBoxAcc ({mode}, IoU {'/'.join(map(iou_percent, thresholds))})"
    )


def boxes_to_map(boxes: np.ndarray, image_size: tuple[int, int], map_size: int) -> np.ndarray:
    """Boxes ``(M, 4)`` in image pixels moved to an ``S x S`` map of the whole image, the protocol's
    way: ``trunc(x * S / width)``, ``trunc(y * S / height)`` (``image_size = (width, height)``)."""
    width, height = image_size
    scale = np.array([width, height, width, height], dtype=np.float64)
    return np.trunc(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * float(map_size) / scale)


def score_map_path(maps_root: str | Path, image_id: str) -> Path:
    """``<maps_root>/<image_id>.npy`` (an id that would lead outside ``maps_root`` is refused)."""
    return path_inside(maps_root, image_id, ".npy")


def write_score_maps(maps_root: str | Path, image_ids: Sequence[str], maps: np.ndarray) -> None:
    """Write maps in the standard layout: ``<maps_root>/<image_id>.npy`` (float32, [0, 1])."""
    paths = [score_map_path(maps_root, image_id) for image_id in image_ids]
    for path, scoremap in zip(paths, maps):
        with atomic_open(path, "wb") as fh:
            np.save(fh, np.asarray(scoremap, dtype=np.float32))


def _number(value: float) -> str:
    """Shortest text that reads back as the same float64 (``60`` for whole numbers)."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def write_metadata(
    folder: str | Path,
    entries: Sequence[tuple[str, int, tuple[int, int], np.ndarray]],
) -> Path:
    """Write one split of the standard metadata (the format :func:`bas.data.metadata.load_metadata`
    reads): ``image_ids.txt``, ``class_labels.txt``, ``image_sizes.txt`` and, when any image has
    boxes, ``localization.txt`` (one line per box, image pixels).

    Args:
        folder: the split folder to write.
        entries: ``(image_id, label, (width, height), boxes (M, 4))`` per image, in split order.
    """
    folder = Path(folder)
    ids = [e[0] for e in entries]
    for image_id in ids:
        path_inside(folder, image_id)  # the same ids name the maps
        if image_id != image_id.strip() or "\n" in image_id or "\r" in image_id:
            raise DataError(
                f"image id {image_id!r} cannot be written to the metadata (white space at an end, or a line break)"
            )
    write_text(folder / "image_ids.txt", "".join(f"{i}\n" for i in ids))
    write_text(folder / "class_labels.txt", "".join(f"{i},{int(label)}\n" for i, label, _, _ in entries))
    write_text(folder / "image_sizes.txt", "".join(f"{i},{int(w)},{int(h)}\n" for i, _, (w, h), _ in entries))
    lines = [
        f"{i},{','.join(_number(v) for v in box)}\n"
        for i, _, _, boxes in entries
        for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ]
    if lines:
        write_text(folder / "localization.txt", "".join(lines))
    return folder


def load_score_map(path: str | Path, side: int | None = None) -> np.ndarray:
    """Read one score map and check it: a square float array (``side x side`` when given), no NaN,
    values in [0, 1]."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError("score map not found", path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read the score map ({exc})", path) from None
    if not isinstance(arr, np.ndarray):
        raise DataError("expected a .npy array, found an .npz archive", path)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1] or arr.shape[0] == 0:
        raise DataError(f"score map has shape {arr.shape}, expected a square (S, S) map", path)
    if side is not None and arr.shape[0] != side:
        raise DataError(
            f"score map has shape {arr.shape}, expected ({side}, {side}) like the first map", path
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(f"score map must be floating point, got {arr.dtype}", path)
    if np.isnan(arr).any():
        raise DataError("score map contains NaN", path)
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > 1:
        raise DataError(f"score map values must be in [0, 1], got min {low} and max {high}", path)
    return arr


def _image_size(meta: WSOLMetadata, image_id: str, image_root: Path | None) -> tuple[int, int]:
    if image_id in meta.sizes:
        return meta.sizes[image_id]
    sizes_file = meta.root / "image_sizes.txt"
    if image_root is None:
        raise DataError(
            f"no size for image {image_id!r}; pass the image root to read it from the image", sizes_file
        )
    path = resolve_in_root(
        image_root, image_id, file=meta.root / "image_ids.txt", line=meta.lines.get(image_id)
    )
    try:  # the stored pixel frame, without EXIF rotation, as datasets read images (boxes are in it)
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError("image not found (needed for its size)", path) from None
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read the image ({exc})", path) from None


def _resized_boxes(meta: WSOLMetadata, image_root: Path | None, side: int) -> list[np.ndarray]:
    """Ground-truth boxes of every image in ``side x side`` map coordinates (:func:`boxes_to_map`)."""
    return [
        boxes_to_map(meta.boxes[image_id], _image_size(meta, image_id, image_root), side)
        for image_id in meta.image_ids
    ]


def _mask_base(mask_root: Path) -> Path:
    nested = mask_root / "OpenImages"
    return nested if nested.is_dir() else mask_root


def _read_mask(path: Path, side: int) -> np.ndarray:
    """A mask PNG as a ``side x side`` bool array (nearest-neighbour resize, then ``> 0.5``)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError("cannot read the mask image", path)
    resized = cv2.resize(image.astype(np.float32), (side, side), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def _mask_files(base: Path, entries: Sequence[tuple[str, str | None]]) -> tuple[list[Path], list[Path]]:
    masks = [base / mask for mask, _ in entries]
    ignores = [base / ignore for _, ignore in entries if ignore]
    return masks, ignores


def _load_masks(
    base: Path, entries: Sequence[tuple[str, str | None]], side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (OR of the instance masks) and ignore region (OR of the ignore masks minus it)."""
    masks, ignores = _mask_files(base, entries)
    foreground = np.zeros((side, side), dtype=bool)
    for path in masks:
        foreground |= _read_mask(path, side)
    ignore = np.zeros_like(foreground)
    for path in ignores:
        ignore |= _read_mask(path, side)
    return foreground, ignore & ~foreground


def _batches(n: int) -> list[slice]:
    return [slice(i, min(i + _LOAD_BATCH, n)) for i in range(0, n, _LOAD_BATCH)]


def evaluate_score_maps(
    maps_root: str | Path,
    metadata_dir: str | Path,
    dataset: str | None = None,
    mask_root: str | Path | None = None,
    interval: float = 0.001,
    multi_contour: bool = True,
    iou_thresholds: Sequence[float] = STANDARD_IOU_THRESHOLDS,
    image_root: str | Path | None = None,
    num_workers: int | None = None,
    protocol: str | Protocol = STANDARD,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Evaluate the saved score maps of one split.

    Args:
        maps_root: folder of ``<image_id>.npy`` maps (square, all of one side).
        metadata_dir: the split folder of the metadata (``metadata/CUB/test``).
        dataset: ``"CUB"`` or ``"ILSVRC"`` (boxes: MaxBoxAcc) or ``"OpenImages"`` (masks: PxAP);
            None: boxes or masks, whichever ``localization.txt`` holds.
        mask_root: root of the OpenImages mask PNGs (required for masks).
        interval: score-threshold step (0.001 in the paper tables).
        multi_contour: box of every contour (True, the MaxBoxAccV2 protocol) or of the largest one
            (wsolevaluation's MaxBoxAcc default).
        iou_thresholds: IoU thresholds, fractions (percentages are deprecated).
        image_root: where to read image sizes missing from ``image_sizes.txt`` (boxes only).
        num_workers: processes for the box evaluation (None: every available core).
        protocol: ``standard`` (MaxBoxAcc, PxAP) or a papers'-code preset (boxes at ``threshold``,
            see the module doc).
        threshold: the score threshold of a papers'-code preset (required there).

    Returns:
        ``dataset``, ``num_images``, ``interval``, ``map_size`` and, for boxes,
        ``multi_contour``, ``iou_thresholds``, ``MaxBoxAcc`` ``{iou: percent}``, their mean under
        :func:`box_summary_name` (``MaxBoxAccV2`` for the standard setting), ``best_threshold``
        ``{iou: threshold}``; for masks ``PxAP``, ``PIoU``, ``PIoU_threshold``; and ``curve``
        (arrays, for :func:`write_curve_csv`). A papers'-code preset gives ``protocol``,
        ``threshold``, ``gt_known_loc`` and ``box_acc`` ``{iou: percent}`` instead, and ``per_image``
        (``image_ids``, ``iou``).
    """
    protocol = get_protocol(protocol)
    if not protocol.max_box_acc and threshold is None:
        raise ConfigError(
            f"protocol {protocol.name} scores boxes at one score threshold: give it (--threshold); "
            "the papers' values per dataset and architecture are in docs/protocols.md"
        )
    if dataset is not None and dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    kind = None if dataset is None else "masks" if dataset == "OpenImages" else "boxes"
    meta = load_metadata(metadata_dir, kind=kind)
    loc_file = meta.root / "localization.txt"
    if meta.kind is None:
        raise DataError("the evaluation needs boxes or masks in localization.txt", loc_file)
    if kind is not None and meta.kind != kind:
        raise DataError(f"{dataset} evaluation needs {kind} in localization.txt", loc_file)
    kind = meta.kind
    if kind == "masks" and not protocol.max_box_acc:
        raise ConfigError(
            f"protocol {protocol.name} scores boxes; masks are evaluated by the standard protocol"
        )
    if kind == "masks" and mask_root is None:
        raise ConfigError("mask evaluation needs the mask root (the folder holding OpenImages/)")

    # Check that every input exists before the long part starts.
    map_paths = [score_map_path(maps_root, image_id) for image_id in meta.image_ids]
    for path in map_paths:
        if not path.is_file():
            raise DataError("score map not found", path)
    side = load_score_map(map_paths[0]).shape[0]
    result: dict[str, Any] = {
        "dataset": dataset,
        "num_images": len(meta.image_ids),
        "interval": interval,
        "map_size": side,
    }

    def load(batch: slice) -> np.ndarray:
        return np.stack([load_score_map(p, side) for p in map_paths[batch]])

    if kind == "boxes" and not protocol.max_box_acc:
        from bas.localization import maps_to_boxes  # imports torch, which the standard path does not need

        root = None if image_root is None else Path(image_root)
        gt = [
            protocol_boxes(protocol, meta.boxes[i], _image_size(meta, i, root), side) for i in meta.image_ids
        ]
        ious = np.concatenate(
            [
                best_iou(maps_to_boxes(load(b), threshold, protocol.component_order), gt[b])
                for b in _batches(len(gt))
            ]
        )
        labels = np.array([meta.labels[i] for i in meta.image_ids])
        box_acc = box_accuracy(
            protocol.replace(box_ious=tuple(sorted({*protocol.box_ious, 0.5}))), ious, labels
        )
        result.update(
            protocol=protocol.name,
            threshold=float(threshold),
            class_balanced=protocol.class_balanced,
            gt_known_loc=box_acc[0.5],
            box_acc={d: box_acc[d] for d in protocol.box_ious},
            per_image={"image_ids": list(meta.image_ids), "iou": ious},
        )
        return result

    if kind == "boxes":
        gt_boxes = _resized_boxes(meta, None if image_root is None else Path(image_root), side)
        box_evaluator = BoxEvaluator(iou_thresholds, interval, multi_contour, num_workers)
        for batch in _batches(len(map_paths)):
            box_evaluator.accumulate(load(batch), gt_boxes[batch])
        box = box_evaluator.compute()
        mean = box.pop("MaxBoxAccV2")
        result.update(multi_contour=multi_contour, iou_thresholds=list(box_evaluator.iou_thresholds))
        result.update(box)
        result[box_summary_name(multi_contour, box_evaluator.iou_thresholds)] = mean
        return result

    base = _mask_base(Path(mask_root))
    for image_id in meta.image_ids:
        masks, ignores = _mask_files(base, meta.masks[image_id])
        for path in masks + ignores:
            if not path.is_file():
                raise DataError(f"mask file of image {image_id!r} not found", path)
    mask_evaluator = MaskEvaluator(interval)
    for batch in _batches(len(map_paths)):
        masks = [_load_masks(base, meta.masks[image_id], side) for image_id in meta.image_ids[batch]]
        mask_evaluator.accumulate(
            load(batch), np.stack([m for m, _ in masks]), np.stack([i for _, i in masks])
        )
    result.update(mask_evaluator.compute())
    return result


def write_curve_csv(path: str | Path, result: dict[str, Any]) -> None:
    """Write the threshold curve of a result atomically.

    Boxes: ``threshold,iou30,iou50,iou70`` (box accuracy in percent at each score threshold).
    Masks: ``threshold,precision,recall,iou`` (fractions; foreground = score >= threshold).
    """
    curve = result.get("curve")
    if not isinstance(curve, dict) or "thresholds" not in curve:
        raise ValueError("the result holds no curve")
    thresholds = np.asarray(curve["thresholds"])
    if "accuracy" in curve:
        names = [f"iou{iou_percent(d)}" for d in curve["accuracy"]]
        columns = [np.asarray(v) for v in curve["accuracy"].values()]
    else:
        names = ["precision", "recall", "iou"]
        columns = [np.asarray(curve[name]) for name in names]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["threshold", *names])
        for i, t in enumerate(thresholds):
            writer.writerow([f"{t:.10g}", *(f"{c[i]:.6f}" for c in columns)])
