"""Hide-and-Seek (Singh & Lee, ICCV 2017) over CAM's network, with wsolevaluation's settings.

Training hides random square cells of the input image, so that the classifier cannot rely on the
most discriminative part alone and has to find evidence over the whole object:

* the image is cut into cells of ``grid_size`` x ``grid_size`` pixels, starting at the top-left
  corner (cells of the last row and column are cut by the border when the side is not a multiple);
* every cell of every image is hidden independently with probability ``drop_rate``;
* a hidden cell is set to 0 in the normalised input, i.e. to the normalisation's mean pixel (the
  ImageNet mean of the recipes), the fill of the HaS paper and of wsolevaluation.

wsolevaluation's defaults are ``has_grid_size`` 4 (the side of a cell in pixels, so a 224 px crop
has 56 x 56 cells) and ``has_drop_rate`` 0.5; ``grid_size`` 0 hides nothing. The cells are drawn
from torch's default CPU generator (or the ``generator`` given to :func:`hide_patches`): the
trainer seeds it with ``train.seed`` and ``last.ckpt`` saves and restores it, so a run hides the
same cells when repeated or resumed. At inference nothing is hidden and the model is CAM: same
layers, parameter names, loss (cross-entropy), map (the class activation map) and new layers.
"""

from __future__ import annotations

from typing import Any

import torch

from bas.methods import register
from bas.methods.base import check_fraction, check_int
from bas.methods.cam import CAM, CAMModel

GRID_SIZE = 4  # wsolevaluation's has_grid_size: side of a hidden cell, in input pixels
DROP_RATE = 0.5  # wsolevaluation's has_drop_rate: probability that a cell is hidden


def hide_patches(
    images: torch.Tensor, grid_size: int, drop_rate: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A copy of ``images`` (B, C, H, W) with each ``grid_size``-pixel cell of each image set to 0
    with probability ``drop_rate``; ``generator`` (CPU) draws the cells, None: torch's default."""
    if grid_size == 0 or drop_rate == 0:
        return images
    b, _, h, w = images.shape
    rows, cols = -(-h // grid_size), -(-w // grid_size)
    hidden = torch.rand((b, 1, rows, cols), generator=generator) < drop_rate
    hidden = hidden.repeat_interleave(grid_size, dim=2).repeat_interleave(grid_size, dim=3)
    return images.masked_fill(hidden[:, :, :h, :w].to(images.device), 0.0)


class HaSModel(CAMModel):
    """CAM's network; in training mode its input cells are hidden first (:func:`hide_patches`)."""

    method = "has"

    def __init__(self, *args: Any, grid_size: int = GRID_SIZE, drop_rate: float = DROP_RATE, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.grid_size = grid_size
        self.drop_rate = drop_rate

    def features(self, images: torch.Tensor) -> torch.Tensor:
        if self.training:
            images = hide_patches(images, self.grid_size, self.drop_rate)
        return super().features(images)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, drop_rate={self.drop_rate}"


@register
class HaS(CAM):
    """Hide-and-Seek: CAM trained on images with hidden cells (``has.grid_size``, ``has.drop_rate``)."""

    name = "has"
    model_class = HaSModel
    config_defaults = {**CAM.config_defaults, "has.grid_size": GRID_SIZE, "has.drop_rate": DROP_RATE}

    def check_config(self, cfg: dict[str, Any]) -> None:
        super().check_config(cfg)
        check_int(cfg, "has.grid_size", 0)  # 0: nothing hidden
        check_fraction(cfg, "has.drop_rate")

    def configure(self, model: HaSModel, cfg: dict[str, Any]) -> None:
        model.grid_size = int(cfg["has"]["grid_size"])
        model.drop_rate = float(cfg["has"]["drop_rate"])
