"""Optional dependencies, each installed with an extra of the package.

Every import of an optional module goes through :func:`require` (the feature cannot work without
it: a one-line :class:`MissingExtraError` naming the extra) or :func:`optional` (the feature is
skipped without it).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from bas.errors import BASError

PACKAGE = "bas-wsol"


class MissingExtraError(BASError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def optional(module: str) -> ModuleType | None:
    """``module`` imported, or None when it (or one of its own dependencies) is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def require(module: str, extra: str, feature: str) -> ModuleType:
    """``module`` imported, or a :class:`MissingExtraError` saying which extra ``feature`` needs."""
    found = optional(module)
    if found is None:
        raise MissingExtraError(
            f"{feature} needs the '{extra}' extra ({module} is not installed): pip install \"{PACKAGE}[{extra}]\""
        )
    return found
