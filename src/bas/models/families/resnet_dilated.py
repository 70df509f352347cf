"""Dilated ResNets for dense prediction (DeepLabV3, :mod:`bas.methods.deeplab`): output stride 16.

torchvision's ``replace_stride_with_dilation=[False, False, True]``: layer4 keeps layer3's
resolution and dilates its 3x3 convolutions by 2 instead. The split:

* mid = conv1, bn1, relu, maxpool, layer1..layer3 (1024 channels, stride 16);
* head = layer4, dilated (2048 channels, stride 16).

:func:`set_output_stride` turns such a split into torchvision's output stride 8 geometry
(``[False, True, True]``) and back; the weights do not change, only strides and dilations.
Unlike ``resnet50_os16`` (the WSSS code's network, layer4 at stride 1 without dilation) these
are the backbones of torchvision's segmentation models. Parameter names are torchvision's, so its
ImageNet weights load by name.
"""

from __future__ import annotations

from functools import partial

from torch import nn
from torchvision import models as tvm

from bas.models.backbones import Backbone, NamedSequence
from bas.models.families.resnet_os16 import FAMILY, MID
from bas.models.registry import ModelSpec, register

OUTPUT_STRIDES = (8, 16)


def resnet_dilated_split(name: str) -> Backbone:
    """A torchvision Bottleneck ResNet at output stride 16: layer4 dilated by 2."""
    net = getattr(tvm, name)(weights=None, replace_stride_with_dilation=[False, False, True])
    mid = NamedSequence({n: getattr(net, n) for n in MID})
    head = NamedSequence({"layer4": net.layer4})
    return Backbone(mid, head, net.layer4[0].conv1.in_channels, net.fc.in_features)


def _set_stage(layer: nn.Sequential, stride: int, first: int, rest: int) -> None:
    """Stride of the stage's first block and dilation of its 3x3 convolutions (``first`` in the
    first block, ``rest`` in the others), as torchvision's ``_make_layer`` sets them."""
    for index, block in enumerate(layer):
        dilation = first if index == 0 else rest
        block.conv2.dilation = block.conv2.padding = (dilation, dilation)
    layer[0].conv2.stride = (stride, stride)
    if layer[0].downsample is not None:
        layer[0].downsample[0].stride = (stride, stride)


def set_output_stride(mid: nn.Module, head: nn.Module, output_stride: int) -> None:
    """Output stride 16 (layer4 dilated by 2) or 8 (layer3 dilated by 2, layer4 by 4) of a
    :func:`resnet_dilated_split`, in place."""
    if output_stride == 16:
        _set_stage(mid.layer3, 2, 1, 1)
        _set_stage(head.layer4, 1, 1, 2)
    elif output_stride == 8:
        _set_stage(mid.layer3, 1, 1, 2)
        _set_stage(head.layer4, 1, 2, 4)
    else:
        raise ValueError(f"output stride must be one of {OUTPUT_STRIDES}, got {output_stride}")


for _name in ("resnet50", "resnet101"):
    register(
        ModelSpec(
            f"{_name}_dilated",
            partial(resnet_dilated_split, _name),
            False,
            FAMILY,
            torchvision_name=_name,
            description=f"torchvision {_name} for segmentation: mid = through layer3, head = layer4 "
            "dilated by 2 (output stride 16; 8 with DeepLabV3's seg.output_stride)",
        )
    )
