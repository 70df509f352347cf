"""Optimiser and schedule of both papers (docs/method.md §4).

SGD with nesterov momentum and four parameter groups: backbone weights (1x lr), backbone biases
(2x), weights of the method's new layers (``Method.new_layers``: for BAS the classifier and the
generator, for CAM the classifier and ``fc``) (10x) and their biases (20x).
Like the reference code, BatchNorm scales count as weights and BatchNorm shifts as biases, and
weight decay applies to every group. The learning rate decays by ``gamma`` every ``decay_every``
epochs (``scheduler.step()`` once per epoch).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

GROUP_NAMES = ("backbone_weight", "backbone_bias", "new_weight", "new_bias")


def parameter_groups(
    model: nn.Module,
    lr: float,
    lr_mult: list[float] | tuple[float, ...] = (1, 2, 10, 20),
    new_layers: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    """The four groups, in the order of :data:`GROUP_NAMES` (empty groups are left out).

    A parameter is a bias when its name ends with ``.bias``; it belongs to a new layer when its
    name starts with one of ``new_layers`` (default: the model's method's ``new_layers``).
    Each group carries its ``name`` and its ``lr_mult``.
    """
    if new_layers is None:
        from bas.methods import method_of

        new_layers = method_of(model).new_layers
    if len(lr_mult) != len(GROUP_NAMES):
        raise ValueError(
            f"lr_mult needs {len(GROUP_NAMES)} values ({', '.join(GROUP_NAMES)}), got {list(lr_mult)}"
        )
    groups: list[list[nn.Parameter]] = [[] for _ in GROUP_NAMES]
    for name, param in model.named_parameters():
        if param.requires_grad:
            new = name.startswith(new_layers)
            bias = name.endswith(".bias")
            groups[2 * new + bias].append(param)
    return [
        {"params": params, "lr": lr * mult, "name": name, "lr_mult": mult}
        for params, mult, name in zip(groups, lr_mult, GROUP_NAMES)
        if params
    ]


def build_optimizer(model: nn.Module, optim_cfg: dict[str, Any]) -> torch.optim.SGD:
    """Nesterov SGD over :func:`parameter_groups` with the ``optim`` section of a config."""
    return torch.optim.SGD(
        parameter_groups(model, optim_cfg["lr"], optim_cfg["lr_mult"]),
        lr=optim_cfg["lr"],
        momentum=optim_cfg["momentum"],
        weight_decay=optim_cfg["weight_decay"],
        nesterov=optim_cfg["nesterov"],
    )


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim_cfg: dict[str, Any]
) -> torch.optim.lr_scheduler.StepLR:
    """Step decay: every group's lr is multiplied by ``gamma`` after every ``decay_every`` epochs."""
    return torch.optim.lr_scheduler.StepLR(
        optimizer, step_size=int(optim_cfg["decay_every"]), gamma=optim_cfg["gamma"]
    )
