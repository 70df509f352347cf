"""Training methods behind one registry: ``list_methods()``, ``get_method(name)``, ``method_of(model)``.

Each public module of this package is one method (``bas.py``, ``cam.py``): a model class over a
backbone split and a :class:`~bas.methods.base.Method` subclass decorated with :func:`register`.
Modules are found by name and imported on first use, so adding a method is adding one module
(see docs/extending.md). This file imports no torch.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from bas.methods.base import Method

_REGISTRY: dict[str, Method] = {}
_NOT_METHODS = frozenset({"base"})  # modules of this package that hold no method


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: register one instance of a :class:`Method` subclass under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name not in _NOT_METHODS:
            importlib.import_module(f"{__name__}.{info.name}")


def list_methods() -> list[str]:
    """Names accepted as ``method`` (config key, :func:`bas.build_model`), sorted."""
    _discover()
    return sorted(_REGISTRY)


def get_method(name: str) -> Method:
    """The registered method called ``name``; ValueError naming the valid ones otherwise."""
    if name not in _REGISTRY:
        _discover()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown method {name!r}; expected one of {', '.join(list_methods())}") from None


def method_of(model: nn.Module) -> Method:
    """The method of a model (read from its :class:`~bas.models.meta.ModelMeta`)."""
    meta: Any = getattr(model, "meta", None)
    if meta is None:
        raise TypeError(f"{type(model).__name__} is not a bas-wsol model (it has no .meta)")
    return get_method(meta.method)


def config_defaults() -> dict[str, Any]:
    """Every method's config keys with their defaults (dotted keys)."""
    out: dict[str, Any] = {}
    for name in list_methods():
        out.update(_REGISTRY[name].config_defaults)
    return out


__all__ = ["config_defaults", "get_method", "list_methods", "method_of", "register"]
