"""Pictures: heatmap overlays with boxes, qualitative grids, accuracy curves (matplotlib, PNG).

Every figure is written atomically (rendered to a temporary file, then renamed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bas.io import atomic_path  # noqa: E402


def to_uint8_image(image) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image, a uint8/float array (H, W, 3) or a (3, H, W) float tensor in [0, 1]."""
    if hasattr(image, "detach"):
        image = image.detach().cpu().float().numpy()
        if image.ndim == 3 and image.shape[0] == 3:
            image = image.transpose(1, 2, 0)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return arr


def overlay(image, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap (same H, W as the image) over the image; returns (H, W, 3) uint8."""
    rgb = to_uint8_image(image).astype(np.float32)
    colours = plt.get_cmap(cmap)(np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1))[..., :3] * 255.0
    return (rgb * (1 - alpha) + colours * alpha).astype(np.uint8)


def _draw_box(ax, box, colour: str, label: str | None = None) -> None:
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=colour, linewidth=2))
    if label:
        ax.text(
            x0 + 2,
            y0 + 2,
            label,
            color="white",
            fontsize=7,
            va="top",
            bbox={"facecolor": colour, "alpha": 0.7, "pad": 1, "edgecolor": "none"},
        )


def draw_panel(
    ax,
    image,
    heatmap=None,
    pred_boxes: Sequence = (),
    gt_boxes: Sequence = (),
    title: str | None = None,
    pred_label: str | None = None,
) -> None:
    """One panel: the image (with the heatmap blended in if given), ground truth in green, prediction in red."""
    ax.imshow(to_uint8_image(image) if heatmap is None else overlay(image, heatmap))
    for box in gt_boxes:
        _draw_box(ax, box, "lime")
    for box in pred_boxes:
        _draw_box(ax, box, "red", pred_label)
    if title:
        ax.set_title(title, fontsize=8)
    ax.axis("off")


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def save_overlay(
    path: str | Path,
    image,
    heatmap,
    pred_boxes: Sequence = (),
    gt_boxes: Sequence = (),
    title: str | None = None,
    pred_label: str | None = None,
) -> Path:
    """A single heatmap/box overlay PNG."""
    h, w = to_uint8_image(image).shape[:2]
    fig, ax = plt.subplots(figsize=(max(2.0, w / 100), max(2.0, h / 100)))
    draw_panel(ax, image, heatmap, pred_boxes, gt_boxes, title, pred_label)
    return save_figure(fig, path)


def save_grid(
    path: str | Path,
    images: Sequence,
    heatmaps: Sequence,
    pred_boxes: Sequence,
    gt_boxes: Sequence,
    titles: Sequence[str] | None = None,
    columns: int = 4,
    with_raw: bool = True,
) -> Path:
    """Qualitative grid: for each sample the image with its boxes and, beside it, the heatmap overlay."""
    n = len(images)
    columns = max(1, min(columns, n))
    per = 2 if with_raw else 1
    cols = columns * per
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, columns)
        title = titles[i] if titles else None
        if with_raw:
            draw_panel(axes[r, c * per], images[i], None, [], gt_boxes[i], title)
        draw_panel(
            axes[r, c * per + per - 1],
            images[i],
            heatmaps[i],
            [pred_boxes[i]],
            gt_boxes[i],
            None if with_raw else title,
        )
    fig.tight_layout()
    return save_figure(fig, path)


def save_curve(
    path: str | Path,
    thresholds: np.ndarray,
    curves: dict[str, np.ndarray],
    ylabel: str = "accuracy (%)",
    title: str | None = None,
) -> Path:
    """Accuracy-vs-threshold curves, one line per entry of ``curves``."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    styles = ("-", "--", ":", "-.")
    for i, (name, values) in enumerate(curves.items()):  # dashes keep overlapping curves visible
        ax.plot(thresholds, values, styles[i % len(styles)], label=name, linewidth=1.8 - 0.3 * (i % 3))
    ax.set_xlabel("threshold")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return save_figure(fig, path)


def save_bars(
    path: str | Path,
    names: Sequence[str],
    series: dict[str, Sequence[float]],
    ylabel: str = "accuracy (%)",
    title: str | None = None,
    max_bars: int = 60,
) -> Path:
    """Grouped bar chart (e.g. per-class accuracy); with many classes only the first ``max_bars`` are drawn."""
    names = list(names)[:max_bars]
    x = np.arange(len(names))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(names) * max(1, len(series)) / 2), 3.5))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + i * width - 0.4 + width / 2, list(values)[: len(names)], width, label=label)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path)
