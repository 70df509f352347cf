"""Tests of bas.Localizer and ``bas predict``.

The coordinate tests do not trust the code under test for the expected values: a stub model with a
known map, whose original-image box is worked out by hand (docs/method.md §5 geometry, docs/inference.md),
and a model that echoes its input, so the predicted box must land on a rectangle drawn in the image.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.models import BASOutput
from bas.predict import Localizer, map_to_original

CLASSES = ["cat", "dog", "owl"]


class BlobModel(nn.Module):
    """Returns a fixed (C, C) foreground map: 1 on rows [y0, y1) x columns [x0, x1), 0 elsewhere."""

    def __init__(self, side: int, x0: int, y0: int, x1: int, y1: int):
        super().__init__()
        blob = torch.zeros(1, 1, side, side)
        blob[..., y0:y1, x0:x1] = 1.0
        self.register_buffer("blob", blob)
        self.calls = 0

    def forward(self, images, labels=None, top_k=1):
        self.calls += 1
        b = images.shape[0]
        logits = torch.tensor([[0.0, 2.0, 1.0]]).expand(b, -1)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=self.blob.expand(b, -1, -1, -1))


class EchoModel(nn.Module):
    """The foreground map is the input's channel mean: bright pixels are foreground."""

    def forward(self, images, labels=None, top_k=1):
        logits = torch.zeros(images.shape[0], 3)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=images.mean(dim=1, keepdim=True))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(
        path,
        bas.build_model("resnet18", 3, hidden=32),
        class_names=CLASSES,
        threshold=0.3,
        top_k=2,
        input_size=64,
        resize_size=72,
    )
    return path


def random_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------- coordinate mapping


def test_crop_mode_maps_the_blob_back_through_the_resize_and_crop():
    # Map blob in the 224 crop: x [50, 100), y [40, 80). The crop sits at offset (256 - 224) / 2 = 16 in
    # the 256 x 256 resized image, so the blob is x [66, 116), y [56, 96) there. The original image is
    # 512 x 768 (W x H): x scales by 512 / 256 = 2, y by 768 / 256 = 3. A bilinear upscale by an integer
    # factor s of a 0/1 step, thresholded at 0.5, moves the edge a -> a * s exactly.
    localizer = Localizer(
        BlobModel(224, 50, 40, 100, 80),
        input_size=224,
        resize_size=256,
        class_names=CLASSES,
        threshold=0.5,
        device="cpu",
    )
    (pred,) = localizer.predict(np.zeros((768, 512, 3), np.uint8))
    assert pred.box == (132, 168, 232, 288)
    assert pred.map.shape == (768, 512) and pred.map.dtype == np.float32
    assert pred.mask.dtype == bool and pred.mask.shape == (768, 512)
    ys, xs = np.nonzero(pred.mask)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == pred.box
    # outside the crop (x < 16 * 2, y < 16 * 3, x >= 240 * 2, y >= 240 * 3) the network saw nothing: 0
    assert pred.map[:, :32].max() == 0 and pred.map[:48].max() == 0
    assert pred.map[:, 481:].max() == 0 and pred.map[721:].max() == 0
    assert pred.label == 1 and pred.class_name == "dog"
    assert pred.score == pytest.approx(float(torch.tensor([0.0, 2.0, 1.0]).softmax(0)[1]))
    assert [t[0] for t in pred.top5] == [1, 2, 0]


def test_no_crop_mode_scales_by_the_image_size_over_the_input_size():
    # No crop: the 224 map covers the whole 448 x 672 image: x scales by 2, y by 3.
    localizer = Localizer(BlobModel(224, 50, 40, 100, 80), input_size=224, threshold=0.5, device="cpu")
    (pred,) = localizer.predict(np.zeros((672, 448, 3), np.uint8), crop=False)
    assert pred.box == (100, 120, 200, 240)
    assert pred.map.shape == (672, 448)


def test_map_to_original_handles_an_odd_crop_margin():
    # R - C = 3: torchvision's CenterCrop puts the crop at round(1.5) = 2.
    crop_map = torch.zeros(4, 4)
    crop_map[0, 0] = 1.0
    frame = map_to_original(crop_map, (7, 7), crop=True, resize_size=7)
    assert frame.shape == (7, 7)
    assert frame[2, 2] == 1.0 and frame.sum() == 1.0


def test_box_lands_on_a_rectangle_drawn_in_the_image():
    """End to end through the real preprocessing: the map is the image itself."""
    image = np.zeros((200, 300, 3), np.uint8)
    image[50:150, 90:210] = 255  # x [90, 210), y [50, 150)
    localizer = Localizer(EchoModel(), input_size=224, resize_size=256, threshold=0.5, device="cpu")
    for crop in (True, False):
        (pred,) = localizer.predict(Image.fromarray(image), crop=crop)
        assert np.allclose(pred.box, (90, 50, 210, 150), atol=2), (crop, pred.box)
        assert abs(int(pred.mask.sum()) - 120 * 100) < 0.05 * 120 * 100


