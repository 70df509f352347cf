"""DeepLabV3 (Chen et al., 2017), the segmentation network trained on pseudo-masks (docs/segmentation.md).

torchvision's DeepLabV3 over a backbone split, built from torchvision's parts and named like
torchvision's model: ``mid`` (through layer3) and ``head`` (layer4) are its ``backbone``,
``classifier`` its ``DeepLabHead`` (ASPP with atrous rates 12, 24, 36 at output stride 8, 6, 12,
18 at 16; a 3x3 convolution; a 1x1 convolution to the classes) and ``aux_classifier`` its
``FCNHead`` on layer3. Both give ``K + 1`` channels (background and the K classes, mask value
``c + 1`` for class ``c``), upsampled bilinearly to the input size. With ``hidden`` 256 (the
ASPP width, ``model.hidden``) and the weights of ``torchvision.models.segmentation.deeplabv3_*``
the two models compute the same function.

Backbones (``model.arch``): ``resnet50_dilated`` / ``resnet101_dilated`` (layer4 dilated,
output stride 16; ``seg.output_stride: 8`` dilates layer3 too, as torchvision's DeepLabV3 does),
or any other split, e.g. ``resnet18_os16`` for CPU runs (output stride 16 only).

Training (the trainer's hooks): the training split's labels are the pseudo-masks of
``seg.masks_dir`` (:mod:`bas.wsss.segnet`), augmented by a random scale in ``seg.scale_range``,
a padded random crop of ``data.input_size`` and a flip; the loss is the cross-entropy of the
output (255 ignored) plus ``seg.aux_weight`` times that of the auxiliary output (0: no auxiliary
head in training; its weights stay in the model, frozen). Validation: mIoU on the held-out split
at its own resolution with ``seg.val_scales`` / ``seg.val_flip``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import ASPP
from torchvision.models.segmentation.fcn import FCNHead

from bas.errors import ConfigError
from bas.methods import register
from bas.methods.base import Method, WSOLModel, infer_size
from bas.models.backbones import Backbone
from bas.models.families.resnet_dilated import OUTPUT_STRIDES, set_output_stride
from bas.models.meta import ModelMeta
from bas.schema import Key
from bas.wsss.masks import IGNORE_INDEX

DILATED = ("resnet50_dilated", "resnet101_dilated")  # the backbones that also run at output stride 8
RATES_AT_16 = (6, 12, 18)  # ASPP rates at output stride 16; doubled at 8 (torchvision's 12, 24, 36)


@dataclass
class SegmentationOutput:
    """Class scores at the input resolution: ``logits`` (B, K + 1, H, W) of the classifier and
    ``aux_logits`` of the auxiliary head (training with ``seg.aux_weight > 0`` only, else None)."""

    logits: torch.Tensor
    aux_logits: torch.Tensor | None = None


def deeplab_head(in_channels: int, num_outputs: int, width: int, rates: tuple[int, ...]) -> nn.Sequential:
    """torchvision's ``DeepLabHead`` (same layers and names) with an ASPP of ``width`` channels."""
    return nn.Sequential(
        ASPP(in_channels, rates, out_channels=width),
        nn.Conv2d(width, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        nn.Conv2d(width, num_outputs, 1),
    )


class DeepLabV3Model(WSOLModel):
    """DeepLabV3: ``mid.*``, ``head.*`` (backbone), ``classifier.*`` (ASPP head), ``aux_classifier.*``."""

    method = "deeplabv3"
    new_layers = ("classifier.", "aux_classifier.")
    label_type = "multi_hot"  # it trains on multi-label (segmentation) datasets; the targets are masks

    def __init__(self, backbone: Backbone, meta: ModelMeta, *, min_input_size: int = 32):
        self.output_stride = 16  # what the layers are built for; the metadata's value is applied
        super().__init__(backbone, meta, min_input_size=min_input_size)
        outputs = meta.num_classes + 1
        self.classifier = deeplab_head(backbone.out_channels, outputs, meta.hidden, RATES_AT_16)
        self.aux_classifier = FCNHead(backbone.mid_channels, outputs)
        self.aux = True
        self.meta = meta

    @property
    def meta(self) -> ModelMeta:
        """The model's metadata; ``extra["output_stride"]`` (default 16) is the stride it runs at,
        applied whenever the metadata is set (so a checkpoint's model runs as it was trained)."""
        return self._meta

    @meta.setter
    def meta(self, meta: ModelMeta) -> None:
        stride = int(meta.extra.get("output_stride", 16))
        if stride != 16 and meta.arch not in DILATED:
            raise ValueError(
                f"output stride {stride} needs a dilated backbone ({', '.join(DILATED)}), not {meta.arch}"
            )
        self._meta = meta
        if "classifier" in self._modules and stride != self.output_stride:
            if meta.arch in DILATED:
                set_output_stride(self.mid, self.head, stride)
            factor = 16 // stride
            for conv, rate in zip(self.classifier[0].convs[1:-1], RATES_AT_16):
                conv[0].dilation = conv[0].padding = (rate * factor, rate * factor)
            self.output_stride = stride

    def set_output_stride(self, output_stride: int) -> None:
        """Output stride 16 or 8 (dilated ResNets only): backbone strides and ASPP rates, in place."""
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        self.meta = self.meta.replace(extra={**self.meta.extra, "output_stride": output_stride})

    def set_aux(self, enabled: bool) -> None:
        """Compute the auxiliary output in training (True) or never, its weights frozen (False)."""
        self.aux = bool(enabled)
        self.aux_classifier.requires_grad_(self.aux)

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, top_k: int = 1
    ) -> SegmentationOutput:
        """Class scores of every pixel, (B, K + 1, H, W); ``labels`` and ``top_k`` are not used."""
        self._check_inputs(images, None, 1)
        size = images.shape[-2:]
        feat = self.mid(images)
        logits = F.interpolate(self.classifier(self.head(feat)), size, mode="bilinear", align_corners=False)
        aux = None
        if self.training and self.aux:
            aux = F.interpolate(self.aux_classifier(feat), size, mode="bilinear", align_corners=False)
        return SegmentationOutput(logits, aux)


