"""State-dict key handling shared by every reader: wrapper prefixes, fit checks, loading tensors.

No model or method is imported here, so :mod:`bas.models.pretrained` uses it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from bas.errors import CheckpointError

# DataParallel / DDP, torch.compile: stripped from every key where they start it.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
# A wrapping module's attribute (a Lightning module's ``self.model``): stripped when every key has it.
SHARED_PREFIXES = ("model.",)
BACKBONE = ("mid.", "head.")


def strip_wrappers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop ``module.`` / ``_orig_mod.`` from every key, and a ``model.`` that every key starts with.

    A ``model.`` on only some keys is a layer name (MobileNetV1's ``model.<i>``) and stays.
    """
    out = dict(state_dict)
    while True:
        stripped = {}
        for key, value in out.items():
            while key.startswith(WRAPPER_PREFIXES):
                key = key.split(".", 1)[1]
            stripped[key] = value
        shared = next(
            (p for p in SHARED_PREFIXES if stripped and all(k.startswith(p) for k in stripped)), None
        )
        if shared is None:
            return stripped
        out = {k[len(shared) :]: v for k, v in stripped.items()}


def check_fit(
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
        meta = getattr(model, "meta", None)
        name = meta.arch if meta is not None else type(model).__name__
        target = f"{name}" + (f" with {meta.num_classes} classes" if meta is not None else "")
        raise CheckpointError(f"{what} does not fit {target}: {mismatch_report(wanted, found)}")


def load_tensors(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str, prefixes: tuple[str, ...] | None = None
) -> None:
    """Copy ``tensors`` into ``model`` after :func:`check_fit`."""
    check_fit(model, tensors, what, prefixes)
    model.load_state_dict(dict(tensors), strict=False)


def materialise(model: nn.Module, tensors: Mapping[str, torch.Tensor]) -> None:
    """Give a meta-device model the checked ``tensors`` (assigned, not copied; cast to the model's
    dtypes). Buffers the file lacks (only ``num_batches_tracked`` may be absent) start at zero."""
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    model.load_state_dict({k: v.to(dtypes[k]) for k, v in tensors.items()}, strict=False, assign=True)
    for name, buffer in list(model.named_buffers()):
        if buffer.is_meta:
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner).register_buffer(attr, torch.zeros_like(buffer, device="cpu"))


def assign_in_order(
    state: Mapping[str, torch.Tensor], targets: Iterable[str], where: str
) -> dict[str, torch.Tensor]:
    """Pair the file's tensors with ``targets`` in order, skipping ``num_batches_tracked`` on both sides."""
    values = [(k, v) for k, v in state.items() if not k.endswith("num_batches_tracked")]
    names = [k for k in targets if not k.endswith("num_batches_tracked")]
    if len(values) != len(names):
        raise CheckpointError(
            f"{where} has {len(values)} backbone tensors, the model expects {len(names)} "
            f"(file keys: {first([k for k, _ in values])})"
        )
    return {name: value for name, (_, value) in zip(names, values)}


def mismatch_report(expected: Mapping[str, tuple], found: Mapping[str, tuple]) -> str:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k} {list(found[k])} != {list(expected[k])}"
        for k in expected
        if k in found and found[k] != expected[k]
    ]
    parts = [
        f"{len(items)} {label} ({first(items)})"
        for label, items in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", shapes),
        )
        if items
    ]
    return "; ".join(parts)


def first(items: Sequence[str], n: int = 4) -> str:
    return ", ".join(items[:n]) + (f", ... {len(items) - n} more" if len(items) > n else "")


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DataParallel / DistributedDataParallel and ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model
