"""Our model file: a ``.safetensors`` file whose header carries the model's :class:`ModelMeta`.

The weights keep the parameter names of the model; one JSON document under the ``bas`` key of the
safetensors header metadata holds the format name and version plus every field of
:class:`~bas.models.meta.ModelMeta` (architecture, method and its options, class count and names,
preprocessing, default threshold and top-k, training config, final metrics). :func:`save_model`
writes it, :func:`load_checkpoint` reads it back as a ready model; :func:`load_checkpoint` also
reads our training-state files and every file :mod:`bas.checkpoints.legacy` knows.

What a file without metadata does not say is inferred: the architecture from the backbone's names
and shapes, the class count and widths from the method's layers (``Method.infer_options``), the
variant from the release (IJCV wrapper -> ``ijcv2023``; a plain state dict in the authors' naming
-> ``cvpr2022``, pass ``variant`` for an unwrapped IJCV file; our naming -> ``ijcv2023``).
Every file is written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from bas.checkpoints.keys import check_fit, materialise, unwrap_model
from bas.checkpoints.legacy import (
    RELEASES,
    Source,
    convert_state_dict,
    infer_arch,
    normalise_keys,
    plain_source,
    read_foreign,
)
from bas.checkpoints.safe import torch_load
from bas.errors import CheckpointError
from bas.io import atomic_path, to_json
from bas.methods import get_method
from bas.models.meta import FORMAT_NAME, FORMAT_VERSION, ModelMeta
from bas.models.registry import build_model

METADATA_KEY = "bas"
TRAINING_STATE_FORMAT = "bas-wsol-training-state"
RELEASED_METHOD = "bas"  # the method of files that do not name one (the authors' releases)


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
    input_size: int | None = None,
    resize_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``model`` and its metadata as one ``.safetensors`` file, atomically.

    The metadata is the model's ``meta`` with the given fields replaced (None keeps the model's).

    Args:
        path: destination file.
        model: a model of any method (:func:`bas.build_model`, :func:`load_checkpoint`), possibly
            wrapped by DDP or ``torch.compile``.
        class_names: one name per class.
        threshold, top_k: inference defaults; where neither the model nor the call sets them, the
            paper's value for this architecture and dataset
            (:func:`bas.models.meta.inference_defaults`).
        config, metrics, extra: JSON-serialisable dicts (the training config, the final metrics,
            anything else).
        input_size: side of the network input (the centre crop); resize_size: side images are
            resized to before cropping. mean, std: the input normalisation.

    Returns:
        The metadata written (what :func:`read_checkpoint_metadata` returns).
    """
    net = unwrap_model(model)
    meta = model_meta(net)
    meta = _checked(
        meta.replace,
        source="bas",
        class_names=class_names,
        threshold=threshold,
        top_k=top_k,
        config=config,
        metrics=metrics,
        input_size=input_size,
        resize_size=resize_size,
        mean=mean,
        std=std,
        extra=extra,
    )
    document = metadata_document(meta)  # carries the format name and version
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, str(tmp), metadata={METADATA_KEY: to_json(document)})
    return document


