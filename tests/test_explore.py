"""Tests of the exploratory experiment (``bas explore``) and of the figures of ``bas evaluate``."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import bas
from bas.checkpoints import load_checkpoint, save_model
from bas.cli import main
from bas.data import build_dataset, test_transform
from bas.data.synthetic import make_dataset
from bas.explore import boxes_to_mask, mask_family, run_exploration


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    data = make_dataset(root / "data", num_classes=2, images_per_class=5, image_size=64, seed=0)
    checkpoint = root / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(
        checkpoint,
        bas.build_model("resnet18", 2, hidden=32),
        threshold=0.5,
        top_k=1,
        input_size=64,
        resize_size=72,
    )
    return data, checkpoint


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_mask_family_uses_5n_square_kernels():
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True  # a 20 x 20 square
    masks, steps = mask_family(mask, 2)
    assert steps == [-2, -1, 0, 1, 2]
    assert masks.shape == (5, 64, 64) and masks.dtype == np.float32
    # erosion / dilation by a k x k square changes the side by k - 1: 20 - 9, 20 - 4, 20, 20 + 4, 20 + 9
    assert masks.sum(axis=(1, 2)).tolist() == [11**2, 16**2, 20**2, 24**2, 29**2]
    np.testing.assert_array_equal(masks[2], mask)
    # an object touching the border shrinks from the border too
    full, _ = mask_family(np.ones((30, 30), bool), 1)
    assert full[0].sum() == 26**2 and full[2].sum() == 30**2


def test_boxes_to_mask_is_the_union_of_the_boxes():
    mask = boxes_to_mask(np.array([[2.0, 1.0, 5.0, 3.0], [4.0, 2.0, 6.0, 6.0]]), (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[1:3, 2:5] = True
    expected[2:6, 4:6] = True
    np.testing.assert_array_equal(mask, expected)


def test_explore_batches_the_masks_and_scores_them_right(setup):
    data, checkpoint = setup
    model = load_checkpoint(checkpoint)
    dataset = build_dataset("cub", data, "test", test_transform(64, 72))
    heads = []
    model.head.register_forward_hook(lambda module, args, out: heads.append(args[0].shape[0]))
    result = run_exploration(model, dataset, num_images=2, max_n=2, progress=False)
    assert heads == [10, 10]  # one forward per image: 5 foreground-masked + 5 background-masked feature maps
    assert len(result.rows) == 10 and [r["step"] for r in result.summary] == [-2, -1, 0, 1, 2]

    # recompute the original-mask row of the first image independently
    row = next(r for r in result.rows if r["step"] == 0)
    sample = dataset[dataset.image_ids.index(row["image_id"])]
    with torch.no_grad():
        feat = model.mid(sample["image"][None])
        m = F.interpolate(sample["mask"][None, None].float(), size=feat.shape[-2:], mode="area")
        fg = model.classifier(model.head(feat * m)).mean(dim=(2, 3))[0]
        bg = model.classifier(model.head(feat * (1 - m))).mean(dim=(2, 3))[0]
    y = sample["label"]
    assert row["area"] == pytest.approx(float(sample["mask"].float().mean()))
    assert row["ce"] == pytest.approx(float(F.cross_entropy(fg[None], torch.tensor([y]))), abs=1e-4)
    assert row["fg_activation"] == pytest.approx(float(fg[y]), abs=1e-4)
    assert row["bg_activation"] == pytest.approx(float(bg[y]), abs=1e-4)


def test_cli_explore_writes_curves_and_figure(setup, tmp_path):
    data, checkpoint = setup
    out = tmp_path / "explore"
    assert (
        main(
            [
                "explore",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(data),
                "--split",
                "test",
                "--num-images",
                "3",
                "--max-n",
                "3",
                "--output",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    rows = read_csv(out / "explore.csv")
    summary = read_csv(out / "explore_summary.csv")
    assert len(rows) == 3 * 7 and len(summary) == 7
    assert {"image_id", "step", "kernel", "area", "ce", "fg_activation", "bg_activation"} <= set(rows[0])
    for image_id in {r["image_id"] for r in rows}:
        areas = [float(r["area"]) for r in rows if r["image_id"] == image_id]
        assert areas == sorted(areas) and areas[0] < areas[3] < areas[-1]  # eroded < original < dilated
    assert [int(s["kernel"]) for s in summary] == [15, 10, 5, 0, 5, 10, 15]
    means = [float(s["area_mean"]) for s in summary]
    assert means == sorted(means)
    with Image.open(out / "explore.png") as im:
        assert im.format == "PNG" and im.size[0] > 600


def test_evaluate_writes_the_figures(setup, tmp_path):
    data, checkpoint = setup
    out = tmp_path / "eval"
    assert (
        main(
            [
                "evaluate",
                "--checkpoint",
                str(checkpoint),
                "--data",
                str(data),
                "--dataset",
                "cub",
                "--split",
                "test",
                "--save-vis",
                "4",
                "--output",
                str(out),
                "--set",
                "data.workers=0",
                "--no-progress",
            ]
        )
        == 0
    )
    for name in ("qualitative.png", "curve.png", "per_class.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and min(im.size) > 150, name
            pixels = np.asarray(im.convert("L"), dtype=np.float32)
        assert pixels.std() > 10, f"{name} looks blank"
