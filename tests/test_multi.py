"""Multi-object output: every component of every predicted class, scored, after class-wise NMS; and
COCO-format detections (``bas predict --multi --coco-json``) read and evaluated with pycocotools.

The expected boxes do not come from the code under test: a stub model whose map for class c is the
input's colour channel c, on images with rectangles drawn in known colours at known places (the
image is the network's input size and the map its resolution, so no resampling moves an edge).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.localization import component_boxes
from bas.models import BASOutput
from bas.predict import Localizer, coco_detections

CLASSES = ["red", "green", "blue"]
LOGITS = torch.tensor([2.0, 1.9, -5.0])  # red and green are likely, blue is not
PROBS = LOGITS.softmax(0)


class ColourModel(nn.Module):
    """The foreground map of class c is colour channel c of the input; without labels, of the top class."""

    def forward(self, images, labels=None, top_k=1):
        b = images.shape[0]
        logits = LOGITS.expand(b, -1)
        index = labels if labels is not None else logits.argmax(1)
        fg_map = images[torch.arange(b), index][:, None]
        return BASOutput(logits=logits, fg_logits=logits, fg_map=fg_map)


def picture(rects: dict[tuple[int, int, int, int], int], size: int = 64) -> np.ndarray:
    """A black image with ``(x0, y0, x1, y1) -> channel`` rectangles at full intensity."""
    image = np.zeros((size, size, 3), np.uint8)
    for (x0, y0, x1, y1), channel in rects.items():
        image[y0:y1, x0:x1, channel] = 255
    return image


def localizer(**kwargs) -> Localizer:
    return Localizer(ColourModel(), input_size=64, class_names=CLASSES, threshold=0.5, device="cpu", **kwargs)


RED_A, RED_B, GREEN = (4, 6, 20, 16), (40, 36, 60, 58), (24, 20, 34, 44)
SCENE = {RED_A: 0, RED_B: 0, GREEN: 1}


# ------------------------------------------------------------------------------ components


def test_component_boxes_finds_every_component_with_its_mean():
    maps = np.zeros((2, 10, 12), np.float32)
    maps[0, 1:4, 2:6] = 0.8  # 12 pixels
    maps[0, 1, 2] = 1.0
    maps[0, 6:9, 8:10] = 0.6  # 6 pixels
    maps[0, 9, 0] = 0.9  # 1 pixel
    (boxes, means), (empty, none) = component_boxes(torch.from_numpy(maps), 0.5)
    assert boxes.tolist() == [[2, 1, 6, 4], [8, 6, 10, 9], [0, 9, 1, 10]]  # largest first, x1 / y1 exclusive
    assert means == pytest.approx([(11 * 0.8 + 1.0) / 12, 0.6, 0.9])
    assert boxes.dtype == np.int64 and means.dtype == np.float32
    assert empty.shape == (0, 4) and none.shape == (0,)
    # min_area: a fraction of the 120-pixel map; 6 / 120 = 0.05 stays, 1 pixel goes
    (kept, _), _ = component_boxes(maps, 0.5, min_area=0.05)
    assert kept.tolist() == [[2, 1, 6, 4], [8, 6, 10, 9]]
    (kept, _), _ = component_boxes(maps, 0.5, min_area=0.06)
    assert kept.tolist() == [[2, 1, 6, 4]]


def test_component_boxes_touching_diagonally_is_one_component():
    maps = np.zeros((1, 1, 6, 6), np.float32)  # (B, 1, H, W) input
    maps[0, 0, 1, 1] = maps[0, 0, 2, 2] = 1.0
    ((boxes, means),) = component_boxes(maps, 0.5)
    assert boxes.tolist() == [[1, 1, 3, 3]] and means.tolist() == [1.0]


# ------------------------------------------------------------------------------ Localizer


def test_multi_returns_every_object_of_every_likely_class():
    (pred,) = localizer().predict(picture(SCENE), crop=False, multi=True)
    found = {(o.class_name, o.box): o.score for o in pred.objects}
    assert set(found) == {("red", RED_A), ("red", RED_B), ("green", GREEN)}
    for (name, _), score in found.items():  # the map is 1 inside each rectangle
        assert score == pytest.approx(float(PROBS[CLASSES.index(name)]), rel=1e-5)
    assert [o.score for o in pred.objects] == sorted(found.values(), reverse=True)
    # the single-box output is unchanged: the largest red component
    assert pred.label == 0 and pred.box == RED_B
    record = pred.to_json()
    assert [o["box"] for o in record["objects"]] == [list(o.box) for o in pred.objects]
    (plain,) = localizer().predict(picture(SCENE), crop=False)
    assert plain.objects is None and "objects" not in plain.to_json() and plain.box == RED_B


def test_multi_class_threshold_and_min_area():
    loc = localizer()
    (pred,) = loc.predict(picture(SCENE), crop=False, multi=True, class_threshold=0.6)
    assert {o.class_name for o in pred.objects} == {"red"}  # the top-1 class always counts
    # RED_A is 16 x 10 = 160 pixels = 3.9 % of the image, RED_B 20 x 22 = 10.7 %, GREEN 10 x 24 = 5.9 %
    (pred,) = loc.predict(picture(SCENE), crop=False, multi=True, min_area=0.05)
    assert {o.box for o in pred.objects} == {RED_B, GREEN}
    with pytest.raises(ValueError, match="min_area"):
        loc.predict(picture(SCENE), multi=True, min_area=2.0)


def test_multi_applies_class_wise_nms():
    # a dim red frame x [8, 48) y [8, 48) (2 pixels wide, map value 200 / 255) around a bright red
    # square x [12, 44) y [12, 44): two components with boxes of IoU 32^2 / 40^2 = 0.64; the square
    # scores higher. A green square on the red one overlaps it fully, but is another class.
    image = np.zeros((64, 64, 3), np.uint8)
    image[8:48, 8:48, 0] = 200
    image[10:46, 10:46, 0] = 0
    image[12:44, 12:44, :2] = 255
    loc = localizer()
    (pred,) = loc.predict(image, crop=False, multi=True, min_area=0.0, nms_iou=0.5)
    assert [(o.class_name, o.box) for o in pred.objects] == [
        ("red", (12, 12, 44, 44)),
        ("green", (12, 12, 44, 44)),
    ]
    (pred,) = loc.predict(image, crop=False, multi=True, min_area=0.0, nms_iou=0.7)
    assert [(o.class_name, o.box) for o in pred.objects] == [
        ("red", (12, 12, 44, 44)),
        ("green", (12, 12, 44, 44)),
        ("red", (8, 8, 48, 48)),
    ]
    assert pred.objects[2].score == pytest.approx(200 / 255 * float(PROBS[0]), rel=1e-4)


# ------------------------------------------------------------------------------ COCO


def coco_ground_truth(images: list[tuple[str, int, int, list[tuple[tuple[float, ...], int]]]], names) -> dict:
    """A COCO annotation dict from ``(file name, W, H, [(xyxy box, label), ...])``."""
    entries, annotations = [], []
    for image_id, (name, width, height, objects) in enumerate(images, start=1):
        entries.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for (x0, y0, x1, y1), label in objects:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(label) + 1,
                    "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                    "area": float((x1 - x0) * (y1 - y0)),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    return {"images": entries, "annotations": annotations, "categories": categories}


def coco_eval(gt: dict, detections: dict, tmp_path) -> np.ndarray:
    """COCOeval bbox stats of ``detections`` (matched to ``gt`` by file name) against ``gt``."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(detections))
    coco_gt = COCO(str(tmp_path / "gt.json"))
    coco_dt_file = COCO(str(tmp_path / "dt.json"))  # the detection file is itself a loadable COCO file
    ids = {im["file_name"]: im["id"] for im in gt["images"]}
    results = [
        {**a, "image_id": ids[coco_dt_file.imgs[a["image_id"]]["file_name"]]}
        for a in detections["annotations"]
    ]
    evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    return evaluator.stats


