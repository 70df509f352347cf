"""VOC palette PNG label masks: round trip, palette, ignore value, other PNG kinds."""

import io

import numpy as np
import pytest
from PIL import Image

from bas.errors import DataError
from bas.wsss import IGNORE_INDEX, encode_label_png, read_label_png, voc_palette, write_label_png


def _mask() -> np.ndarray:
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 21, (23, 31)).astype(np.uint8)
    mask[0] = IGNORE_INDEX
    mask[:, -1] = IGNORE_INDEX
    return mask


def test_voc_palette_known_colours():
    pal = voc_palette()
    assert pal.shape == (256, 3) and pal.dtype == np.uint8
    # background, aeroplane, bicycle, person (15), tvmonitor (20), ignore (255)
    assert pal[[0, 1, 2, 15, 20, 255]].tolist() == [
        [0, 0, 0],
        [128, 0, 0],
        [0, 128, 0],
        [192, 128, 128],
        [0, 64, 128],
        [224, 224, 192],
    ]
    assert len({tuple(c) for c in pal.tolist()}) == 256
    pal[0] = 1  # a copy: the module's palette is not changed
    assert voc_palette()[0].tolist() == [0, 0, 0]


def test_round_trip_keeps_indices_palette_and_ignore(tmp_path):
    mask = _mask()
    path = tmp_path / "sub" / "m.png"
    write_label_png(path, mask)
    back = read_label_png(path)
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, mask)
    assert (back == IGNORE_INDEX).sum() == (mask == IGNORE_INDEX).sum() > 0
    with Image.open(path) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 256 * 3], dtype=np.uint8).reshape(256, 3)
        np.testing.assert_array_equal(palette, voc_palette())
        # Rendered through its palette, the file shows the VOC colours.
        np.testing.assert_array_equal(np.asarray(image.convert("RGB")), voc_palette()[mask])
    assert list(tmp_path.rglob(".*")) == []  # no temporary file left behind
    assert encode_label_png(mask) == path.read_bytes()  # deterministic bytes


def test_reads_grayscale_and_rgb_renderings(tmp_path):
    mask = _mask()
    Image.fromarray(mask, "L").save(tmp_path / "aug.png")  # SBD SegmentationClassAug style
    np.testing.assert_array_equal(read_label_png(tmp_path / "aug.png"), mask)
    Image.fromarray(voc_palette()[mask], "RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "rgb.png"), mask)


def test_bad_files_and_arrays(tmp_path):
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[2, 3] = (1, 2, 3)
    Image.fromarray(rgb, "RGB").save(tmp_path / "odd.png")
    with pytest.raises(DataError, match=r"odd\.png: pixel \(3, 2\) has colour \(1, 2, 3\)"):
        read_label_png(tmp_path / "odd.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"broken\.png: cannot read the label mask"):
        read_label_png(tmp_path / "broken.png")
    Image.new("I;16", (3, 3)).save(tmp_path / "deep.png")
    with pytest.raises(DataError, match="mode"):
        read_label_png(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="shape"):
        encode_label_png(np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="0..255"):
        encode_label_png(np.full((2, 2), 300))
    np.testing.assert_array_equal(read_label_png(io.BytesIO(encode_label_png(np.full((2, 2), 7)))), 7)
