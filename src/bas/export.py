"""Export the inference path to ONNX or TorchScript.

The exported graph is :class:`InferenceModule`: a normalised image batch ``images`` (B, 3, S, S)
in; ``outputs`` chooses what comes out (:data:`OUTPUTS`):

* ``fused`` (the default): ``logits`` (B, K), the class scores ``GAP(A)``, and ``maps``
  (B, S, S), the foreground maps of the ``top_k`` best-scoring classes averaged (the model's
  ``localize``), min-max normalised per image and upsampled bilinearly to S x S
  (:func:`bas.localization.localization_maps`), values in [0, 1]: what ``bas evaluate`` and
  :class:`bas.Localizer` threshold;
* ``classes``: ``logits``, ``probs`` (B, K) (softmax; sigmoid for multi-label methods) and
  ``class_maps`` (B, K, S, S), every class's own map (the map the model gives with that class as
  the label), each normalised and upsampled the same way;
* ``top-k``: ``logits``, ``probs``, ``top_classes`` (B, k) int64 and ``top_probs`` (B, k), the
  ``top_k`` most probable classes best first, and ``top_maps`` (B, k, S, S), their maps.

The per-class outputs are what multi-object post-processing needs (components of every probable
class, scored by the class probability; docs/inference.md). ``top_k`` is fixed in the graph
(default: the checkpoint's ``top_k``); ``S`` too (default: the checkpoint's ``input_size``). The
batch dimension is dynamic. Preprocessing (resize, crop, normalisation with the stored mean / std)
and the box extraction stay outside the graph; the checkpoint's metadata (class names, threshold,
top_k, input and resize sizes, mean, std, the output names) travels with the file: ONNX
``metadata_props`` under the key ``bas``, TorchScript extra file ``bas.json``.

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
# What ``outputs`` selects: the output names of the graph, in order.
OUTPUTS = {
    "fused": ("logits", "maps"),
    "classes": ("logits", "probs", "class_maps"),
    "top-k": ("logits", "probs", "top_classes", "top_probs", "top_maps"),
}
OUTPUT_NAMES = OUTPUTS["fused"]
METADATA_KEY = "bas"
TORCHSCRIPT_METADATA_FILE = "bas.json"


class InferenceModule(nn.Module):
    """The inference path of a model of any method as a plain tensor-to-tuple module.

    ``forward(images)`` returns the tensors of ``OUTPUTS[outputs]`` (see the module doc); with the
    default ``fused``: ``(logits (B, K), maps (B, S, S))``. No labels, no training branch, no
    dataclass, so it traces and exports.
    """

    def __init__(self, model: nn.Module, top_k: int, map_size: int, outputs: str = "fused"):
        super().__init__()
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if outputs not in OUTPUTS:
            raise ValueError(f"unknown outputs {outputs!r}; expected one of {', '.join(OUTPUTS)}")
        self.model = model
        self.top_k = min(int(top_k), model.num_classes)
        self.map_size = int(map_size)
        self.outputs = outputs

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.outputs == "fused":
            logits, fused = self.model.localize(images, self.top_k)
            return logits, localization_maps(fused, self.map_size)
        logits, maps = self.model.localize_classes(images)
        probs = self.model.probabilities(logits.float())
        if self.outputs == "classes":
            return logits, probs, self._normalised(maps)
        top_probs, top_classes = probs.topk(self.top_k, dim=1)
        h, w = maps.shape[-2:]
        chosen = maps.gather(1, top_classes[:, :, None, None].expand(-1, -1, h, w))
        return logits, probs, top_classes, top_probs, self._normalised(chosen)

    def _normalised(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) maps, each normalised and upsampled as the fused one: (B, C, S, S)."""
        size = self.map_size
        return localization_maps(maps.flatten(0, 1), size).reshape(-1, maps.shape[1], size, size)


def export_model(
    model: nn.Module,
    path: str | Path,
    fmt: str,
    *,
    top_k: int | None = None,
    input_size: int | None = None,
    opset: int = DEFAULT_OPSET,
    metadata: dict[str, Any] | None = None,
    outputs: str = "fused",
) -> Path:
    """Write the inference path of ``model`` to ``path`` as ONNX or TorchScript, atomically.

    Args:
        model: a model of any method; its ``meta`` supplies the defaults.
        fmt: ``"onnx"`` or ``"torchscript"``.
        top_k: classes whose maps are fused in the graph, or (``outputs="top-k"``) whose maps are
            returned (default: the checkpoint's, else 1).
        input_size: image side S of the graph and of the output maps (default: the checkpoint's
            ``input_size``, else 224).
        opset: ONNX opset version.
        metadata: stored with the file (default: the model's metadata document minus the training
            config and metrics), with ``top_k`` / ``input_size`` set to the exported values.
        outputs: a key of :data:`OUTPUTS`: ``"fused"`` (logits and the fused map), ``"classes"``
            (every class's map) or ``"top-k"`` (the ``top_k`` most probable classes and their maps).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    meta = model.meta.to_document()
    input_size = int(input_size or meta["input_size"])
    module = InferenceModule(model, int(top_k or model.meta.top_k or 1), input_size, outputs).eval()
    if metadata is None:
        metadata = {k: v for k, v in meta.items() if k not in ("config", "metrics", "extra")}
    metadata = {
        **metadata,
        "top_k": module.top_k,
        "input_size": input_size,
        "inputs": list(INPUT_NAMES),
        "outputs": list(OUTPUTS[outputs]),
    }
    device = next(model.parameters()).device
    example = torch.zeros(2, 3, input_size, input_size, device=device)
    path = Path(path)
    with torch.no_grad(), atomic_path(path) as tmp:
        if fmt == "onnx":
            _export_onnx(module, example, tmp, opset, metadata, OUTPUTS[outputs])
        else:
            _export_torchscript(module, example, tmp, metadata)
    return path


def _export_onnx(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    opset: int,
    metadata: dict[str, Any],
    output_names: tuple[str, ...],
) -> None:
    onnx = require("onnx", "export", "ONNX export")

    dynamic = {name: {0: "batch"} for name in (*INPUT_NAMES, *output_names)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=list(INPUT_NAMES),
            output_names=list(output_names),
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