def load_checkpoint(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    variant: str | None = None,
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Load any supported checkpoint as a ready model of its method, in eval mode.

    Supported: our ``.safetensors`` files, our training-state files, the released CVPR 2022 and
    IJCV 2023 files, and state dicts in the wrappers :func:`bas.checkpoints.legacy.read_foreign`
    reads. ``arch``, ``num_classes`` and ``variant`` override what the file says or what is
    inferred from its keys and shapes. The file is read on the CPU and the model moved to
    ``map_location``. The model's ``meta`` is the file's metadata, completed (``model.bas_meta``
    gives it as the document :func:`read_checkpoint_metadata` returns).

    Raises:
        CheckpointError: unreadable or unsafe file, or weights that do not fit the model (the
            message lists the missing, unexpected and mis-shaped keys).
    """
    source = _read_source(path)
    meta = resolve_metadata(source, arch=arch, num_classes=num_classes, variant=variant)
    with torch.device("meta"):  # no random init of weights about to be replaced
        model = build_for(meta)
    tensors = convert_state_dict(source.state_dict, model)
    check_fit(model, tensors, str(path))
    materialise(model, tensors)
    return model.to(torch.device(map_location)).eval()


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint, as ``load_checkpoint(path).bas_meta`` gives it.

    Keys: ``format``, ``format_version`` and the fields of :class:`~bas.models.meta.ModelMeta`:
    ``source`` (``bas``, ``cvpr2022``, ``ijcv2023``, ``state_dict``, ``lightning`` or
    ``training_state``), ``method``, ``arch``, ``num_classes``, ``variant``, ``hidden``,
    ``class_names``, ``threshold``, ``top_k``, ``input_size``, ``resize_size``, ``mean``, ``std``,
    ``config``, ``metrics``, ``extra``. Our own files are read from their header only.
    """
    document = _safetensors_document(path) if _is_safetensors(path) else None
    if document is not None:
        return metadata_document(_checked(ModelMeta, **document))
    return metadata_document(resolve_metadata(_read_source(path)))


# -------------------------------------------------------------------------------------- metadata


def model_meta(net: nn.Module) -> ModelMeta:
    """The :class:`ModelMeta` of a (unwrapped) model; TypeError for a module that has none."""
    meta = getattr(net, "meta", None)
    if not isinstance(meta, ModelMeta):
        raise TypeError(f"expected a bas-wsol model (one with a ModelMeta .meta), got {type(net).__name__}")
    return meta


def metadata_document(meta: ModelMeta) -> dict[str, Any]:
    """The JSON document of ``meta`` (:meth:`ModelMeta.to_document`), its method checked."""
    _method(meta.method)
    return meta.to_document()


def resolve_metadata(
    source: Source, *, arch: str | None = None, num_classes: int | None = None, variant: str | None = None
) -> ModelMeta:
    """Complete a file's metadata: explicit arguments, then the file's own, then inference."""
    document = {k: v for k, v in source.document.items() if k in ModelMeta.keys()}
    state = normalise_keys(source.state_dict)
    if variant is not None and variant not in RELEASES:
        raise CheckpointError(f"unknown variant {variant!r}; expected one of {', '.join(RELEASES)}")
    method = _method(document.get("method") or RELEASED_METHOD)
    document["method"] = method.name
    document["arch"] = arch or document.get("arch") or infer_arch(state)
    if num_classes:
        document["num_classes"] = num_classes
    inferrable = ("num_classes", *(k for k in method.options if k != "variant"))
    if any(document.get(k) is None for k in inferrable):
        for key, value in method.infer_options(state).items():
            if document.get(key) is None:
                document[key] = value
    document["variant"] = (
        variant or document.get("variant") or (source.source if source.source in RELEASES else "ijcv2023")
    )
    document.setdefault("source", source.source)
    return _checked(ModelMeta, **document).completed()


def build_for(meta: ModelMeta) -> nn.Module:
    """The (untrained) model ``meta`` describes, carrying ``meta``."""
    method = _method(meta.method)
    options = {k: getattr(meta, k) for k in method.options}
    try:
        model = build_model(meta.arch, meta.num_classes, method=method.name, **options)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"cannot build the model the checkpoint describes: {exc}") from None
    model.meta = meta
    return model


def _method(name: str) -> Any:
    try:
        return get_method(name)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from None


def _checked(make: Any, **fields: Any) -> ModelMeta:
    """``make(**fields)`` with a bad field (class names of the wrong count ...) as a CheckpointError."""
    try:
        return make(**fields)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"invalid model metadata: {exc}") from None


# ------------------------------------------------------------------------------- reading files


def _read_source(path: str | Path) -> Source:
    """Read a checkpoint file (on the CPU) and tell its family."""
    if _is_safetensors(path):
        document = _safetensors_document(path)
        try:
            tensors = safetensors.torch.load_file(str(path), device="cpu")
        except safetensors.SafetensorError as exc:
            raise CheckpointError(f"cannot read {path} as a safetensors file: {exc}") from None
        return Source(tensors, "bas", document) if document is not None else plain_source(tensors)
    obj = torch_load(path)
    if isinstance(obj, dict) and obj.get("format") == TRAINING_STATE_FORMAT:
        said = obj.get("meta") or {  # files written before the state carried the full metadata
            k: obj[k]
            for k in ("method", "arch", "num_classes", "variant", "hidden", "config", "metrics", "extra")
            if obj.get(k) is not None
        }
        said = {k: v for k, v in said.items() if k not in ("format", "format_version")}
        return Source(obj["model"], "training_state", {**said, "source": "training_state"})
    return read_foreign(obj, path)


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
    unknown = sorted(set(document) - ModelMeta.keys())
    missing = sorted(k for k in ("arch", "num_classes", "variant") if k not in document)
    if unknown or missing:
        raise CheckpointError(
            f"{path}: malformed '{METADATA_KEY}' metadata (unknown keys {unknown}, missing keys {missing})"
        )
    return document