def masked_cross_entropy(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the pixels that are not :data:`IGNORE_INDEX` (0 when there are none,
    where ``F.cross_entropy`` gives NaN)."""
    total = F.cross_entropy(logits.float(), masks, ignore_index=IGNORE_INDEX, reduction="sum")
    return total / (masks != IGNORE_INDEX).sum().clamp_min(1)


@register
class DeepLabV3(Method):
    """DeepLabV3 on label masks: cross-entropy with 255 ignored, plus the auxiliary head's."""

    name = "deeplabv3"
    model_class = DeepLabV3Model
    label_type = "multi_hot"
    loss_terms = ("seg", "aux")
    localization_map = "logits"
    options = {"hidden": 256}
    config_defaults = {
        "seg.masks_dir": Key("str", None, nullable=True, help="pseudo-masks <id>.png of the training split"),
        "seg.scale_range": Key("list", [0.5, 2.0], length=2, item=Key("number", min=0, above=True)),
        "seg.aux_weight": Key("number", 0.5, min=0),
        "seg.output_stride": Key("int", 16, choices=OUTPUT_STRIDES),
        "seg.weights_backbone": Key(
            "str",
            None,
            nullable=True,
            help="a torchvision weights name such as IMAGENET1K_V1, a weights file, or a bas-wsol checkpoint",
        ),
        "seg.val_scales": Key("list", [1.0], item=Key("number", min=0, above=True)),
        "seg.val_flip": Key("bool", False),
        "seg.scales": Key("list", [1.0], item=Key("number", min=0, above=True)),
        "seg.flip": Key("bool", False),
    }

    def build(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int) -> WSOLModel:
        if meta.hidden < 1:
            raise ValueError(f"hidden (the ASPP width) must be >= 1, got {meta.hidden}")
        return DeepLabV3Model(backbone, meta, min_input_size=min_input_size)

    def check_config(self, cfg: dict[str, Any]) -> None:
        seg = cfg["seg"]
        low, high = seg["scale_range"]
        if low > high:
            raise ConfigError(
                f"seg.scale_range must be [low, high] with low <= high, got {seg['scale_range']}"
            )
        if seg["output_stride"] != 16 and cfg["model"]["arch"] not in DILATED:
            raise ConfigError(
                f"seg.output_stride {seg['output_stride']} needs model.arch {' or '.join(DILATED)}, "
                f"not {cfg['model']['arch']}"
            )
        if not seg["scales"] or not seg["val_scales"]:
            raise ConfigError("seg.scales and seg.val_scales need at least one scale")

    def configure(self, model: DeepLabV3Model, cfg: dict[str, Any]) -> None:
        seg = cfg["seg"]
        model.set_output_stride(seg["output_stride"])
        model.set_aux(seg["aux_weight"] > 0)
        init = load_backbone_weights(model, seg["weights_backbone"])
        model.meta = model.meta.replace(extra={**model.meta.extra, "backbone_init": init})

    def dataset(self, cfg: dict[str, Any], split: str, *, train: bool) -> Any:
        from bas.wsss.segnet import segmentation_dataset

        return segmentation_dataset(cfg, split, train=train)

    def targets(self, batch: dict[str, Any]) -> torch.Tensor:
        if batch.get("mask") is None:
            raise ConfigError("deeplabv3 trains on label masks, and this dataset's images have none")
        return batch["mask"].long()

    def loss(
        self, output: SegmentationOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = {"seg": masked_cross_entropy(output.logits, labels)}
        total = terms["seg"]
        if output.aux_logits is not None:
            terms["aux"] = masked_cross_entropy(output.aux_logits, labels)
            total = total + cfg["seg"]["aux_weight"] * terms["aux"]
        return total, terms

    def validate(
        self, model: nn.Module, loader: Any, cfg: dict[str, Any], *, device: torch.device, progress: bool
    ) -> tuple[dict[str, Any], float]:
        """mIoU and the other segmentation numbers of the held-out split, at each image's own size."""
        from bas.wsss.segnet import evaluate_model

        seg = cfg["seg"]
        result = evaluate_model(
            model,
            loader.dataset,
            scales=seg["val_scales"],
            flip=seg["val_flip"],
            device=device,
            amp=cfg["train"]["amp"],
            workers=int(cfg["data"]["workers"]),
            progress=progress,
        )
        return result, float(cfg["eval"]["threshold"])

    def infer_options(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "num_classes": infer_size(state_dict, "classifier.4.weight") - 1,
            "hidden": infer_size(state_dict, "classifier.0.convs.0.0.weight"),
        }


def load_backbone_weights(model: DeepLabV3Model, weights: str | None) -> str:
    """Initialise the backbone from ``weights`` (a file, or a torchvision weights name of the
    architecture found in torch's download cache) and return what it started from. A weights name
    whose file is not on this machine leaves the backbone random and says so (nothing is downloaded)."""
    if weights is None:
        return "random"
    from bas.models.pretrained import load_imagenet_weights

    path = Path(weights).expanduser()
    if not path.is_file():
        path = _cached_weights(model.arch, weights)
        if not path.is_file():
            if int(os.environ.get("RANK", "0")) == 0:
                print(
                    f"note: {weights} weights of {model.arch}'s backbone are not on this machine "
                    f"({path}); the backbone starts from random weights"
                )
            return "random"
    load_imagenet_weights(model, path)
    return str(weights)


def _cached_weights(arch: str, name: str) -> Path:
    """Where torchvision keeps the file of its weights ``name`` of ``arch``'s backbone."""
    from urllib.parse import urlparse

    import torchvision

    from bas.models.registry import get_spec

    spec = get_spec(arch)
    names = torchvision.models.get_model_weights(spec.torchvision_name) if spec.torchvision_name else None
    if names is None or name not in names.__members__:
        known = ", ".join(names.__members__) if names is not None else "none"
        raise ConfigError(
            f"seg.weights_backbone {name!r} is neither a file nor a torchvision weights name of "
            f"{arch} (known: {known})"
        )
    url = names[name].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
