"""Localisation and classification metrics (pure numpy, no file I/O).

Conventions, identical to clovaai/wsolevaluation (Choe et al., CVPR 2020) and to the BAS code:

* IoU is a fraction in ``[0, 1]`` everywhere: the IoU values returned and the IoU thresholds
  taken (``iou_thresholds=(0.3, 0.5, 0.7)``, ``iou_threshold=0.5``), and the keys of the results
  per IoU threshold. Percentages are for printed tables only (:func:`iou_percent`); thresholds
  given in percent (the old ``iou_thresholds=(30, 50, 70)``) are still accepted, with a
  ``DeprecationWarning``. Accuracies are returned in percent.
* Boxes are ``[x0, y0, x1, y1]`` pixels with ``x1`` / ``y1`` exclusive, as in every API of the
  package (the datasets, :func:`bas.localization.maps_to_boxes`, the predictor). Inside the
  metric, the IoU is the protocol's *inclusive-pixel* one: a box covers ``(x1 - x0 + 1) *
  (y1 - y0 + 1)`` pixels, as wsolevaluation and the BAS code compute it on these same numbers,
  so the results match the papers'. An IoU whose union is not positive is 0.
* Score maps are ``(H, W)`` float arrays in ``[0, 1]``. They are converted to float64 before
  anything else (wsolevaluation receives them through ``t2n``, which does the same).
* Box thresholds are ``threshold_grid(interval) = np.arange(0, 1, interval)``.
* MaxBoxAcc (:class:`BoxEvaluator`): the map is quantised to ``u = uint8(map * 255)`` (truncation);
  at threshold ``t`` the binary mask keeps the pixels with ``u > int(t * max(u))`` (the strict
  comparison of ``cv2.threshold(..., THRESH_BINARY)``); contours come from
  ``cv2.findContours(mask, RETR_TREE, CHAIN_APPROX_SIMPLE)`` (outer borders *and* holes).
  Single-contour evaluation keeps the first contour of largest ``cv2.contourArea``;
  multi-contour evaluation keeps every contour and the best IoU counts. A contour's box is
  ``x0, y0, x1, y1 = x, y, min(x + w, W - 1), min(y + h, H - 1)`` from ``cv2.boundingRect``;
  an empty mask gives the box ``[0, 0, 0, 0]``. An image is correct at IoU threshold ``d``
  when its best IoU over its ground-truth boxes is ``>= d``. MaxBoxAcc(d) is the best accuracy
  over the thresholds; MaxBoxAccV2 is the mean of MaxBoxAcc over the IoU thresholds (0.3, 0.5,
  0.7 in the paper, with multi-contour evaluation).
* PxAP (:class:`MaskEvaluator`): pixel scores are histogrammed over the edges
  ``threshold_grid(interval) + [1, 2, 3]``; a pixel is predicted foreground at edge ``e`` when
  its score is ``>= e``. Precision and recall are computed at every edge from the highest down,
  PxAP is ``sum(precision[k] * (recall[k] - recall[k - 1]))`` over the edges with at least one
  predicted pixel, and PIoU is the best ``tp / (tp + fp + fn)`` over the edges. Ignored pixels
  (the ignore region minus the foreground) count neither as positive nor as negative.

Speed: :class:`BoxEvaluator` returns exactly what evaluating every threshold one by one returns,
but considers each distinct binary mask once (at most 256 per map, whatever the interval), skips
the masks whose foreground extent cannot reach the smallest IoU threshold, traces only the masks
not known to be a single component without holes (the others' one box is their foreground's
extent), and evaluates the maps in a pool of worker processes while the caller produces more
(``benchmarks/evaluate_maps.py`` measures ``bas evaluate-maps`` against wsolevaluation's BoxEvaluator).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import cv2
import numpy as np

from bas.errors import DataError

__all__ = [
    "BoxEvaluator",
    "MaskEvaluator",
    "best_iou",
    "box_iou",
    "iou_fractions",
    "iou_percent",
    "localization_accuracy",
    "per_class_accuracy",
    "quantize_maps",
    "threshold_grid",
    "topk_correct",
]

# A worker process is only worth starting for at least this many maps.
_MIN_MAPS_PER_WORKER = 16
# With several workers, maps are sent to the pool in chunks of this many (64 uint8 maps of 224x224
# hold 3.2 MB), at most _PENDING_CHUNKS_PER_WORKER chunks per worker waiting at a time.
_CHUNK_MAPS = 64
_PENDING_CHUNKS_PER_WORKER = 2
# Maps quantised per step (float64 scratch of this many maps stays small).
_QUANTIZE_BLOCK = 8


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def iou_fractions(thresholds: float | Iterable[float], name: str = "iou_thresholds") -> tuple[float, ...]:
    """IoU thresholds as fractions in ``(0, 1]``.

    Thresholds in percent (any value above 1, e.g. the old ``(30, 50, 70)``) are divided by 100
    with a ``DeprecationWarning``; ValueError for an empty list or a value out of range.
    """
    values = [float(thresholds)] if isinstance(thresholds, (int, float)) else [float(t) for t in thresholds]
    if values and max(values) > 1:
        warnings.warn(
            f"{name} in percent ({', '.join(f'{v:g}' for v in values)}) are deprecated: IoU is a "
            f"fraction in every API, e.g. {tuple(v / 100 for v in values)}",
            DeprecationWarning,
            stacklevel=3,
        )
        if any(not 0 < v <= 100 for v in values):
            raise ValueError(f"{name} in percent must be in (0, 100], got {values}")
        values = [v / 100 for v in values]
    if not values or any(not 0 < v <= 1 for v in values):
        raise ValueError(f"{name} must be fractions in (0, 1], got {values}")
    return tuple(values)


def iou_percent(iou: float) -> str:
    """An IoU fraction as the percentage printed in tables: ``0.5 -> "50"``, ``0.75 -> "75"``."""
    return f"{round(float(iou) * 100, 6):g}"


def threshold_grid(interval: float) -> np.ndarray:
    """Score-map thresholds ``0, interval, 2 * interval, ... < 1`` (``np.arange(0, 1, interval)``).

    This is exactly the list wsolevaluation builds from ``cam_curve_interval``.
    """
    if not 0 < interval <= 1:
        raise ValueError(f"the threshold interval must be in (0, 1], got {interval}")
    return np.arange(0, 1, interval)


def _area(boxes: np.ndarray) -> np.ndarray:
    """Inclusive-pixel area of boxes ``[..., 4]`` (the protocol's: ``x0 .. x1`` counts ``x1 - x0 + 1``)."""
    return (boxes[..., 2] - boxes[..., 0] + 1) * (boxes[..., 3] - boxes[..., 1] + 1)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Inclusive-pixel area shared by boxes ``a[..., 4]`` and ``b[..., 4]`` (broadcast)."""
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    return np.maximum(0, width) * np.maximum(0, height)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a[..., 4]`` and ``b[..., 4]`` (broadcast); 0 where the union is not positive."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    positive = union > 0
    return np.where(positive, inter / np.where(positive, union, 1), 0.0)


def _as_boxes(boxes: Any, what: str) -> np.ndarray:
    arr = _to_numpy(boxes).astype(np.float64)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what} must have shape (N, 4), got {arr.shape}")
    return arr


def box_iou(boxes_a: Any, boxes_b: Any) -> np.ndarray:
    """Pairwise IoU (a fraction) of ``boxes_a`` (N, 4) and ``boxes_b`` (M, 4), an (N, M) float64 array.

    Boxes are ``[x0, y0, x1, y1]`` (x1 / y1 exclusive, as in every API); the IoU is the protocol's
    inclusive-pixel one, area ``(x1-x0+1) * (y1-y0+1)``, as in wsolevaluation's
    ``calculate_multiple_iou``; a pair whose union is not positive has IoU 0.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    return _iou(a[:, None, :], b[None, :, :])


def best_iou(pred_boxes: Any, gt_boxes: Sequence[Any]) -> np.ndarray:
    """Best IoU (a fraction, see :func:`box_iou`) of each predicted box against the ground-truth
    boxes of its own image.

    Args:
        pred_boxes: (B, 4), one predicted box per image.
        gt_boxes: B arrays of shape (M_i, 4), M_i >= 1 ground-truth boxes of image i.

    Returns:
        (B,) float64: ``max_j IoU(pred_boxes[i], gt_boxes[i][j])``.
    """
    pred = _as_boxes(pred_boxes, "pred_boxes")
    if len(gt_boxes) != len(pred):
        raise ValueError(f"{len(pred)} predicted boxes but {len(gt_boxes)} ground-truth lists")
    if len(pred) == 0:
        return np.zeros(0)
    gts = [_as_boxes(g, "ground-truth boxes") for g in gt_boxes]
    counts = np.array([len(g) for g in gts])
    if (counts == 0).any():
        raise ValueError(f"image {int(np.argmin(counts))} has no ground-truth box")
    ious = _iou(np.repeat(pred, counts, axis=0), np.concatenate(gts))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    return np.maximum.reduceat(ious, starts)


def topk_correct(
    logits_or_scores: Any, labels: Any, ks: Iterable[int] = (1, 5), ties: str = "stable"
) -> dict[int, np.ndarray]:
    """Whether each label is among the k highest scores, for every k in ``ks``.

    ``ties="stable"``: equal scores are ranked by the lower class index (a stable descending sort),
    so the result does not depend on the platform. ``ties="torch"``: the order of
    ``torch.topk(scores, K, sorted=True)``, as the papers' code ranks classes (unspecified among
    equal scores; on the CPU it need not put the lower index first). ``k`` larger than the number
    of classes means all.

    Returns:
        ``{k: bool array (B,)}``.
    """
    if ties not in ("stable", "torch"):
        raise ValueError(f"ties must be 'stable' or 'torch', got {ties!r}")
    ks = [int(k) for k in ks]
    raw = logits_or_scores
    scores = _to_numpy(logits_or_scores).astype(np.float64)
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be (B, K) with B = {len(labels)} labels, got {scores.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be in [0, {scores.shape[1]})")
    if ties == "torch":
        import torch

        tensor = raw.detach().cpu() if isinstance(raw, torch.Tensor) else torch.from_numpy(np.asarray(raw))
        width = min(max(ks, default=1), scores.shape[1])  # the code asks topk for the largest k only
        order = tensor.topk(width, dim=1, largest=True, sorted=True).indices.numpy()
    else:
        order = np.argsort(-scores, axis=1, kind="stable")
    found = order == labels[:, None]
    rank = np.where(found.any(axis=1), np.argmax(found, axis=1), scores.shape[1])
    return {int(k): rank < k for k in ks}


def per_class_accuracy(correct: Any, labels: Any) -> dict[int, float]:
    """Accuracy in percent of each class present in ``labels``, ``{class: percent}`` sorted by class."""
    correct = _to_numpy(correct).astype(bool).reshape(-1)
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    if len(correct) != len(labels):
        raise ValueError(f"{len(correct)} results but {len(labels)} labels")
    classes, inverse = np.unique(labels, return_inverse=True)
    hits = np.bincount(inverse, weights=correct, minlength=len(classes))
    totals = np.bincount(inverse, minlength=len(classes))
    return {int(c): float(100.0 * h / n) for c, h, n in zip(classes, hits, totals)}


def localization_accuracy(
    ious: Any,
    labels: Any,
    top1_correct: Any,
    top5_correct: Any,
    iou_threshold: float = 0.5,
    class_balanced: bool = False,
    strict: bool = False,
) -> dict[str, float]:
    """GT-known / Top-1 / Top-5 localisation and Top-1 / Top-5 classification accuracy, in percent.

    A box is right when its IoU (a fraction) is ``>= iou_threshold`` (a fraction; a percentage
    is accepted with a DeprecationWarning), or ``> iou_threshold`` with ``strict`` (the CVPR BAS
    inference script). Top-1 Loc needs the top-1 class right
    and the box right; Top-5 Loc needs the label among the top 5 and the box right.

    ``class_balanced=False`` averages over images (the IJCV BAS script); ``True`` averages the
    per-class accuracies (the CVPR BAS inference script).
    """
    ious = _to_numpy(ious).astype(np.float64).reshape(-1)
    labels = _to_numpy(labels).reshape(-1)
    top1 = _to_numpy(top1_correct).astype(bool).reshape(-1)
    top5 = _to_numpy(top5_correct).astype(bool).reshape(-1)
    if not len(ious) == len(labels) == len(top1) == len(top5):
        raise ValueError("ious, labels, top1_correct and top5_correct must have the same length")
    if len(ious) == 0:
        raise ValueError("no image to evaluate")
    (iou_threshold,) = iou_fractions(iou_threshold, "iou_threshold")
    box_ok = ious > iou_threshold if strict else ious >= iou_threshold
    columns = {
        "gt_known_loc": box_ok,
        "top1_loc": top1 & box_ok,
        "top5_loc": top5 & box_ok,
        "top1_cls": top1,
        "top5_cls": top5,
    }
    if class_balanced:
        return {k: float(np.mean(list(per_class_accuracy(v, labels).values()))) for k, v in columns.items()}
    return {k: float(100.0 * v.mean()) for k, v in columns.items()}


def _validated_maps(maps: Any) -> np.ndarray:
    """(B, H, W) floating maps in [0, 1] without NaN, in their own dtype, checked like
    wsolevaluation's check_scoremap_validity."""
    arr = _to_numpy(maps)
    if arr.ndim != 3:
        raise ValueError(f"score maps must have shape (B, H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"score maps must be floating point, got {arr.dtype}")
    if arr.size:
        low, high = arr.min(), arr.max()  # NaN propagates through both
        if np.isnan(low) or np.isnan(high):
            raise ValueError("score maps contain NaN")
        if low < 0 or high > 1:
            raise ValueError(f"score maps must be in [0, 1], got min {low} and max {high}")
    return arr


def _check_maps(maps: Any) -> np.ndarray:
    """Checked score maps as a (B, H, W) float64 array."""
    return _validated_maps(maps).astype(np.float64)


def quantize_maps(maps: Any) -> np.ndarray:
    """``uint8(map * 255)`` (truncation, product in float64) of checked (B, H, W) maps, as
    wsolevaluation does for boxes."""
    arr = _validated_maps(maps)
    out = np.empty(arr.shape, dtype=np.uint8)
    scratch = np.empty((min(len(arr), _QUANTIZE_BLOCK), *arr.shape[1:]), dtype=np.float64)
    for start in range(0, len(arr), _QUANTIZE_BLOCK):  # in blocks: the float64 product stays in cache
        block = arr[start : start + _QUANTIZE_BLOCK]
        product = np.multiply(block, 255.0, out=scratch[: len(block)], dtype=np.float64)
        out[start : start + _QUANTIZE_BLOCK] = product  # float -> uint8 assignment truncates
    return out


def _worker_count(num_workers: int | None) -> int:
    if num_workers is None:
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    return int(num_workers)


_SQUARE_3X3 = np.ones((3, 3), np.uint8)


def _histogram_u8(x: np.ndarray) -> np.ndarray:
    """Counts of the values 0..255 of a 2-D uint8 array, as float64."""
    return cv2.calcHist([x], [0], None, [256], [0, 256]).ravel().astype(np.float64)


def euler_numbers(u8: np.ndarray) -> np.ndarray:
    """Euler number of every upper level set of a uint8 map, in one pass.

    ``E[w]`` (``w = 0 .. 256``) is the number of 8-connected components of ``u8 >= w`` minus the
    number of its holes (4-connected regions of ``u8 < w`` away from the border): the number of
    outer contours minus the number of hole contours ``cv2.findContours`` finds. Computed with
    Gray's 2x2 bit-quad counts, ``4E = n(Q1) - n(Q3) - 2 n(QD)``: a window whose sorted values are
    ``s0 <= s1 <= s2 <= s3`` holds one foreground pixel for ``w`` in ``(s2, s3]``, three for ``w``
    in ``(s0, s1]``, and a diagonal pair for ``w`` in ``(max(b, c), min(a, d)]`` or
    ``(max(a, d), min(b, c)]`` (``a b / c d`` the window), so each count is a difference of two
    value histograms.
    """
    padded = cv2.copyMakeBorder(u8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    a, b, c, d = padded[:-1, :-1], padded[:-1, 1:], padded[1:, :-1], padded[1:, 1:]
    lo, hi, h = cv2.min, cv2.max, _histogram_u8
    top_lo, top_hi, bottom_lo, bottom_hi = lo(a, b), hi(a, b), lo(c, d), hi(c, d)
    mid_lo, mid_hi = hi(top_lo, bottom_lo), lo(top_hi, bottom_hi)  # {s1, s2}
    ad_from, ad_to = hi(b, c), lo(a, d)
    bc_from, bc_to = hi(a, d), lo(b, c)
    # step[v]: change of 4E from level v to v + 1 (an interval (p, q] starts after p, ends after q)
    step = (
        h(hi(mid_lo, mid_hi))
        - h(hi(top_hi, bottom_hi))  # Q1: (s2, s3]
        - h(lo(top_lo, bottom_lo))
        + h(lo(mid_lo, mid_hi))  # Q3: (s0, s1], counted negatively
        - 2 * (h(ad_from) - h(hi(ad_from, ad_to)) + h(bc_from) - h(hi(bc_from, bc_to)))  # QD
    )
    euler = np.zeros(257)
    np.cumsum(step, out=euler[1:])
    return np.rint(euler / 4).astype(np.int64)


def regional_maxima(u8: np.ndarray) -> np.ndarray:
    """Values of the regional maxima of a uint8 map, one entry per maximum.

    A regional maximum is an 8-connected plateau whose neighbours are all lower; plateaus of value
    0 are left out. Every 8-connected component of ``u8 >= w`` contains one of value ``>= w``, so
    going down the levels, components only appear at the values of regional maxima.
    Candidates are the pixels no neighbour exceeds; a connected group of them is a regional
    maximum unless it touches an equal pixel that has a higher neighbour.
    """
    peak = cv2.compare(cv2.dilate(u8, _SQUARE_3X3), u8, cv2.CMP_EQ)  # 255 where no neighbour is higher
    count, labels = cv2.connectedComponents(peak, connectivity=8)
    if count == 1:
        return np.zeros(0, dtype=np.int64)
    is_peak = peak != 0
    slope = cv2.subtract(u8, peak)  # 0 on candidates, the value elsewhere
    touches = cv2.compare(cv2.dilate(slope, _SQUARE_3X3), u8, cv2.CMP_EQ) != 0  # (or value 0)
    keep = np.ones(count, dtype=bool)
    keep[0] = False  # the label of non-candidates
    keep[labels[touches & is_peak]] = False
    value = np.zeros(count, dtype=np.int64)
    value[labels[is_peak]] = u8[is_peak]
    return value[keep]


def _map_best_ious(
    u8: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, min_iou: float, multi_contour: bool
) -> np.ndarray:
    """Best IoU of the box(es) of one quantised map at every threshold.

    Equal to evaluating every threshold the wsolevaluation way, with far fewer contour traces:

    * the mask at threshold t is ``u > int(t * max(u))``, which only depends on how many of the
      uint8 values present in ``u`` are <= that level: at most 256 distinct masks;
    * a mask whose foreground bounding box already bounds the IoU of every box it can produce
      below ``min_iou`` is not traced; its entry is -1 (a miss at every IoU threshold);
    * a mask known to be one component without holes has one contour, whose box is the
      foreground's bounding box. Going down the levels, the number of components is at most
      the last traced (or known) count plus the regional maxima met since
      (:func:`regional_maxima`); with one component, the Euler number (components minus holes,
      :func:`euler_numbers`, every level at once) tells whether there is a hole;
    * the other masks are traced on the foreground's bounding box plus a 1-pixel margin
      (findContours pads the image with zeros, so the contours, their order and areas are the
      same as on the full map, shifted back by ``offset``).
    """
    height, width = u8.shape
    levels = (thresholds * u8.max()).astype(np.int64)
    present = np.flatnonzero(np.bincount(u8.ravel(), minlength=256))
    # Mask(level) = u8 > level = u8 >= present[rank], rank = number of present values <= level.
    ranks, inverse = np.unique(np.searchsorted(present, levels, side="right"), return_inverse=True)
    best = np.full(len(ranks), -1.0)

    empty = ranks == len(present)
    if empty.any():  # nothing above the level: the box is [0, 0, 0, 0]
        best[empty] = _iou(np.zeros(4), gt).max()

    values = present[ranks[~empty]]
    rows = u8.max(axis=1)[None, :] >= values[:, None]
    cols = u8.max(axis=0)[None, :] >= values[:, None]
    y0 = rows.argmax(axis=1)
    y1 = height - 1 - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = width - 1 - cols[:, ::-1].argmax(axis=1)
    # Every box of the mask lies in `hull` (the foreground's extent, with the same x + w, y + h
    # end as the boxes), so IoU(box, g) <= |box & g| / |g| <= |hull & g| / |g|. The small slack
    # keeps the test safe from rounding with fractional ground-truth boxes.
    hull = np.stack([x0, y0, np.minimum(x1 + 1, width - 1), np.minimum(y1 + 1, height - 1)], axis=1)
    bound = (_intersection(hull[:, None, :], gt[None, :, :]) / _area(gt)).max(axis=1)
    candidates = np.flatnonzero(bound >= min_iou - 1e-9)
    if len(candidates) == 0:
        return best[inverse]

    # Both are exact for levels >= the lowest candidate's, computed on that level's foreground box:
    # every pixel of those levels lies in it, and the pixels left out are lower than all of them.
    low = candidates[0]
    region = u8[y0[low] : y1[low] + 1, x0[low] : x1[low] + 1]
    euler = euler_numbers(region).tolist()
    maxima = np.bincount(regional_maxima(region), minlength=257)[::-1].cumsum()[::-1].tolist()  # >= w
    crop_y0, crop_y1 = np.maximum(y0 - 1, 0).tolist(), np.minimum(y1 + 2, height).tolist()
    crop_x0, crop_x1 = np.maximum(x0 - 1, 0).tolist(), np.minimum(x1 + 2, width).tolist()
    level_values = values.tolist()
    simple: list[int] = []  # one component, no hole: the hull is the only box
    traced: list[int] = []
    rects: list[tuple[int, int, int, int]] = []
    counts: list[int] = []
    find, rect, area = cv2.findContours, cv2.boundingRect, cv2.contourArea
    # Going down the levels: components(w) <= components(w') + maxima(w) - maxima(w') for w < w'.
    known_components, known_maxima = 0, 0  # above the top level: no component
    for i in candidates[::-1].tolist():
        value = level_values[i]
        if known_components + maxima[value] - known_maxima <= 1 and euler[value] == 1:
            simple.append(i)
            known_components, known_maxima = 1, maxima[value]
            continue
        ya, yb, xa, xb = crop_y0[i], crop_y1[i], crop_x0[i], crop_x1[i]
        mask = np.greater_equal(u8[ya:yb, xa:xb], value).view(np.uint8)
        contours = find(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(xa, ya))[-2]
        # components - holes = euler, components + holes = number of contours
        known_components, known_maxima = (len(contours) + euler[value]) // 2, maxima[value]
        if not multi_contour:
            contours = [max(contours, key=area)]
        rects.extend(map(rect, contours))
        counts.append(len(contours))
        traced.append(i)
    valid = np.flatnonzero(~empty)
    if simple:
        best[valid[simple]] = _iou(hull[simple][:, None, :], gt[None, :, :]).max(axis=1)
    if rects:
        xywh = np.array(rects, dtype=np.int64)
        boxes = np.stack(
            [
                xywh[:, 0],
                xywh[:, 1],
                np.minimum(xywh[:, 0] + xywh[:, 2], width - 1),
                np.minimum(xywh[:, 1] + xywh[:, 3], height - 1),
            ],
            axis=1,
        )
        ious = _iou(boxes[:, None, :], gt[None, :, :]).max(axis=1)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        best[valid[traced]] = np.maximum.reduceat(ious, starts)
    return best[inverse]


def _count_box_hits(
    maps_u8: np.ndarray,
    gt_boxes: Sequence[np.ndarray],
    thresholds: np.ndarray,
    iou_fractions: np.ndarray,
    multi_contour: bool,
) -> np.ndarray:
    """Number of maps correct at each (IoU threshold, score threshold): int64 (n_iou, n_thr)."""
    hits = np.zeros((len(iou_fractions), len(thresholds)), dtype=np.int64)
    min_iou = float(iou_fractions.min())
    # No cv2.setNumThreads here: in a forked worker it waits forever on the parent's thread pool.
    for u8, gt in zip(maps_u8, gt_boxes):
        best = _map_best_ious(u8, gt, thresholds, min_iou, multi_contour)
        hits += best[None, :] >= iou_fractions[:, None]
    return hits


def _process_context() -> Any:
    """``fork`` on Linux (workers inherit the loaded modules, like torch's DataLoader); else the default."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class BoxEvaluator:
    """MaxBoxAcc / MaxBoxAccV2 of score maps against ground-truth boxes (see the module docstring).

    Call :meth:`accumulate` with batches of maps, then :meth:`compute`. Maps are quantised at
    once. With one worker they are evaluated at once too; with several, they are sent in chunks
    to a pool of worker processes (forked on Linux, started when the first chunk is full), which
    evaluates them while the caller goes on producing maps; :meth:`compute` collects the results
    and stops the pool (so does :meth:`close`).

    Args:
        iou_thresholds: IoU thresholds, fractions (an image is correct when IoU >= d); the keys
            of the results. Percentages are accepted with a DeprecationWarning.
        interval: score-threshold step; the thresholds are ``threshold_grid(interval)``.
        multi_contour: keep every contour's box (True, MaxBoxAccV2) or only the largest one.
        num_workers: processes to use; None means every core available to this process.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        interval: float = 0.001,
        multi_contour: bool = True,
        num_workers: int | None = None,
    ):
        self.iou_thresholds = iou_fractions(iou_thresholds)
        self.interval = float(interval)
        self.thresholds = threshold_grid(interval)
        self.multi_contour = bool(multi_contour)
        self.num_workers = _worker_count(num_workers)
        self._iou_fractions = np.array(self.iou_thresholds)
        self._hits = np.zeros((len(self.iou_thresholds), len(self.thresholds)), dtype=np.int64)
        self._count = 0
        self._queued_maps: list[np.ndarray] = []
        self._queued_boxes: list[np.ndarray] = []
        self._pool: Any = None
        self._pending: list[Any] = []  # (AsyncResult, number of maps) in submission order

    @property
    def num_images(self) -> int:
        """Number of maps accumulated so far."""
        return self._count + sum(n for _, n in self._pending) + len(self._queued_boxes)

    def accumulate(self, maps: Any, gt_boxes: Sequence[Any]) -> None:
        """Add a batch.

        Args:
            maps: (B, H, W) float scores in [0, 1] (numpy or torch).
            gt_boxes: B arrays (M_i, 4) of ``[x0, y0, x1, y1]`` boxes in map pixels (x1 / y1
                exclusive, as in every API; compared with the protocol's inclusive IoU), M_i >= 1.
        """
        maps_u8, boxes = self._checked(maps, gt_boxes)
        if self.num_workers == 1 or not self._can_fork():
            self._hits += _count_box_hits(maps_u8, boxes, *self._work_args())
            self._count += len(maps_u8)
            return
        self._queued_maps.append(maps_u8)
        self._queued_boxes.extend(boxes)
        if len(self._queued_boxes) >= _CHUNK_MAPS:
            self._submit(final=False)

    @staticmethod
    def _checked(maps: Any, gt_boxes: Sequence[Any]) -> tuple[np.ndarray, list[np.ndarray]]:
        maps_u8 = quantize_maps(maps)
        if len(gt_boxes) != len(maps_u8):
            raise ValueError(f"{len(maps_u8)} maps but {len(gt_boxes)} ground-truth box lists")
        boxes = [_as_boxes(g, "ground-truth boxes") for g in gt_boxes]
        for i, g in enumerate(boxes):
            if len(g) == 0:
                raise ValueError(f"map {i} of the batch has no ground-truth box")
        return maps_u8, boxes

    def hits(self, maps: Any, gt_boxes: Sequence[Any]) -> np.ndarray:
        """Whether each map of a batch is correct, bool ``(B, n_iou, n_thresholds)``, by the rules
        of :meth:`accumulate`, in this process; nothing is accumulated."""
        maps_u8, boxes = self._checked(maps, gt_boxes)
        thresholds, fractions, multi_contour = self._work_args()
        out = np.zeros((len(boxes), len(fractions), len(thresholds)), dtype=bool)
        for i, (u8, gt) in enumerate(zip(maps_u8, boxes)):
            best = _map_best_ious(u8, gt, thresholds, float(fractions.min()), multi_contour)
            out[i] = best[None, :] >= fractions[:, None]
        return out

    def _work_args(self) -> tuple:
        return (self.thresholds, self._iou_fractions, self.multi_contour)

    @staticmethod
    def _can_fork() -> bool:
        return not multiprocessing.current_process().daemon  # daemonic processes cannot have children

    def _submit(self, final: bool) -> None:
        """Send the queued maps to the pool in chunks (all of them when ``final``)."""
        maps_u8 = np.concatenate(self._queued_maps)
        boxes = self._queued_boxes
        if final:
            # The last maps in up to one chunk per worker, at least _MIN_MAPS_PER_WORKER each.
            parts = max(1, min(self.num_workers, len(maps_u8) // _MIN_MAPS_PER_WORKER))
            bounds = np.linspace(0, len(maps_u8), parts + 1).astype(int).tolist()
        else:
            bounds = list(
                range(0, len(maps_u8) // _CHUNK_MAPS * _CHUNK_MAPS + 1, _CHUNK_MAPS)
            )  # whole chunks
        if self._pool is None:
            self._pool = _process_context().Pool(self.num_workers)
        for start, stop in zip(bounds[:-1], bounds[1:]):
            while len(self._pending) >= _PENDING_CHUNKS_PER_WORKER * self.num_workers:
                self._collect_one()  # bounded memory: wait for the oldest chunk
            chunk = (maps_u8[start:stop], boxes[start:stop], *self._work_args())
            self._pending.append((self._pool.apply_async(_count_box_hits, chunk), stop - start))
        rest = bounds[-1]
        self._queued_maps = [maps_u8[rest:]] if rest < len(maps_u8) else []
        self._queued_boxes = boxes[rest:]

    def _collect_one(self) -> None:
        result, n = self._pending.pop(0)
        self._hits += result.get()
        self._count += n

    def _flush(self) -> None:
        """Evaluate everything accumulated, then stop the pool."""
        try:
            if self._queued_boxes:
                if self._pool is None and len(self._queued_boxes) < 2 * _MIN_MAPS_PER_WORKER:
                    maps_u8 = np.concatenate(self._queued_maps)
                    self._hits += _count_box_hits(maps_u8, self._queued_boxes, *self._work_args())
                    self._count += len(maps_u8)
                    self._queued_maps, self._queued_boxes = [], []
                else:
                    self._submit(final=True)
            while self._pending:
                self._collect_one()
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker pool, if any (maps not yet evaluated are dropped)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if self._pending:
                pool.terminate()
                self._pending = []
            else:
                pool.close()
            pool.join()

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.terminate()

    def _accuracies(self) -> np.ndarray:
        self._flush()
        if self._count == 0:
            raise DataError("no score map was evaluated")
        return self._hits * 100.0 / float(self._count)

    def compute(self) -> dict[str, Any]:
        """Results so far.

        Returns:
            ``num_images``; ``MaxBoxAcc`` ``{iou: percent}`` (``iou`` the IoU fraction, e.g. 0.5);
            ``MaxBoxAccV2`` (mean of MaxBoxAcc over the IoU thresholds); ``best_threshold``
            ``{iou: first threshold reaching the max}``; ``curve`` ``{"thresholds": (T,),
            "accuracy": {iou: (T,) percent}}``.
        """
        acc = self._accuracies()
        best = acc.argmax(axis=1)
        max_box_acc = {d: float(acc[i, best[i]]) for i, d in enumerate(self.iou_thresholds)}
        return {
            "num_images": self._count,
            "MaxBoxAcc": max_box_acc,
            "MaxBoxAccV2": float(np.mean(list(max_box_acc.values()))),
            "best_threshold": {d: float(self.thresholds[best[i]]) for i, d in enumerate(self.iou_thresholds)},
            "curve": {
                "thresholds": self.thresholds.copy(),
                "accuracy": {d: acc[i].copy() for i, d in enumerate(self.iou_thresholds)},
            },
        }

    def accuracy_at(self, threshold: float) -> dict[float, float]:
        """Box accuracy ``{iou: percent}`` at one score threshold of the grid (e.g. chosen on val)."""
        index = int(np.argmin(np.abs(self.thresholds - threshold)))
        if abs(self.thresholds[index] - threshold) > 1e-6 * self.interval:
            raise ValueError(
                f"threshold {threshold} is not on this evaluator's grid (step {self.interval}); "
                "evaluate with the interval the threshold was chosen with"
            )
        acc = self._accuracies()
        return {d: float(acc[i, index]) for i, d in enumerate(self.iou_thresholds)}


class MaskEvaluator:
    """PxAP and PIoU of score maps against ground-truth masks (OpenImages protocol).

    The threshold list is ``threshold_grid(interval)`` (0.001 in BAS's ``count_pxap.py`` and in
    wsolevaluation's ``evaluate_wsol``; its command line defaults to 0.01). Pixel scores are
    accumulated as integer histograms, so memory does not grow with the number of maps.
    """

    def __init__(self, interval: float = 0.001):
        self.interval = float(interval)
        self.thresholds = threshold_grid(interval)
        # Bins [0, dt), [dt, 2dt), ..., [1 - dt, 1), [1, 2), [2, 3] as in wsolevaluation.
        self._edges = np.append(self.thresholds, [1.0, 2.0, 3.0])
        self._true_hist = np.zeros(len(self._edges) - 1, dtype=np.int64)
        self._false_hist = np.zeros(len(self._edges) - 1, dtype=np.int64)
        self._count = 0

    @property
    def num_images(self) -> int:
        return self._count

    def _histogram(self, scores: np.ndarray) -> np.ndarray:
        # Same bins as np.histogram(scores, bins=edges) for scores in [0, 1].
        index = np.searchsorted(self._edges, scores, side="right") - 1
        return np.bincount(index, minlength=len(self._edges) - 1)

    def accumulate(self, maps: Any, gt_masks: Any, ignore_masks: Any | None = None) -> None:
        """Add a batch.

        Args:
            maps: (B, H, W) float scores in [0, 1].
            gt_masks: (B, H, W) bool foreground (union of the instance masks).
            ignore_masks: (B, H, W) bool ignore regions, or None. Foreground pixels are never
                ignored (wsolevaluation ignores ``ignore & ~foreground``).
        """
        scores = _check_maps(maps)
        gt = _to_numpy(gt_masks).astype(bool)
        if gt.shape != scores.shape:
            raise ValueError(f"masks have shape {gt.shape}, maps {scores.shape}")
        negative = ~gt
        if ignore_masks is not None:
            ignore = _to_numpy(ignore_masks).astype(bool)
            if ignore.shape != scores.shape:
                raise ValueError(f"ignore masks have shape {ignore.shape}, maps {scores.shape}")
            negative &= ~ignore
        self._true_hist += self._histogram(scores[gt])
        self._false_hist += self._histogram(scores[negative])
        self._count += len(scores)

    def compute(self) -> dict[str, Any]:
        """Results so far.

        Returns:
            ``num_images``; ``PxAP`` and ``PIoU`` in percent; ``PIoU_threshold`` (the edge where
            PIoU is reached); ``curve`` ``{"thresholds", "precision", "recall", "iou"}`` at the
            edges ``threshold_grid(interval) + [1.0]`` in ascending order (foreground = score >= edge).
        """
        # Index k = 0 is "score >= 3" (nothing), the last is "score >= 0" (everything).
        tp = self._true_hist[::-1].cumsum().astype(np.float64)
        fp = self._false_hist[::-1].cumsum().astype(np.float64)
        fn = tp[-1] - tp
        if tp[-1] <= 0:
            raise DataError("no positive ground-truth pixel in the evaluated masks")
        if (tp + fp)[-1] <= 0:
            raise DataError("no pixel to evaluate in the score maps")
        predicted = (tp + fp) != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = tp / (tp + fp)
        recall = tp / (tp + fn)
        pxap = (precision[1:] * np.diff(recall))[predicted[1:]].sum() * 100
        iou = tp / (tp + fp + fn)
        best = int(np.argmax(iou))
        edges = self._edges[:-1][::-1]  # edge of each index k: 2, 1, 1 - dt, ..., 0
        ascending = slice(None, 0, -1)  # drop "score >= 2" and reverse
        return {
            "num_images": self._count,
            "PxAP": float(pxap),
            "PIoU": float(iou[best] * 100),
            "PIoU_threshold": float(edges[best]),
            "curve": {
                "thresholds": edges[ascending].copy(),
                "precision": np.nan_to_num(precision[ascending], nan=0.0),
                "recall": recall[ascending].copy(),
                "iou": iou[ascending].copy(),
            },
        }


def reference_box_hits(
    maps: Any, gts: Sequence[Any], interval: float, iou_thresholds: Sequence[float], multi_contour: bool
) -> np.ndarray:
    """Hit counts (n_iou, n_thr) by wsolevaluation's procedure, literally: one ``cv2.threshold`` and
    one ``findContours`` per threshold. Slow; kept as the reference :class:`BoxEvaluator` is
    verified and benchmarked against."""
    thresholds = np.arange(0, 1, interval)
    iou_thresholds = iou_fractions(iou_thresholds)
    hits = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(maps, gts):
        height, width = scoremap.shape
        image = np.expand_dims((np.asarray(scoremap, dtype=np.float64) * 255).astype(np.uint8), 2)
        for j, t in enumerate(thresholds):
            _, binary = cv2.threshold(image, int(t * np.max(image)), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            if len(contours) == 0:
                boxes = [[0, 0, 0, 0]]
            else:
                if not multi_contour:
                    contours = [max(contours, key=cv2.contourArea)]
                boxes = []
                for c in contours:
                    x, y, w, h = cv2.boundingRect(c)
                    boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
            best = box_iou(np.array(boxes), gt).max()
            for i, d in enumerate(iou_thresholds):
                hits[i, j] += best >= d
    return hits


# ----------------------------------------------------------------------------------- CorLoc
# Correct localisation (CorLoc), the weakly supervised detection metric of multi-object datasets:
# for class c, the images containing c whose top-scoring box *for c* has IoU >= 0.5 with one of the
# ground-truth boxes of c in that image; per class in percent, and their mean over the classes with
# at least one image. The IoU is :func:`box_iou`'s, the protocol's inclusive-pixel one used by every
# metric here, on the package's boxes (x1 / y1 exclusive); the threshold is inclusive (``>=``).
# Which objects count (VOC's ``difficult`` ones or not) is the caller's choice of ``gt_boxes``.

__all__ += ["corloc", "corloc_hits", "top_box_per_class"]


def top_box_per_class(boxes: Any, scores: Any, labels: Any, classes: Sequence[int]) -> np.ndarray:
    """The highest-scoring box of each class in ``classes`` among one image's detections.

    Args:
        boxes: (N, 4) detections; scores: (N,); labels: (N,) their classes.
        classes: the classes asked for.

    Returns:
        (len(classes), 4) float64; a row of NaN for a class without a detection. Of equal scores,
        the first detection wins.
    """
    boxes = _to_numpy(boxes).astype(np.float64).reshape(-1, 4)
    scores = _to_numpy(scores).astype(np.float64).reshape(-1)
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels")
    out = np.full((len(classes), 4), np.nan)
    for i, c in enumerate(classes):
        found = np.flatnonzero(labels == int(c))
        if len(found):
            out[i] = boxes[found[np.argmax(scores[found])]]
    return out


def corloc_hits(top_boxes: Any, gt_boxes: Sequence[Any], iou_threshold: float = 0.5) -> np.ndarray:
    """Whether each (image, class) pair is correctly localised.

    Args:
        top_boxes: (P, 4), the top-scoring box of the pair's class in its image; a NaN row (no box
            for that class) is a miss.
        gt_boxes: P arrays (M_i, 4), M_i >= 1: the ground-truth boxes of that class in that image.
        iou_threshold: a fraction; a pair is correct when its best IoU is ``>= iou_threshold``.

    Returns:
        (P,) bool.
    """
    (iou_threshold,) = iou_fractions(iou_threshold, "iou_threshold")
    top = _to_numpy(top_boxes).astype(np.float64).reshape(-1, 4)
    found = ~np.isnan(top).any(axis=1)
    if len(gt_boxes) != len(top):
        raise ValueError(f"{len(top)} boxes but {len(gt_boxes)} ground-truth lists")
    hits = np.zeros(len(top), dtype=bool)
    if found.any():
        best = best_iou(top[found], [g for g, f in zip(gt_boxes, found) if f])
        hits[found] = best >= iou_threshold
    return hits


def corloc(hits: Any, labels: Any, num_classes: int | None = None) -> dict[str, Any]:
    """CorLoc from the per-pair results of :func:`corloc_hits` and each pair's class.

    Returns:
        ``{"CorLoc": mean over the classes with a pair (percent; NaN without any pair),
        "per_class": {class: percent}, "images": {class: number of pairs}}``, the classes sorted,
        only those with at least one pair (``num_classes`` only checks the labels' range).
    """
    hits = _to_numpy(hits).astype(bool).reshape(-1)
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    if len(hits) != len(labels):
        raise ValueError(f"{len(hits)} results but {len(labels)} labels")
    if num_classes is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}, got {labels.min()}..{labels.max()}")
    classes = np.unique(labels)
    per_class = {int(c): 100.0 * float(hits[labels == c].mean()) for c in classes}
    images = {int(c): int((labels == c).sum()) for c in classes}
    mean = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"CorLoc": mean, "per_class": per_class, "images": images}


# ----------------------------------------------------------------------------------- segmentation
# Semantic-segmentation metrics for WSSS seeds and pseudo-masks, in the convention of the IRN and
# BAS segmentation code (chainercv's confusion matrix):
#
# * Label maps hold class indices ``0..K-1`` (0 = background on VOC); ground-truth pixels equal to
#   ``ignore_index`` (255) are left out. A prediction must be a class at every counted pixel
#   (unsure pixels of a pseudo-mask are mapped to a class by the caller; IRN maps them to 0).
# * The confusion matrix ``C`` is ``(K, K)`` int64 with rows = ground truth, columns = prediction.
# * IoU of class k = ``C[k, k] / (row sum + column sum - C[k, k])``. A class absent from both the
#   ground truth and the prediction has no IoU (NaN) and is left out of the mean, as chainercv's
#   nanmean does (and torchmetrics' MulticlassJaccardIndex with average="macro"); a class that is
#   only predicted, or only in the ground truth, counts with IoU 0.
# * Foreground precision / recall treat every non-background class as one "foreground" class.
# * Like the accuracies above, IoUs, precisions and recalls are returned in percent.

__all__ += [
    "SegmentationEvaluator",
    "foreground_precision_recall",
    "mean_iou",
    "per_class_iou",
    "segmentation_confusion",
]


def _label_pairs(preds: Any, gts: Any) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """``(pred, gt)`` arrays from one pair of arrays or from two sequences of per-image arrays."""
    if isinstance(preds, (list, tuple)) or isinstance(gts, (list, tuple)):
        if len(preds) != len(gts):
            raise ValueError(f"got {len(preds)} predictions for {len(gts)} ground-truth maps")
        return [(_to_numpy(p), _to_numpy(g)) for p, g in zip(preds, gts)]
    return [(_to_numpy(preds), _to_numpy(gts))]


def _check_labels(values: np.ndarray, num_classes: int, what: str) -> None:
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must be integer class indices, got dtype {values.dtype}")
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= num_classes:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{what} has the value {bad} outside 0..{num_classes - 1} at a pixel that is not ignored"
        )


def segmentation_confusion(preds: Any, gts: Any, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Confusion matrix ``(K, K)`` int64 (rows ground truth, columns prediction) of label maps.

    ``preds`` and ``gts`` are arrays of the same shape (one map ``(H, W)`` or a batch
    ``(N, H, W)``), or two sequences of per-image arrays (images of different sizes). Ground-truth
    pixels equal to ``ignore_index`` are not counted.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    confusion = np.zeros(num_classes * num_classes, dtype=np.int64)
    for pred, gt in _label_pairs(preds, gts):
        if pred.shape != gt.shape:
            raise ValueError(f"prediction shape {pred.shape} does not match ground-truth shape {gt.shape}")
        keep = gt != ignore_index
        gt_v, pred_v = gt[keep], pred[keep]
        _check_labels(gt_v, num_classes, "the ground truth")
        _check_labels(pred_v, num_classes, "the prediction")
        index = gt_v.astype(np.int64) * num_classes + pred_v.astype(np.int64)
        confusion += np.bincount(index, minlength=num_classes * num_classes)
    return confusion.reshape(num_classes, num_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``100 * num / den`` as float64, NaN where ``den`` is 0."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(100.0 * num, den, out=np.full(np.shape(den), np.nan), where=den > 0)


def _as_confusion(confusion: Any) -> np.ndarray:
    c = _to_numpy(confusion)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"a confusion matrix must be square (K, K), got {c.shape}")
    return c.astype(np.int64)


def per_class_iou(confusion: Any) -> np.ndarray:
    """IoU of each class in percent, ``(K,)`` float64; NaN for a class absent from both sides."""
    c = _as_confusion(confusion)
    tp = np.diag(c)
    return _ratio(tp, c.sum(axis=0) + c.sum(axis=1) - tp)


def mean_iou(confusion: Any) -> float:
    """Mean of :func:`per_class_iou` over the classes that have one (NaN if none has)."""
    iou = per_class_iou(confusion)
    defined = iou[~np.isnan(iou)]
    return float(defined.mean()) if defined.size else float("nan")


def foreground_precision_recall(confusion: Any, background: int = 0) -> tuple[float, float]:
    """Precision and recall (percent) of "any class but ``background``" as one foreground class."""
    c = _as_confusion(confusion)
    fg = np.arange(len(c)) != background
    hit = c[np.ix_(fg, fg)].sum()
    return float(_ratio(hit, c[:, fg].sum())), float(_ratio(hit, c[fg].sum()))


class SegmentationEvaluator:
    """Accumulates the confusion matrix of label maps and reports IoU, mIoU and precision/recall.

    Memory does not grow with the number of images (one ``(K, K)`` matrix).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.confusion = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def accumulate(self, preds: Any, gts: Any) -> None:
        """Add label maps (see :func:`segmentation_confusion` for the accepted shapes)."""
        self.confusion += segmentation_confusion(preds, gts, self.num_classes, self.ignore_index)

    def compute(self) -> dict[str, Any]:
        """``miou``, per-class ``iou`` / ``precision`` / ``recall`` (None where undefined),
        ``fg_precision``, ``fg_recall`` and ``pixel_accuracy``, all in percent."""
        c = self.confusion
        tp = np.diag(c)

        def listed(values: np.ndarray) -> list[float | None]:
            return [None if np.isnan(v) else float(v) for v in values]

        fg_precision, fg_recall = foreground_precision_recall(c)
        out: dict[str, Any] = {
            "miou": mean_iou(c),
            "iou": listed(per_class_iou(c)),
            "precision": listed(_ratio(tp, c.sum(axis=0))),
            "recall": listed(_ratio(tp, c.sum(axis=1))),
            "fg_precision": fg_precision,
            "fg_recall": fg_recall,
            "pixel_accuracy": float(_ratio(tp.sum(), c.sum())),
            "num_pixels": int(c.sum()),
        }
        if self.class_names is not None:
            out["class_names"] = list(self.class_names)
        return out
