"""From foreground maps to normalised maps, boxes and masks (docs/method.md §5).

Conventions:

* maps are (B, 1, h, w) or (B, h, w) tensors; :func:`normalize_maps` rescales each map to [0, 1]
  (min-max per image);
* :func:`upsample_maps` resizes bilinearly (``align_corners=False``) to the crop size;
* :func:`maps_to_boxes` binarises with ``map > threshold``, keeps the 8-connected component with
  the most pixels and returns its bounding box ``[x0, y0, x1, y1]`` with x1 / y1 *exclusive*, in
  pixels of the map; when no pixel passes, the box is the whole map ``[0, 0, W, H]``. That is the
  box form of every API; :mod:`bas.metrics` applies the protocol's inclusive-pixel IoU to it;
* :func:`component_boxes` returns every component (above an area fraction) with its box and the
  mean map value inside it, for multi-object output.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

NORM_EPS = 1e-10


def normalize_maps(maps: torch.Tensor, eps: float = NORM_EPS) -> torch.Tensor:
    """Min-max normalise every map of a batch to [0, 1]: ``(m - min) / (max - min + eps)`` (a
    constant map becomes all zeros, also with ``eps = 0``)."""
    flat = maps.flatten(start_dim=maps.dim() - 2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    span = hi - lo + eps
    out = (flat - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return out.view_as(maps)


def upsample_maps(maps: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (B, 1, h, w) or (B, h, w) maps to ``size`` (H, W)."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    squeeze = maps.dim() == 3
    x = maps[:, None] if squeeze else maps
    x = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False)
    return x[:, 0] if squeeze else x


def localization_maps(
    fg_map: torch.Tensor, size: int | tuple[int, int], eps: float = NORM_EPS
) -> torch.Tensor:
    """The maps boxes are drawn from: normalised (``eps``, :func:`normalize_maps`), upsampled to
    ``size`` and clipped to [0, 1], (B, H, W)."""
    maps = fg_map[:, 0] if fg_map.dim() == 4 else fg_map
    return upsample_maps(normalize_maps(maps.float(), eps), size).clamp_(0.0, 1.0)


#: Which of several equal-area components is "the largest" (see :func:`maps_to_boxes`).
COMPONENT_ORDERS = ("opencv", "raster")


def _largest_component(
    binary: np.ndarray, order: str = "opencv"
) -> tuple[np.ndarray, int, np.ndarray] | None:
    """(labels, index, stats) of the 8-connected component with the most pixels; None if empty.

    Equal areas: the lowest OpenCV label (``order="opencv"``) or the component whose first pixel
    comes first in raster order (``"raster"``, the labelling order of skimage's ``measure.label``).
    """
    if order not in COMPONENT_ORDERS:
        raise ValueError(f"unknown component order {order!r}; expected one of {', '.join(COMPONENT_ORDERS)}")
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    if count <= 1:
        return None
    area = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(area))
    if order == "raster":
        tied = 1 + np.flatnonzero(area == area[best - 1])
        if len(tied) > 1:
            flat = labels.ravel()
            best = int(min(tied, key=lambda label: int(np.argmax(flat == label))))
    return labels, best, stats


def _component_box(binary: np.ndarray, order: str = "opencv") -> np.ndarray:
    found = _largest_component(binary, order)
    if found is None:
        h, w = binary.shape
        return np.array([0, 0, w, h], dtype=np.int64)
    _, best, stats = found
    x, y, bw, bh = stats[best, :4]
    return np.array([x, y, x + bw, y + bh], dtype=np.int64)


def _as_numpy_maps(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    arr = maps.detach().float().cpu().numpy() if isinstance(maps, torch.Tensor) else np.asarray(maps)
    return arr[:, 0] if arr.ndim == 4 else arr


def maps_to_boxes(maps: torch.Tensor | np.ndarray, threshold: float, order: str = "opencv") -> np.ndarray:
    """Boxes (B, 4) ``[x0, y0, x1, y1]`` (exclusive x1/y1) of the largest component of ``map > threshold``
    (``order``: which of equal-area components, see :func:`_largest_component`)."""
    binary = _as_numpy_maps(maps) > threshold
    return np.stack([_component_box(b, order) for b in binary]) if len(binary) else np.zeros((0, 4), np.int64)


def maps_to_masks(
    maps: torch.Tensor | np.ndarray, threshold: float, largest_only: bool = True, order: str = "opencv"
) -> np.ndarray:
    """Binary masks (B, H, W): ``map > threshold``, optionally reduced to the largest component."""
    binary = _as_numpy_maps(maps) > threshold
    if not largest_only:
        return binary
    out = np.zeros_like(binary)
    for i, b in enumerate(binary):
        found = _largest_component(b, order)
        if found is not None:
            labels, best, _ = found
            out[i] = labels == best
    return out


def component_boxes(
    maps: torch.Tensor | np.ndarray, threshold: float, min_area: float = 0.0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every 8-connected component of ``map > threshold``, for each map of a batch.

    Components with fewer than ``min_area * H * W`` pixels are dropped. Returns, per map, the boxes
    ``(N, 4)`` int64 ``[x0, y0, x1, y1]`` (x1 / y1 exclusive) and the mean map value inside each
    component ``(N,)`` float32, largest component first; ``N`` is 0 when nothing passes.
    """
    out = []
    for values in _as_numpy_maps(maps).astype(np.float32, copy=False):
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (values > threshold).astype(np.uint8), connectivity=8
        )
        area = stats[1:, cv2.CC_STAT_AREA]
        sums = np.bincount(labels.ravel(), weights=values.ravel(), minlength=count)[1:]
        keep = np.flatnonzero(area >= max(min_area * values.size, 1))
        keep = keep[np.argsort(-area[keep], kind="stable")]
        x, y, w, h = stats[1:][keep, :4].T.astype(np.int64)
        boxes = np.stack([x, y, x + w, y + h], axis=1).reshape(-1, 4)
        out.append((boxes, (sums[keep] / area[keep]).astype(np.float32)))
    return out
