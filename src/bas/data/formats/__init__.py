"""Dataset formats, one module per kind, behind a registry.

Each module of this package (``cub``, ``wsol``, ``ilsvrc``, ``bas_list``, ``folder``,
``synthetic``, ...) parses one kind of annotation files into the shared
:class:`~bas.data.datasets.WSOLDataset` and registers a
:class:`~bas.data.formats.registry.DatasetFormat` (its name, options with defaults, splits and
check). Every module here is imported with the package, so adding a format is adding a module
(and its tests); ``bas data list`` then shows it. Paths read from annotation files go through
:func:`bas.data.paths.resolve_in_root`.
"""

from __future__ import annotations

import importlib
import pkgutil

from bas.data.formats.registry import (
    DatasetFormat,
    Option,
    available_splits,
    build_dataset,
    get_format,
    list_formats,
    register_format,
)


def _import_formats() -> None:
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_") and module.name != "registry":
            importlib.import_module(f"{__name__}.{module.name}")


_import_formats()

__all__ = [
    "DatasetFormat",
    "Option",
    "available_splits",
    "build_dataset",
    "get_format",
    "list_formats",
    "register_format",
]
