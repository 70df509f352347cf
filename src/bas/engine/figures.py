"""Figures of an evaluation: the threshold curves and the qualitative grid of ``bas demo`` /
``bas evaluate --save-vis``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bas.data import collate, denormalize
from bas.localization import localization_maps, maps_to_boxes
from bas.visualize import save_curve, save_grid, save_overlay


def save_threshold_curves(
    out_dir: str | Path, paper: dict[str, np.ndarray], box: dict[str, object], threshold: float
) -> tuple[Path, Path]:
    """``curve.png`` (GT-known / Top-1 Loc at IoU >= 0.5 against the map threshold) and
    ``maxboxacc_curve.png`` (box accuracy at each IoU level), each with its maxima marked and a
    vertical line at the threshold the paper metrics used."""
    out_dir = Path(out_dir)
    chosen = {f"threshold used ({threshold:.2f})": float(threshold)}
    first = save_curve(
        out_dir / "curve.png",
        paper["threshold"],
        {"GT-known Loc": paper["gt_known_loc"], "Top-1 Loc": paper["top1_loc"]},
        title="paper metrics (IoU >= 0.5) vs threshold",
        chosen=chosen,
    )
    second = save_curve(
        out_dir / "maxboxacc_curve.png",
        box["thresholds"],
        {f"IoU >= {d:.2f}": acc for d, acc in box["accuracy"].items()},
        ylabel="box accuracy (%)",
        title="box accuracy vs threshold (MaxBoxAcc at the maxima)",
        chosen=chosen,
    )
    return first, second


@torch.no_grad()
def save_qualitative_grid(
    path: str | Path,
    model,
    dataset,
    *,
    n: int = 16,
    top_k: int = 1,
    threshold: float = 0.5,
    device: str | torch.device = "cpu",
    class_names: list[str] | None = None,
    columns: int = 4,
    overlays: str | Path | None = None,
    crop: bool = True,
    resize_size: int | None = None,
) -> Path:
    """Image with ground-truth (green) and predicted (red) boxes, and the heatmap overlay, for ``n`` images
    spread evenly over ``dataset``.

    With ``overlays`` (a folder), each of these images is also written as
    ``<overlays>/<image_id>.png`` at its original resolution, the map carried back the way
    :class:`bas.predict.Localizer` does (``crop``: the test transform was Resize ``resize_size`` +
    CenterCrop), its box computed there.
    """
    n = max(1, min(n, len(dataset)))
    indices = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    batch = collate([dataset[int(i)] for i in indices])
    model.eval()
    images = batch["image"].to(device)
    out = model(images, batch["label"].to(device), top_k=top_k)
    maps = localization_maps(out.fg_map.float(), images.shape[-2:]).cpu()
    boxes = maps_to_boxes(maps, threshold)
    preds = out.logits.argmax(1).cpu().tolist()
    titles = []
    for label, pred in zip(batch["label"].tolist(), preds):
        name = class_names[pred] if class_names and pred < len(class_names) else str(pred)
        titles.append(f"{'ok' if pred == label else 'wrong'}: {name}"[:28])
    if overlays is not None:
        _save_original_overlays(overlays, dataset, indices, maps, titles, threshold, crop, resize_size)
    pictures = [denormalize(img).clamp(0, 1) for img in batch["image"]]
    return save_grid(
        path,
        pictures,
        list(maps.numpy()),
        list(boxes),
        [b.numpy() for b in batch["boxes"]],
        titles=titles,
        columns=columns,
    )


def _save_original_overlays(
    folder: str | Path,
    dataset,
    indices: np.ndarray,
    maps: torch.Tensor,
    titles: list[str],
    threshold: float,
    crop: bool,
    resize_size: int | None,
) -> None:
    from bas.io import path_inside
    from bas.predict import map_to_original

    for index, crop_map, title in zip(indices.tolist(), maps, titles):
        image, _, _ = dataset.load(index)
        record = dataset.records[index]
        full = map_to_original(crop_map, image.size, crop=crop, resize_size=resize_size).numpy()
        box = maps_to_boxes(full[None], threshold)[0]
        path = path_inside(folder, record.image_id, ".png")
        save_overlay(path, image, full, pred_boxes=[box], gt_boxes=record.boxes, pred_label=title)
