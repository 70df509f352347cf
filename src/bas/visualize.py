"""Pictures: heatmap overlays with boxes, heatmaps, masks, qualitative grids, accuracy curves (PNG).

Per-image pictures (:func:`save_overlay`, :func:`save_heatmap`, :func:`save_mask`) have exactly the
pixels of the image they describe; grids and curves are matplotlib figures. Every file is written
atomically (rendered to a temporary file, then renamed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import cv2  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bas.io import atomic_open, atomic_path  # noqa: E402

PRED_COLOUR = (255, 0, 0)  # red
GT_COLOUR = (0, 255, 0)  # lime


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


def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """A [0, 1] map (H, W) as a colour-mapped (H, W, 3) uint8 RGB image."""
    values = np.clip(np.asarray(heatmap, dtype=np.float32), 0, 1)
    return (plt.get_cmap(cmap)(values)[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(image, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap (same H, W as the image) over the image; returns (H, W, 3) uint8."""
    rgb = to_uint8_image(image).astype(np.float32)
    return (rgb * (1 - alpha) + colorize(heatmap, cmap).astype(np.float32) * alpha).astype(np.uint8)


def draw_boxes(
    rgb: np.ndarray, boxes: Sequence, colour: tuple[int, int, int], label: str | None = None
) -> np.ndarray:
    """Draw ``[x0, y0, x1, y1]`` boxes (x1 / y1 exclusive) on a uint8 RGB image, in place; a line
    width and text size that grow with the image; ``label`` written at the first box's corner."""
    height, width = rgb.shape[:2]
    thick = max(1, round(min(height, width) / 200))
    for i, box in enumerate(boxes):
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        cv2.rectangle(rgb, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), colour, thick)
        if label and i == 0:
            _draw_label(rgb, label, (max(0, x0), max(0, y0)), colour)
    return rgb


def _draw_label(rgb: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int]) -> None:
    height, width = rgb.shape[:2]
    scale = max(0.3, min(height, width) / 600)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x, y = min(corner[0], max(0, width - tw - 2)), min(corner[1], max(0, height - th - base - 2))
    cv2.rectangle(rgb, (x, y), (x + tw + 2, y + th + base + 2), colour, -1)
    cv2.putText(
        rgb, text, (x + 1, y + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA
    )


def save_png(path: str | Path, pixels: np.ndarray) -> Path:
    """Write a uint8 (H, W) grey or (H, W, 3) RGB array as a PNG of exactly that size, atomically."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(pixels)).save(fh, format="PNG")
    return path


def save_heatmap(path: str | Path, heatmap: np.ndarray, cmap: str = "jet") -> Path:
    """The colour-mapped [0, 1] map as a PNG of its own size."""
    return save_png(path, colorize(heatmap, cmap))


def save_mask(path: str | Path, mask: np.ndarray) -> Path:
    """A bool mask as a black (0) / white (255) grey PNG of its own size."""
    return save_png(path, np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8))


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
    """A heatmap/box overlay PNG at the image's own resolution: ground truth in green, prediction
    in red with ``pred_label``, ``title`` in the top-left corner."""
    rgb = to_uint8_image(image).copy() if heatmap is None else overlay(image, heatmap)
    draw_boxes(rgb, gt_boxes, GT_COLOUR)
    draw_boxes(rgb, pred_boxes, PRED_COLOUR, pred_label)
    if title and title != pred_label:
        _draw_label(rgb, title, (0, 0), (40, 40, 40))
    return save_png(path, rgb)


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
    chosen: dict[str, float] | None = None,
    mark_max: bool = True,
) -> Path:
    """Accuracy-vs-threshold curves, one line per entry of ``curves``.

    ``chosen``: vertical lines at named thresholds (``{"threshold 0.10": 0.1}``); ``mark_max``: a dot
    at each curve's maximum (its first threshold), with the value in the legend.
    """
    fig, ax = plt.subplots(figsize=(5, 3.5))
    styles = ("-", "--", ":", "-.")
    for i, (name, values) in enumerate(curves.items()):  # dashes keep overlapping curves visible
        values = np.asarray(values, dtype=np.float64)
        label = name
        if mark_max and len(values):
            best = int(np.argmax(values))
            label = f"{name} (max {values[best]:.1f} at {thresholds[best]:.2f})"
        (line,) = ax.plot(
            thresholds, values, styles[i % len(styles)], label=label, linewidth=1.8 - 0.3 * (i % 3)
        )
        if mark_max and len(values):
            ax.plot([thresholds[best]], [values[best]], "o", color=line.get_color(), markersize=5)
    for j, (name, value) in enumerate((chosen or {}).items()):
        ax.axvline(value, color="black", linestyle=styles[(j + 1) % len(styles)], linewidth=1.0, label=name)
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
