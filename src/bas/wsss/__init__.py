"""Weakly supervised semantic segmentation (WSSS).

The pipeline as steps, each with its own output folder (``docs/segmentation.md``):
:mod:`~bas.wsss.seeds` (per-pixel seeds of a multi-label model) -> :mod:`~bas.wsss.evaluate`
(their mIoU) -> :mod:`~bas.wsss.confident` and :mod:`~bas.wsss.crf` (confident labels) ->
:mod:`~bas.wsss.irn` and :mod:`~bas.wsss.random_walk` (IRN refinement, :mod:`~bas.wsss.refine`)
-> :mod:`~bas.wsss.segnet` (DeepLabV3 on the pseudo-masks); :mod:`~bas.wsss.demo` chains them on
synthetic data. Label masks are VOC palette PNGs (:mod:`~bas.wsss.masks`, re-exported here); the
segmentation metrics are in :mod:`bas.metrics`.
"""

from bas.wsss.masks import (
    IGNORE_INDEX,
    encode_label_png,
    read_label_png,
    voc_palette,
    write_label_png,
)

__all__ = ["IGNORE_INDEX", "encode_label_png", "read_label_png", "voc_palette", "write_label_png"]
