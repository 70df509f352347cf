"""InceptionV3 (docs/method.md §2): mid = stem .. Mixed_6e (768 ch, 28x28 at 224), head = Mixed_7a-7c.

Used like the authors do, without torchvision's ``transform_input``; torchvision's ImageNet
weights load by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import inception as tv_inception

from bas.models.backbones import Backbone, NamedSequence
from bas.models.registry import Family, ModelSpec, register

FAMILY = Family("inception_v3")


class _InceptionBStride1(tv_inception.InceptionB):
    """Mixed_6a with stride 1 and padding 1 everywhere, so the map stays 28x28."""

    def __init__(self, in_channels: int, conv_block: Callable[..., nn.Module] | None = None) -> None:
        super().__init__(in_channels, conv_block)
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            nn.functional.max_pool2d(x, kernel_size=3, stride=1, padding=1),
        ]


class _InceptionDPadded(tv_inception.InceptionD):
    """Mixed_7a whose stride-2 convolutions and pool use padding 1 (28 -> 14)."""

    def __init__(self, in_channels: int, conv_block: Callable[..., nn.Module] | None = None) -> None:
        super().__init__(in_channels, conv_block)
        for conv in (self.branch3x3_2.conv, self.branch7x7x3_4.conv):
            conv.padding = (1, 1)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        pool = nn.functional.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return [branch3x3, b7, pool]


def inception_v3_split() -> Backbone:
    """InceptionV3: mid = stem .. Mixed_6e (768 ch, 28x28), head = Mixed_7a, Mixed_7b, Mixed_7c."""
    blocks = [
        tv_inception.BasicConv2d,
        tv_inception.InceptionA,
        _InceptionBStride1,
        tv_inception.InceptionC,
        _InceptionDPadded,
        tv_inception.InceptionE,
        tv_inception.InceptionAux,
    ]
    net = tv_inception.Inception3(
        num_classes=1000, aux_logits=False, transform_input=False, inception_blocks=blocks, init_weights=False
    )
    net.Conv2d_1a_3x3.conv.padding = (1, 1)
    pool1 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
    pool2 = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True)
    mid = NamedSequence(
        {
            "Conv2d_1a_3x3": net.Conv2d_1a_3x3,
            "Conv2d_2a_3x3": net.Conv2d_2a_3x3,
            "Conv2d_2b_3x3": net.Conv2d_2b_3x3,
            "maxpool1": pool1,
            "Conv2d_3b_1x1": net.Conv2d_3b_1x1,
            "Conv2d_4a_3x3": net.Conv2d_4a_3x3,
            "maxpool2": pool2,
            "Mixed_5b": net.Mixed_5b,
            "Mixed_5c": net.Mixed_5c,
            "Mixed_5d": net.Mixed_5d,
            "Mixed_6a": net.Mixed_6a,
            "Mixed_6b": net.Mixed_6b,
            "Mixed_6c": net.Mixed_6c,
            "Mixed_6d": net.Mixed_6d,
            "Mixed_6e": net.Mixed_6e,
        }
    )
    head = NamedSequence({"Mixed_7a": net.Mixed_7a, "Mixed_7b": net.Mixed_7b, "Mixed_7c": net.Mixed_7c})
    return Backbone(mid, head, 768, 2048)


register(
    ModelSpec(
        "inception_v3",
        inception_v3_split,
        True,
        FAMILY,
        min_input_size=64,
        torchvision_name="inception_v3",
        description="InceptionV3, mid = Mixed_6e (768 ch), head = Mixed_7a-7c",
    )
)
