"""Label masks as PASCAL VOC palette PNGs.

A label mask is an ``(H, W)`` uint8 array of class indices: 0 is the background, ``1..K`` the
classes and :data:`IGNORE_INDEX` (255) the pixels that count for nothing (VOC marks object
borders and ambiguous regions this way). VOC stores such masks as 8-bit palette ("P") PNGs whose
pixel values are the indices and whose palette is the VOC colour map, so that an image viewer
shows them in colour; SBD's ``SegmentationClassAug`` stores the same indices as grayscale ("L")
PNGs. :func:`read_label_png` reads both (and RGB renderings in the VOC colours);
:func:`write_label_png` writes the VOC kind.
"""

from __future__ import annotations

import functools
import io
import os

import numpy as np
from PIL import Image

from bas.errors import DataError
from bas.io import atomic_open, decoded_image

__all__ = ["IGNORE_INDEX", "encode_label_png", "read_label_png", "voc_palette", "write_label_png"]

#: Label of the pixels that are neither counted as right nor as wrong.
IGNORE_INDEX = 255


@functools.lru_cache(maxsize=1)
def _palette() -> np.ndarray:
    index = np.arange(256)
    rgb = np.zeros((256, 3), dtype=np.int64)
    for shift in range(8):  # bit 3j + c of the index goes to bit 7 - j of channel c
        for c in range(3):
            rgb[:, c] |= ((index >> (3 * shift + c)) & 1) << (7 - shift)
    rgb = rgb.astype(np.uint8)
    rgb.setflags(write=False)
    return rgb


def voc_palette() -> np.ndarray:
    """The VOC colour map, ``(256, 3)`` uint8: 0 black, 1 (128, 0, 0), ..., 255 (224, 224, 192)."""
    return _palette().copy()


def _as_label(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a label mask must have shape (H, W), got {mask.shape}")
    if mask.dtype != np.uint8:
        if mask.size and (mask.min() < 0 or mask.max() > 255):
            raise ValueError("label mask values must be in 0..255")
        mask = mask.astype(np.uint8)
    return mask


def encode_label_png(mask: np.ndarray) -> bytes:
    """The bytes of ``mask`` (``(H, W)`` class indices) as a VOC palette PNG."""
    image = Image.fromarray(_as_label(mask), "P")
    image.putpalette(_palette().tobytes())
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def write_label_png(path: str | os.PathLike, mask: np.ndarray) -> None:
    """Write ``mask`` to ``path`` as a VOC palette PNG, atomically."""
    data = encode_label_png(mask)
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def read_label_png(path: str | os.PathLike) -> np.ndarray:
    """Read a label mask: ``(H, W)`` uint8 class indices.

    Palette and grayscale PNGs give their pixel values as they are (the palette is not
    consulted); an RGB image is mapped back through the VOC colour map and must use its colours.
    """
    with decoded_image(path, "the label mask") as image:  # truncated files and bombs are DataErrors
        mode, pixels = image.mode, np.asarray(image)
    if mode in ("P", "L"):
        return pixels.astype(np.uint8, copy=True)
    if mode == "RGB":
        return _from_colors(pixels, path)
    raise DataError(f"a label mask must be a palette, grayscale or RGB image, got mode {mode}", path)


def _rgb_code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _from_colors(rgb: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    keys = _rgb_code(_palette())
    order = np.argsort(keys)
    pixels = _rgb_code(rgb)
    pos = np.clip(np.searchsorted(keys[order], pixels), 0, 255)
    found = keys[order][pos] == pixels
    if not found.all():
        y, x = np.argwhere(~found)[0]
        raise DataError(
            f"pixel ({x}, {y}) has colour {tuple(int(v) for v in rgb[y, x])}, not a VOC colour", path
        )
    return order[pos].astype(np.uint8)
