"""The segmentation split of ResNet50 (IJCV 2023 WSSS code and IRN's CAM network): output stride 16.

Strides (2, 2, 2, 1): ``conv1``, ``layer2`` and ``layer3`` keep their stride 2, ``layer4`` runs at
stride 1. Not the WSOL split (:mod:`bas.models.families.resnet`, stride 8 at the generator): here

* mid = conv1, bn1, relu, maxpool, layer1..layer3 (1024 channels, stride 16), the generator's input;
* head = layer4 at stride 1 (2048 channels, stride 16), the classifier's input.

At 448x448 input both maps are 28x28. Parameter names are torchvision's, so its ImageNet weights
and the authors' segmentation files load by name.
"""

from __future__ import annotations

from functools import partial

from torchvision import models as tvm

from bas.models.backbones import Backbone, NamedSequence
from bas.models.families.resnet import _unstride
from bas.models.registry import Family, ModelSpec, register

MID = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
FAMILY = Family("resnet_os16", input_size=448, resize_size=512)


def resnet_os16_split(name: str = "resnet50") -> Backbone:
    """A torchvision ResNet with strides (2, 2, 2, 1): mid through layer3 (stride 16), head = layer4
    at stride 1."""
    net = getattr(tvm, name)(weights=None)
    _unstride(net.layer4)
    mid = NamedSequence({name: getattr(net, name) for name in MID})
    head = NamedSequence({"layer4": net.layer4})
    return Backbone(mid, head, net.layer4[0].conv1.in_channels, net.fc.in_features)


def resnet50_os16_split() -> Backbone:
    """The released segmentation network's split (ResNet50)."""
    return resnet_os16_split("resnet50")


register(
    ModelSpec(
        "resnet50_os16",
        resnet50_os16_split,
        False,
        FAMILY,
        torchvision_name="resnet50",
        description="ResNet50 at output stride 16 (WSSS): mid = through layer3, head = layer4 stride 1",
    )
)
register(  # small enough to train from scratch on a CPU (`bas wsss demo`)
    ModelSpec(
        "resnet18_os16",
        partial(resnet_os16_split, "resnet18"),
        False,
        FAMILY,
        torchvision_name="resnet18",
        description="ResNet18 at output stride 16: mid = through layer3 (256 ch), head = layer4 stride 1",
    )
)
