"""Training losses, kept importable from here: each lives with its method in :mod:`bas.methods`.

:func:`training_loss` is the loss of any registered method; the BAS terms are in
:mod:`bas.methods.bas`.
"""

from __future__ import annotations

import torch

from bas.methods import get_method
from bas.methods.bas import EPS, BASLossSpec, bas_loss, bas_term, loss_spec
from bas.methods.base import BASOutput


def training_loss(
    method: str,
    output: BASOutput,
    labels: torch.Tensor,
    *,
    alpha: float = 0.0,
    beta: float = 0.0,
    variant: str = "ijcv2023",
    arch: str | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of a registered method (``Method.loss``), in float32 whatever precision the model ran in."""
    cfg = {"loss": {"alpha": alpha, "beta": beta}, "model": {"variant": variant, "arch": arch}}
    return get_method(method).loss(output, labels, cfg)


__all__ = ["EPS", "BASLossSpec", "bas_loss", "bas_term", "loss_spec", "training_loss"]
