"""Evaluation protocols (bas.protocols): one crafted disagreement per convention, worked out by hand,
and, per protocol, a literal per-image transcription of the reference evaluator's arithmetic that
must agree with the fast implementation image for image on >= 1,000 random maps and boxes.

The transcriptions follow the reference scripts step by step: the CVPR 2022 BAS inference script
(min-max without eps, cv2.resize, ``cam > threshold``, skimage-style labelling, the most frequent
label, regionprops' box, the resize-and-centre-crop box arithmetic, ``IoU > 0.5``, class means),
the IJCV 2023 BAS evaluator (eps 1e-5, truncated ground truth clipped to C - 1, ``IoU >= d``, means
over images) and wsolevaluation's BoxEvaluator (uint8 maps, cv2.threshold, findContours, int box
resizing, ``IoU >= d`` at every threshold).
"""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors

from bas.data.transforms import test_transform
from bas.engine.evaluate import BatchPrediction, Evaluator
from bas.evaluate_maps import boxes_to_map
from bas.localization import localization_maps, maps_to_boxes, normalize_maps
from bas.metrics import BoxEvaluator, box_iou, localization_accuracy, topk_correct
from bas.predict import Localizer
from bas.protocols import (
    PROTOCOLS,
    box_accuracy,
    box_correct,
    get_protocol,
    protocol_boxes,
    resolve_protocols,
)

STANDARD, CVPR, IJCV = (PROTOCOLS[n] for n in ("standard", "cvpr2022-code", "ijcv2023-code"))


def test_registry_names_and_all():
    assert list(PROTOCOLS) == ["standard", "cvpr2022-code", "ijcv2023-code"]
    assert [p.name for p in resolve_protocols("all")] == list(PROTOCOLS)
    assert get_protocol("cvpr2022-code") is CVPR
    with pytest.raises(Exception, match="unknown protocol"):
        get_protocol("cvpr")


# ----------------------------------------------------------------------------- crafted disagreements


def test_normalisation_eps_flips_a_box():
    # Raw map spanning 1e-5: the top pixel normalises to 1e-5 / (1e-5 + eps).
    # eps 0 -> 1.0 and eps 1e-10 -> 0.99999 pass "> 0.5"; eps 1e-5 -> exactly 0.5 does not, so
    # nothing passes and the box is the whole map.
    raw = torch.zeros(1, 2, 2, dtype=torch.float64)
    raw[0, 0, 0] = 1e-5
    boxes = {
        p.name: maps_to_boxes(normalize_maps(raw, p.norm_eps).numpy(), 0.5, p.component_order)[0].tolist()
        for p in PROTOCOLS.values()
    }
    assert boxes == {"standard": [0, 0, 1, 1], "cvpr2022-code": [0, 0, 1, 1], "ijcv2023-code": [0, 0, 2, 2]}


def test_constant_map_without_eps_is_zero():
    assert torch.equal(normalize_maps(torch.full((1, 3, 3), 0.7), 0.0), torch.zeros(1, 3, 3))


def test_equal_area_components_opencv_vs_raster_order():
    # Two components of 2 pixels: A at row 0, columns 5-6; B at row 1, columns 0-1. In raster
    # order A's first pixel (0, 5) comes before B's (1, 0); OpenCV numbers 2x2 blocks, so B,
    # in block column 0, gets label 1.
    m = np.zeros((1, 6, 8), np.float32)
    m[0, 0, 5:7] = 1
    m[0, 1, 0:2] = 1
    assert maps_to_boxes(m, 0.5, STANDARD.component_order)[0].tolist() == [0, 1, 2, 2]  # B
    assert maps_to_boxes(m, 0.5, CVPR.component_order)[0].tolist() == [5, 0, 7, 1]  # A
    assert IJCV.component_order == CVPR.component_order


