"""The BAS model: one implementation of the generator, the Activation Map Constraint and the outputs
over any backbone split (docs/method.md §2-§3).

Batched tensor code throughout: no Python loop over the batch, no module copy per step, no device
assumption. The erase branch re-evaluates ``head`` and ``classifier`` through
:func:`torch.func.functional_call` with *detached* parameters, so its gradient reaches the
foreground map (hence the generator) only; no weight gradient is computed for it.

BatchNorm in the erase branch: it runs in the same mode as the main branch (batch statistics while
training, running statistics in eval), but never updates the running statistics: those are updated
once per step, from the real images. The reference deep-copies the head each step, which gives the
same normalisation but spends a copy and a set of weight gradients per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bas.models.backbones import Backbone

VARIANTS = ("cvpr2022", "ijcv2023")


@dataclass
class BASOutput:
    """What :class:`BASModel` returns.

    Attributes:
        logits: class scores ``s = GAP(A)``, (B, K).
        fg_logits: foreground-guided scores ``GAP(A * avgpool(M))``, (B, K).
        fg_map: the foreground map ``M`` in [0, 1], (B, 1, h, w) at the mid-level resolution.
        fg_score: ``S``, the detached ground-truth score of the full image, (B,) (training only).
        bg_score: ``S_bg``, the ground-truth score of the erased features, (B,) (training only).
        feature_map: the classifier output ``A``, (B, K, H', W').
    """

    logits: torch.Tensor
    fg_logits: torch.Tensor
    fg_map: torch.Tensor
    fg_score: torch.Tensor | None = None
    bg_score: torch.Tensor | None = None
    feature_map: torch.Tensor | None = None


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


class BASModel(nn.Module):
    """Background Activation Suppression over a (mid, head) backbone split.

    Parameters are grouped as ``mid.*`` and ``head.*`` (the backbone, with the authors' layer
    names), ``classifier.*`` (``classifier_cls``) and ``generator.*`` (``classifier_loc``).
    """

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
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.arch = arch
        self.variant = variant
        self.num_classes = num_classes
        self.hidden = hidden
        self.min_input_size = min_input_size
        self.mid = backbone.mid
        self.head = backbone.head
        self.classifier = make_classifier(
            backbone.out_channels, num_classes, hidden, final_relu=variant == "cvpr2022"
        )
        self.generator = make_generator(backbone.mid_channels, num_classes)
        for module in (*self.classifier, *self.generator):
            if isinstance(module, nn.Conv2d):
                if init == "normal":  # the authors' VGG16 initialisation of the new layers
                    nn.init.normal_(module.weight, 0.0, 0.02)
                else:
                    nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------- forward

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
        feature_map = self.classifier(self.head(feat))
        logits = feature_map.mean(dim=(2, 3))
        fg_map = self.select_maps(self.generator(feat), logits, labels, top_k)
        fg_logits = (feature_map * F.adaptive_avg_pool2d(fg_map, feature_map.shape[-2:])).mean(dim=(2, 3))
        out = BASOutput(logits=logits, fg_logits=fg_logits, fg_map=fg_map, feature_map=feature_map)
        if self.training and labels is not None:
            out.fg_score = logits.gather(1, labels[:, None]).squeeze(1).detach()
            out.bg_score = self.background_logits(feat, fg_map).gather(1, labels[:, None]).squeeze(1)
        return out

    @staticmethod
    def select_maps(
        maps: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None, top_k: int
    ) -> torch.Tensor:
        """Fuse the per-class maps (B, K, h, w) into one map (B, 1, h, w).

        ``top_k == 1`` with labels: the ground-truth channel. Otherwise the mean of the channels of
        the ``top_k`` highest-scoring classes of ``logits``.
        """
        if labels is not None and top_k == 1:
            index = labels[:, None]
        else:
            index = logits.topk(min(top_k, logits.shape[1]), dim=1).indices
        h, w = maps.shape[-2:]
        chosen = maps.gather(1, index[:, :, None, None].expand(-1, -1, h, w))
        return chosen.mean(dim=1, keepdim=True)

    def background_logits(self, feat: torch.Tensor, fg_map: torch.Tensor) -> torch.Tensor:
        """The Activation Map Constraint's erase branch: ``GAP(classifier'(head'(F.detach() * (1 - M))))``.

        ``head'`` and ``classifier'`` are ``head`` and ``classifier`` with detached parameters and
        private copies of their buffers, so the gradient reaches ``M`` only.
        """
        x = feat.detach() * (1.0 - fg_map)
        for module in (self.head, self.classifier):
            params = {name: p.detach() for name, p in module.named_parameters()}
            buffers = {name: b.clone() for name, b in module.named_buffers()}
            x = functional_call(module, (params, buffers), (x,))
        return x.mean(dim=(2, 3))

    # ------------------------------------------------------------------------------ validation

    def _check_inputs(self, images: torch.Tensor, labels: torch.Tensor | None, top_k: int) -> None:
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a (B, 3, H, W) tensor, got {shape}")
        if images.shape[1] != 3:
            raise ValueError(
                f"images must have 3 channels, got {images.shape[1]} (shape {tuple(images.shape)})"
            )
        if min(images.shape[-2:]) < self.min_input_size:
            raise ValueError(
                f"{self.arch} needs images of at least {self.min_input_size}x{self.min_input_size} "
                f"pixels, got {images.shape[-2]}x{images.shape[-1]}"
            )
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if labels is not None:
            if labels.shape != (images.shape[0],):
                raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
            if labels.dtype not in (torch.int64, torch.int32):
                raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
            if labels.numel() and not torch.compiler.is_compiling():
                lo, hi = int(labels.min()), int(labels.max())
                if lo < 0 or hi >= self.num_classes:
                    raise ValueError(
                        f"labels must be in [0, {self.num_classes - 1}], got values in [{lo}, {hi}]"
                    )
