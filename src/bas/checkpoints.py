"""Checkpoints: our model file, the authors' released files, training state and ImageNet initialisation.

Our model file (``.safetensors``) is self-describing: the weights, with the parameter names of
:class:`~bas.models.BASModel`, plus one JSON document under the ``bas`` key of the safetensors
header metadata (architecture, class count, variant, class names, preprocessing, default
threshold and top-k, training config and final metrics). :func:`save_model` writes it,
:func:`load_checkpoint` reads it back as a ready model.

:func:`load_checkpoint` also reads every family of released BAS checkpoints (docs/method.md §8), in the
legacy or the zip serialisation, and infers what the file does not say:

* CVPR 2022 CUB files: a plain state dict with the authors' top-level names (``conv4_3.weight``,
  ``layer4.0.conv1.weight``, ``model.12.0.weight``, ``Mixed_7a...``, ``classifier_cls.*`` or
  ``classifier.*``, ``classifier_loc.*``);
* CVPR 2022 ILSVRC files: the same behind a ``module.`` prefix, plus ``*_copy*`` and
  ``erase_branch.*`` duplicates of the head, which are dropped;
* IJCV 2023 files: ``{'model': state_dict, 'best_thr': float, 'epoch': int}``; ``best_thr`` becomes
  the default threshold.

The architecture is the registered one whose backbone names and shapes equal the file's, the
class count is the number of generator channels, the classifier width the first classifier
convolution's. Variant: IJCV wrapper -> ``ijcv2023``; any plain state dict in the authors' naming ->
``cvpr2022`` (a CVPR file, or an unwrapped IJCV one: pass ``variant`` to say which); a plain state
dict in our naming -> ``ijcv2023``, the package default.

Every ``torch.load`` here uses ``weights_only=True``: a pickle that would run code is refused with
a :class:`~bas.errors.CheckpointError`, never executed. Every file is written atomically.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import safetensors
import safetensors.torch
import torch
import torchvision
from torch import nn

from bas.errors import CheckpointError
from bas.io import _json_default, atomic_open, atomic_path, to_json
from bas.models.bas import VARIANTS, BASModel
from bas.models.cam import CAMModel, build_cam_model
from bas.models.registry import build_model, get_spec, list_models

FORMAT_NAME = "bas-wsol"
FORMAT_VERSION = 1
METADATA_KEY = "bas"
TRAINING_STATE_FORMAT = "bas-wsol-training-state"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Inference defaults of the papers (docs/method.md §4): (variant, dataset) -> arch -> (threshold, top_k).
# The dataset is guessed from the class count; ResNet-family networks use the ResNet50 entry.
INFERENCE_DEFAULTS: dict[tuple[str, str], dict[str, tuple[float, int]]] = {
    ("ijcv2023", "CUB"): {
        "vgg16": (0.10, 80),
        "resnet50": (0.10, 200),
        "inception_v3": (0.10, 200),
        "mobilenet_v1": (0.10, 80),
    },
    ("ijcv2023", "ILSVRC"): {
        "vgg16": (0.45, 1),
        "resnet50": (0.25, 1),
        "inception_v3": (0.25, 1),
        "mobilenet_v1": (0.50, 1),
    },
    ("cvpr2022", "CUB"): {
        "vgg16": (0.15, 80),
        "resnet50": (0.15, 200),
        "inception_v3": (0.10, 200),
        "mobilenet_v1": (0.15, 200),
    },
    ("cvpr2022", "ILSVRC"): {
        "vgg16": (0.50, 1),
        "resnet50": (0.45, 1),
        "inception_v3": (0.30, 1),
        "mobilenet_v1": (0.50, 1),
    },
}
DATASET_BY_NUM_CLASSES = {200: "CUB", 1000: "ILSVRC"}
FALLBACK_INFERENCE = (0.5, 1)  # any other dataset or architecture: mid-range threshold, top-1 map

# ImageNet weights torchvision does not provide: arch -> (file name, where to get it).
MANUAL_IMAGENET_WEIGHTS = {
    "mobilenet_v1": (
        "mobilenet_v1_with_relu_69_5.pth",
        "https://storage.googleapis.com/models-hao/mobilenet_v1_with_relu_69_5.pth",
    ),
}

_WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DataParallel / DDP, torch.compile
_DUPLICATE = re.compile(r"^(erase_branch|[^.]*_copy[^.]*)\.")  # the CVPR ILSVRC head copies
_RENAMES = (("classifier_cls.", "classifier."), ("classifier_loc.", "generator."))
_NEW_LAYERS = ("classifier.", "generator.")
_BACKBONE = ("mid.", "head.")
_IMAGENET_HEADS = ("fc.", "classifier.", "AuxLogits.")  # ImageNet classifiers, never loaded
METHODS = ("bas", "cam")  # the model a file holds: BASModel or the CAM baseline (CAMModel)
_DOCUMENT_KEYS = frozenset(
    {
        "method",
        "source",
        "arch",
        "num_classes",
        "variant",
        "hidden",
        "class_names",
        "threshold",
        "top_k",
        "input_size",
        "resize_size",
        "mean",
        "std",
        "config",
        "metrics",
        "extra",
    }
)


# ------------------------------------------------------------------------------------ public API


def save_model(
    path: str | Path,
    model: nn.Module,
    *,
    class_names: Sequence[str] | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    input_size: int = 224,
    resize_size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` and its metadata as one ``.safetensors`` file, atomically.

    Args:
        path: destination file.
        model: a :class:`BASModel` or a :class:`~bas.models.cam.CAMModel` (the metadata's
            ``method``), possibly wrapped by DDP or ``torch.compile``.
        class_names: one name per class, or None.
        threshold, top_k: inference defaults; None takes the paper's value for this architecture
            and dataset (:func:`inference_defaults`).
        config, metrics, extra: JSON-serialisable dicts (the training config, the final metrics,
            anything else).
        input_size: side of the network input (the centre crop); resize_size: side images are
            resized to before cropping. mean, std: the input normalisation.

    Returns:
        The metadata written (what :func:`read_checkpoint_metadata` returns).
    """
    net = unwrap_model(model)
    if not isinstance(net, (BASModel, CAMModel)):
        raise TypeError(f"save_model expects a BASModel or a CAMModel, got {type(net).__name__}")
    meta = _metadata(
        source="bas",
        method=_method_of(net),
        arch=net.arch,
        num_classes=net.num_classes,
        variant=getattr(net, "variant", "ijcv2023"),
        hidden=_hidden_of(net),
        class_names=class_names,
        threshold=threshold,
        top_k=top_k,
        input_size=input_size,
        resize_size=resize_size,
        mean=mean,
        std=std,
        config=config,
        metrics=metrics,
        extra=extra,
    )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    document = to_json(meta)  # carries the format name and version
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={METADATA_KEY: document})
    return meta


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    variant: str | None = None,
    map_location: str | torch.device = "cpu",
) -> BASModel | CAMModel:
    """Load any supported checkpoint as a ready model in eval mode (a CAMModel for ``method: cam`` files).

    Supported: our ``.safetensors`` files, the released CVPR 2022 and IJCV 2023 files, plain state
    dicts in our naming and our training-state files. ``arch``, ``num_classes`` and ``variant``
    override what the file says or what is inferred from its keys and shapes. The file is read on
    the CPU and the model moved to ``map_location``.

    The model carries its metadata: ``model.bas_meta`` (see :func:`read_checkpoint_metadata`),
    ``model.default_threshold``, ``model.default_top_k`` and ``model.class_names``.

    Raises:
        CheckpointError: unreadable or unsafe file, or weights that do not fit the model (the
            message lists the missing, unexpected and mis-shaped keys).
    """
    source = _read_source(path)
    meta = _resolve_metadata(source, arch=arch, num_classes=num_classes, variant=variant)
    with torch.device("meta"):  # no random init of weights about to be replaced
        model = _build_for(meta)
    tensors = convert_state_dict(source.state_dict, model)
    _check_fit(model, tensors, str(path))
    _materialise(model, tensors)
    model.to(torch.device(map_location)).eval()
    model.bas_meta = meta
    model.default_threshold = meta["threshold"]
    model.default_top_k = meta["top_k"]
    model.class_names = meta["class_names"]
    return model


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, as :func:`load_checkpoint` attaches it to the model.

    Keys: ``format``, ``format_version``, ``source`` (``bas``, ``cvpr2022``, ``ijcv2023``,
    ``state_dict`` or ``training_state``), ``arch``, ``num_classes``, ``variant``, ``hidden``,
    ``class_names``, ``threshold``, ``top_k``, ``input_size``, ``resize_size``, ``mean``, ``std``,
    ``config``, ``metrics``, ``extra``. Our own files are read from their header only.
    """
    document = _safetensors_document(path) if _is_safetensors(path) else None
    if document is not None:
        return _metadata(**document)
    return _resolve_metadata(_read_source(path))


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a state dict in the authors' naming (or ours) to ``model``'s parameter names.

    Strips ``module.`` / ``_orig_mod.`` prefixes, drops the ``*_copy*`` and ``erase_branch.*``
    duplicates, renames ``classifier_cls.`` to ``classifier.`` and ``classifier_loc.`` to
    ``generator.``; any other key ``k`` that is not already one of the model's becomes ``mid.k`` if
    the model has it, else ``head.k``. Keys that fit nowhere are kept unchanged (the loader then
    reports them as unexpected). Pure: the tensors are not copied, the model is not changed.
    """
    model_keys = set(unwrap_model(model).state_dict())
    converted: dict[str, torch.Tensor] = {}
    for key, value in _normalise_keys(state_dict).items():
        if key not in model_keys:
            key = next((p + key for p in _BACKBONE if p + key in model_keys), key)
        if key in converted:
            raise CheckpointError(f"two checkpoint entries map to the parameter {key}")
        converted[key] = value
    return converted