# ----------------------------------------------------------------------------- API behaviour


def test_from_checkpoint_takes_the_checkpoint_defaults(checkpoint):
    localizer = Localizer.from_checkpoint(checkpoint, device="cpu")
    assert (localizer.threshold, localizer.top_k) == (0.3, 2)
    assert (localizer.input_size, localizer.resize_size) == (64, 72)
    (pred,) = localizer.predict(random_image(50, 70))
    assert (pred.threshold, pred.top_k, pred.crop) == (0.3, 2, True)
    assert pred.class_name == CLASSES[pred.label]
    assert len(pred.top5) == 3 and sum(p for _, _, p in pred.top5) == pytest.approx(1.0, abs=1e-5)
    assert [p for _, _, p in pred.top5] == sorted((p for _, _, p in pred.top5), reverse=True)
    assert pred.top5[0] == (pred.label, pred.class_name, pred.score)
    assert pred.image_size == (70, 50)
    x0, y0, x1, y1 = pred.box
    assert 0 <= x0 < x1 <= 70 and 0 <= y0 < y1 <= 50


def test_every_input_type_gives_the_same_prediction(checkpoint, tmp_path):
    localizer = Localizer.from_checkpoint(checkpoint, device="cpu")
    array = random_image(60, 80, seed=1)
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    inputs = [array, Image.fromarray(array), path, str(path), torch.from_numpy(array).permute(2, 0, 1)]
    preds = localizer.predict(inputs)
    for pred in preds[1:]:
        assert pred.label == preds[0].label and pred.box == preds[0].box
        np.testing.assert_array_equal(pred.map, preds[0].map)
    (as_float,) = localizer.predict(torch.from_numpy(array).permute(2, 0, 1).float() / 255)
    assert as_float.label == preds[0].label
    assert np.abs(as_float.map - preds[0].map).max() < 0.05


def test_batches_run_one_forward_each_and_match_single_images(checkpoint):
    localizer = Localizer.from_checkpoint(checkpoint, device="cpu")
    calls = []
    localizer.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    images = [random_image(40 + 7 * i, 64 + 5 * i, seed=i) for i in range(5)]
    batched = localizer.predict(images, batch_size=2)
    assert calls == [2, 2, 1]
    single = [localizer.predict(im, batch_size=1)[0] for im in images]
    for a, b in zip(batched, single):
        assert a.label == b.label and a.box == b.box
        np.testing.assert_allclose(a.map, b.map, atol=1e-5)
        assert a.map.shape == b.map.shape == a.mask.shape
    # a (B, 3, H, W) tensor is a batch
    stacked = torch.stack([torch.from_numpy(images[0]).permute(2, 0, 1)] * 3)
    assert len(localizer.predict(stacked)) == 3


def test_bad_inputs_are_refused(checkpoint, tmp_path):
    localizer = Localizer.from_checkpoint(checkpoint, device="cpu")
    with pytest.raises(ValueError, match="must be"):
        localizer.predict(np.zeros((10, 10, 4), np.uint8))
    with pytest.raises(TypeError):
        localizer.predict([3.5])
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(bas.errors.DataError, match="bad.jpg"):
        localizer.predict(bad)


# ----------------------------------------------------------------------------- command line


