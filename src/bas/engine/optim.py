"""Optimiser and schedule of both papers (docs/method.md §4).

SGD with nesterov momentum and four parameter groups: backbone weights (1x lr), backbone biases
(2x), weights of the method's new layers (``Method.new_layers``: for BAS the classifier and the
generator, for CAM the classifier and ``fc``) (10x) and their biases (20x).
Like the reference code, BatchNorm scales count as weights and BatchNorm shifts as biases, and
weight decay applies to every group.

Optimisers (``optim.optimizer``): ``sgd`` (the papers') and ``adamw`` (the vision-transformer
recipes, docs/vit.md: AdamW over the same groups, betas (0.9, 0.999)).

Schedules (``optim.schedule``): ``step``, the WSOL papers' (the learning rate decays by ``gamma``
every ``decay_every`` epochs; ``scheduler.step()`` once per epoch); ``cosine`` (a linear warmup over
``warmup_epochs`` epochs, then a cosine decay from ``lr`` to ``min_lr`` at ``epochs``, stepped once
per epoch); and ``poly``, the segmentation code's (``lr_t = lr0 (1 - t / T) ** power`` at optimiser
step t of T; ``scheduler.step()`` once per step, :func:`steps_per_update`).

``optim.reference_quirks`` reproduces the optimiser of the authors' segmentation code exactly
(docs/segmentation.md): the SGD momentum argument receives the weight decay value (1e-4, so no real
momentum), bias parameters are not optimised (they keep their initial values), and the poly horizon
``T`` counts steps of the per-GPU batch of a ``reference_gpus``-GPU run (batch / reference_gpus), so
the learning rate ends near ``(1 - 1 / reference_gpus) ** power`` of lr0 instead of near 0.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from bas.errors import ConfigError

GROUP_NAMES = ("backbone_weight", "backbone_bias", "new_weight", "new_bias")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "poly")


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


def build_optimizer(model: nn.Module, optim_cfg: dict[str, Any]) -> torch.optim.Optimizer:
    """Nesterov SGD (per ``optim.nesterov``) or AdamW over :func:`parameter_groups` with the ``optim``
    section of a config; ``reference_quirks`` as described in the module docstring."""
    name = _choice(optim_cfg, "optimizer", OPTIMIZERS)
    groups = parameter_groups(model, optim_cfg["lr"], optim_cfg["lr_mult"])
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=optim_cfg["lr"], weight_decay=optim_cfg["weight_decay"])
    momentum = optim_cfg["momentum"]
    if optim_cfg.get("reference_quirks"):
        groups = [g for g in groups if not g["name"].endswith("_bias")]
        momentum = optim_cfg["weight_decay"]
    return torch.optim.SGD(
        groups,
        lr=optim_cfg["lr"],
        momentum=momentum,
        weight_decay=optim_cfg["weight_decay"],
        nesterov=optim_cfg["nesterov"],
    )


def steps_per_update(optim_cfg: dict[str, Any]) -> bool:
    """Whether the schedule steps once per optimiser step (``poly``) rather than once per epoch."""
    return optim_cfg.get("schedule", "step") == "poly"


def poly_horizon(optim_cfg: dict[str, Any], steps_per_epoch: int, num_samples: int, batch_size: int) -> int:
    """``T`` of the poly schedule: the run's optimiser steps (``steps_per_epoch * epochs``), or with
    ``reference_quirks`` the steps of the per-GPU batch of the reference run."""
    epochs = int(optim_cfg["epochs"])
    if optim_cfg.get("reference_quirks"):
        per_gpu = max(1, batch_size // int(optim_cfg.get("reference_gpus", 1)))
        return max(1, num_samples // per_gpu * epochs)
    return max(1, steps_per_epoch * epochs)


def build_scheduler(
    optimizer: torch.optim.Optimizer, optim_cfg: dict[str, Any], total_steps: int | None = None
) -> torch.optim.lr_scheduler.LRScheduler:
    """``step``: every group's lr is multiplied by ``gamma`` after every ``decay_every`` epochs.
    ``cosine``: warmup, then cosine decay to ``min_lr`` (per epoch).
    ``poly``: ``lr0 * max(0, 1 - t / total_steps) ** power`` at optimiser step t."""
    schedule = _choice(optim_cfg, "schedule", SCHEDULES)
    if schedule == "poly":
        if total_steps is None:
            raise ValueError("the poly schedule needs total_steps")
        power = float(optim_cfg["power"])
        return torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda t: max(0.0, 1.0 - t / total_steps) ** power
        )
    if schedule == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=int(optim_cfg["decay_every"]), gamma=optim_cfg["gamma"]
        )
    epochs, warmup = int(optim_cfg["epochs"]), int(optim_cfg.get("warmup_epochs", 0))
    floor = float(optim_cfg.get("min_lr", 0.0)) / optim_cfg["lr"]
    if not 0 <= warmup < epochs:
        raise ConfigError(f"optim.warmup_epochs must be in [0, optim.epochs), got {warmup}")

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(1, epochs - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _choice(optim_cfg: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    value = optim_cfg.get(key, choices[0])
    if value not in choices:
        raise ConfigError(f"optim.{key} must be one of {', '.join(choices)}, got {value!r}")
    return value
