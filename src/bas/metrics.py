"""Localisation and classification metrics (pure numpy, no file I/O).

Conventions, identical to clovaai/wsolevaluation (Choe et al., CVPR 2020) and to the BAS code:

* Boxes are ``[x0, y0, x1, y1]`` in pixels with *inclusive* corners: the area of a box is
  ``(x1 - x0 + 1) * (y1 - y0 + 1)``. An IoU whose union is not positive is 0.
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
  (percent) when its best IoU over its ground-truth boxes is ``>= d / 100``. MaxBoxAcc(d) is the
  best accuracy over the thresholds; MaxBoxAccV2 is the mean of MaxBoxAcc over the IoU
  thresholds (30, 50, 70 in the paper, with multi-contour evaluation).
* PxAP (:class:`MaskEvaluator`): pixel scores are histogrammed over the edges
  ``threshold_grid(interval) + [1, 2, 3]``; a pixel is predicted foreground at edge ``e`` when
  its score is ``>= e``. Precision and recall are computed at every edge from the highest down,
  PxAP is ``sum(precision[k] * (recall[k] - recall[k - 1]))`` over the edges with at least one
  predicted pixel, and PIoU is the best ``tp / (tp + fp + fn)`` over the edges. Ignored pixels
  (the ignore region minus the foreground) count neither as positive nor as negative.

All accuracies are returned in percent.

Speed: :class:`BoxEvaluator` returns exactly what evaluating every threshold one by one returns,
but traces each distinct binary mask once (at most 256 per map, whatever the interval), skips the
masks whose foreground extent cannot reach the smallest IoU threshold, and spreads the maps over
worker processes (``benchmarks/evaluate_maps.py`` measures it against the one-by-one procedure).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
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
    "localization_accuracy",
    "per_class_accuracy",
    "quantize_maps",
    "threshold_grid",
    "topk_correct",
]

# A worker process is only worth forking for at least this many maps.
_MIN_MAPS_PER_WORKER = 16
# With several workers, quantised maps are queued until max(_QUEUED_MAPS, _QUEUED_MAPS_PER_WORKER *
# workers) are waiting, then evaluated by a fresh pool (512 uint8 maps of 224x224 hold 26 MB).
_QUEUED_MAPS = 512
_QUEUED_MAPS_PER_WORKER = 64


def _to_numpy(x: Any) -> np.ndarray:
    """Return ``x`` as a numpy array; torch tensors are detached and moved to the CPU."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def threshold_grid(interval: float) -> np.ndarray:
    """Score-map thresholds ``0, interval, 2 * interval, ... < 1`` (``np.arange(0, 1, interval)``).

    This is exactly the list wsolevaluation builds from ``cam_curve_interval``.
    """
    if not 0 < interval <= 1:
        raise ValueError(f"the threshold interval must be in (0, 1], got {interval}")
    return np.arange(0, 1, interval)


def _area(boxes: np.ndarray) -> np.ndarray:
    """Inclusive-pixel area of boxes ``[..., 4]``."""
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
    """Pairwise IoU of ``boxes_a`` (N, 4) and ``boxes_b`` (M, 4) as an (N, M) float64 array.

    Boxes are ``[x0, y0, x1, y1]`` with inclusive corners, area ``(x1-x0+1) * (y1-y0+1)``, as in
    wsolevaluation's ``calculate_multiple_iou``; a pair whose union is not positive has IoU 0.
    """
    a = _as_boxes(boxes_a, "boxes_a")
    b = _as_boxes(boxes_b, "boxes_b")
    return _iou(a[:, None, :], b[None, :, :])


def best_iou(pred_boxes: Any, gt_boxes: Sequence[Any]) -> np.ndarray:
    """Best IoU of each predicted box against the ground-truth boxes of its own image.

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


def topk_correct(logits_or_scores: Any, labels: Any, ks: Iterable[int] = (1, 5)) -> dict[int, np.ndarray]:
    """Whether each label is among the k highest scores, for every k in ``ks``.

    Ties are broken in favour of the lower class index (a stable descending sort), so the
    result does not depend on the platform. ``k`` larger than the number of classes means all.

    Returns:
        ``{k: bool array (B,)}``.
    """
    scores = _to_numpy(logits_or_scores).astype(np.float64)
    labels = _to_numpy(labels).astype(np.int64).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(labels):
        raise ValueError(f"scores must be (B, K) with B = {len(labels)} labels, got {scores.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= scores.shape[1]):
        raise ValueError(f"labels must be in [0, {scores.shape[1]})")
    order = np.argsort(-scores, axis=1, kind="stable")
    rank = np.argmax(order == labels[:, None], axis=1)
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
) -> dict[str, float]:
    """GT-known / Top-1 / Top-5 localisation and Top-1 / Top-5 classification accuracy, in percent.

    A box is right when its IoU is ``>= iou_threshold``. Top-1 Loc needs the top-1 class right
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
    box_ok = ious >= iou_threshold
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


