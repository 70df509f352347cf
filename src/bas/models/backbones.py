"""Backbones split into ``mid`` (input -> stride-8 feature map) and ``head`` (-> stride-16 map).

Every backbone keeps the paper's geometry (docs/method.md §2): at 224x224 input the ``mid`` output, which
feeds the generator and is erased by the AMC, is 28x28, and the ``head`` output, which feeds the
classifier, is 14x14. Parameter names inside ``mid`` and ``head`` are the authors' top-level names
(``conv4_3``, ``layer3``, ``model.11``, ``Mixed_6e`` ...), so a released checkpoint maps onto this
model by prefixing each key with ``mid.`` or ``head.`` (see :mod:`bas.checkpoints`).

Only the four paper backbones need code of their own; any torchvision ResNet-family network goes
through :func:`resnet_split`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import inception as tv_inception


@dataclass
class Backbone:
    """A backbone cut at its stride-8 stage."""

    mid: nn.Module
    head: nn.Module
    mid_channels: int
    out_channels: int


class _Sequence(nn.Module):
    """Runs its children in registration order (names are kept, unlike ``nn.Sequential`` indices)."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class _Indexed(nn.Module):
    """Holds a slice of an indexed layer list under ``model.<i>`` (MobileNetV1 naming)."""

    def __init__(self, layers: dict[int, nn.Module]):
        super().__init__()
        self.model = nn.ModuleDict({str(i): m for i, m in layers.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.model.values():
            x = module(x)
        return x


# --------------------------------------------------------------------------------------------- VGG16


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


def _vgg_stage(layout) -> _Sequence:
    modules: dict[str, nn.Module] = {}
    for i, item in enumerate(layout):
        if item == "pool":
            modules[f"pool{i}"] = nn.MaxPool2d(2, 2)
        else:
            name, cin, cout = item
            modules[name] = _ConvReLU(cin, cout)
    return _Sequence(modules)


def vgg16_split() -> Backbone:
    """VGG16: mid = conv1_1..conv4_3 (+ReLU), pool4 NOT applied; head = pool4, conv5_1..conv5_3."""
    return Backbone(_vgg_stage(VGG16_MID), _vgg_stage(VGG16_HEAD), 512, 512)


# ------------------------------------------------------------------------------------------ ResNets


def _unstride(layer: nn.Sequential) -> None:
    """Turn the stride-2 convolutions of a ResNet stage's first block into stride 1."""
    for module in layer[0].modules():
        if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
            module.stride = (1, 1)


def resnet_split(name: str) -> Backbone:
    """Any torchvision ResNet-family net: layer3 and layer4 get stride 1, a 2x2 max pool precedes layer4.

    mid = conv1, bn1, relu, maxpool, layer1..layer3 (stride 8); head = 2x2 max pool, layer4 (stride 16).
    """
    net = getattr(tvm, name)(weights=None)
    _unstride(net.layer3)
    _unstride(net.layer4)
    mid = _Sequence(
        {
            "conv1": net.conv1,
            "bn1": net.bn1,
            "relu": net.relu,
            "maxpool": net.maxpool,
            "layer1": net.layer1,
            "layer2": net.layer2,
            "layer3": net.layer3,
        }
    )
    head = _Sequence({"pool": nn.MaxPool2d(2, 2), "layer4": net.layer4})
    return Backbone(mid, head, net.layer4[0].conv1.in_channels, net.fc.in_features)


# ------------------------------------------------------------------------------------- MobileNetV1

# (in, out, stride) of the 13 depthwise-separable blocks; block index 6 (the 7th layer, 256 -> 512)
# has stride 1 instead of 2 so that blocks 6..11 stay at 28x28.
MOBILENET_V1_BLOCKS = (
    (32, 64, 1),
    (64, 128, 2),
    (128, 128, 1),
    (128, 256, 2),
    (256, 256, 1),
    (256, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 512, 1),
    (512, 1024, 2),
    (1024, 1024, 1),
)
MOBILENET_V1_SPLIT = 12  # model.0 .. model.11 form mid


def _conv_bn(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _conv_dw(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def mobilenet_v1_split() -> Backbone:
    """MobileNetV1 (with ReLU), keys ``model.<i>.<j>``: mid = model.0..11 (512 ch), head = model.12..13."""
    layers = {0: _conv_bn(3, 32, 2)}
    for i, (cin, cout, stride) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        layers[i] = _conv_dw(cin, cout, stride)
    mid = _Indexed({i: m for i, m in layers.items() if i < MOBILENET_V1_SPLIT})
    head = _Indexed({i: m for i, m in layers.items() if i >= MOBILENET_V1_SPLIT})
    return Backbone(mid, head, 512, 1024)


# ------------------------------------------------------------------------------------- InceptionV3


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
    mid = _Sequence(
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
    head = _Sequence({"Mixed_7a": net.Mixed_7a, "Mixed_7b": net.Mixed_7b, "Mixed_7c": net.Mixed_7c})
    return Backbone(mid, head, 768, 2048)
