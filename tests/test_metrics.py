"""Tests of bas.metrics: IoU, top-k, localisation accuracy, MaxBoxAcc and PxAP."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from bas.errors import DataError
from bas.metrics import (
    BoxEvaluator,
    MaskEvaluator,
    best_iou,
    box_iou,
    iou_fractions,
    iou_percent,
    localization_accuracy,
    per_class_accuracy,
    quantize_maps,
    reference_box_hits,
    threshold_grid,
    topk_correct,
)

# ----------------------------------------------------------------------------- IoU


def test_box_iou_inclusive_convention():
    a = np.array([[0, 0, 9, 9]])  # 10 x 10 = 100 pixels
    b = np.array([[5, 5, 14, 14], [0, 0, 9, 9], [20, 20, 30, 30], [9, 0, 18, 9]])
    iou = box_iou(a, b)
    assert iou.shape == (1, 4)
    # 25 shared pixels / (100 + 100 - 25); identical; disjoint; sharing the column x = 9 (10 pixels).
    np.testing.assert_allclose(iou[0], [25 / 175, 1.0, 0.0, 10 / 190])


def test_box_iou_single_pixel_boxes_and_shape():
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0])[0, 0] == 1.0  # one pixel each, inclusive
    assert box_iou(np.zeros((3, 4)), np.zeros((2, 4))).shape == (3, 2)
    with pytest.raises(ValueError):
        box_iou(np.zeros((2, 3)), np.zeros((1, 4)))


def test_best_iou_takes_the_best_ground_truth_box():
    pred = np.array([[0, 0, 9, 9], [0, 0, 9, 9]])
    gts = [np.array([[20, 20, 30, 30], [0, 0, 9, 4], [0, 0, 9, 9]]), np.array([[0, 0, 9, 4]])]
    np.testing.assert_allclose(best_iou(pred, gts), [1.0, 50 / 100])
    with pytest.raises(ValueError):
        best_iou(pred, [np.zeros((0, 4)), np.zeros((1, 4))])


# ----------------------------------------------------------------------------- classification


def test_topk_correct():
    scores = np.array([[0.1, 0.5, 0.3, 0.2], [0.9, 0.0, 0.05, 0.05], [0.2, 0.2, 0.2, 0.4]])
    labels = np.array([2, 0, 1])
    correct = topk_correct(scores, labels, ks=(1, 2, 3))
    np.testing.assert_array_equal(correct[1], [False, True, False])
    np.testing.assert_array_equal(correct[2], [True, True, False])  # row 3: classes 3, 0 (tie -> lower index)
    np.testing.assert_array_equal(correct[3], [True, True, True])


def test_localization_accuracy_per_image_and_class_balanced():
    # Class 0: three images, boxes right; class 1: one image, box wrong.
    ious = np.array([0.9, 0.6, 0.5, 0.2])
    labels = np.array([0, 0, 0, 1])
    top1 = np.array([True, False, True, True])
    top5 = np.array([True, True, True, True])
    per_image = localization_accuracy(ious, labels, top1, top5)
    assert per_image["gt_known_loc"] == pytest.approx(75.0)
    assert per_image["top1_loc"] == pytest.approx(50.0)
    assert per_image["top5_loc"] == pytest.approx(75.0)
    assert per_image["top1_cls"] == pytest.approx(75.0)
    assert per_image["top5_cls"] == pytest.approx(100.0)
    balanced = localization_accuracy(ious, labels, top1, top5, class_balanced=True)
    assert balanced["gt_known_loc"] == pytest.approx(50.0)  # mean of 100 and 0
    assert balanced["top1_loc"] == pytest.approx((200 / 3) / 2)
    assert balanced["top1_cls"] == pytest.approx((200 / 3 + 100) / 2)
    assert per_class_accuracy(ious >= 0.5, labels) == {0: 100.0, 1: 0.0}


# ----------------------------------------------------------------------------- MaxBoxAcc


def smooth_maps(rng, n, size):
    """Sums of random Gaussians, min-max normalised (some maps do not reach 1)."""
    yy, xx = np.mgrid[0:size, 0:size]
    maps = np.zeros((n, size, size))
    for m in maps:
        for _ in range(rng.integers(1, 4)):
            cx, cy = rng.uniform(0, size, 2)
            sx, sy = rng.uniform(size / 20, size / 3, 2)
            m += rng.uniform(0.3, 1) * np.exp(-((xx - cx) ** 2) / (2 * sx**2) - (yy - cy) ** 2 / (2 * sy**2))
        m -= m.min()
        m /= m.max() / rng.choice([1.0, 0.7])
    return maps


def random_boxes(rng, n, size):
    boxes = []
    for _ in range(n):
        k = rng.integers(1, 3)
        xy = np.sort(rng.integers(0, size, size=(k, 2, 2)), axis=1)  # [[x0, y0], [x1, y1]]
        boxes.append(xy.reshape(k, 4).astype(float))
    return boxes


def test_threshold_grid():
    np.testing.assert_array_equal(threshold_grid(0.25), [0, 0.25, 0.5, 0.75])
    assert len(threshold_grid(0.001)) == 1000
    with pytest.raises(ValueError):
        threshold_grid(0)


def test_all_zero_map_gives_the_box_0000():
    evaluator = BoxEvaluator(iou_thresholds=(0.5,), interval=0.1, num_workers=1)
    maps = np.zeros((2, 20, 20))
    evaluator.accumulate(maps, [np.array([[0, 0, 0, 0]]), np.array([[0, 0, 9, 9]])])
    result = evaluator.compute()
    # [0, 0, 0, 0] matches the first ground truth exactly, the second at 1/100.
    np.testing.assert_array_equal(result["curve"]["accuracy"][0.5], np.full(10, 50.0))


def test_unimodal_map_strict_threshold_and_box_convention():
    scoremap = np.full((20, 20), 0.5)  # quantised to 127
    scoremap[5:10, 3:13] = 1.0  # 255; rows 5..9, columns 3..12
    gt = np.array([[3, 5, 13, 10]])  # boundingRect x=3, w=10 -> x1 = x + w = 13
    evaluator = BoxEvaluator(iou_thresholds=(0.5,), interval=0.1, multi_contour=False, num_workers=1)
    evaluator.accumulate(scoremap[None], [gt])
    result = evaluator.compute()
    # Up to t = 0.4 the level int(t * 255) <= 102 < 127: the whole map, box [0, 0, 19, 19].
    # At t = 0.5 the level is int(127.5) = 127 and 127 > 127 is false: the block alone.
    expected = [0, 0, 0, 0, 0, 100, 100, 100, 100, 100]
    np.testing.assert_array_equal(result["curve"]["accuracy"][0.5], expected)
    assert result["MaxBoxAcc"] == {0.5: 100.0}
    assert result["best_threshold"][0.5] == pytest.approx(0.5)
    whole = BoxEvaluator(iou_thresholds=(0.1,), interval=0.1, multi_contour=False, num_workers=1)
    whole.accumulate(scoremap[None], [gt])  # IoU of [0, 0, 19, 19] with gt = 66 / 400
    np.testing.assert_array_equal(whole.compute()["curve"]["accuracy"][0.1], np.full(10, 100.0))


def test_multimodal_map_single_versus_multi_contour():
    scoremap = np.zeros((30, 30))
    scoremap[2:14, 2:14] = 0.8  # large blob, u8 204
    scoremap[20:25, 20:26] = 0.9  # small blob, u8 229 (the maximum)
    gt = np.array([[20, 20, 26, 25]])  # the small blob's box
    results = {}
    for multi in (False, True):
        evaluator = BoxEvaluator(iou_thresholds=(0.5,), interval=0.1, multi_contour=multi, num_workers=1)
        evaluator.accumulate(scoremap[None], [gt])
        results[multi] = evaluator.compute()["curve"]["accuracy"][0.5]
    # Single contour: the large blob wins until t = 0.9 (level int(0.9 * 229) = 206 >= 204).
    np.testing.assert_array_equal(results[False], [0] * 9 + [100])
    np.testing.assert_array_equal(results[True], [100] * 10)


def test_multi_contour_counts_hole_contours():
    scoremap = np.zeros((12, 12))
    scoremap[1:11, 1:11] = 1.0
    scoremap[4:8, 4:8] = 0.0  # a 4 x 4 hole, rows/columns 4..7
    gt = np.array([[3, 3, 9, 9]])  # the hole contour runs on the pixels around it: x, y in 3..8
    for multi, expected in ((False, 0.0), (True, 100.0)):
        evaluator = BoxEvaluator(iou_thresholds=(0.9,), interval=0.5, multi_contour=multi, num_workers=1)
        evaluator.accumulate(scoremap[None], [gt])
        assert evaluator.compute()["MaxBoxAcc"][0.9] == expected


def test_quantisation_truncates():
    values = np.array([[[0.0, 0.5, 0.999, 1.0, 1 / 255, 0.00392]]])  # 0.00392 * 255 = 0.9996
    np.testing.assert_array_equal(quantize_maps(values)[0, 0], [0, 127, 254, 255, 1, 0])


def test_levels_next_to_the_maximum():
    scoremap = np.zeros((10, 10))
    scoremap[2:4, 2:4] = 1.0  # 255, small blob
    scoremap[6:9, 6:9] = 0.999  # 254, larger blob
    gt = np.array([[2, 2, 4, 4]])  # the 255 blob
    evaluator = BoxEvaluator(iou_thresholds=(1.0,), interval=0.001, multi_contour=False, num_workers=1)
    evaluator.accumulate(scoremap[None], [gt])
    curve = evaluator.compute()["curve"]["accuracy"][1.0]
    thresholds = threshold_grid(0.001)
    assert int(thresholds[996] * 255) == 253 and int(thresholds[997] * 255) == 254
    # Level 253 keeps both blobs and the larger (254) one is the box; at level 254, 254 > 254 is
    # false and the 255 blob is alone.
    assert curve[996] == 0.0 and curve[997] == 100.0 and curve[999] == 100.0


@pytest.mark.parametrize("multi_contour", [False, True])
def test_box_evaluator_equals_the_per_threshold_reference(multi_contour):
    rng = np.random.default_rng(0)
    maps = smooth_maps(rng, 12, 48)
    maps[0] = 0.0
    maps[1] = rng.random((48, 48))  # noise: many small contours and holes
    gts = random_boxes(rng, 12, 48)
    ious = (0.3, 0.5, 0.7)
    evaluator = BoxEvaluator(iou_thresholds=ious, interval=0.01, multi_contour=multi_contour, num_workers=1)
    evaluator.accumulate(maps[:5], gts[:5])
    evaluator.accumulate(maps[5:], gts[5:])
    reference = reference_box_hits(maps, gts, 0.01, ious, multi_contour)
    result = evaluator.compute()
    for i, d in enumerate(ious):
        np.testing.assert_allclose(result["curve"]["accuracy"][d], reference[i] * 100.0 / len(maps))
    assert result["num_images"] == 12
    assert result["MaxBoxAccV2"] == pytest.approx(np.mean(list(result["MaxBoxAcc"].values())))


def test_box_evaluator_fine_interval_equals_reference():
    rng = np.random.default_rng(1)
    maps = smooth_maps(rng, 2, 64).astype(np.float32)
    gts = random_boxes(rng, 2, 64)
    evaluator = BoxEvaluator(interval=0.001, multi_contour=True, num_workers=1)
    evaluator.accumulate(maps, gts)
    reference = reference_box_hits(maps, gts, 0.001, (0.3, 0.5, 0.7), True)
    np.testing.assert_allclose(evaluator.compute()["curve"]["accuracy"][0.5], reference[1] * 50.0)


def test_box_evaluator_worker_pool_gives_the_same_counts():
    rng = np.random.default_rng(2)
    maps = smooth_maps(rng, 40, 32)
    gts = random_boxes(rng, 40, 32)
    results = []
    for workers in (1, 2):
        evaluator = BoxEvaluator(interval=0.01, num_workers=workers)
        for start in range(0, 40, 8):
            evaluator.accumulate(maps[start : start + 8], gts[start : start + 8])
        results.append(evaluator.compute())
    for d in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(results[0]["curve"]["accuracy"][d], results[1]["curve"]["accuracy"][d])
    assert results[1]["num_images"] == 40


def test_box_evaluator_worker_pool_in_chunks_and_after_compute():
    rng = np.random.default_rng(5)
    maps = smooth_maps(rng, 170, 16).astype(np.float32)
    gts = random_boxes(rng, 170, 16)
    single = BoxEvaluator(interval=0.01, num_workers=1)
    single.accumulate(maps, gts)
    expected = single.compute()["curve"]["accuracy"]
    pooled = BoxEvaluator(interval=0.01, num_workers=2)
    for start in range(0, 150, 25):  # full chunks go to the pool while batches keep coming
        pooled.accumulate(maps[start : start + 25], gts[start : start + 25])
    assert pooled.num_images == 150
    first = pooled.compute()
    assert first["num_images"] == 150 and pooled._pool is None
    pooled.accumulate(maps[150:], gts[150:])  # results so far, then more maps
    result = pooled.compute()
    assert result["num_images"] == 170
    for d in (0.3, 0.5, 0.7):
        np.testing.assert_array_equal(result["curve"]["accuracy"][d], expected[d])


def test_box_evaluator_close_stops_the_pool():
    rng = np.random.default_rng(6)
    evaluator = BoxEvaluator(interval=0.01, num_workers=2)
    evaluator.accumulate(smooth_maps(rng, 70, 16), random_boxes(rng, 70, 16))
    assert evaluator._pool is not None
    evaluator.close()
    assert evaluator._pool is None


@pytest.mark.slow
def test_box_evaluator_pool_after_opencv_started_its_threads():
    """Workers forked from a process whose OpenCV thread pool runs must not wait on it forever."""
    import os
    import signal
    import subprocess
    import sys

    script = """
