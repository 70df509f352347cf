"""The CAM baseline (Zhou et al., CVPR 2016) over the same backbone splits as BAS.

``x -> mid -> head -> [classifier] -> F (B, C, h, w) -> GAP -> fc -> logits``

* ``mid`` and ``head`` are the registry's backbone split (:mod:`bas.models.backbones`), so CAM and
  BAS see the same network and the CAM lives at the head resolution (14x14 at 224x224 input).
* ``classifier`` is empty for plain CAM (GAP + linear on the head output, the wsolevaluation
  ResNet baseline); with ``hidden`` it is one conv3x3 (C -> hidden) + ReLU, the extra ``conv6``
  of the wsolevaluation VGG16 / InceptionV3 CAM baselines.
* ``fc`` is a ``Linear(C, K)``. Because GAP and ``fc`` are linear, ``fc(GAP(F)) = GAP(CAM) + b``
  with the class activation maps ``CAM_k = sum_c w_{k,c} F_c``; the forward pass computes the maps
  once and the logits from them.

The map is the raw class-weighted feature sum: no ReLU and no bias (a per-class constant, which the
per-image min-max normalisation of the evaluator removes anyway). ``F`` itself is non-negative (the
head ends with a ReLU), the map is not. The fused map of the selected class(es) comes out as
``fg_map`` through :meth:`WSOLModel.select_maps` (ground-truth class with ``top_k == 1`` and labels,
else the mean over the ``top_k`` best-scoring classes), so the evaluator, the figures and the
metrics treat CAM and BAS exactly alike. The loss is the cross-entropy of the logits.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bas.methods import register
from bas.methods.base import BASOutput, Method, WSOLModel, infer_size
from bas.models.backbones import Backbone
from bas.models.meta import ModelMeta
from bas.schema import Key


class CAMModel(WSOLModel):
    """Class activation mapping: a backbone split, an optional conv layer and a linear classifier.

    Parameters are ``mid.*`` and ``head.*`` (the backbone, same names as in :class:`BASModel`),
    ``classifier.*`` (the optional conv3x3 + ReLU, absent for plain CAM) and ``fc.*``.
    """

    method = "cam"
    new_layers = ("classifier.", "fc.")

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        arch: str = "custom",
        hidden: int | None = None,
        min_input_size: int = 32,
        init: str = "xavier",
        meta: ModelMeta | None = None,
    ):
        if hidden is not None and hidden < 0:
            raise ValueError(f"hidden must be None, 0 (plain CAM) or a positive width, got {hidden}")
        meta = meta or ModelMeta(arch, num_classes, method=self.method)
        super().__init__(
            backbone,
            meta.replace(arch=arch, num_classes=num_classes, hidden=hidden or 0),
            min_input_size=min_input_size,
        )
        channels = backbone.out_channels
        layers: list[nn.Module] = []
        if self.hidden:
            layers = [nn.Conv2d(channels, self.hidden, 3, padding=1), nn.ReLU(inplace=True)]
            channels = self.hidden
        self.classifier = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        self.init_new_layers(init)

    @property
    def hidden(self) -> int:
        return self.meta.hidden

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``F``: the feature map the classifier pools, (B, C, h, w)."""
        return self.head_maps(self.mid(images))

    def class_activation_maps(self, features: torch.Tensor) -> torch.Tensor:
        """``CAM_k = sum_c w_{k,c} F_c`` for every class k, (B, K, h, w); no bias, no ReLU."""
        return torch.einsum("kc,bchw->bkhw", self.fc.weight.to(features.dtype), features)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None, top_k: int = 1) -> BASOutput:
        """Run CAM; the output has the fields of :class:`BASOutput` that the evaluator reads.

        Args:
            images: (B, 3, H, W) normalised images.
            labels: (B,) ground-truth classes; with ``top_k == 1`` the map is the label's CAM.
            top_k: number of top-scoring classes whose CAMs are averaged (used when ``labels`` is
                None or ``top_k > 1``).

        Returns:
            ``logits`` (B, K) ``= fc(GAP(F))``; ``fg_logits`` = ``logits``; ``fg_map`` (B, 1, h, w)
            the fused raw CAM; ``feature_map`` (B, K, h, w) the CAMs of all classes.
        """
        self._check_inputs(images, labels, top_k)
        if labels is not None:
            labels = labels.long()
        cams = self.class_activation_maps(self.features(images))
        logits = self.pool(cams) + self.fc.bias.to(cams.dtype)
        fg_map = self.select_maps(cams, logits, labels, top_k)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=fg_map, feature_map=cams)

    def localize_classes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the class activation map of every class, (B, K, h, w)."""
        out = self(images)
        return out.logits, out.feature_map


@register
class CAM(Method):
    """The CAM baseline: cross-entropy on ``fc(GAP(F))``, the class activation map for localisation."""

    name = "cam"
    model_class = CAMModel
    label_type = "single"
    loss_terms = ("cls",)
    localization_map = "fg_map"
    options = {"hidden": None}
    config_defaults = {"model.hidden": Key("int", None, nullable=True, min=1, help="null: plain CAM")}

    def build(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int) -> CAMModel:
        return self.model_class(
            backbone,
            meta.num_classes,
            arch=meta.arch,
            hidden=meta.hidden,
            min_input_size=min_input_size,
            init=init,
            meta=meta,
        )

    def infer_options(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        conv = "classifier.0.weight" in state_dict  # a CAM model without a conv layer has width 0
        return {
            "num_classes": infer_size(state_dict, "fc.weight"),
            "hidden": infer_size(state_dict, "classifier.0.weight") if conv else 0,
        }

    def loss(
        self, output: BASOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cls = F.cross_entropy(output.logits.float(), labels)
        return cls, {"cls": cls}
