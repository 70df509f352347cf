"""CorLoc (bas.metrics), the multi-object evaluation of ``bas evaluate`` and its pseudo-boxes
(``--coco-json``), read back and evaluated with pycocotools.

The hand-built cases know their answers without the code under test: a stub model whose map for
class c is colour channel c of the input, on VOC files whose boxes are where the colours are drawn.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_multi import coco_eval
from test_voc07 import write_voc
from torch import nn

import bas
from bas import metrics
from bas.checkpoints import save_model
from bas.cli import main
from bas.config import default_config
from bas.data import build_dataset
from bas.data.coco_export import coco_ground_truth
from bas.engine.evaluate import evaluate_multi_object
from bas.models import BASOutput

# ------------------------------------------------------------------------------ the metric


def test_top_box_per_class_takes_the_best_score_of_each_class():
    boxes = [[0, 0, 5, 5], [1, 1, 6, 6], [2, 2, 7, 7], [3, 3, 8, 8]]
    scores = [0.2, 0.9, 0.5, 0.9]
    labels = [0, 0, 1, 0]
    top = metrics.top_box_per_class(boxes, scores, labels, [0, 1, 2])
    assert top[0].tolist() == [1, 1, 6, 6]  # 0.9 first reached by the second box
    assert top[1].tolist() == [2, 2, 7, 7]
    assert np.isnan(top[2]).all()  # no detection of class 2
    assert np.isnan(metrics.top_box_per_class([], [], [], [4])).all()
    with pytest.raises(ValueError, match="4 boxes, 3 scores"):
        metrics.top_box_per_class(boxes, scores[:3], labels, [0])


def test_corloc_hits_use_the_inclusive_iou_and_its_threshold():
    gt = [np.array([[0, 0, 10, 21]])]
    # inclusive pixels: 11 x 11 = 121 inside 11 x 22 = 242: IoU exactly 0.5, a hit (>=);
    # the exclusive areas would give 100 / 210 < 0.5
    assert metrics.corloc_hits([[0, 0, 10, 10]], gt).tolist() == [True]
    assert metrics.corloc_hits([[0, 0, 10, 9]], gt).tolist() == [False]  # 110 / 242
    # the best of several ground-truth boxes; a missing box (NaN) is a miss
    hits = metrics.corloc_hits(
        [[0, 0, 10, 10], [np.nan] * 4, [50, 50, 60, 60]],
        [np.array([[40, 40, 60, 60], [0, 0, 10, 10]]), np.array([[0, 0, 5, 5]]), np.array([[0, 0, 9, 9]])],
    )
    assert hits.tolist() == [True, False, False]
    assert metrics.corloc_hits([[0, 0, 10, 10]], gt, iou_threshold=0.6).tolist() == [False]
    with pytest.raises(ValueError, match="ground-truth lists"):
        metrics.corloc_hits([[0, 0, 1, 1]], [])


def test_corloc_is_the_mean_over_classes_of_the_per_class_fractions():
    # class 0: 3 of 4 images; class 2: 0 of 1; class 1 has no image and is left out of the mean
    result = metrics.corloc([1, 1, 0, 1, 0], [0, 0, 0, 0, 2], num_classes=3)
    assert result["per_class"] == {0: 75.0, 2: 0.0}
    assert result["images"] == {0: 4, 2: 1}
    assert result["CorLoc"] == pytest.approx(37.5)  # not the 60 % of the pooled pairs
    assert np.isnan(metrics.corloc([], [])["CorLoc"])
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        metrics.corloc([1], [2], num_classes=2)


# ------------------------------------------------------------------------------ hand-built data

CLASSES = ["red", "green", "blue"]
LOGITS = torch.tensor([2.0, 1.0, 0.5])


class ColourModel(nn.Module):
    """The foreground map of class c is colour channel c of the input."""

    num_classes = 3
    class_names = CLASSES

    def forward(self, images, labels=None, top_k=1):
        b = images.shape[0]
        logits = LOGITS.expand(b, -1)
        index = labels if labels is not None else logits.argmax(1)
        return BASOutput(logits=logits, fg_logits=logits, fg_map=images[torch.arange(b), index][:, None])


def picture(rects) -> np.ndarray:
    """64 x 64 black with ``((x0, y0, x1, y1), channel, value)`` rectangles (x1 / y1 exclusive)."""
    image = np.zeros((64, 64, 3), np.uint8)
    for (x0, y0, x1, y1), channel, value in rects:
        image[y0:y1, x0:x1, channel] = value
    return image


def voc(box):
    """A 0-based exclusive box as VOC's 1-based inclusive corners."""
    x0, y0, x1, y1 = box
    return (x0 + 1, y0 + 1, x1, y1)


