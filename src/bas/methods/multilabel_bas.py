"""Multi-label BAS for weakly supervised semantic segmentation (IJCV 2023; docs/segmentation.md).

Image-level tags in (a multi-hot (K,) vector per image), one foreground map per class out. Over the
output-stride-16 ResNet50 split (``resnet50_os16``): ``mid`` through layer3 feeds the generator
(conv3x3 without bias + sigmoid), ``head`` is layer4 at stride 1 and the classifier a bias-free
conv1x1, whose map ``A`` pools into the logits ``s``.

Training, batched over the images: each image draws ONE of its tagged classes ``p`` uniformly at
random (from the model's own seeded :class:`torch.Generator`, saved in the training state so a
resumed run draws what an uninterrupted one does); ``M`` is the generator's map of
``p``. The erase branch is the WSOL model's (:meth:`WSOLModel.head_maps` with detached parameters,
no module copy), so its gradient reaches ``M`` only. The terms, batch means:

* ``cls``: for every tagged class c of an image, the cross-entropy of ``[s_c, s_n for every
  untagged n]`` with target ``s_c``; summed over the tags of all images, divided by the batch size;
* ``fg_cls``: cross-entropy of ``GAP(A.detach() * M)`` against ``p``;
* ``bas``: ``relu(S_bg) / (relu(S) + 1e-8)``, 1 where ``S_bg > S`` (``S`` the detached logit of
  ``p``, ``S_bg`` its logit on the erased features); ``area = mean(M)``.

``total = cls + alpha * fg_cls + bas + beta * area`` with ``alpha = 0.2``, ``beta = 1.2`` in the
paper's recipe (``voc/resnet50``).

This module also holds what the multi-label methods share (:class:`MultiLabelModel`,
:class:`MultiLabelMethod`: multi-hot inputs, per-class maps for seeds, validation by mAP);
:mod:`bas.methods.multilabel_cam` is the CAM baseline over the same split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bas.methods import register
from bas.methods.bas import BASLossSpec, as_float32, bas_term
from bas.methods.base import BASOutput, Method, WSOLModel, check_number, infer_size
from bas.models.backbones import Backbone
from bas.models.meta import ModelMeta
from bas.schema import Key

RELEASED_ARCH = "resnet50_os16"  # the network of the released segmentation files
BAS_SPEC = BASLossSpec(relu=True, clip_value=1.0, inclusive=False)  # the WSSS code's bas term


@dataclass
class MultiLabelOutput(BASOutput):
    """:class:`BASOutput` plus ``positive``: the tagged class drawn per image, (B,) (training only)."""

    positive: torch.Tensor | None = None
    warmup: bool = False  # drawn during ``loss.warmup_epochs``: only ``cls`` is trained


def draw_positive(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One tagged class per row of a multi-hot ``labels`` (B, K), uniformly among the row's tags, (B,).

    The argmax of i.i.d. uniform draws restricted to the tags: one batched draw from ``generator``
    (a CPU generator, so the draw is the same on every device). ValueError for a row without tags.
    """
    tagged = labels > 0.5
    if not bool(tagged.any(dim=1).all()):
        raise ValueError("every training image needs at least one tagged class (a row of labels is empty)")
    u = torch.rand(labels.shape, generator=generator).to(labels.device)
    return torch.where(tagged, u, torch.full_like(u, -1.0)).argmax(dim=1)


def pick(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b]]`` for (B, K, ...) values and (B,) indices, keeping dim 1: (B, 1, ...)."""
    shape = (-1, 1, *values.shape[2:])
    return values.gather(1, index.view(-1, *([1] * (values.dim() - 1))).expand(shape))


class MultiLabelModel(WSOLModel):
    """A multi-label model over a backbone split: multi-hot labels, per-class maps for seeds.

    Subclasses implement :meth:`class_maps` (the per-class maps seeds are made of) and ``forward``.
    """

    label_type = "multi_hot"

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The per-class maps seeds are computed from, (B, K, h, w), inference only."""
        raise NotImplementedError

    @staticmethod
    def fuse_maps(
        maps: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor | None, top_k: int
    ) -> torch.Tensor:
        """One map per image, (B, 1, h, w): the mean over its tagged classes with multi-hot labels,
        else over the ``top_k`` best-scoring classes."""
        if labels is None:
            return WSOLModel.select_maps(maps, logits, None, top_k)
        weights = labels.to(maps.dtype)[:, :, None, None]
        return (maps * weights).sum(1, keepdim=True) / weights.sum(1, keepdim=True).clamp_min(1)


