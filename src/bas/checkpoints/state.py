"""Training state: everything an exact resume needs, in one file readable with ``weights_only=True``."""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bas.checkpoints.format import FORMAT_VERSION, TRAINING_STATE_FORMAT, metadata_document
from bas.checkpoints.keys import load_tensors, unwrap_model
from bas.checkpoints.safe import torch_load
from bas.errors import CheckpointError
from bas.io import atomic_open
from bas.models.meta import ModelMeta, json_plain


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
    generators: Mapping[str, torch.Generator] | None = None,
) -> None:
    """Write everything an exact resume needs, atomically, readable with ``weights_only=True``.

    Stores the (unwrapped) model weights and metadata (the document a model file carries, so that
    :func:`~bas.checkpoints.load_checkpoint` reads this file with the same preprocessing, classes
    and threshold), the optimizer, scheduler and grad-scaler state dicts,
    ``epoch`` and ``step``, the RNG states (Python, NumPy, torch CPU and every CUDA device) and
    those of ``generators`` (a model's own, by name), and ``config`` / ``metrics`` / ``extra`` as
    plain JSON values.
    """
    net = unwrap_model(model)
    meta = getattr(net, "meta", None)
    document = metadata_document(meta) if isinstance(meta, ModelMeta) else None
    state = {
        "format": TRAINING_STATE_FORMAT,
        "format_version": FORMAT_VERSION,
        "arch": None if document is None else document["arch"],
        "num_classes": None if document is None else document["num_classes"],
        "variant": None if document is None else document["variant"],
        "method": None if document is None else document["method"],
        "hidden": None if document is None else document["hidden"],
        "meta": document,  # the model's metadata, as a model file carries it
        "model": net.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "epoch": int(epoch),
        "step": int(step),
        "config": json_plain(config or {}),
        "metrics": json_plain(metrics or {}),
        "extra": json_plain(extra or {}),
        "rng": _rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
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
    generators: Mapping[str, torch.Generator] | None = None,
) -> dict[str, Any]:
    """Restore a :func:`save_training_state` file into the given objects and the RNGs; each of
    ``generators`` gets the state saved under its name (a file written before the generator
    existed leaves it as it is).

    Returns:
        ``{"epoch", "step", "config", "metrics", "extra"}`` as saved.

    Raises:
        CheckpointError: not a training-state file, weights that do not fit ``model``, or no saved
            state for an optimizer / scheduler / scaler that was passed.
    """
    state = torch_load(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(
            f"{path} is not a training-state checkpoint (use load_checkpoint for model files)"
        )
    load_tensors(unwrap_model(model), state["model"], str(path))
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler), ("scaler", scaler)):
        if target is not None:
            if state[name] is None:
                raise CheckpointError(f"{path} holds no {name} state")
            target.load_state_dict(state[name])
    _set_rng_state(state["rng"])
    saved = state.get("generators") or {}
    for name, generator in (generators or {}).items():
        if name in saved:
            generator.set_state(saved[name])
    return {key: state[key] for key in ("epoch", "step", "config", "metrics", "extra")}


def read_training_config(path: str | Path) -> dict[str, Any]:
    """The config a :func:`save_training_state` file was written with (empty if it stores none)."""
    state = torch_load(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_STATE_FORMAT:
        raise CheckpointError(f"{path} is not a training-state checkpoint, it cannot be resumed")
    return dict(state.get("config") or {})


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