def test_iou_exactly_half_is_right_except_for_cvpr():
    # Inclusive pixels: [0, 0, 9, 0] covers 10, [0, 0, 4, 0] covers 5, both share 5: IoU 5/10.
    iou = box_iou([[0, 0, 9, 0]], [[0, 0, 4, 0]])[0, 0]
    assert iou == 0.5
    assert [bool(box_correct(p, [iou], 0.5)[0]) for p in (STANDARD, CVPR, IJCV)] == [True, False, True]
    one = np.ones(1, bool)
    assert localization_accuracy([iou], [0], one, one, strict=True)["gt_known_loc"] == 0.0
    assert localization_accuracy([iou], [0], one, one)["gt_known_loc"] == 100.0


def test_ground_truth_truncation_and_clip_flip_a_decision():
    # A 448 x 448 image, Resize(256) + CenterCrop(224) (offset 16); box x 100..447, y 0..447.
    # x0: 100 * 256 / 448 - 16 = 41.142857; x1: 447 * 256 / 448 - 16 = 239.43 -> clipped;
    # y0: -16 -> 0; y1 clipped.
    # CVPR (floats, clip to 224): [41.142857, 0, 224, 224]; IJCV (int, clip to 223): [41, 0, 223, 223].
    box = [[100, 0, 447, 447]]
    cvpr = protocol_boxes(CVPR, box, (448, 448), 224, 256)[0]
    ijcv = protocol_boxes(IJCV, box, (448, 448), 224, 256)[0]
    np.testing.assert_allclose(cvpr, [100 * 256 / 448 - 16, 0, 224, 224])
    assert ijcv.tolist() == [41, 0, 223, 223]
    # Predicted [41, 0, 132, 223]: IJCV inter 92 x 224, union 183 x 224 -> 92 / 183 = 0.5027.
    # CVPR inter (132 - 41.142857 + 1) x 224 = 20576; union 92 * 224 + 183.857 * 225 - 20576
    # = 41399.86 -> 0.4970.
    pred = [[41, 0, 132, 223]]
    assert box_iou(pred, [ijcv])[0, 0] == pytest.approx(92 / 183)
    assert box_iou(pred, [cvpr])[0, 0] == pytest.approx(20576 / (20608 + (225 - 288 / 7) * 225 - 20576))
    assert box_iou(pred, [ijcv])[0, 0] >= 0.5 > box_iou(pred, [cvpr])[0, 0]


def test_class_balanced_versus_per_image_mean():
    # Class 0: 3 of 3 right, class 1: 0 of 1 -> per image 3/4 = 75, per class (100 + 0) / 2 = 50.
    ious, labels = np.array([0.9, 0.9, 0.9, 0.1]), np.array([0, 0, 0, 1])
    assert box_accuracy(CVPR, ious, labels) == {0.5: 50.0}
    assert box_accuracy(IJCV, ious, labels)[0.5] == 75.0
    assert box_accuracy(STANDARD, ious, labels) == {0.5: 75.0}


def test_ties_in_topk():
    # Classes 1, 2 and 4 share the best score. Stable: class 1 is top-1 (lowest index).
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0, 3.0, 2.0, 2.0]])
    assert topk_correct(scores, [1], ks=(1,), ties="stable")[1].tolist() == [True]
    first = int(scores.topk(5, 1, True, True).indices[0, 0])
    assert topk_correct(scores, [1], ks=(1,), ties="torch")[1].tolist() == [first == 1]
    if first == 1:
        pytest.skip("torch.topk ranks the lower index first here: the rules agree on this platform")


def test_pil_versus_tensor_resize_of_the_input():
    # torchvision's antialiased uint8 resize follows PIL closely; they part by one grey level at
    # a few pixels (here a 225 x 49 image resized to 146 x 146).
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (49, 225, 3), dtype=np.uint8)
    sample = {"image": tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1))}
    identity = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    pil = test_transform(146, mode="resize", image_resize="pil", **identity)(dict(sample))["image"].numpy()
    tensor = test_transform(146, mode="resize", **identity)(dict(sample))["image"].numpy()
    by_hand = np.asarray(Image.fromarray(pixels).resize((146, 146), Image.BILINEAR)).transpose(2, 0, 1) / 255
    np.testing.assert_allclose(pil, by_hand, atol=1e-6)
    steps = np.abs(tensor - pil) * 255
    assert steps.max() == pytest.approx(1, abs=1e-3) and 0 < (steps > 0.5).mean() < 0.01


