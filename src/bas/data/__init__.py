"""Datasets, transforms and batching for weakly supervised object localization.

See :mod:`bas.data.datasets` for the sample contract (image, label, boxes, mask, ignore, image_id,
orig_size), :mod:`bas.data.formats` for the dataset kinds (one module each, behind a registry) and
:mod:`bas.data.transforms` for the coordinate conventions.
"""

from bas.data.datasets import Record, WSOLDataset, check_dataset, collate
from bas.data.formats import DatasetFormat, available_splits, build_dataset, get_format, list_formats
from bas.data.formats.bas_list import BASListDataset
from bas.data.formats.cub import CUBDataset
from bas.data.formats.folder import ImageFolderDataset
from bas.data.formats.ilsvrc import ILSVRCTrainDataset, ILSVRCValDataset
from bas.data.formats.wsol import WSOLMetadataDataset
from bas.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_transform,
    denormalize,
    normalize_transform,
    ten_crop_transform,
    test_transform,
    train_transform,
)


def __getattr__(name: str):
    if name == "DATASET_KINDS":  # computed: formats register themselves
        return tuple(list_formats())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DATASET_KINDS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BASListDataset",
    "CUBDataset",
    "DatasetFormat",
    "ILSVRCTrainDataset",
    "ILSVRCValDataset",
    "ImageFolderDataset",
    "Record",
    "WSOLDataset",
    "WSOLMetadataDataset",
    "available_splits",
    "build_dataset",
    "build_transform",
    "check_dataset",
    "collate",
    "denormalize",
    "get_format",
    "list_formats",
    "normalize_transform",
    "ten_crop_transform",
    "test_transform",
    "train_transform",
]
