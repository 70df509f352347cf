"""Model registry: ``build_model(arch, num_classes)`` and ``list_models()`` (timm-style).

Each entry records how to build the backbone split and the metadata a user or a checkpoint needs
(the authors' family name, input size, the initialisation of the new layers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bas.models import backbones
from bas.models.bas import VARIANTS, BASModel


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry of one architecture."""

    name: str
    build_backbone: Callable[[], backbones.Backbone]
    paper: bool  # one of the four backbones of the papers
    init: str = "xavier"  # initialisation of the new classifier / generator convolutions
    min_input_size: int = 32
    input_size: int = 224
    torchvision_name: str | None = None  # source of ImageNet weights in torchvision
    description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


register(
    ModelSpec(
        "vgg16",
        backbones.vgg16_split,
        True,
        init="normal",
        torchvision_name="vgg16",
        description="VGG16, mid = conv4_3 (512 ch), head = pool4 + conv5_x",
    )
)
register(
    ModelSpec(
        "resnet50",
        partial(backbones.resnet_split, "resnet50"),
        True,
        torchvision_name="resnet50",
        description="ResNet50, mid = layer3 stride 1 (1024 ch), head = maxpool + layer4 stride 1",
    )
)
register(
    ModelSpec(
        "mobilenet_v1",
        backbones.mobilenet_v1_split,
        True,
        description="MobileNetV1 with ReLU, mid = block 12 (512 ch), head = blocks 13-14",
    )
)
register(
    ModelSpec(
        "inception_v3",
        backbones.inception_v3_split,
        True,
        min_input_size=64,
        torchvision_name="inception_v3",
        description="InceptionV3, mid = Mixed_6e (768 ch), head = Mixed_7a-7c",
    )
)
for _name in ("resnet18", "resnet34", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2"):
    register(
        ModelSpec(
            _name,
            partial(backbones.resnet_split, _name),
            False,
            torchvision_name=_name,
            description=f"torchvision {_name}, generic ResNet split (layer3 / layer4 stride 1)",
        )
    )


def list_models(paper_only: bool = False) -> list[str]:
    """Names accepted by :func:`build_model`."""
    return sorted(name for name, spec in _REGISTRY.items() if spec.paper or not paper_only)


def get_spec(arch: str) -> ModelSpec:
    try:
        return _REGISTRY[arch]
    except KeyError:
        raise ValueError(f"unknown arch {arch!r}; valid names: {', '.join(list_models())}") from None


def build_model(
    arch: str,
    num_classes: int,
    *,
    variant: str = "ijcv2023",
    pretrained: bool | str | Path = False,
    hidden: int = 1024,
) -> BASModel:
    """Build a BAS model.

    Args:
        arch: a name from :func:`list_models`.
        num_classes: number of classes K.
        variant: ``"ijcv2023"`` (default) or ``"cvpr2022"`` (adds the final ReLU of the CVPR code
            to the classifier; the loss variant is chosen separately, see :mod:`bas.losses`).
        pretrained: False; True for torchvision's ImageNet weights (downloaded and cached by
            torchvision); or the path of a local ImageNet weight file.
        hidden: width of the classifier's hidden convolutions.
    """
    spec = get_spec(arch)
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    model = BASModel(
        spec.build_backbone(),
        num_classes,
        arch=arch,
        variant=variant,
        hidden=hidden,
        min_input_size=spec.min_input_size,
        init=spec.init,
    )
    if pretrained:
        from bas.checkpoints import load_imagenet_weights

        load_imagenet_weights(model, None if pretrained is True else pretrained)
    return model


from bas.models import vit as _vit  # noqa: E402, F401  (registers the timm vision transformers)
