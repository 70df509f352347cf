"""Evaluate saved score maps with the standard WSOL protocol (clovaai/wsolevaluation layout).

Inputs:

* Score maps: one ``.npy`` per image at ``<maps_root>/<image_id>.npy``, the id keeping its own
  extension (``001.Black_footed_Albatross/X.jpg.npy``); a float array of shape 224x224 with values
  in [0, 1] covering the whole image resized to 224x224 (no crop).
* Metadata: a split folder of the standard metadata (:mod:`bas.data.metadata`).
* CUB / ILSVRC boxes are moved to map coordinates as wsolevaluation's ``resize_bbox`` does:
  ``int(x * 224 / width)`` for x0 and x1, ``int(y * 224 / height)`` for y0 and y1, with the size from
  ``image_sizes.txt`` (or, when it has none, read from ``<image_root>/<image_id>``).
* OpenImages masks: every PNG is read as grayscale, resized to 224x224 with nearest-neighbour
  interpolation and binarised with ``> 0.5``; the instance masks of an image are OR-ed into the
  foreground, and the ignore region is the OR of its ignore PNGs minus the foreground. Paths are
  relative to ``<mask_root>/OpenImages/`` (wsolevaluation's layout) when that folder exists, else
  to ``mask_root`` itself.

Every input is checked before it is used; a problem raises :class:`bas.errors.DataError` naming
the file. This module writes nothing except through :func:`write_curve_csv`.
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
from bas.errors import ConfigError, DataError
from bas.io import atomic_open
from bas.metrics import BoxEvaluator, MaskEvaluator, iou_percent

__all__ = [
    "DATASETS",
    "MAP_SIZE",
    "evaluate_score_maps",
    "load_score_map",
    "score_map_path",
    "write_curve_csv",
]

DATASETS = ("CUB", "ILSVRC", "OpenImages")
MAP_SIZE = 224
# Maps read from disk before each accumulate call (256 float32 maps = 51 MB).
_LOAD_BATCH = 256


def score_map_path(maps_root: str | Path, image_id: str) -> Path:
    """``<maps_root>/<image_id>.npy``."""
    return Path(maps_root) / f"{image_id}.npy"


def load_score_map(path: str | Path) -> np.ndarray:
    """Read one score map and check it: a 224x224 float array, no NaN, values in [0, 1]."""
    path = Path(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError("score map not found", path) from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"cannot read the score map ({exc})", path) from None
    if not isinstance(arr, np.ndarray):
        raise DataError("expected a .npy array, found an .npz archive", path)
    if arr.shape != (MAP_SIZE, MAP_SIZE):
        raise DataError(f"score map has shape {arr.shape}, expected ({MAP_SIZE}, {MAP_SIZE})", path)
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
    path = image_root / image_id
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError("image not found (needed for its size)", path) from None
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"cannot read the image ({exc})", path) from None


def _resized_boxes(meta: WSOLMetadata, image_root: Path | None) -> list[np.ndarray]:
    """Ground-truth boxes of every image in 224x224 map coordinates, ``int(x * 224 / W)``."""
    resized = []
    for image_id in meta.image_ids:
        width, height = _image_size(meta, image_id, image_root)
        scale = np.array([width, height, width, height], dtype=np.float64)
        resized.append(np.trunc(meta.boxes[image_id] * float(MAP_SIZE) / scale))
    return resized


def _mask_base(mask_root: Path) -> Path:
    nested = mask_root / "OpenImages"
    return nested if nested.is_dir() else mask_root


def _read_mask(path: Path) -> np.ndarray:
    """A mask PNG as a 224x224 bool array (nearest-neighbour resize, then ``> 0.5``)."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DataError("cannot read the mask image", path)
    resized = cv2.resize(image.astype(np.float32), (MAP_SIZE, MAP_SIZE), interpolation=cv2.INTER_NEAREST)
    return resized > 0.5


def _mask_files(base: Path, entries: Sequence[tuple[str, str | None]]) -> tuple[list[Path], list[Path]]:
    masks = [base / mask for mask, _ in entries]
    ignores = [base / ignore for _, ignore in entries if ignore]
    return masks, ignores


