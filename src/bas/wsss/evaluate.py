"""Scoring seeds against ground-truth masks, at every background threshold at once.

A seeds folder (written by :func:`bas.wsss.seeds.generate_seeds`) holds per image the full-resolution
maps of its tagged classes. At background threshold ``t`` a pixel is labelled with its strongest
class where that class's map exceeds ``t``, else background (:func:`bas.wsss.seeds.seed_labels`).
For a grid of thresholds, one pass over the images gives every confusion matrix: per pixel only
the strongest class and its value matter, so a histogram of (ground truth, strongest class, number
of grid thresholds below the value) is accumulated and summed from the top.

Protocols (docs/segmentation.md, "Choosing the threshold"):

* ``standard``: the threshold is chosen (best mIoU) on a held-out split's seeds and the target
  split is reported at it; without a held-out split, at the threshold the seeds were written with;
* ``reference``: the released code's procedure, best threshold of 0.20, 0.21, ..., 0.44 on the
  evaluated split itself (optimistic: the number published tables quote).

mIoU, per-class IoU and foreground precision / recall come from :mod:`bas.metrics` (confusion
matrix with rows = ground truth, 255 ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bas.errors import DataError
from bas.io import atomic_path
from bas.metrics import SegmentationEvaluator
from bas.wsss.masks import IGNORE_INDEX
from bas.wsss.seeds import MAPS_DIR, read_seeds

#: The standard protocol's grid: 0.01 to 0.99.
STANDARD_GRID = tuple(round(i / 100, 2) for i in range(1, 100))
#: The released code's sweep: 0.20 to 0.44.
REFERENCE_GRID = tuple(round(i / 100, 2) for i in range(20, 45))
PROTOCOLS = ("standard", "reference")


def threshold_confusions(
    pairs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | Any,
    num_classes: int,
    thresholds: Sequence[float],
    *,
    where: Callable[[int], str] | None = None,
) -> np.ndarray:
    """Confusion matrices ``(T, K, K)`` int64 of the seeds at each threshold.

    ``pairs`` yields ``(classes, full maps, ground truth)`` per image: (C,) 0-based classes,
    ``(C, H, W)`` maps and an ``(H, W)`` mask (labels ``0..K-1``, 255 ignored). ``where(i)`` names
    image ``i`` in error messages. Equal to :func:`bas.metrics.segmentation_confusion` of
    :func:`~bas.wsss.seeds.seed_labels` at each threshold.
    """
    k = int(num_classes)
    grid = np.asarray(thresholds, dtype=np.float32)
    if grid.ndim != 1 or not len(grid) or np.any(np.diff(grid) <= 0):
        raise ValueError("thresholds must be an increasing, non-empty sequence")
    bins = len(grid) + 1
    hist = np.zeros(k * k * bins, dtype=np.int64)
    for i, (classes, full, gt) in enumerate(pairs):
        name = where(i) if where is not None else f"image {i}"
        gt = np.asarray(gt)
        if tuple(full.shape[1:]) != gt.shape:
            raise DataError(f"seed maps of size {tuple(full.shape[1:])} for a mask of size {gt.shape}", name)
        keep = gt != IGNORE_INDEX
        g = gt[keep].astype(np.int64)
        if g.size and (g.min() < 0 or g.max() >= k):
            raise DataError(f"mask label {int(g.max())} outside 0..{k - 1} (and not {IGNORE_INDEX})", name)
        if len(classes):
            if classes.max() + 1 >= k:
                raise DataError(f"seeds of class {int(classes.max())} for a {k - 1}-class dataset", name)
            maps = np.asarray(full, dtype=np.float32)[:, keep]
            label = np.asarray(classes, np.int64)[maps.argmax(axis=0)] + 1
            above = np.searchsorted(grid, maps.max(axis=0), side="left")  # grid values < the score
        else:
            label = above = np.zeros_like(g)
        hist += np.bincount((g * k + label) * bins + above, minlength=hist.size)
    hist = hist.reshape(k, k, bins)
    # foreground at threshold j: the pixels with more than j grid values below their score
    fg = np.flip(np.cumsum(np.flip(hist, 2), 2), 2)[:, :, 1:].transpose(2, 0, 1).copy()  # (T, K, K)
    fg[:, :, 0] = 0
    fg[:, :, 0] = hist.sum(axis=(1, 2))[None, :] - fg.sum(axis=2)
    return fg


def scores(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The :class:`~bas.metrics.SegmentationEvaluator` numbers of one confusion matrix."""
    evaluator = SegmentationEvaluator(len(confusion), class_names=class_names)
    evaluator.confusion = np.asarray(confusion, dtype=np.int64)
    return evaluator.compute()


