"""The CAM baseline, kept importable from here: it lives with its method in :mod:`bas.methods.cam`."""

from __future__ import annotations

from pathlib import Path

from bas.methods.cam import CAMModel
from bas.models.registry import build_model


def build_cam_model(
    arch: str, num_classes: int, *, pretrained: bool | str | Path = False, hidden: int | None = None
) -> CAMModel:
    """``build_model(arch, num_classes, method="cam", ...)``: the CAM baseline over a registered backbone.

    ``hidden``: None or 0 for plain CAM (GAP + linear on the head output); a width adds one
    conv3x3 + ReLU before the GAP (wsolevaluation's ``conv6`` for VGG16 / InceptionV3).
    """
    return build_model(arch, num_classes, method="cam", pretrained=pretrained, hidden=hidden)


__all__ = ["CAMModel", "build_cam_model"]