A_RED, A_GREEN_GT, A_GREEN = (4, 6, 20, 16), (10, 30, 30, 50), (40, 40, 60, 60)
B_RED_GT, B_RED = (30, 30, 60, 60), (0, 0, 20, 20)
C_BLUE, C_RED = (5, 5, 25, 25), (40, 10, 60, 30)
D_RED_GT, D_BRIGHT = (8, 8, 40, 40), (50, 50, 60, 60)
SCENES = {
    # red found where it is; green drawn away from its box
    "a": (
        picture([(A_RED, 0, 255), (A_GREEN, 1, 255)]),
        [("red", voc(A_RED), False), ("green", voc(A_GREEN_GT), False)],
    ),
    # red drawn away from its box
    "b": (picture([(B_RED, 0, 255)]), [("red", voc(B_RED_GT), False)]),
    # red found; blue found, but its object is difficult
    "c": (
        picture([(C_BLUE, 2, 255), (C_RED, 0, 255)]),
        [("blue", voc(C_BLUE), True), ("red", voc(C_RED), False)],
    ),
    # a dim red component on the object and a brighter one elsewhere: the top-scoring box misses
    "d": (picture([(D_RED_GT, 0, 150), (D_BRIGHT, 0, 255)]), [("red", voc(D_RED_GT), False)]),
}


def hand_cfg(root) -> dict:
    cfg = default_config()
    cfg["data"].update(root=str(root), input_size=64, resize_size=64, test_mode="resize", eval_batch_size=3)
    cfg["eval"].update(threshold=0.5, top_k=1)
    return cfg


@pytest.fixture
def hand_voc(tmp_path):
    write_voc(tmp_path, SCENES, {"test": list(SCENES), "exact": ["c"]}, classes=CLASSES)
    return tmp_path


@pytest.mark.parametrize(
    ("difficult", "expected"),
    [
        # red: a, c hit; b, d miss -> 50; green: a misses -> 0; blue: only a difficult object
        (False, {"red": 50.0, "green": 0.0}),
        (True, {"red": 50.0, "green": 0.0, "blue": 100.0}),
    ],
)
def test_multi_object_evaluation_of_hand_built_scenes(hand_voc, difficult, expected):
    dataset = build_dataset("voc07", hand_voc, "test", difficult=difficult)
    report = evaluate_multi_object(ColourModel(), hand_cfg(hand_voc), dataset, "test", progress=False)
    result = report.result
    assert result["CorLoc_per_class"] == pytest.approx(expected)
    assert result["CorLoc"] == pytest.approx(np.mean(list(expected.values())))
    assert result["CorLoc_images"]["red"] == 4 and result["difficult_included"] is difficult
    # the pseudo-boxes: every component of every tagged class, in image pixels, scored
    coco = report.pseudo_boxes
    assert [im["file_name"] for im in coco["images"]] == [
        f"VOCdevkit/VOC2007/JPEGImages/{i}.jpg" for i in SCENES
    ]
    found = {(a["image_id"], a["category_id"] - 1, tuple(a["bbox"])) for a in coco["annotations"]}
    xywh = lambda b: (b[0], b[1], b[2] - b[0], b[3] - b[1])  # noqa: E731
    assert found == {
        (1, 0, xywh(A_RED)),
        (1, 1, xywh(A_GREEN)),
        (2, 0, xywh(B_RED)),
        (3, 2, xywh(C_BLUE)),
        (3, 0, xywh(C_RED)),
        (4, 0, xywh(D_RED_GT)),
        (4, 0, xywh(D_BRIGHT)),
    }
    probs = LOGITS.softmax(0)
    dim = next(a for a in coco["annotations"] if a["image_id"] == 4 and a["bbox"][0] == 8)
    assert dim["score"] == pytest.approx(150 / 255 * float(probs[0]), rel=0.02)  # mean map x probability


def test_coco_ground_truth_of_a_voc_dataset(hand_voc):
    dataset = build_dataset("voc07", hand_voc, "test")
    gt = coco_ground_truth(dataset, hand_voc)
    assert [c["name"] for c in gt["categories"]] == CLASSES and [c["id"] for c in gt["categories"]] == [
        1,
        2,
        3,
    ]
    assert gt["images"][0] == {
        "id": 1,
        "file_name": "VOCdevkit/VOC2007/JPEGImages/a.jpg",
        "width": 64,
        "height": 64,
    }
    first = gt["annotations"][0]
    assert first["bbox"] == [4.0, 6.0, 16.0, 10.0] and first["area"] == 160.0 and first["category_id"] == 1
    assert [a["iscrowd"] for a in gt["annotations"]] == [0, 0, 0, 1, 0, 0]  # the difficult blue
    assert all(a["iscrowd"] == 0 for a in coco_ground_truth(dataset, include_difficult=True)["annotations"])


