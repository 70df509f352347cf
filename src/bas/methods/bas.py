"""Background Activation Suppression (docs/method.md §2-§3): the model, its loss and its method entry.

The model: one implementation of the generator, the Activation Map Constraint and the outputs over
any backbone split. Batched tensor code throughout: no Python loop over the batch, no module copy
per step, no device assumption. The erase branch re-evaluates ``head`` and ``classifier`` with
*detached* parameters (:meth:`WSOLModel.head_maps`), so its gradient reaches the foreground map
(hence the generator) only; no weight gradient is computed for it.

BatchNorm in the erase branch: it runs in the same mode as the main branch (batch statistics while
training, running statistics in eval), but never updates the running statistics: those are updated
once per step, from the real images. The reference deep-copies the head each step, which gives the
same normalisation but spends a copy and a set of weight gradients per step.

The loss (docs/method.md §3, step 6): ``total = cls + alpha * fg_cls + bas + beta * area`` with, per
sample then averaged over the batch,

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bas.methods import register
from bas.methods.base import (
    BASOutput,
    Method,
    WSOLModel,
    infer_size,
)
from bas.models.backbones import Backbone
from bas.models.meta import ModelMeta
from bas.schema import Key

VARIANTS = ("cvpr2022", "ijcv2023")
EPS = 1e-8


def make_classifier(
    in_channels: int, num_classes: int, hidden: int = 1024, final_relu: bool = False
) -> nn.Sequential:
    """``classifier_cls``: conv3x3 - ReLU - conv3x3 - ReLU - conv1x1 (- ReLU in the CVPR 2022 code).

    ``hidden`` 0: the conv1x1 alone (the vision transformers' classifier, docs/vit.md).
    """
    layers: list[nn.Module] = [nn.Conv2d(hidden or in_channels, num_classes, 1)]
    if hidden:
        layers[:0] = [
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
        ]
    if final_relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def make_generator(in_channels: int, num_classes: int) -> nn.Sequential:
    """``classifier_loc``: conv3x3 (C_mid -> K) - Sigmoid, one foreground map per class."""
    return nn.Sequential(nn.Conv2d(in_channels, num_classes, 3, padding=1), nn.Sigmoid())


class BASModel(WSOLModel):
    """Background Activation Suppression over a (mid, head) backbone split.

    Parameters are grouped as ``mid.*`` and ``head.*`` (the backbone, with the authors' layer
    names), ``classifier.*`` (``classifier_cls``) and ``generator.*`` (``classifier_loc``).
    """

    method = "bas"
    new_layers = ("classifier.", "generator.")

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        arch: str = "custom",
        variant: str = "ijcv2023",
        hidden: int = 1024,
        min_input_size: int = 32,
        init: str = "xavier",
        meta: ModelMeta | None = None,
    ):
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        meta = meta or ModelMeta(arch, num_classes, method=self.method)
        super().__init__(
            backbone,
            meta.replace(arch=arch, num_classes=num_classes, variant=variant, hidden=hidden),
            min_input_size=min_input_size,
        )
        self.classifier = make_classifier(
            backbone.out_channels, num_classes, hidden, final_relu=variant == "cvpr2022"
        )
        self.generator = make_generator(backbone.mid_channels, num_classes)
        self.init_new_layers(init)

    @property
    def variant(self) -> str:
        return self.meta.variant

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, top_k: int = 1) -> BASOutput:
        """Run BAS.

        Args:
            images: (B, 3, H, W) normalised images.
            labels: (B,) ground-truth classes. With ``top_k == 1`` the map is the label's channel;
                in training mode they also enable the erase branch (``fg_score``, ``bg_score``).
            top_k: number of top-scoring classes whose maps are averaged (used when ``labels`` is
                None or ``top_k > 1``).
        """
        self._check_inputs(images, labels, top_k)
        if labels is not None:
            labels = labels.long()
        feat = self.mid(images)
        feature_map = self.head_maps(feat)
        logits = self.pool(feature_map)
        fg_map = self.select_maps(self.generator(feat), logits, labels, top_k)
        fg_logits = self.pool(feature_map * F.adaptive_avg_pool2d(fg_map, feature_map.shape[-2:]))
        out = BASOutput(logits=logits, fg_logits=fg_logits, fg_map=fg_map, feature_map=feature_map)
        if self.training and labels is not None:
            out.fg_score = logits.gather(1, labels[:, None]).squeeze(1).detach()
            out.bg_score = self.background_logits(feat, fg_map).gather(1, labels[:, None]).squeeze(1)
        return out

    def localize(self, images: torch.Tensor, top_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference only (no erase branch, no foreground-guided scores): logits and the fused map."""
        logits, maps = self.localize_classes(images)
        return logits, self.select_maps(maps, logits, None, top_k)

    def localize_classes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the generator's map of every class, (B, K, h, w)."""
        feat = self.mid(images)
        return self.pool(self.head_maps(feat)), self.generator(feat)

    def background_logits(self, feat: torch.Tensor, fg_map: torch.Tensor) -> torch.Tensor:
        """The Activation Map Constraint's erase branch: ``GAP(classifier'(head'(F.detach() * (1 - M))))``.

        ``head'`` and ``classifier'`` are ``head`` and ``classifier`` with detached parameters and
        private copies of their buffers, so the gradient reaches ``M`` only.
        """
        return self.pool(self.head_maps(feat.detach() * (1.0 - fg_map), frozen=True))


# ------------------------------------------------------------------------------------------ loss


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


def as_float32(output: BASOutput) -> BASOutput:
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
    output = as_float32(output)
    terms = {
        "cls": F.cross_entropy(output.logits, labels),
        "fg_cls": F.cross_entropy(output.fg_logits, labels),
        "bas": bas_term(output.fg_score, output.bg_score, spec).mean(),
        "area": output.fg_map.flatten(1).mean(1).mean(),
    }
    total = terms["cls"] + alpha * terms["fg_cls"] + terms["bas"] + beta * terms["area"]
    return total, terms


# ---------------------------------------------------------------------------------------- method


@register
class BAS(Method):
    """BAS: generator + Activation Map Constraint; the paper recipes."""

    name = "bas"
    model_class = BASModel
    label_type = "single"
    loss_terms = ("cls", "fg_cls", "bas", "area")
    localization_map = "fg_map"
    options = {"variant": "ijcv2023", "hidden": 1024}
    config_defaults = {
        "model.variant": Key("str", "ijcv2023", choices=VARIANTS),
        "model.hidden": Key("int", 1024, min=0, help="0: a conv1x1 classifier, for vision transformers"),
        "loss.alpha": Key("number", 0.5, min=0),
        "loss.beta": Key("number", 1.5, min=0),
    }

    def build(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int) -> BASModel:
        return BASModel(
            backbone,
            meta.num_classes,
            arch=meta.arch,
            variant=meta.variant,
            hidden=meta.hidden,
            min_input_size=min_input_size,
            init=init,
            meta=meta,
        )

    def infer_options(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "num_classes": infer_size(state_dict, "generator.0.weight"),
            # hidden 0: the conv1x1 alone (no classifier.2)
            "hidden": infer_size(state_dict, "classifier.0.weight")
            if "classifier.2.weight" in state_dict
            else 0,
        }

    def loss(
        self, output: BASOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, model = cfg["loss"], cfg["model"]
        return bas_loss(output, labels, loss["alpha"], loss["beta"], model["variant"], model["arch"])