def _check_maps(maps: Any) -> np.ndarray:
    """Score maps as a (B, H, W) float64 array, checked like wsolevaluation's check_scoremap_validity."""
    arr = _to_numpy(maps)
    if arr.ndim != 3:
        raise ValueError(f"score maps must have shape (B, H, W), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"score maps must be floating point, got {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size:
        if np.isnan(arr).any():
            raise ValueError("score maps contain NaN")
        if arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"score maps must be in [0, 1], got min {arr.min()} and max {arr.max()}")
    return arr


def quantize_maps(maps: Any) -> np.ndarray:
    """``uint8(map * 255)`` (truncation) of checked (B, H, W) maps, as wsolevaluation does for boxes."""
    return (_check_maps(maps) * 255).astype(np.uint8)


def _worker_count(num_workers: int | None) -> int:
    if num_workers is None:
        if hasattr(os, "sched_getaffinity"):
            return max(1, len(os.sched_getaffinity(0)))
        return max(1, os.cpu_count() or 1)
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    return int(num_workers)


def _map_best_ious(
    u8: np.ndarray, gt: np.ndarray, thresholds: np.ndarray, min_iou: float, multi_contour: bool
) -> np.ndarray:
    """Best IoU of the box(es) of one quantised map at every threshold.

    Equal to evaluating every threshold the wsolevaluation way, but each distinct binary mask is
    processed once: the mask at threshold t is ``u > int(t * max(u))``, which only depends on
    how many of the uint8 values present in ``u`` are <= that level (at most 256 masks).
    A mask whose foreground bounding box already bounds the IoU of every box it can produce
    below ``min_iou`` is not traced; its entry is -1 (a miss at every IoU threshold).
    Contours are traced on the foreground's bounding box plus a 1-pixel margin (findContours
    pads the image with zeros, so the contours, their order and areas are the same as on the
    full map, shifted back by ``offset``).
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
    traced = np.flatnonzero(bound >= min_iou - 1e-9)

    rects: list[tuple[int, int, int, int]] = []
    counts: list[int] = []
    find, rect, area = cv2.findContours, cv2.boundingRect, cv2.contourArea
    crop_y0, crop_y1 = np.maximum(y0 - 1, 0), np.minimum(y1 + 2, height)
    crop_x0, crop_x1 = np.maximum(x0 - 1, 0), np.minimum(x1 + 2, width)
    crops = zip(
        values[traced].tolist(),
        crop_y0[traced].tolist(),
        crop_y1[traced].tolist(),
        crop_x0[traced].tolist(),
        crop_x1[traced].tolist(),
    )
    for value, ya, yb, xa, xb in crops:
        mask = np.greater_equal(u8[ya:yb, xa:xb], value).view(np.uint8)
        contours = find(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=(xa, ya))[-2]
        if not multi_contour:
            contours = [max(contours, key=area)]
        rects.extend(map(rect, contours))
        counts.append(len(contours))
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
        best[np.flatnonzero(~empty)[traced]] = np.maximum.reduceat(ious, starts)
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
    for u8, gt in zip(maps_u8, gt_boxes):
        best = _map_best_ious(u8, gt, thresholds, min_iou, multi_contour)
        hits += best[None, :] >= iou_fractions[:, None]
    return hits


def _count_box_hits_star(args: tuple) -> np.ndarray:
    return _count_box_hits(*args)


def _process_context() -> Any:
    """``fork`` on Linux (workers inherit the loaded modules, like torch's DataLoader); else the default."""
    if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


class BoxEvaluator:
    """MaxBoxAcc / MaxBoxAccV2 of score maps against ground-truth boxes (see the module docstring).

    Call :meth:`accumulate` with batches of maps, then :meth:`compute`. Maps are quantised at
    once; with several workers they are queued and evaluated by a pool of processes (forked on
    Linux) when enough are waiting, and at the latest by :meth:`compute`.

    Args:
        iou_thresholds: IoU thresholds in percent (an image is correct when IoU >= d / 100).
        interval: score-threshold step; the thresholds are ``threshold_grid(interval)``.
        multi_contour: keep every contour's box (True, MaxBoxAccV2) or only the largest one.
        num_workers: processes to use; None means every core available to this process.
    """

    def __init__(
        self,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        interval: float = 0.001,
        multi_contour: bool = True,
        num_workers: int | None = None,
    ):
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        if not self.iou_thresholds or any(not 0 < d <= 100 for d in self.iou_thresholds):
            raise ValueError(f"IoU thresholds must be in (0, 100] percent, got {iou_thresholds}")
        self.interval = float(interval)
        self.thresholds = threshold_grid(interval)
        self.multi_contour = bool(multi_contour)
        self.num_workers = _worker_count(num_workers)
        self._iou_fractions = np.array([d / 100 for d in self.iou_thresholds])
        self._hits = np.zeros((len(self.iou_thresholds), len(self.thresholds)), dtype=np.int64)
        self._count = 0
        self._queued_maps: list[np.ndarray] = []
        self._queued_boxes: list[np.ndarray] = []

    @property
    def num_images(self) -> int:
        """Number of maps accumulated so far."""
        return self._count + len(self._queued_boxes)

    def accumulate(self, maps: Any, gt_boxes: Sequence[Any]) -> None:
        """Add a batch.

        Args:
            maps: (B, H, W) float scores in [0, 1] (numpy or torch).
            gt_boxes: B arrays (M_i, 4) of ``[x0, y0, x1, y1]`` boxes in map coordinates
                (inclusive corners), M_i >= 1.
        """
        maps_u8 = quantize_maps(maps)
        if len(gt_boxes) != len(maps_u8):
            raise ValueError(f"{len(maps_u8)} maps but {len(gt_boxes)} ground-truth box lists")
        boxes = [_as_boxes(g, "ground-truth boxes") for g in gt_boxes]
        for i, g in enumerate(boxes):
            if len(g) == 0:
                raise ValueError(f"map {i} of the batch has no ground-truth box")
        self._queued_maps.append(maps_u8)
        self._queued_boxes.extend(boxes)
        queue_limit = max(_QUEUED_MAPS, _QUEUED_MAPS_PER_WORKER * self.num_workers)
        if self.num_workers == 1 or len(self._queued_boxes) >= queue_limit:
            self._flush()

    def _flush(self) -> None:
        if not self._queued_maps:
            return
        maps_u8 = np.concatenate(self._queued_maps)
        boxes = self._queued_boxes
        self._queued_maps, self._queued_boxes = [], []
        args = (self.thresholds, self._iou_fractions, self.multi_contour)
        workers = min(self.num_workers, len(maps_u8) // _MIN_MAPS_PER_WORKER)
        if workers < 2 or multiprocessing.current_process().daemon:
            self._hits += _count_box_hits(maps_u8, boxes, *args)
        else:
            bounds = np.linspace(0, len(maps_u8), 4 * workers + 1).astype(int)
            chunks = [(maps_u8[a:b], boxes[a:b], *args) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
            with _process_context().Pool(workers) as pool:
                for hits in pool.imap_unordered(_count_box_hits_star, chunks):
                    self._hits += hits
        self._count += len(maps_u8)

    def _accuracies(self) -> np.ndarray:
        self._flush()
        if self._count == 0:
            raise DataError("no score map was evaluated")
        return self._hits * 100.0 / float(self._count)

    def compute(self) -> dict[str, Any]:
        """Results so far.

        Returns:
            ``num_images``; ``MaxBoxAcc`` ``{iou: percent}``; ``MaxBoxAccV2`` (mean of MaxBoxAcc
            over the IoU thresholds); ``best_threshold`` ``{iou: first threshold reaching the
            max}``; ``curve`` ``{"thresholds": (T,), "accuracy": {iou: (T,) percent}}``.
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

    def accuracy_at(self, threshold: float) -> dict[int, float]:
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


def reference_box_hits(maps: Any, gts: Sequence[Any], interval: float, iou_thresholds: Sequence[int],
                       multi_contour: bool) -> np.ndarray:
    """Hit counts (n_iou, n_thr) by wsolevaluation's procedure, literally: one ``cv2.threshold`` and
    one ``findContours`` per threshold. Slow; kept as the reference :class:`BoxEvaluator` is
    verified and benchmarked against."""
    thresholds = np.arange(0, 1, interval)
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
                hits[i, j] += best >= d / 100
    return hits