import cv2, numpy as np
from bas.metrics import BoxEvaluator
big = np.random.rand(1500, 1500).astype(np.float32)
for _ in range(3):
    cv2.GaussianBlur(big, (21, 21), 0)  # starts OpenCV's worker threads in this process
rng = np.random.default_rng(0)
maps = rng.random((80, 16, 16))
evaluator = BoxEvaluator(interval=0.01, num_workers=2)
evaluator.accumulate(maps, [np.array([[0, 0, 7, 7]])] * 80)
print(evaluator.compute()["num_images"])
"""
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the script and its workers
        process.communicate()
        pytest.fail("the evaluator's workers hung")
    assert process.returncode == 0, err
    assert out.strip() == "80"


def adversarial_maps(rng, size):
    """Maps that stress the level-skipping logic: holes, rings, equal maxima, plateaus, merges, noise."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    maps = []
    for _ in range(3):  # rings: a hole at high levels, with a bump or a dip inside
        cx, cy = rng.uniform(0.3, 0.7, 2)
        r = np.hypot(xx - cx, yy - cy)
        ring = np.exp(-((r - rng.uniform(0.15, 0.3)) ** 2) / 0.005)
        maps.append(ring + rng.uniform(-0.5, 0.8) * np.exp(-(r**2) / 0.003))
    two = np.exp(-((xx - 0.25) ** 2 + (yy - 0.5) ** 2) / 0.01) + np.exp(
        -((xx - 0.75) ** 2 + (yy - 0.5) ** 2) / 0.01
    )
    maps.append(two)  # two maxima of exactly the same value
    maps.append(np.round(smooth_maps(rng, 1, size)[0] * 6) / 6)  # wide plateaus, several at the top
    maps.append(np.kron(rng.random((size // 8, size // 8)), np.ones((8, 8))))  # blocks: equal-valued plateaus
    low = rng.random((size // 8 + 1, size // 8 + 1))
    maps.append(
        np.asarray(  # bilinear upsampling of a coarse map, like a network's score map
            __import__("cv2").resize(low, (size, size), interpolation=__import__("cv2").INTER_LINEAR)
        )
    )
    maps.append(smooth_maps(rng, 1, size)[0] + 0.05 * rng.random((size, size)))  # smooth plus noise
    checker = ((np.arange(size)[:, None] // 3 + np.arange(size)[None] // 3) % 2).astype(float)
    maps.append(checker * 0.5 + 0.5 * smooth_maps(rng, 1, size)[0])  # many diagonal touches
    frame = np.zeros((size, size))
    frame[2:-2, 2:-2] = 1.0
    frame[5:-5, 5:-5] = 0.3
    frame[size // 2, size // 2] = 0.9  # a hole with an island in it
    maps.append(frame)
    out = []
    for m in maps:
        m = np.asarray(m, dtype=np.float64)
        m = (m - m.min()) / (m.max() - m.min())
        out.append(m * rng.choice([1.0, 0.8]))
    return np.stack(out)


@pytest.mark.parametrize("multi_contour", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_box_evaluator_equals_the_reference_on_adversarial_maps(multi_contour, seed):
    rng = np.random.default_rng(100 + seed)
    size = 32
    maps = adversarial_maps(rng, size)
    gts = random_boxes(rng, len(maps), size)
    gts[0] = np.array([[0.0, 0.0, size - 1.0, size - 1.0]])  # large boxes keep low levels in play
    ious = (0.1, 0.3, 0.5, 0.7, 0.9)
    evaluator = BoxEvaluator(iou_thresholds=ious, interval=0.001, multi_contour=multi_contour, num_workers=1)
    evaluator.accumulate(maps, gts)
    result = evaluator.compute()
    reference = reference_box_hits(maps, gts, 0.001, ious, multi_contour)
    for i, d in enumerate(ious):
        np.testing.assert_allclose(result["curve"]["accuracy"][d], reference[i] * 100.0 / len(maps))


def test_regional_maxima_by_hand():
    from bas.metrics import regional_maxima

    u = np.zeros((7, 9), dtype=np.uint8)
    u[1, 1] = 9  # a single-pixel maximum
    u[1, 5:7] = 9  # a two-pixel plateau of the same value: a second maximum of value 9
    u[4, 2:5] = 5  # a plateau ...
    u[5, 4] = 6  # ... with a higher neighbour: not a maximum, but 6 is
    u[6, 8] = 3  # a maximum on the border
    assert sorted(regional_maxima(u).tolist()) == [3, 6, 9, 9]
    d = np.zeros((4, 4), dtype=np.uint8)
    d[1, 1] = d[2, 2] = 7  # diagonal neighbours: one 8-connected plateau
    assert regional_maxima(d).tolist() == [7]
    assert regional_maxima(np.full((3, 3), 4, np.uint8)).tolist() == [4]  # a flat map is one plateau
    assert regional_maxima(np.zeros((3, 3), np.uint8)).tolist() == []  # value 0 is left out


def contour_counts(mask):
    """(components, holes) as cv2.findContours sees them."""
    import cv2

    contours, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)[
        -2:
    ]
    holes = 0 if hierarchy is None else int((hierarchy[0][:, 3] >= 0).sum())
    return len(contours) - holes, holes


def test_euler_numbers_and_regional_maxima_against_find_contours():
    """The two facts the evaluator's level skipping relies on, checked at every level."""
    from bas.metrics import euler_numbers, regional_maxima

    rng = np.random.default_rng(7)
    maps = np.concatenate([adversarial_maps(rng, 32), smooth_maps(rng, 6, 32), rng.random((2, 32, 32))])
    for u8 in quantize_maps(maps):
        euler = euler_numbers(u8)
        maxima = np.array([(regional_maxima(u8) >= w).sum() for w in range(257)])
        previous = (0, 0)  # level 256: nothing
        for w in range(255, 0, -1):
            components, holes = contour_counts(u8 >= w)
            assert euler[w] == components - holes
            # going down one level, components only appear at regional maxima
            assert components <= previous[0] + maxima[w] - maxima[w + 1]
            previous = (components, holes)
        assert euler[256] == 0


def test_accuracy_at_a_threshold_of_the_grid():
    rng = np.random.default_rng(3)
    evaluator = BoxEvaluator(interval=0.01, num_workers=1)
    evaluator.accumulate(smooth_maps(rng, 5, 32), random_boxes(rng, 5, 32))
    curve = evaluator.compute()["curve"]
    assert evaluator.accuracy_at(0.37) == {d: curve["accuracy"][d][37] for d in (0.3, 0.5, 0.7)}
    with pytest.raises(ValueError, match="grid"):
        evaluator.accuracy_at(0.375)


def test_box_evaluator_rejects_bad_input():
    evaluator = BoxEvaluator(num_workers=1)
    with pytest.raises(DataError):
        evaluator.compute()
    bad = np.zeros((1, 8, 8))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluator.accumulate(bad, [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluator.accumulate(np.full((1, 8, 8), 1.5), [np.array([[0, 0, 1, 1]])])
    with pytest.raises(ValueError):
        evaluator.accumulate(np.zeros((2, 8, 8)), [np.array([[0, 0, 1, 1]])])
    for bad_ious in ((), (0,), (1.5e2,), (-0.5,)):
        with pytest.raises(ValueError), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            BoxEvaluator(iou_thresholds=bad_ious)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch")
    scoremap = torch.zeros(1, 10, 10)
    scoremap[0, 2:5, 2:5] = 1.0
    evaluator = BoxEvaluator(iou_thresholds=(0.5,), interval=0.5, num_workers=1)
    evaluator.accumulate(scoremap, [torch.tensor([[2.0, 2.0, 5.0, 5.0]])])
    assert evaluator.compute()["MaxBoxAcc"][0.5] == 100.0


# ----------------------------------------------------------------------------- PxAP / PIoU


def reference_pxap(maps, gt_masks, ignore_masks, interval):
    """wsolevaluation's MaskEvaluator arithmetic with np.histogram, plus BAS's PIoU."""
    edges = np.append(np.arange(0, 1, interval), [1.0, 2.0, 3.0])
    true_hist = np.zeros(len(edges) - 1)
    false_hist = np.zeros(len(edges) - 1)
    for m, g, ig in zip(maps, gt_masks, ignore_masks):
        label = g.astype(np.uint8) + 255 * (ig & ~g).astype(np.uint8)
        true_hist += np.histogram(m[label == 1], bins=edges)[0]
        false_hist += np.histogram(m[label == 0], bins=edges)[0]
    tp = true_hist[::-1].cumsum()
    fn = true_hist.sum() - tp
    fp = false_hist[::-1].cumsum()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / (tp + fp)
    recall = tp / (tp + fn)
    pxap = (precision[1:] * np.diff(recall))[((tp + fp) != 0)[1:]].sum() * 100
    return pxap, (tp / (tp + fp + fn)).max() * 100


def test_mask_evaluator_by_hand():
    scoremap = np.array([[[0.9, 0.6], [0.3, 0.1]]])
    gt = np.array([[[True, False], [True, False]]])  # positives 0.9 and 0.3, negatives 0.6 and 0.1
    evaluator = MaskEvaluator(interval=0.25)
    evaluator.accumulate(scoremap, gt)
    result = evaluator.compute()
    # score >= 0.75: P 1, R 1/2;  >= 0.5: P 1/2, R 1/2;  >= 0.25: P 2/3, R 1;  >= 0: P 1/2, R 1.
    assert result["PxAP"] == pytest.approx(100 * (1 * 0.5 + (2 / 3) * 0.5))
    # IoU 1/2, 1/3, 2/3, 1/2.
    assert result["PIoU"] == pytest.approx(100 * 2 / 3)
    assert result["PIoU_threshold"] == pytest.approx(0.25)
    curve = result["curve"]
    np.testing.assert_allclose(curve["thresholds"], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve["precision"], [0.5, 2 / 3, 0.5, 1, 0])
    np.testing.assert_allclose(curve["recall"], [1, 1, 0.5, 0.5, 0])


def test_mask_evaluator_ignores_the_ignore_region_but_not_the_foreground():
    scoremap = np.array([[[0.9, 0.6], [0.3, 0.1]]])
    gt = np.array([[[True, False], [True, False]]])
    ignore = np.array([[[False, True], [True, False]]])  # the 0.6 negative and the 0.3 positive
    evaluator = MaskEvaluator(interval=0.25)
    evaluator.accumulate(scoremap, gt, ignore)
    result = evaluator.compute()
    # Negatives: 0.1 only; the 0.3 pixel stays positive.  >= 0.75: P 1, R 1/2;  >= 0.25: P 1, R 1.
    assert result["PxAP"] == pytest.approx(100.0)
    assert result["PIoU"] == pytest.approx(100.0)


def test_mask_evaluator_equals_the_histogram_reference():
    rng = np.random.default_rng(4)
    maps = smooth_maps(rng, 6, 40)
    gt = maps + rng.normal(0, 0.2, maps.shape) > 0.5
    ignore = rng.random(maps.shape) < 0.1
    evaluator = MaskEvaluator(interval=0.001)
    evaluator.accumulate(maps[:3], gt[:3], ignore[:3])
    evaluator.accumulate(maps[3:], gt[3:], ignore[3:])
    result = evaluator.compute()
    pxap, piou = reference_pxap(maps, gt, ignore, 0.001)
    assert result["PxAP"] == pxap
    assert result["PIoU"] == pytest.approx(piou, abs=1e-12)


def test_mask_evaluator_without_positive_pixels():
    evaluator = MaskEvaluator(interval=0.1)
    evaluator.accumulate(np.zeros((1, 4, 4)), np.zeros((1, 4, 4), dtype=bool))
    with pytest.raises(DataError, match="positive"):
        evaluator.compute()


# ----------------------------------------------------------------------------- conventions


def test_iou_thresholds_are_fractions_and_percentages_are_deprecated():
    rng = np.random.default_rng(5)
    maps, gts = smooth_maps(rng, 4, 32), random_boxes(rng, 4, 32)
    new = BoxEvaluator(iou_thresholds=(0.3, 0.5, 0.7), interval=0.05, num_workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert BoxEvaluator().iou_thresholds == (0.3, 0.5, 0.7)  # the default warns nothing
    with pytest.warns(DeprecationWarning, match="in percent"):
        old = BoxEvaluator(iou_thresholds=(30, 50, 70), interval=0.05, num_workers=1)
    assert old.iou_thresholds == new.iou_thresholds == (0.3, 0.5, 0.7)
    for evaluator in (new, old):
        evaluator.accumulate(maps, gts)
    assert new.compute()["MaxBoxAcc"] == old.compute()["MaxBoxAcc"]
    assert list(new.compute()["MaxBoxAcc"]) == [0.3, 0.5, 0.7]
    with pytest.warns(DeprecationWarning):
        hits = reference_box_hits(maps, gts, 0.05, (50,), True)
    np.testing.assert_array_equal(hits, reference_box_hits(maps, gts, 0.05, (0.5,), True))


def test_localization_accuracy_threshold_is_a_fraction():
    ious = np.array([0.2, 0.5, 0.8])
    ones = np.ones(3, dtype=bool)
    assert localization_accuracy(ious, [0, 0, 0], ones, ones, iou_threshold=0.5)[
        "gt_known_loc"
    ] == pytest.approx(200 / 3)
    with pytest.warns(DeprecationWarning):
        old = localization_accuracy(ious, [0, 0, 0], ones, ones, iou_threshold=70)
    assert old["gt_known_loc"] == pytest.approx(100 / 3)


def test_iou_helpers():
    assert iou_percent(0.5) == "50" and iou_percent(0.3) == "30" and iou_percent(0.75) == "75"
    assert iou_fractions([0.5, 1]) == (0.5, 1.0)
    with pytest.warns(DeprecationWarning):
        assert iou_fractions((30, 50, 70)) == (0.3, 0.5, 0.7)


def test_exclusive_boxes_with_the_protocols_inclusive_iou():
    # A 10 x 10 block of pixels, columns / rows 0..9, is the box [0, 0, 10, 10] (x1 exclusive) in
    # every API; the protocol counts x0..x1 inclusive, 11 x 11 = 121 pixels for it.
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10])[0, 0] == 1.0
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 5])[0, 0] == pytest.approx(66 / 121)


def test_metrics_import_without_torch():
    """bas.metrics (and the metadata reader) stay pure numpy, so map evaluation needs no torch."""
    src = Path(__file__).resolve().parents[1] / "src"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('bas'); pkg.__path__ = [{str(src / 'bas')!r}]; sys.modules['bas'] = pkg\n"
        "import bas.metrics, bas.data.metadata, bas.data.paths\n"
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def one_pixel_maps(rng, size):
    """Maps made of 1-pixel features: isolated pixels, 1-pixel lines and rings, 1-pixel holes,
    diagonal chains touching only at corners, an island in a 1-pixel-wide moat, equal maxima."""
    maps = []
    dots = np.zeros((size, size))
    dots[rng.integers(0, size, 40), rng.integers(0, size, 40)] = rng.choice([0.5, 0.75, 1.0], 40)
    maps.append(dots)
    lines = np.zeros((size, size))
    lines[size // 3, 2:-2] = 1.0
    lines[2:-2, size // 2] = 0.6
    np.fill_diagonal(lines, 0.8)
    np.fill_diagonal(lines[:, ::-1], 0.9)  # two diagonals crossing: 8-connected only
    maps.append(lines)
    ring = np.zeros((size, size))
    ring[4:13, 4:13] = 1.0
    ring[5:12, 5:12] = 0.0  # a 1-pixel-wide ring
    ring[8, 8] = 1.0  # an island in its hole
    ring[20:23, 20:23] = 0.7
    ring[21, 21] = 0.2  # a 1-pixel hole
    ring[0, :] = 0.4  # features on the border
    ring[:, -1] = 0.45
    maps.append(ring)
    chain = np.zeros((size, size))
    for k in range(0, size - 1, 2):
        chain[k, k] = chain[k + 1, k + 1] = 1.0 - k / (2 * size)  # touching diagonally, falling values
    chain[::4, 1::4] = 0.3
    maps.append(chain)
    maps.append((rng.random((size, size)) > 0.6) * rng.choice([0.5, 1.0], (size, size)))  # salt
    return np.stack(maps)


@pytest.mark.slow
def test_box_evaluator_equals_the_reference_on_one_pixel_features():
    rng = np.random.default_rng(200)
    size = 28
    maps = one_pixel_maps(rng, size)
    gts = random_boxes(rng, len(maps), size)
    ious = (0.05, 0.1, 0.3, 0.5, 0.7)
    for multi_contour in (False, True):
        evaluator = BoxEvaluator(ious, interval=0.001, multi_contour=multi_contour, num_workers=1)
        evaluator.accumulate(maps, gts)
        result = evaluator.compute()
        reference = reference_box_hits(maps, gts, 0.001, ious, multi_contour)
        for i, d in enumerate(ious):
            np.testing.assert_array_equal(result["curve"]["accuracy"][d] * len(maps) / 100, reference[i])
