"""Seed evaluation: the threshold sweep against per-threshold confusion matrices, mIoU by hand and
against torchmetrics, threshold selection on a held-out split, and ``bas wsss evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.metrics import mean_iou, segmentation_confusion
from bas.wsss import evaluate as E
from bas.wsss import seeds as S


def random_seeds(rng, count: int, k: int):
    """``(classes, float16 maps, ground truth)`` per image, with ignore pixels, images without
    tags, and map values exactly on grid thresholds."""
    out = []
    for _ in range(count):
        h, w = rng.integers(5, 12, 2)
        classes = np.sort(rng.choice(k - 1, size=int(rng.integers(0, 3)), replace=False)).astype(np.int64)
        maps = rng.random((len(classes), h, w)).astype(np.float16)
        if len(classes):
            maps.flat[:3] = np.float16(0.3)  # ties with a threshold
        gt = rng.integers(0, k, (h, w)).astype(np.uint8)
        gt[rng.random((h, w)) < 0.1] = 255
        out.append((classes, maps, gt))
    return out


def test_sweep_equals_the_confusion_of_the_pseudo_masks_at_each_threshold():
    rng = np.random.default_rng(0)
    data = random_seeds(rng, 12, 5)
    grid = [0.1, 0.3, 0.5, 0.9]
    confusions = E.threshold_confusions(data, 5, grid)
    assert confusions.shape == (4, 5, 5)
    for t, conf in zip(grid, confusions):
        preds = [S.seed_labels(m, c, t) for c, m, _ in data]
        expected = segmentation_confusion(preds, [g for _, _, g in data], 5)
        np.testing.assert_array_equal(conf, expected)


def test_miou_from_a_hand_computed_confusion_matrix():
    # 3 labels; one image of 2x4 pixels, one 255 pixel
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 0]], np.uint8)
    maps = np.array(
        [[[0.1, 0.9, 0.8, 0.2], [0.0, 0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0, 0.7], [0.6, 0.1, 0.9, 0.0]]]
    )
    classes = np.array([0, 1])  # labels 1 and 2
    # at threshold 0.5, argmax over [0.5, class 1, class 2]:
    # pred = [[0, 1, 1, 2], [2, 0, 2(ignored), 0]]
    # confusion (rows gt): gt0: pred0 at (0,0),(1,3); pred1 at (0,1)  -> [2, 1, 0]
    #                      gt1: pred1 at (0,2); pred2 at (0,3)       -> [0, 1, 1]
    #                      gt2: pred2 at (1,0); pred0 at (1,1)       -> [1, 0, 1]
    hand = np.array([[2, 1, 0], [0, 1, 1], [1, 0, 1]])
    conf = E.threshold_confusions([(classes, maps.astype(np.float16), gt)], 3, [0.5])[0]
    np.testing.assert_array_equal(conf, hand)
    # IoU = tp / (row + column - tp): 2/(3+3-2), 1/(2+2-1), 1/(2+2-1)
    result = E.scores(conf)
    assert result["iou"] == pytest.approx([50.0, 100 / 3, 100 / 3])
    assert result["miou"] == pytest.approx((50 + 200 / 3) / 3)
    # foreground = labels 1 and 2: predicted fg 4 pixels, of which 3 are fg; gt fg 4 pixels, 3 found
    assert result["fg_precision"] == pytest.approx(75.0) and result["fg_recall"] == pytest.approx(75.0)


def test_miou_equals_torchmetrics_macro_jaccard():
    classification = pytest.importorskip("torchmetrics.classification")
    rng = np.random.default_rng(3)
    data = random_seeds(rng, 8, 6)
    conf = E.threshold_confusions(data, 6, [0.4])[0]
    preds = np.concatenate([S.seed_labels(m, c, 0.4).ravel() for c, m, _ in data])
    gts = np.concatenate([g.ravel() for _, _, g in data])
    metric = classification.MulticlassJaccardIndex(num_classes=6, ignore_index=255, average="macro")
    expected = float(metric(torch.from_numpy(preds.astype(np.int64)), torch.from_numpy(gts.astype(np.int64))))
    assert E.scores(conf)["miou"] == pytest.approx(100 * expected, abs=1e-4)


def test_bad_masks_and_maps_are_named():
    classes, maps, gt = random_seeds(np.random.default_rng(1), 1, 4)[0]
    with pytest.raises(bas.errors.DataError, match="img.npz: seed maps of size"):
        E.threshold_confusions([(classes, maps, gt[:-1])], 4, [0.5], where=lambda i: "img.npz")
    bad = gt.copy()
    bad[0, 0] = 7
    with pytest.raises(bas.errors.DataError, match="mask label 7"):
        E.threshold_confusions([(classes, maps, bad)], 4, [0.5])


def write_split(folder: Path, items, split: str) -> tuple[Path, list[str], object]:
    """Seeds ``(classes, maps)`` written as bas wsss seeds does; returns the evaluate input."""
    ids = [f"{split}_{i}" for i in range(len(items))]
    for image_id, (classes, maps, _) in zip(ids, items):
        seeds = S.SeedMaps(
            classes, torch.zeros(len(classes), 1, 1), torch.from_numpy(maps.astype(np.float32))
        )
        S.write_seeds(folder, image_id, seeds, 0.3)
    return folder, ids, lambda i: items[i][2]


def planted(best: float, count: int, rng) -> list:
    """Images whose single class covers the pixels with map value above ``best`` exactly."""
    items = []
    for _ in range(count):
        maps = rng.random((1, 10, 10)).astype(np.float16)
        gt = np.where(maps[0] > best, 1, 0).astype(np.uint8)
        items.append((np.array([0]), maps, gt))
    return items


def test_threshold_chosen_on_the_held_out_split_and_reported_on_the_target(tmp_path):
    rng = np.random.default_rng(0)
    target = write_split(tmp_path / "test", planted(0.32, 4, rng), "test")
    held_out = write_split(tmp_path / "val", planted(0.6, 4, rng), "val")
    result = E.evaluate_seeds(target, 2, select=held_out)
    assert result["chosen_on"] == "select" and result["threshold"] == 0.6
    assert result["select_miou"] == pytest.approx(100.0)
    at = result["thresholds"].index(0.6)
    assert result["miou"] == pytest.approx(result["curve"][at]) and result["miou"] < 90
    reference = E.evaluate_seeds(target, 2, protocol="reference")
    assert reference["chosen_on"] == "evaluated split" and reference["threshold"] == 0.32
    assert reference["thresholds"] == list(E.REFERENCE_GRID) and reference["miou"] == pytest.approx(100.0)
    fixed = E.evaluate_seeds(target, 2, fixed_threshold=0.45)
    assert fixed["threshold"] == 0.45 and fixed["chosen_on"] == "fixed"
    np.testing.assert_array_equal(
        fixed["confusion"],
        segmentation_confusion(
            [S.seed_labels(m, c, 0.45) for c, m, _ in planted(0.32, 4, np.random.default_rng(0))],
            [target[2](i) for i in range(4)],
            2,
        ),
    )
    assert mean_iou(np.array(fixed["confusion"])) == pytest.approx(fixed["miou"])


def test_curve_figure_is_a_png(tmp_path):
    E.plot_curve(tmp_path / "c.png", [0.1, 0.2, 0.3], {"val": [10, 30, 20], "test": [12, 28, 25]}, 0.2, "t")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------- the command


def test_seeds_then_evaluate_end_to_end(tmp_path, capsys):
    voc = make_multilabel_dataset(
        tmp_path / "data",
        num_classes=3,
        images_per_split={"train": 4, "val": 3, "test": 2},
        image_size=64,
        seed=1,
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "bas.safetensors"
    config = {"data": {"root": str(voc / VOC_SUBDIR), "dataset": "voc"}, "eval": {"threshold": 0.25}}
    save_model(ckpt, bas.build_model("resnet18", 3, method="multilabel_bas"), config=config)
    seeds = tmp_path / "seeds"
    for split in ("train", "val"):
        args = ["wsss", "seeds", "--checkpoint", str(ckpt), "--split", split, "--output", str(seeds)]
        assert main(args + ["--scales", "1", "0.5", "--no-progress", "--workers", "0"]) == 0
    capsys.readouterr()

    assert main(["wsss", "evaluate", "--seeds", str(seeds), "--split", "train", "--select-on", "val"]) == 0
    out = capsys.readouterr().out
    result = json.loads((seeds / "train" / "evaluation.json").read_text())
    assert result["split"] == "train" and result["select_on"] == "val" and result["protocol"] == "standard"
    assert result["seeds"]["scales"] == [1.0, 0.5] and result["seeds"]["flip"] is True
    assert result["seeds"]["fuse_cam"] is None and result["seeds"]["bg_threshold"] == 0.25
    assert len(result["iou"]) == 4 and result["class_names"][0] == "background"
    assert f"background threshold {result['threshold']:.2f}: chosen on val" in out
    assert f"mIoU {result['miou']:.2f}" in out and "no CAM fusion" in out
    assert (seeds / "train" / "miou_vs_threshold.png").read_bytes()[:4] == b"\x89PNG"
    # the reported number is the target split's at the held-out split's best threshold
    at = result["thresholds"].index(result["threshold"])
    assert result["miou"] == pytest.approx(result["curve"][at])
    assert result["select_miou"] == pytest.approx(max(result["select_curve"]))

    # without --select-on: the pseudo-masks' own threshold, and the PNGs are exactly those labels
    assert main(["wsss", "evaluate", "--seeds", str(seeds / "train")]) == 0
    fixed = json.loads((seeds / "train" / "evaluation.json").read_text())
    assert fixed["threshold"] == 0.25 and fixed["chosen_on"] == "fixed"
    ids = (voc / VOC_SUBDIR / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    from bas.wsss import read_label_png

    masks = [read_label_png(S.seed_files(seeds / "train", i)[1]) for i in ids]
    gts = [read_label_png(voc / VOC_SUBDIR / "SegmentationClass" / f"{i}.png") for i in ids]
    np.testing.assert_array_equal(fixed["confusion"], segmentation_confusion(masks, gts, 4))

    assert (
        main(["wsss", "evaluate", "--seeds", str(seeds), "--split", "train", "--protocol", "reference"]) == 0
    )
    out = capsys.readouterr().out
    reference = json.loads((seeds / "train" / "evaluation-reference.json").read_text())
    assert "REFERENCE PROTOCOL" in out and "evaluated split itself" in out
    assert 0.2 <= reference["threshold"] <= 0.44 and reference["miou"] == pytest.approx(
        max(reference["curve"])
    )
    assert (seeds / "train" / "miou_vs_threshold-reference.png").is_file()

    # mistakes are one line each
    for args, words in [
        (["--split", "train", "--select-on", "train"], "held-out"),
        (["--split", "test"], "no seeds of split 'test'"),
        ([], "give --split"),
        (["--split", "train", "--select-on", "val", "--protocol", "reference"], "drop --select-on"),
    ]:
        assert main(["wsss", "evaluate", "--seeds", str(seeds), *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and words in err and err.count("\n") == 1
