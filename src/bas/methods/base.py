"""The seam every training method plugs into: :class:`Method` and the model base :class:`WSOLModel`.

A method is one module of :mod:`bas.methods` holding a :class:`WSOLModel` subclass (its new layers
over a backbone split) and a :class:`Method` subclass decorated with :func:`bas.methods.register`,
which declares everything the rest of the package asks about it:

* ``build``: the model over a backbone split; ``options``: its constructor options, which are the
  ``model.<option>`` config keys and the checkpoint metadata fields of the same name;
* ``label_type``: ``"single"`` (a class index per image) or ``"multi_hot"`` (a (K,) vector);
* ``loss`` and ``loss_terms``: the training loss and the names of its logged terms;
* ``localization_map``: the output field the evaluator, predictor and exporter threshold;
* ``new_layers``: parameter-name prefixes of the method's layers (the 10x / 20x learning-rate
  groups of :mod:`bas.engine.optim`);
* ``config_defaults``: the config keys it reads, with their defaults; ``check_config``: their checks;
* ``validate``: the validation hook of the trainer (metrics and the chosen threshold);
* ``read_released``: recognises the authors' released files of the method (``bas convert``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from bas.errors import CheckpointError, ConfigError
from bas.models.backbones import Backbone
from bas.models.meta import ModelMeta

LABEL_TYPES = ("single", "multi_hot")


@dataclass
class BASOutput:
    """What every model's ``forward`` returns (fields a method does not produce stay None).

    Attributes:
        logits: class scores, (B, K).
        fg_logits: foreground-guided scores (BAS), else ``logits``, (B, K).
        fg_map: the fused localisation map of the selected class(es), (B, 1, h, w).
        fg_score: ``S``, the detached ground-truth score of the full image, (B,) (BAS training only).
        bg_score: ``S_bg``, the ground-truth score of the erased features, (B,) (BAS training only).
        feature_map: the per-class maps the scores pool, (B, K, H', W').
    """

    logits: torch.Tensor
    fg_logits: torch.Tensor
    fg_map: torch.Tensor
    fg_score: torch.Tensor | None = None
    bg_score: torch.Tensor | None = None
    feature_map: torch.Tensor | None = None


class WSOLModel(nn.Module):
    """A backbone split (``mid``, ``head``) plus a method's new layers, with its :class:`ModelMeta`.

    Subclasses set ``method`` and ``new_layers``, build their layers, call :meth:`init_new_layers`
    and implement ``forward(images, labels=None, top_k=1) -> BASOutput`` and :meth:`localize`.
    """

    method: ClassVar[str] = ""
    new_layers: ClassVar[tuple[str, ...]] = ()
    label_type: ClassVar[str] = "single"

    def __init__(self, backbone: Backbone, meta: ModelMeta, *, min_input_size: int = 32):
        super().__init__()
        if meta.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {meta.num_classes}")
        self.meta = meta
        self.min_input_size = min_input_size
        self.mid = backbone.mid
        self.head = backbone.head

    # ------------------------------------------------------------------------------- metadata

    @property
    def arch(self) -> str:
        return self.meta.arch

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    @property
    def bas_meta(self) -> dict[str, Any]:
        """The checkpoint document of this model (format fields and inference defaults filled in)."""
        return self.meta.to_document()

    @property
    def default_threshold(self) -> float:
        return self.bas_meta["threshold"]

    @property
    def default_top_k(self) -> int:
        return self.bas_meta["top_k"]

    @property
    def class_names(self) -> list[str] | None:
        return self.meta.class_names

    # ------------------------------------------------------------------------------ shared parts

    def init_new_layers(self, init: str = "xavier") -> None:
        """Initialise the convolutions and linear layers of :attr:`new_layers`; biases start at 0.

        ``init`` is the backbone family's choice: ``"normal"`` (std 0.02, the authors' VGG16) or
        ``"xavier"`` (uniform).
        """
        for name, module in self.named_modules():
            if (
                name
                and (name + ".").startswith(self.new_layers)
                and isinstance(module, (nn.Conv2d, nn.Linear))
            ):
                if init == "normal":
                    nn.init.normal_(module.weight, 0.0, 0.02)
                else:
                    nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def head_maps(self, feat: torch.Tensor, *, frozen: bool = False) -> torch.Tensor:
        """``classifier(head(feat))``, (B, C, H', W'); ``frozen`` runs both with detached parameters
        and private copies of their buffers, so the gradient reaches ``feat`` only."""
        if not frozen:
            return self.classifier(self.head(feat))
        x = feat
        for module in (self.head, self.classifier):
            params = {name: p.detach() for name, p in module.named_parameters()}
            buffers = {name: b.clone() for name, b in module.named_buffers()}
            x = functional_call(module, (params, buffers), (x,))
        return x

    @staticmethod
    def pool(maps: torch.Tensor) -> torch.Tensor:
        """Global average pooling, (B, C, h, w) -> (B, C)."""
        return maps.mean(dim=(2, 3))

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

    def localize(self, images: torch.Tensor, top_k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference only, traceable: ``(logits (B, K), fused map (B, 1, h, w))`` of the ``top_k``
        best classes. The default runs ``forward``; methods with a training branch override it."""
        out = self(images, top_k=top_k)
        return out.logits, out.fg_map

    def localize_classes(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference only, traceable: ``(logits (B, K), maps (B, K, h, w))``, the map of class ``c``
        being the one the model gives with ``c`` as the label and ``top_k=1``. The default runs
        ``forward`` once per class; methods override it with one pass."""
        b, k = images.shape[0], self.num_classes
        maps = []
        for c in range(k):
            label = torch.full((b,), c, dtype=torch.long, device=images.device)
            if self.label_type == "multi_hot":
                label = F.one_hot(label, k).float()
            maps.append(self(images, label, top_k=1).fg_map)
        return self(images).logits, torch.cat(maps, dim=1)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities: softmax over the classes, sigmoid per class for multi-label methods."""
        return logits.sigmoid() if self.label_type == "multi_hot" else logits.softmax(dim=1)

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
        if labels is None:
            return
        if self.label_type == "multi_hot":
            if labels.shape != (images.shape[0], self.num_classes):
                raise ValueError(
                    f"labels must have shape ({images.shape[0]}, {self.num_classes}), got {tuple(labels.shape)}"
                )
            return
        if labels.shape != (images.shape[0],):
            raise ValueError(f"labels must have shape ({images.shape[0]},), got {tuple(labels.shape)}")
        if labels.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
        if labels.numel() and not torch.compiler.is_compiling():
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must be in [0, {self.num_classes - 1}], got values in [{lo}, {hi}]")


class Method:
    """A training method: what the trainer, checkpoints, evaluator, predictor and exporter ask.

    Subclasses set the class attributes and implement :meth:`build` and :meth:`loss`.
    """

    name: ClassVar[str] = ""
    model_class: ClassVar[type[WSOLModel]] = WSOLModel
    label_type: ClassVar[str] = "single"
    loss_terms: ClassVar[tuple[str, ...]] = ()
    localization_map: ClassVar[str] = "fg_map"
    options: ClassVar[dict[str, Any]] = {}  # constructor option -> default (config ``model.<option>``)
    # dotted config key -> its default, or a bas.schema.Key (default, type, range, choices)
    config_defaults: ClassVar[dict[str, Any]] = {}

    @property
    def new_layers(self) -> tuple[str, ...]:
        """Parameter-name prefixes of the layers the method adds (10x / 20x learning rate)."""
        return self.model_class.new_layers

    # ---------------------------------------------------------------------------- building

    def build(self, backbone: Backbone, meta: ModelMeta, *, init: str, min_input_size: int) -> WSOLModel:
        """The untrained model over ``backbone``; ``meta`` holds arch, class count and the options."""
        raise NotImplementedError

    def resolve_options(self, **given: Any) -> dict[str, Any]:
        """The method's options: ``given`` (None: the default) over :attr:`options`; others refused."""
        unknown = sorted(k for k, v in given.items() if k not in self.options and v is not None)
        if unknown:
            raise ValueError(
                f"method {self.name!r} takes no option {', '.join(unknown)} (options: {', '.join(self.options)})"
            )
        return {k: default if given.get(k) is None else given[k] for k, default in self.options.items()}

    def options_from_config(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """The constructor options of a training config (``model.<option>``)."""
        return {k: cfg["model"].get(k) for k in self.options}

    def infer_options(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        """``num_classes`` and the options a state dict in our naming implies (files without metadata)."""
        raise NotImplementedError

    def read_released(
        self, state_dict: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """A released file of this method in another naming (wrapper prefixes stripped):
        ``(state dict, metadata fields)`` with keys :func:`~bas.checkpoints.convert_state_dict`
        maps and at least ``method``, ``arch`` and ``source``; None when ``state_dict`` is not one."""
        return None

    # ---------------------------------------------------------------------------- training

    def loss(
        self, output: BASOutput, labels: torch.Tensor, cfg: dict[str, Any]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(total, terms)`` in float32 for a training-mode ``output``; ``cfg`` is the run's config."""
        raise NotImplementedError

    def check_config(self, cfg: dict[str, Any]) -> None:
        """Checks across keys that the schema (types and ranges of ``config_defaults``) cannot express;
        raise :class:`~bas.errors.ConfigError`."""

    def configure(self, model: WSOLModel, cfg: dict[str, Any]) -> None:
        """Apply the run's training-only settings (keys that are no constructor option) to a newly
        built ``model``; the trainer calls it once. Default: nothing to apply."""

    def start_epoch(self, model: WSOLModel, epoch: int, cfg: dict[str, Any]) -> None:
        """Called by the trainer before every epoch (0-based ``epoch``, also after a resume), for
        settings that change during training. Default: nothing."""

    def validate(
        self, model: nn.Module, loader: Any, cfg: dict[str, Any], *, device: torch.device, progress: bool
    ) -> tuple[dict[str, Any], float]:
        """The trainer's validation hook: metrics on the held-out split and the threshold chosen there.

        The threshold maximises Top-1 Loc when that is ``eval.select_metric``, else GT-known Loc;
        without boxes it is ``eval.threshold``.
        """
        from bas.engine.evaluate import evaluate

        ev = cfg["eval"]
        evaluator = evaluate(
            model,
            loader,
            num_classes=model.num_classes,
            top_k=ev["top_k"],
            threshold=ev["threshold"],
            iou_thresholds=ev["iou_thresholds"],
            interval=ev["interval"],
            multi_contour=ev["multi_contour"],
            device=device,
            amp=cfg["train"]["amp"],
            progress=progress,
            desc="val",
        )
        metrics = evaluator.compute()
        threshold = float(ev["threshold"])
        if "best_threshold" in metrics:
            by = "top1_loc" if ev["select_metric"] == "top1_loc" else "gt_known_loc"
            threshold = evaluator.best_threshold(by)
        return metrics, threshold

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


# ------------------------------------------------------------------------------------- helpers


def infer_size(state_dict: dict[str, torch.Tensor], key: str) -> int:
    """Output channels of ``key``: how a file without metadata tells its class count and widths."""
    if key not in state_dict:
        raise CheckpointError(
            f"cannot infer the model size: the checkpoint has no {key} "
            "(authors' name: classifier_loc / classifier_cls)"
        )
    return int(state_dict[key].shape[0])


def config_value(cfg: dict[str, Any], key: str) -> Any:
    """The value of a dotted key (``loss.alpha``) of a nested config."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_int(cfg: dict[str, Any], key: str, minimum: int, *, optional: bool = False) -> None:
    value = config_value(cfg, key)
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{key} must be an integer >= {minimum}{' or null' if optional else ''}, got {value!r}"
        )


def check_number(cfg: dict[str, Any], key: str, *, positive: bool = False) -> None:
    value = config_value(cfg, key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or (positive and value <= 0)
    ):
        raise ConfigError(f"{key} must be a finite{' positive' if positive else ''} number, got {value!r}")


def check_fraction(cfg: dict[str, Any], key: str) -> None:
    value = config_value(cfg, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{key} must be a number in [0, 1], got {value!r}")


def check_choice(cfg: dict[str, Any], key: str, choices: tuple) -> None:
    value = config_value(cfg, key)
    if value not in choices:
        shown = ", ".join("null" if c is None else str(c) for c in choices)
        raise ConfigError(f"{key} must be one of {shown}, got {value!r}")
