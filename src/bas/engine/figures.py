"""Figures that need a model and a dataset: the qualitative grid of ``bas demo`` / ``bas evaluate --save-vis``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bas.data import collate, denormalize
from bas.localization import localization_maps, maps_to_boxes
from bas.visualize import save_grid


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
) -> Path:
    """Image with ground-truth (green) and predicted (red) boxes, and the heatmap overlay, for ``n`` images
    spread evenly over ``dataset``."""
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
