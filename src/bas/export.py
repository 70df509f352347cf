"""Export the inference path to ONNX or TorchScript.

The exported graph is :class:`InferenceModule`: a normalised image batch ``images`` (B, 3, S, S)
in, two tensors out:

* ``logits`` (B, K): class scores ``GAP(A)``;
* ``maps`` (B, S, S): the foreground maps of the ``top_k`` best-scoring classes averaged
  (the model's ``localize``), min-max normalised per image and upsampled bilinearly to S x S
  (:func:`bas.localization.localization_maps`), values in [0, 1]: what ``bas evaluate`` and
  :class:`bas.Localizer` threshold.

``top_k`` is fixed in the graph (default: the checkpoint's ``top_k``); ``S`` too (default: the
checkpoint's ``input_size``). The batch dimension is dynamic. Preprocessing (resize, crop,
normalisation with the stored mean / std) and the box extraction stay outside the graph; the
checkpoint's metadata (class names, threshold, top_k, input and resize sizes, mean, std) travels
with the file: ONNX ``metadata_props`` under the key ``bas``, TorchScript extra file ``bas.json``.

ONNX uses the TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``), which needs
no ``onnxscript``; the default opset is 17.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bas._optional import require
from bas.io import atomic_path, to_json
from bas.localization import localization_maps

FORMATS = ("onnx", "torchscript")
DEFAULT_OPSET = 17
INPUT_NAMES = ("images",)
OUTPUT_NAMES = ("logits", "maps")
METADATA_KEY = "bas"
TORCHSCRIPT_METADATA_FILE = "bas.json"


class InferenceModule(nn.Module):
    """The inference path of a model of any method (its ``localize``) as a plain tensor-to-tuple module.

    ``forward(images) -> (logits (B, K), maps (B, S, S))``: no labels, no training branch, no
    dataclass, so it traces and exports.
    """

    def __init__(self, model: nn.Module, top_k: int, map_size: int):
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        self.model = model
        self.top_k = int(top_k)
        self.map_size = int(map_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, fused = self.model.localize(images, self.top_k)
        return logits, localization_maps(fused, self.map_size)


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    *,
    top_k: int | None = None,
    input_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write the inference path of ``model`` to ``path`` as ONNX or TorchScript, atomically.

    Args:
        model: a model of any method; its ``meta`` supplies the defaults.
        fmt: ``"onnx"`` or ``"torchscript"``.
        top_k: classes whose maps are fused in the graph (default: the checkpoint's, else 1).
        input_size: image side S of the graph and of the output maps (default: the checkpoint's
            ``input_size``, else 224).
        opset: ONNX opset version.
        metadata: stored with the file (default: the model's metadata document minus the training
            config and metrics), with ``top_k`` / ``input_size`` set to the exported values.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    meta = model.meta.to_document()
    top_k = int(top_k or model.meta.top_k or 1)
    input_size = int(input_size or meta["input_size"])
    if metadata is None:
        metadata = {k: v for k, v in meta.items() if k not in ("config", "metrics", "extra")}
    metadata = {
        **metadata,
        "top_k": top_k,
        "input_size": input_size,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUT_NAMES),
    }
    module = InferenceModule(model, top_k, input_size).eval()
    device = next(model.parameters()).device
    example = torch.zeros(2, 3, input_size, input_size, device=device)
    path = Path(path)
    with torch.no_grad(), atomic_path(path) as tmp:
        if fmt == "onnx":
            _export_onnx(module, example, tmp, opset, metadata)
        else:
            _export_torchscript(module, example, tmp, metadata)
    return path


def _export_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, opset: int, metadata: dict[str, Any]
) -> None:
    onnx = require("onnx", "export", "ONNX export")

    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
        )
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, to_json(metadata)
    onnx.save(proto, str(path))


def _export_torchscript(
    module: nn.Module, example: torch.Tensor, path: Path, metadata: dict[str, Any]
) -> None:
    with warnings.catch_warnings():
        # TracerWarnings about the static shapes (class count, map size); torch.jit's deprecation notice
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: to_json(metadata)})


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an exported ONNX or TorchScript file."""
    path = Path(path)
    if path.suffix == ".onnx":
        onnx = require("onnx", "export", "reading an ONNX file's metadata")

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props.get(METADATA_KEY, "{}"))
    files = {TORCHSCRIPT_METADATA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[TORCHSCRIPT_METADATA_FILE] or "{}")