def test_crop_path_and_per_dataset_settings():
    assert STANDARD.test_mode is None and CVPR.test_mode == IJCV.test_mode == "crop"
    assert STANDARD.inference_settings("vgg16", 200) is None
    assert CVPR.inference_settings("vgg16", 200) == (0.15, 80)
    assert IJCV.inference_settings("vgg16", 200) == (0.10, 80)
    assert CVPR.inference_settings("mobilenet_v1", 200) == (0.15, 200)
    assert IJCV.inference_settings("mobilenet_v1", 200) == (0.10, 80)
    assert CVPR.inference_settings("resnet50", 1000) == (0.45, 1)
    assert IJCV.inference_settings("resnet50", 1000) == (0.25, 1)
    assert CVPR.inference_settings("resnet18", 4) is None  # no entry: the checkpoint's own


class _FixedMap(nn.Module):
    """A stand-in model whose map is fixed (3 x 3, columns 1.0 / 0.4 / 0.0)."""

    num_classes = 2

    def forward(self, images, labels=None, top_k=1):
        fg = torch.tensor([1.0, 0.4, 0.0]).repeat(3, 1).expand(len(images), 1, 3, 3)
        return SimpleNamespace(logits=torch.zeros(len(images), 2), fg_map=fg)


def test_predictor_threshold_before_or_after_resizing():
    # Before: at 3 x 3 only column 0 passes 0.5 -> [0, 3) x [0, 1) -> x 0..4 on a 12-pixel photo.
    # After: the bilinear x4 resize gives columns 1, 1, .925, .775, .625, .475, ... -> 5 pass.
    photo = np.zeros((12, 12, 3), np.uint8)
    after = Localizer(_FixedMap(), input_size=3, resize_size=3, threshold=0.5, device="cpu")
    before = Localizer(
        _FixedMap(), input_size=3, resize_size=3, threshold=0.5, device="cpu", photo_threshold="before"
    )
    a, b = after.predict(photo, crop=False)[0], before.predict(photo, crop=False)[0]
    assert a.box == (0, 0, 5, 12) and a.photo_threshold == "after"
    assert b.box == (0, 0, 4, 12) and b.to_json()["photo_threshold"] == "before"
    assert int(a.mask.sum()) == 5 * 12 and int(b.mask.sum()) == 4 * 12
    with pytest.raises(ValueError, match="photo_threshold"):
        Localizer(_FixedMap(), input_size=3, device="cpu", photo_threshold="later")


# ----------------------------------------------------------------------------- random maps


def random_raw_maps(rng: np.random.Generator, n: int, side: int) -> np.ndarray:
    """Network-like low-resolution maps: a mix of noise, smooth blobs and mirror-symmetric maps
    (whose components come in equal-area pairs, so the component order matters)."""
    out = np.empty((n, side, side), np.float32)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            m = rng.random((side, side))
        else:
            coarse = rng.random((3, 3))
            m = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_LINEAR) + 0.05 * rng.random(
                (side, side)
            )
        if kind == 2:
            m[:, side - side // 2 :] = m[:, : side // 2][:, ::-1]
        out[i] = (m * rng.uniform(0.5, 20.0)).astype(np.float32)
    return out


def random_records(rng: np.random.Generator, n: int) -> tuple[list[tuple[int, int]], list[np.ndarray]]:
    """Image sizes and 1-3 boxes per image in image pixels (x1 / y1 exclusive)."""
    sizes, boxes = [], []
    for _ in range(n):
        w, h = int(rng.integers(40, 500)), int(rng.integers(40, 500))
        k = int(rng.integers(1, 4))
        big = rng.random() < 0.5  # half of the images hold one large box among small ones
        x = np.sort(rng.uniform(0, w, (k, 2)), axis=1).round(1)
        y = np.sort(rng.uniform(0, h, (k, 2)), axis=1).round(1)
        if big:
            x[0] = rng.uniform(0, 0.3 * w), rng.uniform(0.6 * w, w)
            y[0] = rng.uniform(0, 0.3 * h), rng.uniform(0.6 * h, h)
            x[0], y[0] = x[0].round(1), y[0].round(1)
        x[:, 1] = np.maximum(x[:, 1], x[:, 0] + 1)
        y[:, 1] = np.maximum(y[:, 1], y[:, 0] + 1)
        sizes.append((w, h))
        boxes.append(np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1))
    return sizes, boxes


