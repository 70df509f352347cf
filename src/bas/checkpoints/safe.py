"""Safe reading of torch files: ``torch.load(weights_only=True)``, every failure a :class:`CheckpointError`.

A pickle that would run code is refused, never executed: only tensors, numbers, strings and
containers are ever loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from bas.errors import CheckpointError


def torch_load(path: str | Path) -> Any:
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


def is_tensor_dict(obj: Any) -> bool:
    """A non-empty dict of name -> tensor (a state dict)."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )
