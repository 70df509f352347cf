"""Models: backbone families, the registry and the typed model metadata.

``BASModel`` and ``BASOutput`` live with their method (:mod:`bas.methods.bas`,
:mod:`bas.methods.base`) and are re-exported here, loaded on first access.
"""

from __future__ import annotations

from typing import Any

from bas.models.meta import ModelMeta
from bas.models.registry import Family, ModelSpec, build_model, get_spec, list_models

_LAZY = {"BASModel": "bas.methods.bas", "BASOutput": "bas.methods.base"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASModel",
    "BASOutput",
    "Family",
    "ModelMeta",
    "ModelSpec",
    "build_model",
    "get_spec",
    "list_models",
]
