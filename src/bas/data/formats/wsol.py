"""The standard WSOL metadata of Choe et al. (``wsol``; the files are read by :mod:`bas.data.metadata`).

``root`` is the image root; option ``metadata`` is the folder with ``<split>/`` sub-folders
(e.g. ``metadata/CUB``) or one split folder itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bas.data.datasets import SPLITS, Record, WSOLDataset
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.metadata import load_metadata
from bas.data.parsing import NO_BOXES, Problems, classes_from_ids
from bas.errors import ConfigError, DataError


class WSOLMetadataDataset(WSOLDataset):
    """The standard WSOL metadata of Choe et al. (``metadata/<CUB|ILSVRC|OpenImages>/<split>/``).

    Images are ``image_root/<image_id>``. Boxes come from ``localization.txt``; for OpenImages the
    mask PNGs of an image are OR-ed into one foreground mask and its ignore PNG gives the ignore
    region. Mask paths are resolved as wsolevaluation does, under ``<mask_root>/OpenImages/`` if that
    folder exists, else under ``mask_root`` itself; ``mask_root`` defaults to ``image_root``.
    ``num_classes`` defaults to the largest label + 1.
    """

    def __init__(
        self,
        metadata_dir: str | Path,
        image_root: str | Path,
        transform: Callable | None = None,
        mask_root: str | Path | None = None,
        num_classes: int | None = None,
        problems: list[DataError] | None = None,
    ):
        self.metadata_dir = metadata_dir = Path(metadata_dir)
        self.image_root = image_root = Path(image_root)
        meta = load_metadata(metadata_dir)
        mask_base = Path(mask_root) if mask_root is not None else image_root
        if (mask_base / "OpenImages").is_dir():
            mask_base = mask_base / "OpenImages"
        loc = str(metadata_dir / "localization.txt")
        ids_file = metadata_dir / "image_ids.txt"
        report = Problems(problems)
        records = []
        for image_id in meta.image_ids:
            boxes = np.asarray(meta.boxes.get(image_id, NO_BOXES), dtype=np.float32).reshape(-1, 4)
            entries = meta.masks.get(image_id, [])
            line = meta.loc_lines.get(image_id)
            masks = tuple(report.resolve(mask_base, m, loc, line) for m, _ in entries)
            ignore = next((report.resolve(mask_base, i, loc, line) for _, i in entries if i), None)
            path = report.resolve(image_root, image_id, ids_file, meta.lines.get(image_id))
            if path is None or None in masks or (ignore is None and any(i for _, i in entries)):
                continue
            size = meta.sizes.get(image_id)
            records.append(
                Record(
                    image_id,
                    path,
                    int(meta.labels[image_id]),
                    boxes,
                    masks=masks,  # type: ignore[arg-type]
                    ignore=ignore,
                    size=None if size is None else (int(size[0]), int(size[1])),
                    where=(loc, line),
                )
            )
        if num_classes is None:
            num_classes = max((r.label for r in records), default=-1) + 1
        for r in records:
            if not 0 <= r.label < num_classes:
                report.report(
                    f"{r.image_id}: label {r.label} outside 0..{num_classes - 1}",
                    metadata_dir / "class_labels.txt",
                    meta.label_lines.get(r.image_id),
                )
        super().__init__(
            [r for r in records if 0 <= r.label < num_classes],
            classes_from_ids(records, num_classes),
            transform,
        )


def _split_dir(metadata: Path, split: str) -> Path:
    return metadata if (metadata / "image_ids.txt").is_file() else metadata / split


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, *, metadata, **options
) -> WSOLMetadataDataset:
    if metadata is None:
        raise ConfigError("the 'wsol' dataset needs the option metadata=<metadata/DATASET folder>")
    return WSOLMetadataDataset(
        _split_dir(Path(metadata), split), root, transform, problems=problems, **options
    )


def splits(root: Path, *, metadata, **options) -> list[str]:
    metadata = Path(metadata or root)
    if (metadata / "image_ids.txt").is_file():
        return [metadata.name]
    return [s for s in SPLITS if (metadata / s).is_dir()]


FORMAT = register_format(
    DatasetFormat(
        name="wsol",
        summary="standard WSOL metadata (image_ids.txt, class_labels.txt, localization.txt, ...)",
        build=build,
        splits=splits,
        options={
            "metadata": Option(None, "metadata folder, e.g. metadata/CUB (required)"),
            "mask_root": Option(None, "root of the OpenImages mask PNGs (default: the image root)"),
            "num_classes": Option(None, "number of classes (default: largest label + 1)", int),
        },
    )
)
