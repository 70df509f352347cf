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
``fg_map`` through :meth:`BASModel.select_maps` (ground-truth class with ``top_k == 1`` and labels,
else the mean over the ``top_k`` best-scoring classes), so the evaluator, the figures and the
metrics treat CAM and BAS exactly alike.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from bas.models.backbones import Backbone
from bas.models.bas import BASModel, BASOutput
from bas.models.registry import get_spec


class CAMModel(nn.Module):
    """Class activation mapping: a backbone split, an optional conv layer and a linear classifier.

    Parameters are ``mid.*`` and ``head.*`` (the backbone, same names as in :class:`BASModel`),
    ``classifier.*`` (the optional conv3x3 + ReLU, absent for plain CAM) and ``fc.*``.
    """

    method = "cam"

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int,
        *,
        arch: str = "custom",
        hidden: int | None = None,
        min_input_size: int = 32,
        init: str = "xavier",
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if hidden is not None and hidden < 0:
            raise ValueError(f"hidden must be None, 0 (plain CAM) or a positive width, got {hidden}")
        self.arch = arch
        self.num_classes = num_classes
        self.min_input_size = min_input_size
        self.hidden = int(hidden or 0)
        self.mid = backbone.mid
        self.head = backbone.head
        channels = backbone.out_channels
        layers: list[nn.Module] = []
        if self.hidden:
            layers = [nn.Conv2d(channels, self.hidden, 3, padding=1), nn.ReLU(inplace=True)]
            channels = self.hidden
        self.classifier = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)
        for module in (*self.classifier, self.fc):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                if init == "normal":  # the registry's initialisation of new layers (VGG16)
                    nn.init.normal_(module.weight, 0.0, 0.02)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``F``: the feature map the classifier pools, (B, C, h, w)."""
        return self.classifier(self.head(self.mid(images)))

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
        BASModel._check_inputs(self, images, labels, top_k)  # same argument checks as BAS
        if labels is not None:
            labels = labels.long()
        cams = self.class_activation_maps(self.features(images))
        logits = cams.mean(dim=(2, 3)) + self.fc.bias.to(cams.dtype)
        fg_map = BASModel.select_maps(cams, logits, labels, top_k)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=fg_map, feature_map=cams)


def build_cam_model(
    arch: str, num_classes: int, *, pretrained: bool | str | Path = False, hidden: int | None = None
) -> CAMModel:
    """Build the CAM baseline over a registered backbone split.

    Args:
        arch: a name from :func:`bas.models.list_models`.
        num_classes: number of classes K.
        pretrained: False; True for torchvision's ImageNet weights of the backbone; or the path of
            a local ImageNet weight file (as for :func:`bas.models.build_model`).
        hidden: None or 0 for plain CAM (GAP + linear on the head output); a width adds one
            conv3x3 + ReLU before the GAP (wsolevaluation's ``conv6`` for VGG16 / InceptionV3).
    """
    spec = get_spec(arch)
    model = CAMModel(
        spec.build_backbone(),
        num_classes,
        arch=arch,
        hidden=hidden,
        min_input_size=spec.min_input_size,
        init=spec.init,
    )
    if pretrained:
        from bas.checkpoints import load_imagenet_weights

        load_imagenet_weights(model, None if pretrained is True else pretrained)
    return model