def curve(confusions: np.ndarray) -> list[float]:
    """mIoU (percent) at each threshold."""
    return [scores(c)["miou"] for c in confusions]


def best_threshold(thresholds: Sequence[float], mious: Sequence[float]) -> tuple[float, float]:
    """``(threshold, mIoU)`` of the best mIoU (the lowest threshold among equals)."""
    index = int(np.nanargmax(np.asarray(mious, dtype=np.float64)))
    return float(thresholds[index]), float(mious[index])


def split_confusions(
    seeds_dir: Path,
    image_ids: Sequence[str],
    masks: Callable[[int], np.ndarray],
    num_classes: int,
    thresholds: Sequence[float],
) -> np.ndarray:
    """:func:`threshold_confusions` of the seeds in ``seeds_dir`` for the listed images."""
    from bas.io import path_inside

    def pairs():
        for i, image_id in enumerate(image_ids):
            classes, full = read_seeds(path_inside(seeds_dir / MAPS_DIR, image_id, ".npz"))
            yield classes, full, masks(i)

    return threshold_confusions(
        pairs(),
        num_classes,
        thresholds,
        where=lambda i: str(path_inside(seeds_dir / MAPS_DIR, image_ids[i], ".npz")),
    )


def plot_curve(
    path: str | Path,
    thresholds: Sequence[float],
    curves: dict[str, Sequence[float]],
    chosen: float,
    title: str,
) -> None:
    """mIoU against the background threshold, one line per split, the chosen threshold marked (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in curves.items():
        ax.plot(thresholds, values, label=label)
    ax.axvline(chosen, color="k", linestyle="--", linewidth=1, label=f"chosen threshold {chosen:.2f}")
    ax.set_xlabel("background threshold")
    ax.set_ylabel("mIoU (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def evaluate_seeds(
    target: tuple[Path, Sequence[str], Callable[[int], np.ndarray]],
    num_classes: int,
    *,
    protocol: str = "standard",
    select: tuple[Path, Sequence[str], Callable[[int], np.ndarray]] | None = None,
    fixed_threshold: float | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score the seeds of a split; ``target`` and ``select`` are ``(seeds folder, image ids,
    mask of image i)``.

    ``standard``: the threshold is the best of :data:`STANDARD_GRID` on ``select``, or
    ``fixed_threshold`` without it; ``reference``: the best of :data:`REFERENCE_GRID` on the target
    itself. Returns the scores at the threshold (:func:`scores`), ``threshold``, ``chosen_on``
    (``select``, ``fixed`` or ``evaluated split``) and the curves (``thresholds``, ``curve``,
    ``select_curve``).
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r} (choose from {', '.join(PROTOCOLS)})")
    if protocol == "reference" and select is not None:
        raise ValueError(
            "the reference protocol chooses the threshold on the evaluated split: no held-out split"
        )
    grid = list(REFERENCE_GRID if protocol == "reference" else STANDARD_GRID)
    if protocol == "standard" and select is None:
        if fixed_threshold is None:
            raise ValueError("give a held-out split to choose the threshold on, or a fixed threshold")
        grid = sorted(set(grid) | {round(float(fixed_threshold), 6)})
    target_conf = split_confusions(*target, num_classes, grid)
    target_curve = curve(target_conf)
    out: dict[str, Any] = {"protocol": protocol, "thresholds": grid, "curve": target_curve}
    if protocol == "reference":
        threshold, _ = best_threshold(grid, target_curve)
        out["chosen_on"] = "evaluated split"
    elif select is not None:
        select_curve = curve(split_confusions(*select, num_classes, grid))
        threshold, best = best_threshold(grid, select_curve)
        out.update(chosen_on="select", select_curve=select_curve, select_miou=best)
    else:
        threshold = round(float(fixed_threshold), 6)
        out["chosen_on"] = "fixed"
    out["threshold"] = threshold
    out.update(scores(target_conf[grid.index(threshold)], class_names))
    out["confusion"] = target_conf[grid.index(threshold)].tolist()
    return out
