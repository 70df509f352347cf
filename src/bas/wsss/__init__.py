"""Weakly supervised semantic segmentation (WSSS): label masks, seeds and their evaluation.

See ``docs/segmentation.md`` for the method and for what exists so far.
"""

from bas.wsss.masks import (
    IGNORE_INDEX,
    encode_label_png,
    read_label_png,
    voc_palette,
    write_label_png,
)

__all__ = ["IGNORE_INDEX", "encode_label_png", "read_label_png", "voc_palette", "write_label_png"]