# ------------------------------------------------------------------------------ pycocotools


def test_hand_built_pseudo_boxes_through_cocoeval(hand_voc, tmp_path):
    cfg = hand_cfg(hand_voc)
    dataset = build_dataset("voc07", hand_voc, "test")
    report = evaluate_multi_object(ColourModel(), cfg, dataset, "test", progress=False)
    stats = coco_eval(coco_ground_truth(dataset, hand_voc), report.pseudo_boxes, tmp_path)
    # misses (b, d's bright box, a's green) and hits: the AP is strictly between 0 and 1
    assert 0.0 < stats[1] < 1.0
    # scene c alone: both pseudo-boxes exact, AP 1 over IoU 0.5:0.95; with the blue object
    # difficult (a crowd region to COCOeval), its detection is neither a hit nor a false positive
    for difficult in (False, True):
        exact = build_dataset("voc07", hand_voc, "exact", difficult=difficult)
        report = evaluate_multi_object(ColourModel(), cfg, exact, "exact", progress=False)
        assert len(report.pseudo_boxes["annotations"]) == 2
        stats = coco_eval(coco_ground_truth(exact, hand_voc), report.pseudo_boxes, tmp_path)
        assert stats[0] == pytest.approx(1.0) and stats[1] == pytest.approx(1.0)


def tiny_checkpoint(path, names):
    """A random-weight ResNet18 checkpoint for ``names`` (the numbers it gives mean nothing)."""
    torch.manual_seed(0)
    save_model(
        path,
        bas.build_model("resnet18", len(names), hidden=16),
        class_names=names,
        input_size=32,
        resize_size=36,
    )
    return path


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """Synthetic multi-object data (VOC 2012 layout) and a tiny random-weight checkpoint for its classes."""
    from bas.data.synthetic_multi import make_multilabel_dataset

    tmp = tmp_path_factory.mktemp("corloc")
    root = make_multilabel_dataset(tmp / "data", images_per_split=5, image_size=64, num_classes=3, seed=3)
    return root, tiny_checkpoint(tmp / "tiny.safetensors", build_dataset("voc07", root, "test").classes)


def test_bas_evaluate_on_multi_object_data_reports_corloc_and_writes_pseudo_boxes(
    synthetic_run, tmp_path, capsys
):
    root, ckpt = synthetic_run
    out, pseudo = tmp_path / "eval", tmp_path / "pseudo.json"
    args = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--data-root",
        str(root),
        "--dataset",
        "voc07",
        "--split",
        "test",
    ]
    args += ["--output", str(out), "--coco-json", str(pseudo), "--test-mode", "resize", "--min-area", "0.02"]
    assert main([*args, "--device", "cpu", "--no-progress"]) == 0
    assert "CorLoc=" in capsys.readouterr().out
    result = json.loads((out / "metrics.json").read_text())
    dataset = build_dataset("voc07", root, "test")
    coco = json.loads(pseudo.read_text())
    assert result["num_images"] == len(dataset) == len(coco["images"]) and result["min_area"] == 0.02
    assert [c["name"] for c in coco["categories"]] == dataset.classes
    # CorLoc recomputed from the written pseudo-boxes, with an IoU written out here
    per_class: dict[int, list[bool]] = {}
    for image, record in zip(coco["images"], dataset.records):
        assert image["file_name"] == f"VOCdevkit/VOC2012/JPEGImages/{record.image_id}.jpg"
        anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert {a["category_id"] - 1 for a in anns} <= set(record.tags)
        for c in record.tags:
            mine = [a for a in anns if a["category_id"] == c + 1]
            hit = False
            if mine:
                x, y, w, h = max(mine, key=lambda a: a["score"])["bbox"]
                for gx0, gy0, gx1, gy1 in record.boxes[record.box_labels == c]:
                    iw = max(0, min(x + w, gx1) - max(x, gx0) + 1)
                    ih = max(0, min(y + h, gy1) - max(y, gy0) + 1)
                    union = (w + 1) * (h + 1) + (gx1 - gx0 + 1) * (gy1 - gy0 + 1) - iw * ih
                    hit |= iw * ih / union >= 0.5
            per_class.setdefault(c, []).append(hit)
    expected = {dataset.classes[c]: 100.0 * np.mean(h) for c, h in per_class.items()}
    assert result["CorLoc_per_class"] == pytest.approx(expected)
    assert result["CorLoc"] == pytest.approx(np.mean(list(expected.values())))
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,name,images,corloc" and len(rows) == 1 + len(expected)
    for a in coco["annotations"]:
        assert a["iscrowd"] == 0 and a["area"] == a["bbox"][2] * a["bbox"][3] and 0 < a["score"] <= 1
    # the run's page shows CorLoc and the per-class table
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "CorLoc (multi-object)" in page and ">corloc<" in page
    # a detector trainer's view: the pseudo-boxes against the ground truth, with COCOeval
    stats = coco_eval(coco_ground_truth(dataset, root), coco, tmp_path)
    assert len(stats) == 12 and all(-1.0 <= s <= 1.0 for s in stats)


