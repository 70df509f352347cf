"""Checkpoints: our model file, training state, the authors' released files and safe loading.

* :mod:`bas.checkpoints.format`: our self-describing ``.safetensors`` model file
  (:func:`save_model`, :func:`load_checkpoint`, :func:`read_checkpoint_metadata`);
* :mod:`bas.checkpoints.state`: training state for exact resumes (:func:`save_training_state`,
  :func:`load_training_state`);
* :mod:`bas.checkpoints.legacy`: the released CVPR 2022 / IJCV 2023 families and the wrappers
  users bring (Lightning, ``state_dict``, ``model``), key renaming, architecture inference;
* :mod:`bas.checkpoints.safe`: ``torch.load(weights_only=True)`` with readable errors;
* :mod:`bas.checkpoints.keys`: wrapper prefixes and fit checks shared by every reader.

ImageNet initialisation lives in :mod:`bas.models.pretrained`, the metadata record and the papers'
inference defaults in :mod:`bas.models.meta` (both re-exported here). Names load on
first access, so importing this package imports no torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "format": (
        "METADATA_KEY",
        "TRAINING_STATE_FORMAT",
        "load_checkpoint",
        "metadata_document",
        "read_checkpoint_metadata",
        "save_model",
    ),
    "state": ("load_training_state", "save_training_state"),
    "legacy": ("convert_state_dict", "infer_arch"),
    "keys": ("unwrap_model",),
}
_WHERE = {name: f"{__name__}.{module}" for module, names in _NAMES.items() for name in names}
_WHERE.update(load_imagenet_weights="bas.models.pretrained")
_WHERE.update(
    {
        name: "bas.models.meta"
        for name in (
            "DATASET_BY_NUM_CLASSES",
            "FALLBACK_INFERENCE",
            "FORMAT_NAME",
            "FORMAT_VERSION",
            "IMAGENET_MEAN",
            "IMAGENET_STD",
            "INFERENCE_DEFAULTS",
            "inference_defaults",
        )
    }
)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_WHERE})


__all__ = sorted(_WHERE)
