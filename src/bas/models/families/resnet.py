"""Any torchvision ResNet-family network (ResNet50 is a paper backbone): layer3 and layer4 with stride 1.

Parameter names are torchvision's (``layer3.0.conv1.weight``), so torchvision's ImageNet weights
load by name.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models as tvm

from bas.models.backbones import Backbone, NamedSequence
from bas.models.registry import Family, ModelSpec, register

FAMILY = Family("resnet")


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
    mid = NamedSequence(
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
    head = NamedSequence({"pool": nn.MaxPool2d(2, 2), "layer4": net.layer4})
    return Backbone(mid, head, net.layer4[0].conv1.in_channels, net.fc.in_features)


register(
    ModelSpec(
        "resnet50",
        partial(resnet_split, "resnet50"),
        True,
        FAMILY,
        torchvision_name="resnet50",
        description="ResNet50, mid = layer3 stride 1 (1024 ch), head = maxpool + layer4 stride 1",
    )
)
for _name in ("resnet18", "resnet34", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"):
    register(
        ModelSpec(
            _name,
            partial(resnet_split, _name),
            False,
            FAMILY,
            torchvision_name=_name,
            description=f"torchvision {_name}, generic ResNet split (layer3 / layer4 stride 1)",
        )
    )
