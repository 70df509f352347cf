"""Datasets, transforms and batching for weakly supervised object localization.

See :mod:`bas.data.datasets` for the sample contract (image, label, boxes, mask, ignore, image_id,
orig_size), :mod:`bas.data.formats` for the dataset kinds (one module each, behind a registry) and
:mod:`bas.data.transforms` for the coordinate conventions.

The names below are imported on first use, so that the torch-free parts (``bas.data.metadata``,
``bas.data.paths``) can be used without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Record": "datasets",
    "WSOLDataset": "datasets",
    "check_dataset": "datasets",
    "collate": "datasets",
    "DatasetFormat": "formats",
    "available_splits": "formats",
    "build_dataset": "formats",
    "get_format": "formats",
    "list_formats": "formats",
    "BASListDataset": "formats.bas_list",
    "CUBDataset": "formats.cub",
    "ImageFolderDataset": "formats.folder",
    "ILSVRCTrainDataset": "formats.ilsvrc",
    "ILSVRCValDataset": "formats.ilsvrc",
    "WSOLMetadataDataset": "formats.wsol",
    "IMAGENET_MEAN": "transforms",
    "IMAGENET_STD": "transforms",
    "build_transform": "transforms",
    "denormalize": "transforms",
    "normalize_transform": "transforms",
    "ten_crop_transform": "transforms",
    "test_transform": "transforms",
    "train_transform": "transforms",
}


def __getattr__(name: str) -> Any:
    if name == "DATASET_KINDS":  # computed: formats register themselves
        return tuple(importlib.import_module("bas.data.formats").list_formats())
    if name in _EXPORTS:
        importlib.import_module("bas.data.formats")  # every format registered before any is used
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS, "DATASET_KINDS"])


__all__ = ["DATASET_KINDS", *sorted(_EXPORTS)]  # noqa: PLE0604