class MultiLabelBASModel(MultiLabelModel):
    """BAS for multi-label tags: ``mid.*``, ``head.*`` (backbone), ``classifier.*`` (conv1x1, no bias;
    the authors' ``classifier_cls``) and ``generator.*`` (conv3x3, no bias, + sigmoid; ``classifier_loc``)."""

    method = "multilabel_bas"
    new_layers = ("classifier.", "generator.")

    def __init__(
        self, backbone: Backbone, meta: ModelMeta, *, init: str = "xavier", min_input_size: int = 32
    ):
        super().__init__(backbone, meta.replace(hidden=0), min_input_size=min_input_size)
        k = meta.num_classes
        self.classifier = nn.Conv2d(backbone.out_channels, k, 1, bias=False)
        self.generator = nn.Sequential(
            nn.Conv2d(backbone.mid_channels, k, 3, padding=1, bias=False), nn.Sigmoid()
        )
        self.init_new_layers(init)
        # the positive-class draws: seeded from torch's seed when built (the run's train.seed)
        self.draws = torch.Generator().manual_seed(torch.initial_seed())
        self.warmup = False  # set per epoch by :meth:`MultiLabelBAS.start_epoch`

    def seed_draws(self, seed: int) -> None:
        """Reseed the generator of the positive-class draws."""
        self.draws.manual_seed(seed)

    def training_generators(self) -> dict[str, torch.Generator]:
        """The generators a training state saves and a resume restores: the positive-class draws."""
        return {"draws": self.draws}

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor | None = None, top_k: int = 1
    ) -> MultiLabelOutput:
        """Run multi-label BAS.

        Args:
            images: (B, 3, H, W) normalised images.
            labels: (B, K) multi-hot tags. In training mode they draw the positive class of each
                image and enable the erase branch; in eval mode ``fg_map`` is the mean map of the tags.
            top_k: without labels, the number of best-scoring classes whose maps are averaged.
        """
        self._check_inputs(images, labels, top_k)
        feat = self.mid(images)
        feature_map = self.head_maps(feat)
        logits = self.pool(feature_map)
        maps = self.generator(feat)
        if not (self.training and labels is not None):
            fg_map = self.fuse_maps(maps, logits, labels, top_k)
            return MultiLabelOutput(logits=logits, fg_logits=logits, fg_map=fg_map, feature_map=feature_map)
        positive = draw_positive(labels, self.draws)
        fg_map = pick(maps, positive)
        fg_logits = self.pool(feature_map.detach() * F.adaptive_avg_pool2d(fg_map, feature_map.shape[-2:]))
        bg_logits = self.pool(self.head_maps(feat.detach() * (1.0 - fg_map), frozen=True))
        return MultiLabelOutput(
            logits=logits,
            fg_logits=fg_logits,
            fg_map=fg_map,
            fg_score=pick(logits, positive).squeeze(1).detach(),
            bg_score=pick(bg_logits, positive).squeeze(1),
            feature_map=feature_map,
            positive=positive,
            warmup=self.warmup,
        )

    def localize(self, images: torch.Tensor, top_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference only: logits and the mean generator map of the ``top_k`` best classes."""
        logits, maps = self.localize_classes(images)
        return logits, self.select_maps(maps, logits, None, top_k)

    def localize_classes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the generator's map of every class, (B, K, h, w)."""
        feat = self.mid(images)
        return self.pool(self.head_maps(feat)), self.generator(feat)

    def class_maps(self, images: torch.Tensor) -> torch.Tensor:
        """The generator's sigmoid maps of every class, (B, K, h, w) at stride 16."""
        return self.generator(self.mid(images))


# ------------------------------------------------------------------------------------------ loss


def positives_vs_negatives(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The ``cls`` term: sum over every image's tags c of ``CE([s_c, s_negatives], 0)``, / batch size.

    ``CE([s_c, s_n...], 0) = softplus(logsumexp(s_n) - s_c)``, so one batched expression (an image
    tagged with every class has no negatives, and its terms are 0).
    """
    tagged = labels > 0.5
    negatives = torch.logsumexp(logits.masked_fill(tagged, float("-inf")), dim=1, keepdim=True)
    per_tag = F.softplus(negatives - logits)
    return torch.where(tagged, per_tag, torch.zeros_like(per_tag)).sum() / logits.shape[0]


def multilabel_bas_loss(
    output: MultiLabelOutput, labels: torch.Tensor, alpha: float, beta: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total multi-label BAS loss and its unweighted terms ``cls``, ``fg_cls``, ``bas``, ``area``.

    ``total = cls + alpha * fg_cls + bas + beta * area`` (the paper: alpha 0.2, beta 1.2); during
    a warm-up (``output.warmup``) ``total = cls``, the other terms still computed and logged.
    """
    if output.positive is None or output.fg_score is None or output.bg_score is None:
        raise ValueError("multilabel_bas_loss needs a training-mode output with labels")
    output = as_float32(output)
    terms = {
        "cls": positives_vs_negatives(output.logits, labels),
        "fg_cls": F.cross_entropy(output.fg_logits, output.positive),
        "bas": bas_term(output.fg_score, output.bg_score, BAS_SPEC).mean(),
        "area": output.fg_map.flatten(1).mean(1).mean(),
    }
    erase = terms["fg_cls"] * alpha + terms["bas"] + beta * terms["area"]
    # in the warm-up the erase terms stay in the graph with weight 0 (every parameter gets a gradient,
    # as DDP expects) and only the classifier learns
    total = terms["cls"] + (erase * 0.0 if output.warmup else erase)
    return total, terms


# ---------------------------------------------------------------------------------- validation


def average_precision(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class average precision (non-interpolated, as scikit-learn's), (K,); NaN for a class
    without positives. ``scores`` and ``labels`` are (N, K)."""
    order = scores.argsort(dim=0, descending=True)
    hits = labels.gather(0, order).float()
    ranks = torch.arange(1, len(scores) + 1, dtype=torch.float32)[:, None]
    precision = hits.cumsum(0) / ranks
    positives = hits.sum(0)
    return (precision * hits).sum(0) / positives.where(positives > 0, torch.tensor(float("nan")))


def seed_pairs(model: nn.Module, images: torch.Tensor, batch: dict[str, Any]) -> list[tuple]:
    """Per image of a validation batch, ``(classes, maps, mask)`` for
    :func:`bas.wsss.evaluate.threshold_confusions`: the model's class maps of the image and of its
    mirror image (flipped back) summed, resized (bilinear) to the mask, the tagged classes only, each
    divided by its maximum + 1e-5, as :class:`bas.wsss.seeds.SeedEngine` makes them at scale 1."""
    from bas.errors import ConfigError
    from bas.wsss.seeds import flip_summed_maps, normalise_maps

    if batch.get("mask") is None:
        raise ConfigError("eval.select_metric seed_miou needs masks on the validation split (it has none)")
    masks = batch["mask"]
    maps = flip_summed_maps(model.class_maps, images, True).float()
    maps = F.interpolate(maps, masks.shape[-2:], mode="bilinear", align_corners=False)
    out = []
    for b, tagged in enumerate(batch["label"] > 0.5):
        classes = tagged.nonzero()[:, 0]
        out.append(
            (
                classes.numpy(),
                normalise_maps(maps[b, classes.to(maps.device)]).cpu().numpy(),
                masks[b].numpy(),
            )
        )
    return out


def seed_confusions(model: nn.Module, images: torch.Tensor, batch: dict[str, Any], num_labels: int) -> Any:
    """The ``(T, K + 1, K + 1)`` confusion matrices of a validation batch's seeds (:func:`seed_pairs`)
    at every threshold of the standard grid (0.01..0.99); summed over the batches, :func:`seed_miou`
    scores them."""
    from bas.wsss.evaluate import STANDARD_GRID, threshold_confusions

    return threshold_confusions(seed_pairs(model, images, batch), num_labels, STANDARD_GRID)


def seed_miou(confusions: Any) -> dict[str, float]:
    """``seed_miou`` (percent) at the best background threshold of the standard grid, and that
    ``seed_threshold``, from the summed :func:`seed_confusions`."""
    from bas.wsss.evaluate import STANDARD_GRID, best_threshold, curve

    threshold, miou = best_threshold(STANDARD_GRID, curve(confusions))
    return {"seed_miou": miou, "seed_threshold": threshold}


class MultiLabelMethod(Method):
    """What the multi-label methods share: multi-hot labels, validation by multi-label mAP (and
    optionally by the seeds' mIoU)."""

    label_type = "multi_hot"
    # the CAM model whose maps `bas wsss seeds` adds to this model's (null: none; voc/resnet50 sets it)
    config_defaults = {"seeds.fuse_cam": Key("str", None, nullable=True, help="a CAM checkpoint file")}

    def build(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int) -> WSOLModel:
        return self.model_class(backbone, meta, init=init, min_input_size=min_input_size)

    def validate(
        self, model: nn.Module, loader: Any, cfg: dict[str, Any], *, device: torch.device, progress: bool
    ) -> tuple[dict[str, Any], float]:
        """``mAP`` (percent, mean over the classes with a positive) of the logits on the held-out
        split; with ``eval.select_metric: seed_miou`` also the seeds' mIoU there (:func:`seed_miou`);
        the threshold stays ``eval.threshold`` (the seeds' background score)."""
        from bas.engine.evaluate import autocast_context

        with_seeds = cfg["eval"]["select_metric"] == "seed_miou"
        was_training = model.training
        model.eval()
        scores, tags, confusions = [], [], 0
        with torch.no_grad():
            for batch in loader:
                images = batch["image"].to(device)
                with autocast_context(device, cfg["train"]["amp"]):
                    out = model(images)
                    if with_seeds:
                        num_labels = batch["label"].shape[1] + 1
                        confusions = confusions + seed_confusions(model, images, batch, num_labels)
                scores.append(out.logits.float().cpu())
                tags.append(batch["label"].cpu() > 0.5)
        model.train(was_training)
        ap = average_precision(torch.cat(scores), torch.cat(tags))
        metrics = {"mAP": float(ap.nanmean()) * 100, "images": sum(len(t) for t in tags)}
        if with_seeds:
            metrics.update(seed_miou(confusions))
        return metrics, float(cfg["eval"]["threshold"])

    def infer_options(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {"num_classes": infer_size(state_dict, "classifier.weight")}


@register
class MultiLabelBAS(MultiLabelMethod):
    """Multi-label BAS (IJCV 2023 WSSS): one drawn positive per image, the four terms."""

    name = "multilabel_bas"
    model_class = MultiLabelBASModel
    loss_terms = ("cls", "fg_cls", "bas", "area")
    localization_map = "fg_map"
    config_defaults = {
        **MultiLabelMethod.config_defaults,
        "loss.alpha": 0.2,
        "loss.beta": 1.2,
        "loss.warmup_epochs": Key(
            "int", 0, min=0, help="epochs of the classification term alone before the erase terms join"
        ),
    }

    def loss(
        self, output: BASOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return multilabel_bas_loss(output, labels, cfg["loss"]["alpha"], cfg["loss"]["beta"])

    def check_config(self, cfg: dict[str, Any]) -> None:
        for key in ("loss.alpha", "loss.beta"):
            check_number(cfg, key)

    def start_epoch(self, model: WSOLModel, epoch: int, cfg: dict[str, Any]) -> None:
        """The first ``loss.warmup_epochs`` epochs train the classification term only (0 in the
        paper's recipes; from scratch the classifier must learn before the generator can)."""
        model.warmup = epoch < int(cfg["loss"].get("warmup_epochs", 0))

    def read_released(
        self, state_dict: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The released WSSS BAS network (saved through DDP, its ``module.`` prefix already
        stripped): the authors' names with a bias-free conv1x1 ``classifier_cls`` and a bias-free
        conv3x3 ``classifier_loc.0``, which :func:`~bas.checkpoints.convert_state_dict` renames."""
        cls, loc = state_dict.get("classifier_cls.weight"), state_dict.get("classifier_loc.0.weight")
        if cls is None or loc is None or "classifier_loc.0.bias" in state_dict:
            return None
        if cls.dim() != 4 or tuple(cls.shape[2:]) != (1, 1) or tuple(loc.shape[2:]) != (3, 3):
            return None
        return dict(state_dict), {"method": self.name, "arch": RELEASED_ARCH, "source": "wsss2023"}
