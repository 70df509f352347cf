"""Datasets, transforms and batching for weakly supervised object localization.

See :mod:`bas.data.datasets` for the sample contract (image, label, boxes, mask, ignore, image_id,
orig_size) and :mod:`bas.data.transforms` for the coordinate conventions.
"""

from bas._lazy import attach

# Imported on first use (PEP 562): bas.data.metadata, used by `bas evaluate-maps`, needs no torch.
_LAZY = {
    **dict.fromkeys(
        (
            "DATASET_KINDS",
            "BASListDataset",
            "CUBDataset",
            "ILSVRCTrainDataset",
            "ILSVRCValDataset",
            "ImageFolderDataset",
            "Record",
            "WSOLDataset",
            "WSOLMetadataDataset",
            "available_splits",
            "build_dataset",
            "check_dataset",
            "collate",
        ),
        "bas.data.datasets",
    ),
    **dict.fromkeys(
        (
            "IMAGENET_MEAN",
            "IMAGENET_STD",
            "build_transform",
            "denormalize",
            "normalize_transform",
            "ten_crop_transform",
            "test_transform",
            "train_transform",
        ),
        "bas.data.transforms",
    ),
}
__all__ = sorted(_LAZY)
__getattr__, __dir__ = attach(__name__, _LAZY, globals())
