"""The multi-label CAM baseline of the segmentation experiments: IRN's CAM network (Ahn et al., 2019).

Over the output-stride-16 ResNet50 split (``resnet50_os16``), as IRN builds it:

* BatchNorm with frozen statistics: every BatchNorm layer normalises with its running statistics,
  in training too (their affine parameters still train, except ``bn1``'s);
* the stem and the first two stages (``conv1``, ``bn1``, ``layer1``, ``layer2``) are frozen: IRN
  freezes ``conv1``/``bn1`` and cuts the gradient after ``layer2``, so none of them changes;
* ``classifier``: conv1x1 2048 -> K without bias on layer4; logits = its global average pool; the
  class activation map of class k is ``relu(classifier(layer4))_k``;
* loss: the multi-label soft margin loss of the logits and the multi-hot tags.

IRN's training settings (``voc/cam_resnet50``): 5 epochs, batch 16, lr 0.1 (10x on the
classifier), weight decay 1e-4, poly schedule.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bas.methods import register
from bas.methods.base import BASOutput
from bas.methods.multilabel_bas import RELEASED_ARCH, MultiLabelMethod, MultiLabelModel, MultiLabelOutput
from bas.models.backbones import Backbone
from bas.models.meta import ModelMeta
from bas.schema import Key

FROZEN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2")  # children of mid that never train
IRN_PREFIXES = ("resnet50.",)  # the released file's backbone entries (its stage*/backbone.* duplicate them)


class MultiLabelCAMModel(MultiLabelModel):
    """IRN's CAM network: ``mid.*``, ``head.*`` (backbone) and ``classifier.*`` (conv1x1, no bias)."""

    method = "multilabel_cam"
    new_layers = ("classifier.",)

    def __init__(
        self, backbone: Backbone, meta: ModelMeta, *, init: str = "xavier", min_input_size: int = 32
    ):
        super().__init__(backbone, meta.replace(hidden=0), min_input_size=min_input_size)
        self.classifier = nn.Conv2d(backbone.out_channels, meta.num_classes, 1, bias=False)
        self.init_new_layers(init)
        self.set_frozen(True)

    def set_frozen(self, frozen: bool) -> None:
        """IRN's freezing (the default): the stem and the first two stages never train and every
        BatchNorm keeps its running statistics. ``False`` (a backbone trained from scratch, key
        ``cam.frozen``) trains every layer with batch statistics, as the BAS model does."""
        self.frozen = bool(frozen)
        for name in FROZEN:
            getattr(self.mid, name).requires_grad_(not self.frozen)
        self.train(self.training)

    def train(self, mode: bool = True) -> MultiLabelCAMModel:
        """Train mode everywhere but, when frozen, in the BatchNorm layers (running statistics)."""
        super().train(mode)
        for module in self.modules():
            if getattr(self, "frozen", True) and isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """layer4's output, (B, 2048, h, w); when frozen, no gradient reaches the frozen stages."""
        x = images
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            for name in FROZEN:
                x = getattr(self.mid, name)(x)
        return self.head(self.mid.layer3(x))

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, top_k: int = 1
    ) -> MultiLabelOutput:
        """Logits ``GAP(classifier(layer4))``, the class activation maps (``feature_map``, after ReLU)
        and ``fg_map``: the mean map of the tags (multi-hot ``labels``) or of the ``top_k`` best classes."""
        self._check_inputs(images, labels, top_k)
        raw = self.classifier(self.features(images))
        logits = self.pool(raw)
        cams = F.relu(raw)
        fg_map = self.fuse_maps(cams, logits, labels, top_k)
        return MultiLabelOutput(logits=logits, fg_logits=logits, fg_map=fg_map, feature_map=cams)

    def localize(self, images: torch.Tensor, top_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(images, top_k=top_k)
        return out.logits, out.fg_map

    def localize_classes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the class activation map of every class (after ReLU), (B, K, h, w)."""
        out = self(images)
        return out.logits, out.feature_map

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """``relu(classifier(layer4))`` of every class, (B, K, h, w) at stride 16."""
        return F.relu(self.classifier(self.features(images)))


@register
class MultiLabelCAM(MultiLabelMethod):
    """IRN's multi-label CAM: multi-label soft margin loss on ``GAP(classifier(layer4))``."""

    name = "multilabel_cam"
    model_class = MultiLabelCAMModel
    loss_terms = ("cls",)
    localization_map = "fg_map"
    config_defaults = {
        **MultiLabelMethod.config_defaults,
        "cam.frozen": Key(
            "bool", True, help="IRN's frozen stem and BatchNorm statistics (false: from scratch)"
        ),
    }

    def configure(self, model: MultiLabelCAMModel, cfg: dict[str, Any]) -> None:
        model.set_frozen(cfg["cam"]["frozen"])

    def loss(
        self, output: BASOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        cls = F.multilabel_soft_margin_loss(output.logits.float(), labels.float())
        return cls, {"cls": cls}

    def read_released(
        self, state_dict: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """IRN's ``res50_cam.pth``: the backbone under ``resnet50.`` (repeated under ``stage1..4.``
        and ``backbone.``, which are dropped) and ``classifier.weight`` (``newly_added.0`` repeats it)."""
        cls = state_dict.get("classifier.weight")
        if cls is None or cls.dim() != 4 or "resnet50.conv1.weight" not in state_dict:
            return None
        tensors = {k.split(".", 1)[1]: v for k, v in state_dict.items() if k.startswith(IRN_PREFIXES)}
        tensors["classifier.weight"] = cls
        return tensors, {"method": self.name, "arch": RELEASED_ARCH, "source": "irn"}
