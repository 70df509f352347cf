"""VGG16 (docs/method.md §2): mid = conv1_1 .. conv4_3 (512 ch, stride 8), head = pool4 + conv5_x.

Parameter names are the authors' (``conv4_3.weight``); torchvision's ImageNet ``features.N``
tensors are assigned in order by :func:`bas.models.pretrained.load_imagenet_weights`.
"""

from __future__ import annotations

import torch
from torch import nn

from bas.models.backbones import Backbone, NamedSequence
from bas.models.registry import Family, ModelSpec, register

FAMILY = Family("vgg")


class _ConvReLU(nn.Conv2d):
    """A 3x3 convolution followed by ReLU; a Conv2d subclass so its keys stay ``conv4_3.weight``."""

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(super().forward(x))


VGG16_MID = (
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    "pool",
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    "pool",
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    "pool",
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
)
VGG16_HEAD = ("pool", ("conv5_1", 512, 512), ("conv5_2", 512, 512), ("conv5_3", 512, 512))


def _vgg_stage(layout) -> NamedSequence:
    modules: dict[str, nn.Module] = {}
    for i, item in enumerate(layout):
        if item == "pool":
            modules[f"pool{i}"] = nn.MaxPool2d(2, 2)
        else:
            name, cin, cout = item
            modules[name] = _ConvReLU(cin, cout)
    return NamedSequence(modules)


def vgg16_split() -> Backbone:
    """VGG16: mid = conv1_1..conv4_3 (+ReLU), pool4 NOT applied; head = pool4, conv5_1..conv5_3."""
    return Backbone(_vgg_stage(VGG16_MID), _vgg_stage(VGG16_HEAD), 512, 512)


register(
    ModelSpec(
        "vgg16",
        vgg16_split,
        True,
        FAMILY,
        init="normal",  # the authors' VGG16 initialisation of the new layers
        torchvision_name="vgg16",
        description="VGG16, mid = conv4_3 (512 ch), head = pool4 + conv5_x",
    )
)