def test_coco_detections_of_exact_boxes_score_full_ap(tmp_path):
    scenes = [SCENE, {(10, 10, 50, 30): 1}, {(2, 2, 30, 30): 0, (34, 34, 62, 62): 1}]
    preds = localizer().predict([picture(s) for s in scenes], crop=False, multi=True)
    names = [f"img{i}.png" for i in range(len(scenes))]
    detections = coco_detections([(n, p.image_size, p.detections()) for n, p in zip(names, preds)], CLASSES)
    assert [c["name"] for c in detections["categories"]] == CLASSES
    assert detections["images"][0] == {"id": 1, "file_name": "img0.png", "width": 64, "height": 64}
    first = next(a for a in detections["annotations"] if a["image_id"] == 1 and a["category_id"] == 2)
    assert first["bbox"] == [24, 20, 10, 24] and first["area"] == 240  # GREEN as [x, y, w, h]
    # ground truth listed in another order, so that ids are matched by file name
    gt = coco_ground_truth(
        [
            (n, 64, 64, [(box, label) for box, label in s.items()])
            for n, s in reversed(list(zip(names, scenes)))
        ],
        CLASSES,
    )
    stats = coco_eval(gt, detections, tmp_path)
    assert stats[1] == pytest.approx(1.0)  # AP at IoU 0.5
    assert stats[0] == pytest.approx(1.0)  # exact boxes: AP over IoU 0.5:0.95


