"""BAS loss terms (docs/method.md §3, step 6) and their variants.

``total = cls + alpha * fg_cls + bas + beta * area`` with, per sample then averaged over the batch,

* ``cls = CE(s, y)``, ``fg_cls = CE(s_fg, y)``;
* ``bas = S_bg / (S + 1e-8)`` where ``S`` is the detached ground-truth score and ``S_bg`` the
  ground-truth score of the erased features; where ``S_bg`` exceeds ``S`` the ratio is replaced by
  a constant (the "clip"), and the IJCV 2023 code applies ReLU to both scores first;
* ``area = mean(M)``.

| variant    | ReLU on S, S_bg | where S_bg > S           |
|------------|-----------------|--------------------------|
| cvpr2022   | no              | 0 (condition ``>=``)     |
| ijcv2023   | yes             | 1 (0 for VGG16)          |
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from bas.models.bas import BASOutput

EPS = 1e-8


@dataclass(frozen=True)
class BASLossSpec:
    """How the ``bas`` term is computed."""

    relu: bool  # ReLU on S and S_bg before the ratio
    clip_value: float  # value of the term where S_bg exceeds S
    inclusive: bool  # the clip also applies where S_bg == S


def loss_spec(variant: str, arch: str | None = None) -> BASLossSpec:
    """The ``bas`` term of a paper variant; ``arch`` matters for ijcv2023 (VGG16 clips to 0)."""
    if variant == "cvpr2022":
        return BASLossSpec(relu=False, clip_value=0.0, inclusive=True)
    if variant == "ijcv2023":
        vgg = arch is not None and arch.startswith("vgg")
        return BASLossSpec(relu=True, clip_value=0.0 if vgg else 1.0, inclusive=False)
    raise ValueError(f"unknown variant {variant!r}; expected 'cvpr2022' or 'ijcv2023'")


def _as_float32(output: BASOutput) -> BASOutput:
    """``output`` with its half-precision tensors (autocast) in float32, so losses are computed in float32."""
    changes = {}
    for f in fields(output):
        value = getattr(output, f.name)
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float64:
            changes[f.name] = value.float()
    return replace(output, **changes)


def bas_term(fg_score: torch.Tensor, bg_score: torch.Tensor, spec: BASLossSpec) -> torch.Tensor:
    """Per-sample background activation ratio ``S_bg / (S + eps)`` with the variant's clip, (B,).

    Pass float32 scores (:func:`bas_loss` does): ``eps`` vanishes in fp16.
    """
    s, s_bg = fg_score.detach(), bg_score
    if spec.relu:
        s, s_bg = F.relu(s), F.relu(s_bg)
    ratio = s_bg / (s + EPS)
    over = s_bg >= s if spec.inclusive else s_bg > s
    return torch.where(over, torch.full_like(ratio, spec.clip_value), ratio)


def bas_loss(
    output: BASOutput,
    labels: torch.Tensor,
    alpha: float,
    beta: float,
    variant: str = "ijcv2023",
    arch: str | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total BAS loss and its terms.

    Args:
        output: a training-mode :class:`BASOutput` (with ``fg_score`` and ``bg_score``).
        labels: (B,) ground-truth classes.
        alpha: weight of the foreground-guidance classification loss ``fg_cls``.
        beta: weight of the area loss.
        variant: ``"cvpr2022"`` or ``"ijcv2023"``; ``arch`` selects the ijcv2023 VGG16 clip.

    Returns:
        ``(total, terms)`` where ``terms`` maps ``cls``, ``fg_cls``, ``bas``, ``area`` to scalars
        (unweighted batch means).
    """
    if output.fg_score is None or output.bg_score is None:
        raise ValueError("bas_loss needs a training-mode output with labels (fg_score / bg_score are None)")
    spec = loss_spec(variant, arch)
    output = _as_float32(output)
    terms = {
        "cls": F.cross_entropy(output.logits, labels),
        "fg_cls": F.cross_entropy(output.fg_logits, labels),
        "bas": bas_term(output.fg_score, output.bg_score, spec).mean(),
        "area": output.fg_map.flatten(1).mean(1).mean(),
    }
    total = terms["cls"] + alpha * terms["fg_cls"] + terms["bas"] + beta * terms["area"]
    return total, terms


METHODS = ("bas", "cam")


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
    """The loss of a training method: BAS (:func:`bas_loss`) or the CAM baseline (cross-entropy only),
    in float32 whatever precision the model ran in."""
    if method == "bas":
        return bas_loss(output, labels, alpha, beta, variant, arch)
    if method == "cam":
        cls = F.cross_entropy(output.logits.float(), labels)
        return cls, {"cls": cls}
    raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
