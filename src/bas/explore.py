"""The exploratory experiment of the CVPR 2022 paper (its motivation figure).

Question: as a foreground mask grows from inside the object to beyond it, how do the
cross-entropy of the foreground-masked features and the activations behave? The paper's
observation: the cross-entropy is already near its minimum when the mask covers only part of the
object, while the foreground activation keeps rising (and the background activation keeps
falling) until the mask reaches the object's boundary, which is why BAS learns from activation
values rather than from cross-entropy.

For each image with a ground-truth mask (or, failing that, its ground-truth boxes filled in as a
mask), at the network input resolution (the evaluation transform of the checkpoint, ``C x C``):

1. the mask is eroded and dilated with square kernels of side ``5n`` for ``n = 1..K`` (OpenCV,
   one pass each), giving ``2K + 1`` masks with the original; step ``-n`` is the erosion with
   kernel ``5n``, ``0`` the original, ``+n`` the dilation;
2. each mask is downsampled to the mid-level feature resolution (28 x 28 for a 224 input) by area
   averaging (``F.interpolate(mode="area")``), so a feature cell gets the fraction of its pixels
   the mask covers;
3. the mid-level features ``F`` of the image are computed once; ``F * M`` and ``F * (1 - M)`` for
   all ``2K + 1`` masks go through ``head`` and ``classifier`` in one forward pass, giving class
   scores ``s_fg`` and ``s_bg`` (GAP of the classifier map);
4. recorded per mask: its area (fraction of the input covered, at the input resolution), the
   cross-entropy of ``s_fg`` w.r.t. the ground-truth class, the foreground activation
   ``s_fg[y]`` and the background activation ``s_bg[y]``.

:func:`write_exploration` saves the per-image rows, a per-step summary (mean and standard deviation
over images) and a figure of the three curves against the mean mask area.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

KERNEL_STEP = 5  # kernel side of step n is KERNEL_STEP * n (the paper's 5n)
METRICS = ("ce", "fg_activation", "bg_activation")


@dataclass
class ExplorationResult:
    """Rows of :func:`run_exploration`: one per image and mask step, and the per-step summary."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def step_name(n: int) -> str:
    return "erode" if n < 0 else "dilate" if n > 0 else "original"


def mask_family(mask: np.ndarray, max_n: int) -> tuple[np.ndarray, list[int]]:
    """Eroded and dilated versions of a binary ``(H, W)`` mask.

    Returns ``(masks, steps)``: float32 masks ``(2K + 1, H, W)`` in {0, 1} for steps
    ``-K, ..., -1, 0, 1, ..., K`` (``K = max_n``); step ``-n`` is the erosion and ``+n`` the dilation
    with a ``5n x 5n`` square kernel. Pixels outside the image count as background for the
    erosion (an object touching the border shrinks from it too).
    """
    if max_n < 0:
        raise ValueError(f"max_n must be >= 0, got {max_n}")
    base = np.asarray(mask, dtype=np.uint8)
    steps = list(range(-max_n, max_n + 1))
    out = []
    for n in steps:
        if n == 0:
            out.append(base)
            continue
        kernel = np.ones((KERNEL_STEP * abs(n),) * 2, np.uint8)
        if n < 0:
            out.append(cv2.erode(base, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0))
        else:
            out.append(cv2.dilate(base, kernel))
    return np.stack(out).astype(np.float32), steps


