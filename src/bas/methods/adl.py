"""Attention-based Dropout Layer (Choe & Shim, CVPR 2019) over CAM's network, with wsolevaluation's settings.

ADL is a parameter-free layer on a feature map ``A`` (B, C, H, W), active in training only:

* the self-attention map is the channel mean ``a = mean_c A_c`` (B, 1, H, W);
* the drop mask is 1 where ``a < threshold * max(a)`` (maximum over the image's positions) and 0 at
  the most activated positions, which it hides from the layers above;
* the importance map is ``sigmoid(a)``, which highlights those positions instead;
* one of the two maps multiplies ``A``: the drop mask with probability ``drop_rate``, else the
  importance map; one draw per call for the whole batch, as in the authors' code and wsolevaluation.

At inference ADL is the identity, so the trained model is CAM: same layers and parameter names
(ADL has none), loss (cross-entropy), map (the class activation map) and new layers.

Where: wsolevaluation inserts ADL after layer3's first block and after layer4's first and last
blocks in ResNet50, and after pool3, conv4_3 and conv5_3 in VGG16. Here ADL works over any backbone
split, at the two places every split has: the output of ``mid`` (stride 8, VGG16's conv4_3, the
end of ResNet's layer3) and the output of ``head`` (stride 16, the map the CAM is made of: VGG16's
conv5_3, ResNet's last layer4 block; before CAM's extra conv layer when ``hidden`` is set, as in
wsolevaluation's VGG16). So VGG16 keeps two of its three positions (not pool3), ResNet50 its last
one exactly and its layer3 one moved from the first block to the end of the stage; the layers in
between are backbone internals the split does not expose, and the output of ``head`` is the
position that matters most, the one the class activation map is read from.

wsolevaluation's defaults: ``adl_drop_rate`` 0.75, ``adl_threshold`` 0.9. The draws use torch's
default CPU generator (or the ``generator`` given to :func:`attention_dropout`), which the trainer
seeds with ``train.seed`` and ``last.ckpt`` saves and restores.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bas.methods import register
from bas.methods.base import check_fraction
from bas.methods.cam import CAM, CAMModel

DROP_RATE = 0.75  # wsolevaluation's adl_drop_rate: probability of the drop mask (else the importance map)
THRESHOLD = 0.9  # wsolevaluation's adl_threshold: drop where attention >= threshold * its maximum


def drop_mask(attention: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 where ``attention`` (B, 1, H, W) is below ``threshold`` times the image's maximum, else 0."""
    peak = attention.amax(dim=(2, 3), keepdim=True)
    return (attention < threshold * peak).to(attention.dtype)


def attention_dropout(
    features: torch.Tensor, drop_rate: float, threshold: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """ADL in training mode: ``features`` times the drop mask (probability ``drop_rate``) or the
    importance map ``sigmoid(channel mean)``; ``generator`` (CPU) draws the branch, None: torch's default."""
    attention = features.mean(dim=1, keepdim=True)
    use_drop = (torch.rand((), generator=generator) < drop_rate).to(features.device)
    selected = torch.where(use_drop, drop_mask(attention, threshold), torch.sigmoid(attention))
    return features * selected


class AttentionDropout(nn.Module):
    """The ADL layer: :func:`attention_dropout` in training mode, the identity in eval mode."""

    def __init__(self, drop_rate: float = DROP_RATE, threshold: float = THRESHOLD):
        super().__init__()
        self.drop_rate = drop_rate
        self.threshold = threshold

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return features
        return attention_dropout(features, self.drop_rate, self.threshold)

    def extra_repr(self) -> str:
        return f"drop_rate={self.drop_rate}, threshold={self.threshold}"


class ADLModel(CAMModel):
    """CAM's network with one ADL layer (``adl``) applied to the output of ``mid`` and of ``head``."""

    method = "adl"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.adl = AttentionDropout()

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.adl(self.head(self.adl(self.mid(images)))))


@register
class ADL(CAM):
    """ADL: CAM trained with attention-based dropout after ``mid`` and ``head`` (``adl.*`` keys)."""

    name = "adl"
    model_class = ADLModel
    config_defaults = {**CAM.config_defaults, "adl.drop_rate": DROP_RATE, "adl.threshold": THRESHOLD}

    def check_config(self, cfg: dict[str, Any]) -> None:
        super().check_config(cfg)
        check_fraction(cfg, "adl.drop_rate")
        check_fraction(cfg, "adl.threshold")

    def configure(self, model: ADLModel, cfg: dict[str, Any]) -> None:
        model.adl.drop_rate = float(cfg["adl"]["drop_rate"])
        model.adl.threshold = float(cfg["adl"]["threshold"])
