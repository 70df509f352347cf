"""Tests of bas.io: the image reader (every colour mode a photo can have, EXIF orientation, truncated
files, decompression bombs, arbitrary bytes), the strict JSON writer, file modes, orphan temporary
files and interrupted writes. Every image is made here with PIL, numpy or OpenCV."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from bas.errors import DataError
from bas.io import (
    atomic_open,
    atomic_path,
    decode_images,
    read_image,
    remove_orphan_temp_files,
    to_json,
    write_json,
)


def pixels(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image).astype(int)


# ----------------------------------------------------------------------------- colour modes


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 30000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # PIL keeps the 16 bits
    rgb = pixels(read_image(tmp_path / "g16.png"))
    assert rgb[0, :, 0].tolist() == [0, 1, 117, 128, 255]  # v * 255 / 65535, rounded
    assert (rgb == rgb[..., :1]).all()  # grey
    assert np.asarray(read_image(tmp_path / "g16.png", "L"))[0].tolist() == [0, 1, 117, 128, 255]


def test_16_bit_colour_png(tmp_path):
    rgb16 = np.zeros((2, 3, 3), dtype=np.uint16)
    rgb16[..., 0], rgb16[..., 1], rgb16[..., 2] = 65535, 32896, 1000  # R, G, B
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[..., ::-1])  # OpenCV writes BGR
    rgb = pixels(read_image(tmp_path / "c16.png"))
    assert np.abs(rgb - np.array([255, 128, 4])).max() <= 1


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    index = np.array([[0, 1, 2]], dtype=np.uint8)
    image = Image.fromarray(index, "P")
    image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 0] + [0] * (253 * 3))
    image.save(tmp_path / "p.png", transparency=2)  # palette entry 2 (black) is transparent
    assert pixels(read_image(tmp_path / "p.png"))[0].tolist() == [[255, 0, 0], [0, 255, 0], [255, 255, 255]]
    image.save(tmp_path / "opaque.png")
    assert pixels(read_image(tmp_path / "opaque.png"))[0, 2].tolist() == [0, 0, 0]


def test_grey_alpha_and_rgba_are_composited_on_white(tmp_path):
    la = np.array([[[0, 255], [0, 0], [0, 128], [200, 255]]], dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    grey = pixels(read_image(tmp_path / "la.png"))[0, :, 0].tolist()
    assert grey[0] == 0 and grey[1] == 255 and abs(grey[2] - 127) <= 1 and grey[3] == 200
    rgba = np.array([[[10, 20, 30, 255], [10, 20, 30, 0]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert pixels(read_image(tmp_path / "rgba.png"))[0].tolist() == [[10, 20, 30], [255, 255, 255]]


def test_cmyk_jpeg(tmp_path):
    cmyk = np.zeros((16, 32, 4), dtype=np.uint8)
    cmyk[:, 16:, 1:3] = 255  # right half: full magenta and yellow = red
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    rgb = pixels(read_image(tmp_path / "cmyk.jpg"))
    assert np.abs(rgb[8, 4] - [255, 255, 255]).max() <= 8  # no ink: white
    assert np.abs(rgb[8, 28] - [255, 0, 0]).max() <= 8


def test_one_bit_and_grey(tmp_path):
    Image.fromarray(np.array([[0, 255]], dtype=np.uint8)).convert("1").save(tmp_path / "b.png")
    assert pixels(read_image(tmp_path / "b.png"))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), dtype=np.uint8)  # 40 wide, 20 high as stored
    stored[:8, :8] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: the viewer turns the image 90 degrees clockwise
    Image.fromarray(stored).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = read_image(tmp_path / "rotated.jpg")
    assert image.size == (20, 40)
    rgb = pixels(image)
    assert np.abs(rgb[3, 16] - [255, 0, 0]).max() <= 30  # now at the top-right
    assert rgb[3, 3].max() <= 30


# ----------------------------------------------------------------------------- bad files


def jpeg_bytes(h: int = 64, w: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("load_truncated", [False, True])
def test_truncated_jpeg_is_an_error_whatever_pil_is_told(tmp_path, monkeypatch, load_truncated):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", load_truncated)
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes()[:-200])
    with pytest.raises(DataError, match="cut.jpg: cannot read image .*truncated"):
        read_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is load_truncated  # the flag is put back


def test_decompression_bomb_is_a_data_error(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((30, 30), dtype=np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 900 pixels > 2 x the limit
    with pytest.raises(DataError, match="bomb.png: image refused as a possible decompression bomb"):
        read_image(tmp_path / "bomb.png")


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "image not found"), (b"hello", "not a recognised image file"), (b"", "not a recognised")],
)
def test_missing_and_non_image_files(tmp_path, content, message):
    path = tmp_path / "x.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=f"x.png: .*{message}"):
        read_image(path)
    with pytest.raises(DataError, match="mask"):
        read_image(path, "L", what="mask")


def test_decode_images_keeps_order_and_collects_errors(tmp_path):
    Image.new("RGB", (5, 3)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_bytes(jpeg_bytes()[:300])
    Image.new("L", (2, 7)).save(tmp_path / "c.png")
    seen = []
    out = decode_images([tmp_path / n for n in ("a.png", "b.jpg", "c.png")], workers=2, progress=seen.append)
    assert out[0] == (5, 3) and out[2] == (2, 7)
    assert isinstance(out[1], DataError) and "b.jpg" in str(out[1])
    assert seen == [1, 2, 3]


def _prefix_of_a_real_file():
    png = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(png, "PNG")
    files = [png.getvalue(), jpeg_bytes(16, 16)]
    return st.tuples(st.sampled_from(files), st.integers(0, 2000), st.binary(max_size=64)).map(
        lambda t: t[0][: t[1]] + t[2]
    )


@settings(max_examples=80, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=256), _prefix_of_a_real_file()))
def test_arbitrary_bytes_give_an_rgb_image_or_a_data_error(tmp_path, content):
    path = tmp_path / "fuzz.img"
    path.write_bytes(content)
    try:
        image = read_image(path)
    except DataError as exc:
        assert "fuzz.img" in str(exc) and "\n" not in str(exc)
    else:
        assert image.mode == "RGB" and min(image.size) >= 1
        np.asarray(image)  # fully decoded


# ----------------------------------------------------------------------------- JSON


def test_json_has_no_nan_and_flags_the_keys():
    record = {
        "score": float("nan"),
        "top5": [1.0, float("inf")],
        "metrics": {"loss": np.float32("-inf"), "acc": np.float64(0.5)},
        "box": (1, 2),
        "ok": True,
    }
    text = to_json(record)

    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    data = json.loads(text, parse_constant=refuse)
    assert data == {
        "score": None,
        "top5": [1.0, None],
        "metrics": {"loss": None, "acc": 0.5},
        "box": [1, 2],
        "ok": True,
        "nonfinite": ["score", "top5.1", "metrics.loss"],
    }
    assert "nonfinite" not in json.loads(to_json({"a": 1.0}))
    assert json.loads(to_json([float("nan")])) == [None]
    with pytest.raises(TypeError):
        to_json({"a": object()})


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=1000)
@given(data=st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=4))
def test_to_json_is_always_strict_json(data):
    def refuse(name):
        raise AssertionError(f"{name} in the JSON")

    def nonfinite(value):
        if isinstance(value, float):
            return 0 if math.isfinite(value) else 1
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
        return sum(nonfinite(v) for v in items)

    assume("nonfinite" not in data)
    back = json.loads(to_json(data), parse_constant=refuse)
    assert len(back.pop("nonfinite", [])) == nonfinite(data)  # one entry per value made null


def test_write_json_is_strict(tmp_path):
    write_json(tmp_path / "m.json", {"x": float("nan")})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": None, "nonfinite": ["x"]}


# ----------------------------------------------------------------------------- file modes and temporary files


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_follow_the_umask(tmp_path, umask):
    from bas.checkpoints import save_model
    from bas.models import build_model

    old = os.umask(umask)
    try:
        with atomic_open(tmp_path / "a.txt") as fh:
            fh.write("x")
        with atomic_path(tmp_path / "b.bin") as tmp:
            tmp.write_bytes(b"x")
        if umask == 0o077:
            save_model(tmp_path / "m.safetensors", build_model("mobilenet_v1", 2, hidden=8))
    finally:
        os.umask(old)
    for path in tmp_path.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_orphan_temp_files_are_removed_by_the_next_write_into_the_folder(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    orphan = tmp_path / f".model.safetensors.bas-{dead}-abc123xy.tmp.safetensors"
    mine = tmp_path / f".other.json.bas-{alive}-zzz999qq.tmp"
    unrelated = tmp_path / ".notes.tmp"
    for path in (orphan, mine, unrelated):
        path.write_bytes(b"partial")
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert not orphan.exists()
    assert mine.exists() and unrelated.exists()  # a running writer's file and other files stay
    assert remove_orphan_temp_files(tmp_path) == []


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path):
    path = tmp_path / "state.bin"
    path.write_bytes(b"previous")
    with pytest.raises(OSError) as info, atomic_open(path, "wb") as fh:
        fh.write(b"new")
        raise OSError(28, "No space left on device")
    assert info.value.filename == str(path)  # names the file asked for, not the temporary one
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def test_sigint_during_a_write_is_a_keyboard_interrupt_and_keeps_the_previous_file(tmp_path):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT has a handler of the test runner")
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous")
    with pytest.raises(KeyboardInterrupt), atomic_open(path, "wb") as fh:
        fh.write(b"new")
        try:
            signal.raise_signal(signal.SIGINT)  # Ctrl-C while a library writes
        except KeyboardInterrupt:
            raise RuntimeError("the writer failed") from None  # what torch's zip writer makes of it
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_sigint_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    with atomic_open(tmp_path / "x.txt") as fh:
        fh.write("x")
        if before is signal.default_int_handler:
            assert signal.getsignal(signal.SIGINT) is not before  # noting interrupts while writing
    assert signal.getsignal(signal.SIGINT) is before