def boxes_to_mask(boxes: torch.Tensor | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The union of ``(M, 4)`` XYXY boxes as a bool ``(H, W)`` mask, ``size = (H, W)``; pixel
    ``(y, x)`` is inside a box when its centre is."""
    height, width = size
    mask = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        c0, c1 = int(np.clip(np.round(x0), 0, width)), int(np.clip(np.round(x1), 0, width))
        r0, r1 = int(np.clip(np.round(y0), 0, height)), int(np.clip(np.round(y1), 0, height))
        mask[r0:r1, c0:c1] = True
    return mask


@torch.no_grad()
def masked_scores(
    model: nn.Module, feat: torch.Tensor, masks: torch.Tensor, label: int
) -> dict[str, torch.Tensor]:
    """Scores of the masked mid-level features, all masks in one forward pass.

    Args:
        model: a BAS model (``head`` and ``classifier`` are used, in its current mode).
        feat: mid-level features of one image, ``(1, C, h, w)``.
        masks: ``(M, 1, h, w)`` in [0, 1] at the feature resolution.
        label: the ground-truth class.

    Returns:
        ``ce`` (M,): cross-entropy of ``GAP(classifier(head(F * M)))`` w.r.t. ``label``;
        ``fg_activation`` (M,): its ``label`` score; ``bg_activation`` (M,): the ``label`` score of
        ``F * (1 - M)``.
    """
    count = masks.shape[0]
    x = torch.cat([feat * masks, feat * (1.0 - masks)])
    scores = model.pool(model.head_maps(x)).float()
    fg, bg = scores[:count], scores[count:]
    target = torch.full((count,), int(label), dtype=torch.long, device=scores.device)
    return {
        "ce": F.cross_entropy(fg, target, reduction="none"),
        "fg_activation": fg[:, label],
        "bg_activation": bg[:, label],
    }


def _sample_mask(sample: dict[str, Any]) -> np.ndarray | None:
    """The sample's object mask at the input resolution, or its boxes filled in; None when it has neither."""
    height, width = sample["image"].shape[-2:]
    if sample.get("mask") is not None:
        mask = sample["mask"].numpy().astype(bool)
    elif len(sample["boxes"]):
        mask = boxes_to_mask(sample["boxes"], (height, width))
    else:
        return None
    return mask if mask.any() else None


@torch.no_grad()
def run_exploration(
    model: nn.Module,
    dataset,
    *,
    num_images: int = 100,
    max_n: int = 6,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> ExplorationResult:
    """Run the experiment on ``num_images`` images spread evenly over ``dataset``.

    ``dataset`` yields the samples of :mod:`bas.data.datasets` (normalised ``image`` at the input
    resolution, ``label``, ``mask`` and / or ``boxes`` aligned with it). Images with neither a mask
    nor a box are skipped (listed in ``result.skipped``).
    """
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    model.eval()
    device = torch.device(device)
    count = min(num_images, len(dataset))
    indices = np.unique(np.linspace(0, len(dataset) - 1, count).round().astype(int)) if count else []
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    input_size: tuple[int, int] | None = None
    feature_size: tuple[int, int] | None = None
    for index in tqdm(indices, desc="explore", disable=not progress, leave=False, dynamic_ncols=True):
        sample = dataset[int(index)]
        mask = _sample_mask(sample)
        if mask is None:
            skipped.append(sample["image_id"])
            continue
        masks, steps = mask_family(mask, max_n)
        feat = model.mid(sample["image"][None].to(device))
        input_size, feature_size = tuple(mask.shape), tuple(feat.shape[-2:])
        small = F.interpolate(torch.from_numpy(masks)[:, None].to(device), size=feature_size, mode="area")
        scores = {k: v.cpu().tolist() for k, v in masked_scores(model, feat, small, sample["label"]).items()}
        areas = masks.mean(axis=(1, 2))
        for i, n in enumerate(steps):
            rows.append(
                {
                    "image_id": sample["image_id"],
                    "label": int(sample["label"]),
                    "step": n,
                    "operation": step_name(n),
                    "kernel": KERNEL_STEP * abs(n),
                    "area": float(areas[i]),
                    **{k: float(scores[k][i]) for k in METRICS},
                }
            )
    settings = {
        "num_images": len(indices) - len(skipped),
        "max_n": max_n,
        "kernel_step": KERNEL_STEP,
        "input_size": list(input_size) if input_size else None,
        "feature_size": list(feature_size) if feature_size else None,
        "mask_downsampling": "area",
    }
    return ExplorationResult(rows, summarize(rows), settings, skipped)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per step: number of images, mean and (population) standard deviation of area and the metrics."""
    out = []
    for n in sorted({r["step"] for r in rows}):
        chosen = [r for r in rows if r["step"] == n]
        entry: dict[str, Any] = {
            "step": n,
            "operation": step_name(n),
            "kernel": KERNEL_STEP * abs(n),
            "images": len(chosen),
        }
        for key in ("area", *METRICS):
            values = np.array([r[key] for r in chosen], dtype=np.float64)
            entry[f"{key}_mean"] = float(values.mean())
            entry[f"{key}_std"] = float(values.std())
        out.append(entry)
    return out


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    from bas.io import atomic_open

    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def save_exploration_figure(
    path: str | Path, summary: Sequence[dict[str, Any]], title: str | None = None
) -> Path:
    """Cross-entropy, foreground and background activation against the mean mask area (mean +- std)."""
    from bas.visualize import plt, save_figure  # the Agg backend is chosen there

    area = np.array([s["area_mean"] for s in summary])
    original = next((s["area_mean"] for s in summary if s["step"] == 0), None)
    labels = {
        "ce": "cross-entropy (foreground)",
        "fg_activation": "foreground activation",
        "bg_activation": "background activation",
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, key, colour in zip(axes, METRICS, ("tab:blue", "tab:green", "tab:red")):
        mean = np.array([s[f"{key}_mean"] for s in summary])
        std = np.array([s[f"{key}_std"] for s in summary])
        ax.plot(area, mean, "o-", color=colour, markersize=3)
        ax.fill_between(area, mean - std, mean + std, color=colour, alpha=0.2, linewidth=0)
        if original is not None:
            ax.axvline(original, color="grey", linestyle="--", linewidth=1, label="ground-truth mask")
            ax.legend(fontsize=7)
        ax.set_xlabel("mask area (fraction of the image)")
        ax.set_title(labels[key], fontsize=9)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def write_exploration(out_dir: str | Path, result: ExplorationResult) -> Path:
    """``explore.csv`` (per image and step), ``explore_summary.csv``, ``explore.json`` and ``explore.png``."""
    from bas.io import write_json

    out_dir = Path(out_dir)
    _write_csv(out_dir / "explore.csv", result.rows)
    _write_csv(out_dir / "explore_summary.csv", result.summary)
    write_json(out_dir / "explore.json", {**result.settings, "skipped": result.skipped})
    if result.summary:
        save_exploration_figure(
            out_dir / "explore.png",
            result.summary,
            title=f"masks eroded / dilated with 5n x 5n kernels, n = 1..{result.settings.get('max_n')} "
            f"({result.settings.get('num_images')} images)",
        )
    return out_dir