def label_raster(binary: np.ndarray) -> np.ndarray:
    """8-connected labels numbered in raster order of each component's first pixel
    (skimage.measure.label's numbering), by runs: each row's runs of foreground join the runs of
    the row above that touch them (diagonals included); a set's root is its first run."""
    runs = []  # (row, start, stop) in raster order
    for y, row in enumerate(binary.tolist()):
        x, w = 0, len(row)
        while x < w:
            if row[x]:
                start = x
                while x < w and row[x]:
                    x += 1
                runs.append((y, start, x))
            else:
                x += 1
    parent = list(range(len(runs)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    above_start = 0
    for i, (y, a, b) in enumerate(runs):
        while above_start < i and runs[above_start][0] < y - 1:
            above_start += 1
        for j in range(above_start, i):
            yj, c, d = runs[j]
            if yj == y - 1 and c <= b and d >= a:  # [c, d) and [a, b) touch with diagonals
                ri, rj = root(i), root(j)
                parent[max(ri, rj)] = min(ri, rj)
    labels = np.zeros(binary.shape, np.int64)
    numbers: dict[int, int] = {}
    for i, (y, a, b) in enumerate(runs):
        labels[y, a:b] = numbers.setdefault(root(i), len(numbers) + 1)
    return labels


def count_max(rows: list[list[int]]) -> int:
    """The reference's count_max: the most frequent non-zero label, first seen on ties."""
    counts: dict[int, int] = {}
    for row in rows:
        for item in row:
            if item == 0:
                continue
            counts[item] = counts.get(item, 0) + 1
    if not counts:
        return -1
    return sorted(counts.items(), key=lambda d: d[1], reverse=True)[0][0]


def iou_reference(a, b) -> float:
    """The reference IoU of two boxes (inclusive pixels)."""
    x_a, y_a = max(a[0], b[0]), max(a[1], b[1])
    x_b, y_b = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x_b - x_a + 1) * max(0, y_b - y_a + 1)
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / float(area_a + area_b - inter)


def code_box(raw: np.ndarray, eps: float, crop: int, threshold: float) -> list[float]:
    """The papers' box of one map: normalise, cv2.resize, ``> threshold``, the most frequent
    label, its bounding box (regionprops' [min_row, min_col, max_row + 1, max_col + 1])."""
    lo, hi = np.min(raw), np.max(raw)
    if hi - lo + eps == 0:
        cam = np.zeros((crop, crop), np.float32)  # 0 / 0: NaN, which passes no threshold
    else:
        cam = cv2.resize((raw - lo) / (hi - lo + np.float32(eps)), dsize=(crop, crop))
    highlight = np.zeros(cam.shape)
    highlight[cam > threshold] = 1
    labels = label_raster(highlight > 0)
    best = count_max(labels.tolist())
    ys, xs = np.nonzero(labels == best) if best > 0 else (np.zeros(0), np.zeros(0))
    if len(ys) == 0:
        return [0, 0, crop, crop]
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def cvpr_gt(box, size, resize, crop) -> list[float]:
    """ResizedBBoxCrop((R, R)) then CenterBBoxCrop(C), then times C (the CVPR script)."""
    w, h = size
    ratew, rateh = resize / w, resize / h
    b = [box[0] * ratew, box[1] * rateh, box[2] * ratew, box[3] * rateh]
    i = j = int(round((resize - crop) / 2.0))
    b = [max(j, b[0]), max(i, b[1]), min(j + crop, b[2]), min(i + crop, b[3])]
    b = [(b[0] - j) / crop, (b[1] - i) / crop, (b[2] - j) / crop, (b[3] - i) / crop]
    return [b[0] * crop, b[1] * crop, b[2] * crop, b[3] * crop]


def ijcv_gt(box, size, resize, crop) -> list[int]:
    """The IJCV loader's box: truncated, clipped to [0, C - 1]."""
    w, h = float(size[0]), float(size[1])
    shift = (resize - crop) // 2
    return [
        int(max(box[0] / w * resize - shift, 0)),
        int(max(box[1] / h * resize - shift, 0)),
        int(min(box[2] / w * resize - shift, crop - 1)),
        int(min(box[3] / h * resize - shift, crop - 1)),
    ]


def fast_evaluator(protocol, raw, logits, labels, sizes, boxes, crop, resize, threshold) -> Evaluator:
    ids = [f"img{i}" for i in range(len(raw))]
    evaluator = Evaluator(
        int(logits.shape[1]),
        threshold,
        protocol=protocol,
        original_boxes=dict(zip(ids, boxes)),
        resize_size=resize,
    )
    raw_t = torch.from_numpy(raw)
    for start in range(0, len(raw), 250):
        part = slice(start, start + 250)
        evaluator.update(
            BatchPrediction(
                logits=logits[part],
                maps=localization_maps(raw_t[part], crop),
                labels=labels[part],
                boxes=[torch.zeros(1, 4) + 1 for _ in ids[part]],  # the transform's; unused here
                mask=None,
                ignore=None,
                image_ids=ids[part],
                orig_sizes=torch.tensor(sizes[part]),
                raw_maps=raw_t[part],
            )
        )
    return evaluator


def random_logits(rng, n, k):
    """Scores with many ties (small integers), so the top-k tie rule matters."""
    return torch.from_numpy(rng.integers(0, 4, (n, k)).astype(np.float32))


def transcribed(protocol, raw, logits, labels, sizes, boxes, crop, resize, threshold):
    """Best IoU, top-1 and top-5 of every image, by the papers' script, image by image."""
    ious, top1, top5 = [], [], []
    for i in range(len(raw)):
        bbox = code_box(raw[i], protocol.norm_eps, crop, threshold)
        max_iou = -1
        for box in boxes[i]:
            gt = (cvpr_gt if protocol is CVPR else ijcv_gt)(box.tolist(), sizes[i], resize, crop)
            max_iou = max(max_iou, iou_reference(bbox, gt))
        ious.append(max_iou)
        out = torch.topk(logits[i : i + 1], 5, 1, True, True)[1][0].tolist()
        top1.append(out[0] == int(labels[i]))
        top5.append(int(labels[i]) in out[:5])
    return np.array(ious), np.array(top1), np.array(top5)


@pytest.mark.parametrize("protocol", [CVPR, IJCV], ids=lambda p: p.name)
def test_code_protocols_match_their_transcription(protocol):
    # 970 small maps (5 x 5 upsampled to a 40-pixel crop of 46) and 30 of the real geometry
    # (28 x 28 upsampled to the 224 crop of 256).
    rng = np.random.default_rng(17 if protocol is CVPR else 23)
    k, threshold = 6, (0.15 if protocol is CVPR else 0.1)
    count = 0
    for n, side, crop, resize in ((970, 5, 40, 46), (30, 28, 224, 256)):
        raw = random_raw_maps(rng, n, side)
        raw[::97] = 1.5  # some constant maps
        sizes, boxes = random_records(rng, n)
        labels = torch.from_numpy(rng.integers(0, k, n))
        logits = random_logits(rng, n, k)
        fast = fast_evaluator(protocol, raw, logits, labels, sizes, boxes, crop, resize, threshold)
        got = fast.decisions()
        ious, top1, top5 = transcribed(protocol, raw, logits, labels, sizes, boxes, crop, resize, threshold)
        np.testing.assert_allclose(got["iou"], ious, rtol=0, atol=1e-12)
        ok = ious > 0.5 if protocol is CVPR else ious >= 0.5
        assert (got["correct"] == ok).all()
        assert ok.any() and not ok.all()  # both outcomes occur
        count += n

        result, lab = fast.compute(), labels.numpy()
        if protocol is CVPR:  # mean over classes of np.sum(IoUSet > 0.5) / len(IoUSet)
            per_class = [
                [np.sum(m[lab == c]) / np.sum(lab == c) for m in (ok, ok & top1, ok & top5)]
                for c in np.unique(lab)
            ]
            expected = 100 * np.mean(per_class, axis=0)
        else:  # AverageMeter of 100 / 0 per image
            expected = [np.mean(np.where(m, 100, 0)) for m in (ok, ok & top1, ok & top5)]
            for d in (0.3, 0.7):
                assert result["box_acc"][d] == pytest.approx(np.mean(np.where(ious >= d, 100, 0)))
        assert [result["gt_known_loc"], result["top1_loc"], result["top5_loc"]] == pytest.approx(
            list(expected)
        )
    assert count == 1000


def wsol_boxes(scoremap: np.ndarray, thresholds, multi_contour: bool) -> list[np.ndarray]:
    """wsolevaluation's compute_bboxes_from_scoremaps, threshold by threshold."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    out = []
    for t in thresholds:
        _, binary = cv2.threshold(
            src=image, thresh=int(t * np.max(image)), maxval=255, type=cv2.THRESH_BINARY
        )
        contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE, method=cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            out.append(np.asarray([[0, 0, 0, 0]]))
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        out.append(np.asarray(boxes))
    return out


def wsol_resize_bbox(box, image_size, side) -> list[int]:
    x0, y0, x1, y1 = map(float, box)
    w, h = map(float, image_size)
    return [int(x0 * side / w), int(y0 * side / h), int(x1 * side / w), int(y1 * side / h)]


@pytest.mark.parametrize("multi_contour", [True, False])
def test_standard_matches_wsolevaluation_transcription(multi_contour):
    rng = np.random.default_rng(5 if multi_contour else 6)
    n = 1000
    ious_at, interval = (0.3, 0.5, 0.7), 0.1
    thresholds = np.arange(0, 1, interval)
    small = localization_maps(torch.from_numpy(random_raw_maps(rng, n - 12, 5)), 20).numpy()
    smooth = localization_maps(torch.from_numpy(random_raw_maps(rng, 12, 28)), 224).numpy()
    sizes, boxes = random_records(rng, n)
    fast = BoxEvaluator(ious_at, interval, multi_contour, num_workers=1)
    for maps, offset in ((small, 0), (smooth, n - 12)):
        side = maps.shape[-1]
        gts = [boxes_to_map(boxes[offset + i], sizes[offset + i], side) for i in range(len(maps))]
        got = fast.hits(maps, gts)
        for i, scoremap in enumerate(maps):
            gt = np.array([wsol_resize_bbox(b, sizes[offset + i], side) for b in boxes[offset + i]])
            per_threshold = wsol_boxes(scoremap.astype(np.float64), thresholds, multi_contour)
            for j, pred in enumerate(per_threshold):
                best = max(iou_reference(p, g) if _union(p, g) > 0 else 0.0 for p in pred for g in gt)
                for d_index, d in enumerate(ious_at):
                    assert got[i, d_index, j] == (best >= d), (offset + i, j, d)


def _union(a, b) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1) * max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    return (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter


# ----------------------------------------------------------------------------- commands


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from bas.checkpoints import save_model
    from bas.data.synthetic import make_dataset
    from bas.models import build_model

    root = tmp_path_factory.mktemp("protocols")
    torch.manual_seed(0)
    checkpoint = root / "tiny.safetensors"
    save_model(checkpoint, build_model("mobilenet_v1", 2, hidden=8), input_size=32, resize_size=36)
    data = make_dataset(root / "cub", num_classes=2, images_per_class=3, image_size=40, seed=0)
    return SimpleNamespace(root=root, checkpoint=checkpoint, data=data)


def test_evaluate_protocol_all_and_diff_csv(tiny, capsys):
    from bas.cli import main

    out, diff = tiny.root / "eval_all", tiny.root / "diff.csv"
    args = ["evaluate", "--checkpoint", str(tiny.checkpoint), "--data", str(tiny.data), "--dataset", "cub"]
    args += ["--workers", "0", "--no-progress", "--device", "cpu", "--threshold", "0.4"]
    assert main([*args, "--output", str(out), "--protocol", "all", "--diff-csv", str(diff)]) == 0
    printed = capsys.readouterr().out
    assert "standard" in printed and "cvpr2022-code" in printed and "spread" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["protocols"]) == set(PROTOCOLS)
    assert metrics["protocols"]["cvpr2022-code"]["test_mode"] == "crop"
    assert metrics["protocols"]["ijcv2023-code"]["ten_crop"] is True
    rows = list(csv.reader(diff.open()))
    assert rows[0] == ["image_id", *(f"{n}_{c}" for n in PROTOCOLS for c in ("iou", "correct"))]
    for row in rows[1:]:
        assert len({row[2], row[4], row[6]}) == 2  # the decisions differ on every row
    # one protocol alone gives the same numbers as in the side-by-side run
    single = tiny.root / "eval_ijcv"
    assert main([*args, "--output", str(single), "--protocol", "ijcv2023-code"]) == 0
    alone = json.loads((single / "metrics.json").read_text())
    assert alone["gt_known_loc"] == metrics["protocols"]["ijcv2023-code"]["gt_known_loc"]
    assert alone["box_acc"] == metrics["protocols"]["ijcv2023-code"]["box_acc"]
    assert main([*args, "--output", str(single), "--diff-csv", str(diff)]) == 2  # needs --protocol all


def test_evaluate_maps_with_code_protocols(tiny, capsys):
    from bas.cli import main

    maps = tiny.root / "maps"
    args = ["evaluate", "--checkpoint", str(tiny.checkpoint), "--data", str(tiny.data), "--dataset", "cub"]
    args += ["--workers", "0", "--no-progress", "--device", "cpu", "--test-mode", "resize"]
    assert main([*args, "--output", str(tiny.root / "e"), "--save-maps", str(maps)]) == 0
    results = {}
    for name in ("cvpr2022-code", "ijcv2023-code"):
        out = tiny.root / f"{name}.json"
        argv = [
            "evaluate-maps",
            "--maps",
            str(maps),
            "--protocol",
            name,
            "--threshold",
            "0.3",
            "--output",
            str(out),
        ]
        assert main(argv) == 0
        results[name] = json.loads(out.read_text())
    assert set(results["ijcv2023-code"]["box_acc"]) == {"0.3", "0.5", "0.7"}
    assert results["cvpr2022-code"]["class_balanced"] is True
    assert main(["evaluate-maps", "--maps", str(maps), "--protocol", "ijcv2023-code"]) == 2  # no threshold
    assert "error:" in capsys.readouterr().err


def test_code_protocols_refuse_select_on_and_save_maps(tiny, capsys):
    from bas.cli import main

    args = ["evaluate", "--checkpoint", str(tiny.checkpoint), "--data", str(tiny.data), "--dataset", "cub"]
    args += ["--workers", "0", "--no-progress", "--device", "cpu", "--output", str(tiny.root / "refused")]
    assert main([*args, "--protocol", "cvpr2022-code", "--select-on", "val"]) == 2
    assert "--select-on" in capsys.readouterr().err
    assert main([*args, "--protocol", "ijcv2023-code", "--save-maps", str(tiny.root / "no_maps")]) == 2
    assert "standard protocol" in capsys.readouterr().err
    assert not (tiny.root / "no_maps").exists() and not (tiny.root / "refused").exists()
