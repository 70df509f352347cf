"""Files that are not ours: the authors' released BAS checkpoints and the wrappers users bring.

The released families (docs/method.md §8), in the legacy or the zip serialisation:

* CVPR 2022 CUB files: a plain state dict with the authors' top-level names (``conv4_3.weight``,
  ``layer4.0.conv1.weight``, ``model.12.0.weight``, ``Mixed_7a...``, ``classifier_cls.*`` or
  ``classifier.*``, ``classifier_loc.*``);
* CVPR 2022 ILSVRC files: the same behind a ``module.`` prefix, plus ``*_copy*`` and
  ``erase_branch.*`` duplicates of the head, which are dropped;
* IJCV 2023 files: ``{'model': state_dict, 'best_thr': float, 'epoch': int}``; ``best_thr`` becomes
  the default threshold.

Wrappers: a plain state dict, ``{"state_dict": ...}``, ``{"model": ...}``, keys behind ``module.``
or ``model.``, and Lightning checkpoints (``state_dict`` with a ``model.`` prefix, next to
``pytorch-lightning_version``, ``epoch``, ``global_step`` ...).

Other methods' released files (the segmentation ones) are recognised by their method
(``Method.read_released``), which also names their architecture. The architecture of any other
file without metadata is the registered one whose backbone names and shapes equal the file's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bas._optional import MissingExtraError
from bas.checkpoints.keys import BACKBONE, mismatch_report, strip_wrappers, unwrap_model
from bas.checkpoints.safe import is_tensor_dict
from bas.errors import CheckpointError
from bas.methods import get_method, list_methods
from bas.models.registry import get_spec, list_models

RELEASES = ("cvpr2022", "ijcv2023")  # the papers' code releases, also the names of the BAS variants
_DUPLICATE = re.compile(r"^(erase_branch|[^.]*_copy[^.]*)\.")  # the CVPR ILSVRC head copies
_RENAMES = (("classifier_cls.", "classifier."), ("classifier_loc.", "generator."))

# ------------------------------------------------------------------------------------- reading


@dataclass
class Source:
    """What a checkpoint file holds: its tensors, its family and what it says about itself."""

    state_dict: dict[str, torch.Tensor]
    source: str  # bas | cvpr2022 | ijcv2023 | state_dict | lightning | training_state | a method's release
    document: dict[str, Any] = field(default_factory=dict)


def read_foreign(obj: Any, path: str | Path) -> Source:
    """Tell the family of a loaded object that is not one of our files; CheckpointError listing its
    top-level keys when it is no model checkpoint at all."""
    if is_tensor_dict(obj):
        return plain_source(obj)
    if isinstance(obj, dict) and is_tensor_dict(obj.get("state_dict")):
        if "pytorch-lightning_version" in obj:  # a Lightning checkpoint
            said = {"extra": {k: obj[k] for k in ("epoch", "global_step") if isinstance(obj.get(k), int)}}
            return Source(obj["state_dict"], "lightning", said)
        return plain_source(obj["state_dict"])
    if isinstance(obj, dict) and is_tensor_dict(obj.get("model")):  # the IJCV 2023 wrapper, or a user's
        source = plain_source(obj["model"])
        if source.source == "cvpr2022":  # the authors' naming in an IJCV wrapper
            source.source = "ijcv2023"
        source.document["extra"] = {k: obj[k] for k in ("epoch",) if k in obj}
        if obj.get("best_thr") is not None:
            source.document["threshold"] = float(obj["best_thr"])
        return source
    if isinstance(obj, dict):
        keys = [str(k) for k in obj]
        shown = ", ".join(keys[:20]) + (f", ... {len(keys) - 20} more" if len(keys) > 20 else "")
        found = f"a dict with the top-level keys [{shown}]" if keys else "an empty dict"
    else:
        found = f"a {type(obj).__name__}"
    raise CheckpointError(
        f"{path} is not a model checkpoint: found {found}; expected a state dict, or a dict holding "
        "one under 'state_dict' (also Lightning) or 'model'"
    )


def plain_source(state_dict: dict[str, torch.Tensor]) -> Source:
    """A bare state dict: ours when its keys are ``mid.`` / ``head.``, else a released file a method
    recognises (``Method.read_released``), else the authors' WSOL naming (CVPR 2022)."""
    ours = any(k.startswith(BACKBONE) for k in normalise_keys(state_dict))
    if ours:
        return Source(state_dict, "state_dict")
    stripped = strip_wrappers(state_dict)
    for name in list_methods():
        found = get_method(name).read_released(stripped)
        if found is not None:
            tensors, document = found
            return Source(tensors, document["source"], dict(document))
    return Source(state_dict, "cvpr2022")


# -------------------------------------------------------------------------------- key handling


def normalise_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip wrapper prefixes, drop the head duplicates, rename the authors' two new heads."""
    out = {}
    for key, value in strip_wrappers(state_dict).items():
        if _DUPLICATE.match(key):
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
        out[key] = value
    return out


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a state dict in the authors' naming (or ours) to ``model``'s parameter names.

    Strips ``module.`` / ``_orig_mod.`` prefixes (and a ``model.`` shared by every key), drops the
    ``*_copy*`` and ``erase_branch.*`` duplicates, renames ``classifier_cls.`` to ``classifier.``
    and ``classifier_loc.`` to ``generator.``; any other key ``k`` that is not already one of the
    model's becomes ``mid.k`` if the model has it, else ``head.k``. Keys that fit nowhere are kept
    unchanged (the loader then reports them as unexpected). Pure: the tensors are not copied, the
    model is not changed.
    """
    model_keys = set(unwrap_model(model).state_dict())
    converted: dict[str, torch.Tensor] = {}
    for key, value in normalise_keys(state_dict).items():
        if key not in model_keys:
            key = next((p + key for p in BACKBONE if p + key in model_keys), key)
        if key in converted:
            raise CheckpointError(f"two checkpoint entries map to the parameter {key}")
        converted[key] = value
    return converted


def _new_layer_prefixes() -> tuple[str, ...]:
    """Parameter prefixes of every method's new layers (not part of a backbone)."""
    return tuple(sorted({p for name in list_methods() for p in get_method(name).new_layers}))


def _backbone_shapes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Backbone entries in the authors' naming (no ``mid.``/``head.``), without ``num_batches_tracked``."""
    new_layers = _new_layer_prefixes()
    shapes = {}
    for key, value in state_dict.items():
        if key.startswith(new_layers) or key.endswith("num_batches_tracked"):
            continue
        shapes[key.split(".", 1)[1] if key.startswith(BACKBONE) else key] = tuple(value.shape)
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
    found = _backbone_shapes(normalise_keys(state_dict))
    best, best_score = "", -1
    for arch in list_models():
        try:
            expected = dict(_arch_signature(arch))
        except MissingExtraError:  # a family whose optional dependency is not installed
            continue
        if expected == found:
            return arch
        score = sum(found.get(k) == shape for k, shape in expected.items())
        if score > best_score:
            best, best_score = arch, score
    expected = dict(_arch_signature(best))
    raise CheckpointError(
        "the checkpoint's backbone matches no known architecture; closest is "
        f"{best}: " + mismatch_report(expected, found)
    )