def inference_defaults(arch: str, num_classes: int, variant: str) -> tuple[float, int]:
    """The paper's (threshold, top_k) for this architecture, the dataset guessed from ``num_classes``
    (200 -> CUB, 1000 -> ILSVRC) and the variant; :data:`FALLBACK_INFERENCE` otherwise."""
    table = INFERENCE_DEFAULTS.get((variant, DATASET_BY_NUM_CLASSES.get(num_classes, "")), {})
    family = (
        arch if arch in table else "resnet50" if "resne" in arch else ""
    )  # resnet*, resnext*, wide_resnet*
    return table.get(family, FALLBACK_INFERENCE)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


# ------------------------------------------------------------------------------- training state


def save_training_state(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
    epoch: int,
    step: int,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write everything an exact resume needs, atomically, readable with ``weights_only=True``.

    Stores the (unwrapped) model weights, the optimizer, scheduler and grad-scaler state dicts,
    ``epoch`` and ``step``, the RNG states (Python, NumPy, torch CPU and every CUDA device), and
    ``config`` / ``metrics`` / ``extra`` as plain JSON values.
    """
    net = unwrap_model(model)
    state = {
        "format": TRAINING_STATE_FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": getattr(net, "arch", None),
        "num_classes": getattr(net, "num_classes", None),
        "variant": getattr(net, "variant", None),
        "method": _method_of(net) if isinstance(net, (BASModel, CAMModel)) else None,
        "hidden": _hidden_of(net) if isinstance(net, (BASModel, CAMModel)) else None,
        "model": net.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "config": _json_plain(config or {}),
        "metrics": _json_plain(metrics or {}),
        "extra": _json_plain(extra or {}),
        "rng": _rng_state(),
    }
    with atomic_open(path, "wb") as fh:
        torch.save(state, fh)


def load_training_state(
    path: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    scaler: Any | None = None,
) -> dict[str, Any]:
    """Restore a :func:`save_training_state` file into the given objects and the RNGs.

    Returns:
        ``{"epoch", "step", "config", "metrics", "extra"}`` as saved.

    Raises:
        CheckpointError: not a training-state file, weights that do not fit ``model``, or no saved
            state for an optimizer / scheduler / scaler that was passed.
    """
    state = _torch_load(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(
            f"{path} is not a training-state checkpoint (use load_checkpoint for model files)"
        )
    _load_tensors(unwrap_model(model), state["model"], str(path))
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if target is not None:
            if state[name] is None:
                raise CheckpointError(f"{path} holds no {name} state")
            target.load_state_dict(state[name])
    _set_rng_state(state["rng"])
    return {key: state[key] for key in ("epoch", "step", "config", "metrics", "extra")}


# ------------------------------------------------------------------------------ ImageNet weights


def load_imagenet_weights(model: BASModel, path: str | Path | None = None) -> None:
    """Initialise the backbone (``mid`` and ``head``) from ImageNet weights (docs/method.md §4), in place.

    ``path=None`` takes torchvision's ``IMAGENET1K_V1`` weights of the architecture through the
    torchvision API (downloaded once into ``torch.hub.get_dir()/checkpoints``). For ResNet50 that
    is ``resnet50-0676ba61.pth``, the re-serialisation of the ``resnet50-19c8e357.pth`` file the
    paper used (same weights, pytorch/vision#3620); either file can also be passed as ``path``.
    MobileNetV1 has no torchvision weights: pass the path of ``mobilenet_v1_with_relu_69_5.pth``.

    A local file is a state dict whose ImageNet classifier (``fc``, ``classifier``, ``AuxLogits``)
    is ignored. If its other keys are our backbone's names (torchvision ResNets and Inception v3)
    they are matched by name; otherwise (torchvision VGG16 ``features.N``, the MobileNetV1 file's
    ``N.M``) the tensors are assigned in order, as the authors did, and every shape is checked.
    ``num_batches_tracked`` entries are optional. The classifier and generator keep their init.
    Inception v3 is used like the authors do, without torchvision's ``transform_input``.
    """
    if path is None:
        state = _torchvision_imagenet_state(model.arch)
        where = f"torchvision's ImageNet weights for {model.arch}"
    else:
        state = _torch_load(path)
        where = str(path)
        if not _is_tensor_dict(state):
            raise CheckpointError(f"{path} is not a state dict of ImageNet weights")
    state = {k: v for k, v in _strip_wrappers(state).items() if not k.startswith(_IMAGENET_HEADS)}
    model_keys = model.state_dict().keys()
    names = {k: next((p + k for p in _BACKBONE if p + k in model_keys), None) for k in state}
    if all(names.values()):
        mapped = {names[k]: v for k, v in state.items()}
    else:
        mapped = _assign_in_order(state, [k for k in model_keys if k.startswith(_BACKBONE)], where)
    _load_tensors(model, mapped, where, prefixes=_BACKBONE)


# ------------------------------------------------------------------------------- reading files


@dataclass
class _Source:
    """What a checkpoint file holds: its tensors, its family and what it says about itself."""

    state_dict: dict[str, torch.Tensor]
    source: str  # bas | cvpr2022 | ijcv2023 | state_dict | training_state
    document: dict[str, Any] = field(default_factory=dict)


def _read_source(path: str | Path) -> _Source:
    """Read a checkpoint file (on the CPU) and tell its family."""
    if _is_safetensors(path):
        document = _safetensors_document(path)
        try:
            tensors = safetensors.torch.load_file(str(path), device="cpu")
        except safetensors.SafetensorError as exc:
            raise CheckpointError(f"cannot read {path} as a safetensors file: {exc}") from None
        return _Source(tensors, "bas", document) if document is not None else _plain_source(tensors)
    obj = _torch_load(path)
    if _is_tensor_dict(obj):
        return _plain_source(obj)
    if isinstance(obj, dict) and obj.get("format") == TRAINING_STATE_FORMAT:
        said = {
            k: obj[k]
            for k in ("method", "arch", "num_classes", "variant", "hidden", "config", "metrics", "extra")
            if obj.get(k) is not None
        }
        return _Source(obj["model"], "training_state", said)
    if isinstance(obj, dict) and _is_tensor_dict(obj.get("model")):  # IJCV 2023 wrapper
        said = {"extra": {k: obj[k] for k in ("epoch",) if k in obj}}
        if obj.get("best_thr") is not None:
            said["threshold"] = float(obj["best_thr"])
        return _Source(obj["model"], "ijcv2023", said)
    keys = list(obj)[:8] if isinstance(obj, dict) else type(obj).__name__
    raise CheckpointError(f"{path} is not a model checkpoint (found {keys})")


def _plain_source(state_dict: dict[str, torch.Tensor]) -> _Source:
    ours = any(k.startswith(_BACKBONE) for k in _normalise_keys(state_dict))
    return _Source(state_dict, "state_dict" if ours else "cvpr2022")


def _torch_load(path: str | Path) -> Any:
    """``torch.load(weights_only=True)`` to the CPU, every failure turned into a :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next(
            (
                line.strip()
                for line in str(exc).splitlines()
                if "unsupported" in line.lower() and "file an issue" not in line.lower()
            ),
            str(exc)[:200],
        )
        raise CheckpointError(
            f"refusing to unpickle {path}: not a plain tensor checkpoint ({reason}); "
            "only tensors, numbers, strings and containers are ever loaded"
        ) from None
    except (RuntimeError, OSError, EOFError) as exc:
        raise CheckpointError(
            f"cannot read {path} as a torch checkpoint (truncated or corrupt?): {exc}"
        ) from None


def _is_safetensors(path: str | Path) -> bool:
    """A safetensors file starts with the 8-byte little-endian length of a JSON header."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 8 < int.from_bytes(head[:8], "little") + 8 <= size


def _safetensors_document(path: str | Path) -> dict[str, Any] | None:
    """Our JSON metadata of a safetensors file, or None for a safetensors file that has none."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as fh:
            text = (fh.metadata() or {}).get(METADATA_KEY)
    except (safetensors.SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read {path} as a safetensors file: {exc}") from None
    if text is None:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: malformed '{METADATA_KEY}' metadata: {exc}") from None
    if not isinstance(document, dict) or document.pop("format", None) != FORMAT_NAME:
        raise CheckpointError(f"{path}: the '{METADATA_KEY}' metadata is not a {FORMAT_NAME} document")
    version = document.pop("format_version", None)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {version}; this bas-wsol reads up to {FORMAT_VERSION}"
        )
    unknown = sorted(set(document) - _DOCUMENT_KEYS)
    missing = sorted(k for k in ("arch", "num_classes", "variant") if k not in document)
    if unknown or missing:
        raise CheckpointError(
            f"{path}: malformed '{METADATA_KEY}' metadata (unknown keys {unknown}, missing keys {missing})"
        )
    return document


def _is_tensor_dict(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


# ------------------------------------------------------------------------------ key handling


def _strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state_dict.items():
        while key.startswith(_WRAPPER_PREFIXES):
            key = key.split(".", 1)[1]
        out[key] = value
    return out


def _normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes, drop the head duplicates, rename the authors' two new heads."""
    out = {}
    for key, value in _strip_wrappers(state_dict).items():
        if _DUPLICATE.match(key):
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def _backbone_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Backbone entries in the authors' naming (no ``mid.``/``head.``), without ``num_batches_tracked``."""
    shapes = {}
    for key, value in state_dict.items():
        if key.startswith(_NEW_LAYERS) or key.endswith("num_batches_tracked"):
            continue
        shapes[key.split(".", 1)[1] if key.startswith(_BACKBONE) else key] = tuple(value.shape)
    return shapes


@cache
def _arch_signature(arch: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Backbone names and shapes of a registered architecture, built on the meta device (no memory)."""
    with torch.device("meta"):
        backbone = get_spec(arch).build_backbone()
    state = {f"mid.{k}": v for k, v in backbone.mid.state_dict().items()}
    state.update({f"head.{k}": v for k, v in backbone.head.state_dict().items()})
    return tuple(_backbone_shapes(state).items())


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The registered architecture whose backbone names and shapes are exactly the state dict's.

    Raises:
        CheckpointError: none fits; the message compares the file with the closest one.
    """
    found = _backbone_shapes(_normalise_keys(state_dict))
    best, best_score = "", -1
    for arch in list_models():
        expected = dict(_arch_signature(arch))
        if expected == found:
            return arch
        score = sum(found.get(k) == shape for k, shape in expected.items())
        if score > best_score:
            best, best_score = arch, score
    expected = dict(_arch_signature(best))
    raise CheckpointError(
        "the checkpoint's backbone matches no known architecture; closest is "
        f"{best}: " + _mismatch_report(expected, found)
    )


def _infer_size(state_dict: Mapping[str, torch.Tensor], key: str) -> int:
    if key not in state_dict:
        raise CheckpointError(
            f"cannot infer the model size: the checkpoint has no {key} "
            "(authors' name: classifier_loc / classifier_cls)"
        )
    return int(state_dict[key].shape[0])


def _resolve_metadata(
    source: _Source, *, arch: str | None = None, num_classes: int | None = None, variant: str | None = None
) -> dict[str, Any]:
    """Complete a file's metadata: explicit arguments, then the file's own, then inference."""
    document = dict(source.document)
    state = _normalise_keys(source.state_dict)
    if variant is not None and variant not in VARIANTS:
        raise CheckpointError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    document["arch"] = arch or document.get("arch") or infer_arch(state)
    cam = document.setdefault("method", "bas") == "cam"
    document["num_classes"] = (
        num_classes
        or document.get("num_classes")
        or _infer_size(state, "fc.weight" if cam else "generator.0.weight")
    )
    if document.get("hidden") is None:  # a CAM model without a conv layer has width 0
        no_conv = cam and "classifier.0.weight" not in state
        document["hidden"] = 0 if no_conv else _infer_size(state, "classifier.0.weight")
    document["variant"] = (
        variant or document.get("variant") or (source.source if source.source in VARIANTS else "ijcv2023")
    )
    document.setdefault("source", source.source)
    return _metadata(**document)


def _method_of(net: BASModel | CAMModel) -> str:
    return "cam" if isinstance(net, CAMModel) else "bas"


def _hidden_of(net: BASModel | CAMModel) -> int:
    """Width of the classifier's hidden convolutions (0: a CAM model without one)."""
    return net.hidden


def _build_for(meta: Mapping[str, Any]) -> BASModel | CAMModel:
    """The (untrained) model a metadata dict describes, by its ``method``."""
    if meta["method"] == "cam":
        return build_cam_model(meta["arch"], meta["num_classes"], hidden=meta["hidden"])
    return build_model(meta["arch"], meta["num_classes"], variant=meta["variant"], hidden=meta["hidden"])


def _metadata(
    *,
    source: str,
    arch: str,
    num_classes: int,
    variant: str,
    hidden: int = 1024,
    method: str = "bas",
    class_names: Sequence[str] | None = None,
    threshold: float | None = None,
    top_k: int | None = None,
    input_size: int = 224,
    resize_size: int = 256,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The complete metadata dict, defaults filled in and checked."""
    if class_names is not None and len(class_names) != num_classes:
        raise CheckpointError(f"{len(class_names)} class names given for a model of {num_classes} classes")
    if method not in METHODS:
        raise CheckpointError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    default_threshold, default_top_k = inference_defaults(arch, num_classes, variant)
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "method": method,
        "source": source,
        "arch": arch,
        "num_classes": int(num_classes),
        "variant": variant,
        "hidden": int(hidden),
        "class_names": None if class_names is None else [str(name) for name in class_names],
        "threshold": float(default_threshold if threshold is None else threshold),
        "top_k": int(default_top_k if top_k is None else top_k),
        "input_size": int(input_size),
        "resize_size": int(resize_size),
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "config": _json_plain(config or {}),
        "metrics": _json_plain(metrics or {}),
        "extra": _json_plain(extra or {}),
    }


# ----------------------------------------------------------------------------- loading tensors


def _load_tensors(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str, prefixes: tuple[str, ...] | None = None
) -> None:
    """Copy ``tensors`` into ``model`` after :func:`_check_fit`."""
    _check_fit(model, tensors, what, prefixes)
    model.load_state_dict(dict(tensors), strict=False)


def _materialise(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Give a meta-device model the checked ``tensors`` (assigned, not copied; cast to the model's
    dtypes). Buffers the file lacks (only ``num_batches_tracked`` may be absent) start at zero."""
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in tensors.items()}, strict=False, assign=True)
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner).register_buffer(attr, torch.zeros_like(buffer, device="cpu"))


def _check_fit(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str, prefixes: tuple[str, ...] | None = None
) -> None:
    """Raise unless ``tensors`` are exactly the model's entries (names and shapes).

    ``prefixes`` limits the expected entries to those names; ``num_batches_tracked`` is optional.
    """
    expected = {k: v for k, v in model.state_dict().items() if prefixes is None or k.startswith(prefixes)}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    wanted = {
        k: tuple(v.shape) for k, v in expected.items() if k in found or not k.endswith("num_batches_tracked")
    }
    if found != wanted:
        name = getattr(model, "arch", type(model).__name__)
        classes = getattr(model, "num_classes", None)
        target = f"{name}" + (f" with {classes} classes" if classes else "")
        raise CheckpointError(f"{what} does not fit {target}: {_mismatch_report(wanted, found)}")


def _mismatch_report(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {list(found[k])} != {list(expected[k])}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    parts = [
        f"{len(items)} {label} ({_first(items)})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if items
    ]
    return "; ".join(parts)


def _first(items: Sequence[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")


def _assign_in_order(
    state: Mapping[str, torch.Tensor], targets: Iterable[str], where: str
) -> dict[str, torch.Tensor]:
    """Pair the file's tensors with ``targets`` in order, skipping ``num_batches_tracked`` on both sides."""
    values = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    names = [k for k in targets if not k.endswith("num_batches_tracked")]
    if len(values) != len(names):
        raise CheckpointError(
            f"{where} has {len(values)} backbone tensors, the model expects {len(names)} "
            f"(file keys: {_first([k for k, _ in values])})"
        )
    return {name: value for name, (_, value) in zip(names, values)}


def _torchvision_imagenet_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 state dict of ``arch``, from its download cache."""
    spec = get_spec(arch)
    if spec.torchvision_name is None:
        if arch in MANUAL_IMAGENET_WEIGHTS:
            name, url = MANUAL_IMAGENET_WEIGHTS[arch]
            raise CheckpointError(
                f"torchvision has no ImageNet weights for {arch}: download {name} ({url}) "
                "and pass its path as pretrained=PATH (config model.pretrained)"
            )
        raise CheckpointError(f"no ImageNet weights are known for {arch}; pass the path of a weight file")
    weights = torchvision.models.get_model_weights(spec.torchvision_name)["IMAGENET1K_V1"]
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)
    try:
        return weights.get_state_dict(progress=True, map_location="cpu", weights_only=True)
    except OSError as exc:  # no network: URLError, socket errors, ...
        if cached.is_file():
            raise CheckpointError(f"cannot read {cached}: {exc}") from None
        raise CheckpointError(
            f"cannot download torchvision's ImageNet weights for {arch} ({weights.url}): {exc}. "
            f"Offline, put that file at {cached} or pass its path as pretrained=PATH"
        ) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise CheckpointError(
            f"cannot read torchvision's cached weight file {cached} ({exc}); delete it to download it again"
        ) from None


# --------------------------------------------------------------------------------------- helpers


def _json_plain(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, number, bool, None); numpy values and paths
    are converted, anything else raises TypeError."""
    return json.loads(json.dumps(value, default=_json_default))


def _rng_state() -> dict[str, Any]:
    bit_generator, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": bit_generator,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore :func:`_rng_state`; CUDA states are restored on the devices present (all if counts match)."""
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["bit_generator"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        for device, cuda_state in enumerate(state["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