def test_cli_predict_writes_jsonl_and_overlays_and_reports_unreadable_files(checkpoint, tmp_path, capsys):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(random_image(50, 60, 1)).save(images / "a.png")
    Image.fromarray(random_image(70, 40, 2)).save(images / "sub" / "b.jpg")
    (images / "sub" / "broken.jpg").write_bytes(b"\x00garbage")
    (images / "notes.txt").write_text("not an image, not picked up from a folder")
    extra = tmp_path / "extra"
    extra.mkdir()
    Image.fromarray(random_image(64, 64, 3)).save(extra / "a.png")  # same name as images/a.png
    out = tmp_path / "out"

    code = main(
        [
            "predict",
            str(images),
            str(extra / "*.png"),
            str(tmp_path / "missing.png"),
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(out),
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "missing.png" in err and "skipped 2 input(s)" in err

    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["path"] for r in lines] == [
        str(images / "a.png"),
        str(images / "sub" / "b.jpg"),
        str(extra / "a.png"),
    ]
    for record in lines:
        assert {"path", "label", "class_name", "score", "top5", "box"} <= set(record)
        assert record["class_name"] == CLASSES[record["label"]]
        assert (out / record["overlay"]).is_file()
    assert sorted(r["overlay"] for r in lines) == ["overlays/a-1.png", "overlays/a.png", "overlays/sub/b.png"]
    # the command's boxes are the API's, in original pixels
    (expected,) = Localizer.from_checkpoint(checkpoint, device="cpu").predict(images / "sub" / "b.jpg")
    assert lines[1]["box"] == list(expected.box) and lines[1]["image_size"] == [40, 70]
    with Image.open(out / lines[0]["overlay"]) as im:  # the photo's own resolution (W, H)
        assert im.format == "PNG" and im.size == (60, 50)
    assert not (out / "masks").exists() and not (out / "maps").exists()

    code = main(
        [
            "predict",
            str(images / "a.png"),
            "--checkpoint",
            str(checkpoint),
            "--output",
            str(tmp_path / "o2"),
            "--no-crop",
            "--top-k",
            "1",
            "--threshold",
            "0.6",
            "--no-progress",
        ]
    )
    assert code == 0
    (record,) = [
        json.loads(line) for line in (tmp_path / "o2" / "predictions.jsonl").read_text().splitlines()
    ]
    assert (record["crop"], record["top_k"], record["threshold"]) == (False, 1, 0.6)


def test_cli_predict_without_any_image_is_an_error(checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "predict",
                str(tmp_path / "nothing*.jpg"),
                "--checkpoint",
                str(checkpoint),
                "--output",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "error: no image found" in capsys.readouterr().err


def test_cli_predict_saves_heatmaps_masks_and_raw_maps_at_the_photo_size(checkpoint, tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    Image.fromarray(random_image(45, 70, 4)).save(images / "sub" / "c.png")
    out = tmp_path / "out"
    args = ["predict", str(images), "--checkpoint", str(checkpoint), "--output", str(out)]
    assert main([*args, "--save-maps", "--save-masks", "--no-progress", "--device", "cpu"]) == 0
    (record,) = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert record["heatmap"] == "heatmaps/sub/c.png" and record["mask"] == "masks/sub/c.png"
    assert record["map"] == "maps/sub/c.npy" and record["overlay"] == "overlays/sub/c.png"
    (expected,) = Localizer.from_checkpoint(checkpoint, device="cpu").predict(images / "sub" / "c.png")
    raw = np.load(out / record["map"])
    assert raw.dtype == np.float16 and raw.shape == (45, 70)
    np.testing.assert_allclose(raw, expected.map, atol=1e-3)
    with Image.open(out / record["mask"]) as im:
        mask = np.asarray(im)
    assert mask.shape == (45, 70) and set(np.unique(mask)) <= {0, 255}
    np.testing.assert_array_equal(mask == 255, expected.mask)
    with Image.open(out / record["heatmap"]) as im:
        assert im.mode == "RGB" and im.size == (70, 45)
        heat = np.asarray(im)
    assert heat.std() > 0  # colour-mapped, not blank
    with Image.open(out / record["overlay"]) as im:
        assert im.size == (70, 45)


def test_overlay_is_drawn_at_the_photo_resolution(tmp_path):
    from bas.visualize import save_overlay

    image = np.full((173, 301, 3), 128, np.uint8)
    heat = np.zeros((173, 301), np.float32)
    path = save_overlay(tmp_path / "o.png", image, heat, pred_boxes=[(40, 30, 200, 120)], pred_label="x")
    with Image.open(path) as im:
        assert im.size == (301, 173)
        pixels = np.asarray(im.convert("RGB")).astype(int)
    # the box's right edge (x1 exclusive: column 199) is red; the middle of the box is not
    assert pixels[80, 199, 0] > 200 and pixels[80, 199, 1] < 60
    assert abs(pixels[80, 120] - pixels[160, 280]).max() < 5


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/etc/x", "C:/x", "", "a\\..\\..\\b"])
def test_output_names_must_stay_inside_the_folder(tmp_path, name):
    from bas.evaluate_maps import write_score_maps
    from bas.io import path_inside

    with pytest.raises(bas.errors.BASError, match="inside the folder"):
        path_inside(tmp_path, name, ".png")
    with pytest.raises(bas.errors.BASError):
        write_score_maps(tmp_path / "maps", [name], np.zeros((1, 4, 4), np.float32))
    assert not (tmp_path / "maps").exists()


def test_output_names_inside_the_folder_are_kept(tmp_path):
    from bas.io import path_inside

    assert path_inside(tmp_path, "a/b.jpg", ".npy") == tmp_path / "a" / "b.jpg.npy"
    assert path_inside(tmp_path, "a..b.jpg") == tmp_path / "a..b.jpg"
