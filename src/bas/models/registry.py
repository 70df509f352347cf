"""Model registry: ``build_model(arch, num_classes, method=...)`` and ``list_models()`` (timm-style).

Architectures come from backbone families, one module each under :mod:`bas.models.families`
(found by name and imported on first use). A family module calls :func:`register` once per
architecture with a :class:`ModelSpec` that says how to build the backbone split and points to its
:class:`Family`: the pretrained-weight loader and the input conventions shared by its members.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bas.models.meta import IMAGENET_MEAN, IMAGENET_STD, ModelMeta

if TYPE_CHECKING:
    from torch import nn

    from bas.models.backbones import Backbone


def _imagenet_loader(model: nn.Module, path: str | Path | None) -> None:
    from bas.models.pretrained import load_imagenet_weights

    load_imagenet_weights(model, path)


@dataclass(frozen=True)
class Family:
    """What the architectures of one backbone family share.

    ``load_pretrained(model, path)`` initialises ``model.mid`` / ``model.head`` in place (``path``
    None: the family's default source); ``mean``, ``std``, ``input_size`` and ``resize_size`` are
    the input conventions written into the model's metadata.
    """

    name: str
    load_pretrained: Callable[[nn.Module, str | Path | None], None] = _imagenet_loader
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_size: int = 224
    resize_size: int = 256


@dataclass(frozen=True)
class ModelSpec:
    """Registry entry of one architecture."""

    name: str
    build_backbone: Callable[[], Backbone]
    paper: bool  # one of the four backbones of the papers
    family: Family = field(default_factory=lambda: Family("custom"))
    init: str = "xavier"  # initialisation of the method's new layers
    min_input_size: int = 32
    torchvision_name: str | None = None  # source of ImageNet weights in torchvision
    manual_weights: tuple[str, str] | None = None  # (file name, URL) when torchvision has none
    description: str = ""

    @property
    def input_size(self) -> int:
        return self.family.input_size


_REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    _REGISTRY[spec.name] = spec
    return spec


def _discover() -> None:
    from bas.models import families

    for info in pkgutil.iter_modules(families.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{families.__name__}.{info.name}")


def list_models(paper_only: bool = False) -> list[str]:
    """Names accepted by :func:`build_model`."""
    _discover()
    return sorted(name for name, spec in _REGISTRY.items() if spec.paper or not paper_only)


def get_spec(arch: str) -> ModelSpec:
    if arch not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[arch]
    except (KeyError, TypeError):
        raise ValueError(f"unknown arch {arch!r}; valid names: {', '.join(list_models())}") from None


def build_model(
    arch: str,
    num_classes: int,
    *,
    method: str = "bas",
    pretrained: bool | str | Path = False,
    **options: Any,
) -> nn.Module:
    """Build the model of a training method over a registered backbone.

    Args:
        arch: a name from :func:`list_models`.
        num_classes: number of classes K.
        method: a name from :func:`bas.methods.list_methods` (``"bas"``, ``"cam"``, ...).
        pretrained: False; True for the family's ImageNet weights (torchvision's, downloaded and
            cached by torchvision); or the path of a local ImageNet weight file.
        options: the method's options, e.g. for BAS ``variant`` (``"ijcv2023"``, the default, or
            ``"cvpr2022"``, which adds the final ReLU of the CVPR code to the classifier) and
            ``hidden`` (width of the classifier's hidden convolutions, 1024); for CAM ``hidden``
            (None: plain CAM).
    """
    from bas.methods import get_method

    spec = get_spec(arch)
    chosen = get_method(method)
    try:
        resolved = chosen.resolve_options(**options)
    except ValueError as exc:
        raise TypeError(str(exc)) from None
    family = spec.family
    meta = ModelMeta(
        arch,
        num_classes,
        method=chosen.name,
        input_size=family.input_size,
        resize_size=family.resize_size,
        mean=family.mean,
        std=family.std,
        **resolved,
    )
    model = chosen.build(spec.build_backbone(), meta, init=spec.init, min_input_size=spec.min_input_size)
    if pretrained:
        family.load_pretrained(model, None if pretrained is True else pretrained)
    return model