def test_predict_multi_coco_json_on_synthetic_data(tmp_path):
    from bas.data import build_dataset
    from bas.data.synthetic import make_dataset

    root = make_dataset(tmp_path / "data", num_classes=2, images_per_class=4, image_size=48)
    records = build_dataset("cub", root, "test").records
    torch.manual_seed(0)
    names = build_dataset("cub", root, "test").classes
    ckpt = tmp_path / "tiny.safetensors"
    save_model(
        ckpt,
        bas.build_model("resnet18", len(names), hidden=16),
        class_names=names,
        input_size=32,
        resize_size=36,
    )
    out = tmp_path / "out"
    files = [str(r.path) for r in records]
    code = main(
        [
            "predict",
            *files,
            "--checkpoint",
            str(ckpt),
            "--output",
            str(out),
            "--multi",
            "--class-threshold",
            "0.3",
        ]
        + [
            "--min-area",
            "0.0",
            "--coco-json",
            str(out / "detections.json"),
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert code == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(records) and all(line["objects"] for line in lines)
    detections = json.loads((out / "detections.json").read_text())
    assert [im["file_name"] for im in detections["images"]] == files
    assert [c["name"] for c in detections["categories"]] == list(names)
    assert len(detections["annotations"]) == sum(len(line["objects"]) for line in lines)
    for a, (image_id, obj) in zip(
        detections["annotations"], ((i + 1, o) for i, line in enumerate(lines) for o in line["objects"])
    ):
        x0, y0, x1, y1 = obj["box"]
        assert a["image_id"] == image_id and a["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        assert a["category_id"] == obj["label"] + 1 and a["score"] == pytest.approx(obj["score"])
        assert 0 <= x0 < x1 <= 48 and 0 <= y0 < y1 <= 48
    gt = coco_ground_truth(
        [(str(r.path), 48, 48, [(tuple(b), r.label) for b in r.boxes]) for r in records], names
    )
    stats = coco_eval(gt, detections, tmp_path)
    assert len(stats) == 12 and all(-1.0 <= s <= 1.0 for s in stats)
    # without --multi: one detection per image, scored by the class probability
    code = main(
        ["predict", *files, "--checkpoint", str(ckpt), "--output", str(out / "one")]
        + ["--coco-json", str(out / "one.json"), "--device", "cpu", "--no-progress"]
    )
    assert code == 0
    single = json.loads((out / "one.json").read_text())
    lines = [json.loads(line) for line in (out / "one" / "predictions.jsonl").read_text().splitlines()]
    assert [a["score"] for a in single["annotations"]] == pytest.approx([line["score"] for line in lines])


def test_predict_rejects_a_bad_min_area(tmp_path, capsys):
    image = tmp_path / "a.png"
    from PIL import Image

    Image.fromarray(picture(SCENE)).save(image)
    assert main(["predict", str(image), "--checkpoint", str(image), "--multi", "--min-area", "5"]) == 2
    assert "--min-area" in capsys.readouterr().err