def _load_masks(base: Path, entries: Sequence[tuple[str, str | None]]) -> tuple[np.ndarray, np.ndarray]:
    """Foreground (OR of the instance masks) and ignore region (OR of the ignore masks minus it)."""
    masks, ignores = _mask_files(base, entries)
    foreground = np.zeros((MAP_SIZE, MAP_SIZE), dtype=bool)
    for path in masks:
        foreground |= _read_mask(path)
    ignore = np.zeros_like(foreground)
    for path in ignores:
        ignore |= _read_mask(path)
    return foreground, ignore & ~foreground


def _batches(n: int) -> list[slice]:
    return [slice(i, min(i + _LOAD_BATCH, n)) for i in range(0, n, _LOAD_BATCH)]


def evaluate_score_maps(
    maps_root: str | Path,
    metadata_dir: str | Path,
    dataset: str,
    mask_root: str | Path | None = None,
    interval: float = 0.001,
    multi_contour: bool = False,
    iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    image_root: str | Path | None = None,
    num_workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate the saved score maps of one split.

    Args:
        maps_root: folder of ``<image_id>.npy`` maps.
        metadata_dir: the split folder of the metadata (``metadata/CUB/test``).
        dataset: ``"CUB"`` or ``"ILSVRC"`` (boxes: MaxBoxAcc) or ``"OpenImages"`` (masks: PxAP).
        mask_root: root of the OpenImages mask PNGs (required for OpenImages).
        interval: score-threshold step (0.001 in the paper tables).
        multi_contour: box of every contour (MaxBoxAccV2 protocol) instead of the largest one
            (wsolevaluation's default).
        iou_thresholds: IoU thresholds, fractions (percentages are deprecated).
        image_root: where to read image sizes missing from ``image_sizes.txt`` (boxes only).
        num_workers: processes for the box evaluation (None: every available core).

    Returns:
        ``dataset``, ``num_images``, ``interval`` and, for boxes, ``multi_contour``,
        ``iou_thresholds``, ``MaxBoxAcc`` ``{iou: percent}``, ``MaxBoxAccV2``, ``best_threshold``
        ``{iou: threshold}``; for masks ``PxAP``, ``PIoU``, ``PIoU_threshold``; and ``curve``
        (arrays, for :func:`write_curve_csv`).
    """
    if dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    kind = "masks" if dataset == "OpenImages" else "boxes"
    meta = load_metadata(metadata_dir, kind=kind)
    if meta.kind != kind:
        raise DataError(
            f"{dataset} evaluation needs {kind} in localization.txt", meta.root / "localization.txt"
        )
    if kind == "masks" and mask_root is None:
        raise ConfigError("OpenImages evaluation needs the mask root (the folder holding OpenImages/)")

    # Check that every input exists before the long part starts.
    map_paths = [score_map_path(maps_root, image_id) for image_id in meta.image_ids]
    for path in map_paths:
        if not path.is_file():
            raise DataError("score map not found", path)
    result: dict[str, Any] = {"dataset": dataset, "num_images": len(meta.image_ids), "interval": interval}

    if kind == "boxes":
        gt_boxes = _resized_boxes(meta, None if image_root is None else Path(image_root))
        box_evaluator = BoxEvaluator(iou_thresholds, interval, multi_contour, num_workers)
        for batch in _batches(len(map_paths)):
            maps = np.stack([load_score_map(p) for p in map_paths[batch]])
            box_evaluator.accumulate(maps, gt_boxes[batch])
        result.update(multi_contour=multi_contour, iou_thresholds=list(box_evaluator.iou_thresholds))
        result.update(box_evaluator.compute())
        return result

    base = _mask_base(Path(mask_root))
    for image_id in meta.image_ids:
        masks, ignores = _mask_files(base, meta.masks[image_id])
        for path in masks + ignores:
            if not path.is_file():
                raise DataError(f"mask file of image {image_id!r} not found", path)
    mask_evaluator = MaskEvaluator(interval)
    for batch in _batches(len(map_paths)):
        maps = np.stack([load_score_map(p) for p in map_paths[batch]])
        masks = [_load_masks(base, meta.masks[image_id]) for image_id in meta.image_ids[batch]]
        mask_evaluator.accumulate(maps, np.stack([m for m, _ in masks]), np.stack([i for _, i in masks]))
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