def test_bas_predict_coco_json_on_multi_object_data_through_cocoeval(synthetic_run, tmp_path):
    root, ckpt = synthetic_run
    dataset = build_dataset("voc07", root, "test")
    files = [str(r.path) for r in dataset.records]
    out = tmp_path / "pred"
    args = ["predict", *files, "--checkpoint", str(ckpt), "--output", str(out), "--multi"]
    assert main([*args, "--coco-json", str(out / "dt.json"), "--device", "cpu", "--no-progress"]) == 0
    detections = json.loads((out / "dt.json").read_text())
    gt = coco_ground_truth(dataset)  # file names as given to bas predict
    assert [im["file_name"] for im in gt["images"]] == [im["file_name"] for im in detections["images"]]
    stats = coco_eval(gt, detections, tmp_path)
    assert len(stats) == 12 and all(-1.0 <= s <= 1.0 for s in stats)


def test_bas_evaluate_coco_json_on_a_single_label_dataset(tmp_path):
    from bas.data.synthetic import make_dataset

    root = make_dataset(tmp_path / "data", num_classes=2, images_per_class=3, image_size=48)
    dataset = build_dataset("cub", root, "test")
    ckpt = tiny_checkpoint(tmp_path / "tiny.safetensors", dataset.classes)
    out, pseudo = tmp_path / "eval", tmp_path / "pseudo.json"
    args = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--data-root",
        str(root),
        "--dataset",
        "cub",
        "--split",
        "test",
    ]
    assert (
        main([*args, "--output", str(out), "--coco-json", str(pseudo), "--device", "cpu", "--no-progress"])
        == 0
    )
    result = json.loads((out / "metrics.json").read_text())
    assert "gt_known_loc" in result and "CorLoc" not in result  # the single-label metrics, as before
    coco = json.loads(pseudo.read_text())
    assert result["pseudo_boxes"]["num_boxes"] == len(coco["annotations"]) > 0
    for a in coco["annotations"]:  # each image's boxes are of its own class
        assert a["category_id"] == dataset.records[a["image_id"] - 1].label + 1
    stats = coco_eval(coco_ground_truth(dataset, root), coco, tmp_path)
    assert len(stats) == 12


def test_bas_evaluate_multi_object_refuses_single_label_options(synthetic_run, capsys):
    root, ckpt = synthetic_run
    args = ["evaluate", "--checkpoint", str(ckpt), "--data-root", str(root), "--dataset", "voc07"]
    assert main([*args, "--select-on", "val", "--device", "cpu", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --select-on: not available for a multi-object dataset (CorLoc)"


def test_multi_label_models_get_one_hot_tags(synthetic_run):
    root, _ = synthetic_run
    dataset = build_dataset("voc07", root, "test")
    torch.manual_seed(0)
    model = bas.build_model("resnet18", dataset.num_classes, method="multilabel_cam")
    assert model.label_type == "multi_hot"
    cfg = hand_cfg(root)
    cfg["data"].update(input_size=32, resize_size=36)
    report = evaluate_multi_object(model, cfg, dataset, "test", min_area=0.0, progress=False)
    assert report.result["num_images"] == len(dataset) and 0.0 <= report.result["CorLoc"] <= 100.0
    by_image = {}
    for a in report.pseudo_boxes["annotations"]:
        by_image.setdefault(a["image_id"] - 1, set()).add(a["category_id"] - 1)
    assert by_image and all(found <= set(dataset.records[i].tags) for i, found in by_image.items())


def test_bas_evaluate_dataset_options_follow_the_dataset_kind(synthetic_run, tmp_path, capsys):
    root, ckpt = synthetic_run
    args = ["evaluate", "--checkpoint", str(ckpt), "--data-root", str(root), "--dataset", "voc07"]
    args += ["--device", "cpu", "--no-progress", "--output", str(tmp_path / "eval")]
    assert main([*args, "--set", "data.options.difficult=true"]) == 0
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["difficult_included"] is True
    assert main([*args, "--set", "data.options.year=2011"]) == 2
    assert (
        capsys.readouterr().err.strip() == "error: data.options.year must be auto, 2007 or 2012, got '2011'"
    )
