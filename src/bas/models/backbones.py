"""Backbones split into ``mid`` (input -> stride-8 feature map) and ``head`` (-> stride-16 map).

Every backbone keeps the paper's geometry (docs/method.md §2): at 224x224 input the ``mid`` output, which
feeds the generator and is erased by the AMC, is 28x28, and the ``head`` output, which feeds the
classifier, is 14x14. Parameter names inside ``mid`` and ``head`` are the authors' top-level names
(``conv4_3``, ``layer3``, ``model.11``, ``Mixed_6e`` ...), so a released checkpoint maps onto this
model by prefixing each key with ``mid.`` or ``head.`` (see :mod:`bas.checkpoints`).

This module holds what every family shares (:class:`Backbone` and two containers that keep the
authors' parameter names); each family's split lives in its module under
:mod:`bas.models.families`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class Backbone:
    """A backbone cut at its stride-8 stage."""

    mid: nn.Module
    head: nn.Module
    mid_channels: int
    out_channels: int


class NamedSequence(nn.Module):
    """Runs its children in registration order (names are kept, unlike ``nn.Sequential`` indices)."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


class IndexedLayers(nn.Module):
    """Holds a slice of an indexed layer list under ``model.<i>`` (MobileNetV1 naming)."""

    def __init__(self, layers: dict[int, nn.Module]):
        super().__init__()
        self.model = nn.ModuleDict({str(i): m for i, m in layers.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.model.values():
            x = module(x)
        return x
