"""MobileNetV1 with ReLU (docs/method.md §2): mid = blocks 0-11 (512 ch, stride 8), head = blocks 12-13.

torchvision has no MobileNetV1: the ImageNet weights are the file the authors used, passed as a path.
"""

from __future__ import annotations

from torch import nn

from bas.models.backbones import Backbone, IndexedLayers
from bas.models.registry import Family, ModelSpec, register

FAMILY = Family("mobilenet_v1")


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
    mid = IndexedLayers({i: m for i, m in layers.items() if i < MOBILENET_V1_SPLIT})
    head = IndexedLayers({i: m for i, m in layers.items() if i >= MOBILENET_V1_SPLIT})
    return Backbone(mid, head, 512, 1024)


register(
    ModelSpec(
        "mobilenet_v1",
        mobilenet_v1_split,
        True,
        FAMILY,
        manual_weights=(
            "mobilenet_v1_with_relu_69_5.pth",
            "https://storage.googleapis.com/models-hao/mobilenet_v1_with_relu_69_5.pth",
        ),
        description="MobileNetV1 with ReLU, mid = block 12 (512 ch), head = blocks 13-14",
    )
)
