"""Weakly supervised semantic segmentation (WSSS).

So far: label masks as VOC palette PNGs. ``docs/segmentation.md`` describes the method and what
exists; the segmentation metrics are in :mod:`bas.metrics`.
"""

from bas.wsss.masks import (
    IGNORE_INDEX,
    encode_label_png,
    read_label_png,
    voc_palette,
    write_label_png,
)

__all__ = ["IGNORE_INDEX", "encode_label_png", "read_label_png", "voc_palette", "write_label_png"]
