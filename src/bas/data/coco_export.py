"""A dataset's ground truth as a COCO-format annotation file (for ``COCOeval`` and detector trainers).

:func:`coco_ground_truth` turns any dataset of records (every format of :mod:`bas.data.formats`)
into the dict of a COCO ``instances`` file: ``images`` (``id`` from 1 in dataset order,
``file_name``, ``width``, ``height``), ``categories`` (``id`` = class index + 1, ``name``) and
``annotations`` (``bbox`` = ``[x, y, w, h]`` in image pixels from the ``[x0, y0, x1, y1]`` boxes,
``area`` = ``w * h``, ``iscrowd``). Its image ids and names are those of the pseudo-box file of
``bas evaluate --coco-json`` on the same split (:func:`coco_images`), so the two load into
``pycocotools`` side by side. A single-label dataset's boxes are all of the image's class; a
multi-object dataset (``voc07``) gives each box its own class. Objects flagged ``difficult`` are
written with ``iscrowd: 1`` (``COCOeval`` then neither rewards nor penalises a detection on them,
as VOC treats them) unless ``include_difficult``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from bas.data.datasets import image_size

__all__ = ["coco_file_name", "coco_ground_truth", "coco_images"]


def coco_file_name(path: str | Path, root: str | Path | None = None) -> str:
    """The ``file_name`` of an image: its path relative to ``root`` (``/`` separators), or the path
    as it is when ``root`` is None or does not hold it."""
    if root is None:
        return str(path)
    try:
        return Path(os.path.abspath(path)).relative_to(os.path.abspath(root)).as_posix()
    except ValueError:
        return str(path)


def coco_images(dataset: Any, root: str | Path | None = None) -> list[dict[str, Any]]:
    """The ``images`` entries of a dataset, ``id`` from 1 in dataset order; sizes as annotated, else
    read from the image files."""
    out = []
    for image_id, record in enumerate(dataset.records, start=1):
        width, height = record.size if record.size is not None else image_size(record.path)
        out.append(
            {
                "id": image_id,
                "file_name": coco_file_name(record.path, root),
                "width": int(width),
                "height": int(height),
            }
        )
    return out


def coco_ground_truth(
    dataset: Any, root: str | Path | None = None, *, include_difficult: bool | None = None
) -> dict[str, Any]:
    """The COCO-format ground truth of ``dataset`` (see the module doc); ``root`` as in
    :func:`coco_file_name`; ``include_difficult`` default: the dataset's own choice (False)."""
    if include_difficult is None:
        include_difficult = bool(getattr(dataset, "include_difficult", False))
    annotations = []
    for image_id, record in enumerate(dataset.records, start=1):
        boxes = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
        labels = getattr(record, "box_labels", None)
        labels = np.full(len(boxes), record.label) if labels is None else labels
        difficult = getattr(record, "difficult", None)
        difficult = np.zeros(len(boxes), bool) if difficult is None or include_difficult else difficult
        for (x0, y0, x1, y1), label, hard in zip(boxes, labels, difficult):
            w, h = float(x1 - x0), float(y1 - y0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(x0), float(y0), w, h],
                    "area": w * h,
                    "iscrowd": int(bool(hard)),
                }
            )
    categories = [{"id": k + 1, "name": str(name)} for k, name in enumerate(dataset.classes)]
    return {"images": coco_images(dataset, root), "annotations": annotations, "categories": categories}
