"""Segmentation metrics: confusion matrix with ignore, IoU, mIoU, foreground precision / recall."""

import numpy as np
import pytest

from bas.metrics import (
    SegmentationEvaluator,
    foreground_precision_recall,
    mean_iou,
    per_class_iou,
    segmentation_confusion,
)

# 2 x 3 maps; class 3 appears in neither, the last pixel is ignored.
GT = np.array([[0, 0, 1], [1, 2, 255]], dtype=np.uint8)
PRED = np.array([[0, 1, 1], [1, 1, 0]], dtype=np.uint8)
# rows = ground truth, columns = prediction, counted by hand from the five counted pixels.
HAND = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]])


def test_confusion_matches_hand_count():
    np.testing.assert_array_equal(segmentation_confusion(PRED, GT, 4), HAND)


def test_iou_miou_and_foreground_by_hand():
    iou = per_class_iou(HAND)
    # class 0: 1 / (2 + 1 - 1); class 1: 2 / (2 + 4 - 2); class 2: 0 / 1; class 3: undefined.
    np.testing.assert_allclose(iou[:3], [50.0, 50.0, 0.0])
    assert np.isnan(iou[3])
    assert mean_iou(HAND) == pytest.approx(100.0 / 3)
    precision, recall = foreground_precision_recall(HAND)
    assert precision == pytest.approx(75.0)  # 3 of the 4 pixels predicted as foreground
    assert recall == pytest.approx(100.0)  # all 3 foreground pixels predicted as some foreground


def test_ignored_pixels_do_not_count_whatever_is_predicted():
    pred = PRED.copy()
    pred[1, 2] = 3  # the ignored pixel
    np.testing.assert_array_equal(segmentation_confusion(pred, GT, 4), HAND)
    pred[1, 2] = 255  # even a value that is no class
    np.testing.assert_array_equal(segmentation_confusion(pred, GT, 4), HAND)
    gt = np.full_like(GT, 7)
    np.testing.assert_array_equal(segmentation_confusion(PRED, gt, 4, ignore_index=7), np.zeros((4, 4)))


def test_batch_sequence_and_accumulation_agree():
    rng = np.random.default_rng(0)
    gts = rng.integers(0, 5, (6, 9, 11)).astype(np.uint8)
    gts[rng.random(gts.shape) < 0.2] = 255
    preds = rng.integers(0, 5, gts.shape).astype(np.uint8)
    batched = segmentation_confusion(preds, gts, 5)
    assert batched.sum() == (gts != 255).sum()
    assert batched.dtype == np.int64
    np.testing.assert_array_equal(segmentation_confusion(list(preds), list(gts), 5), batched)
    ev = SegmentationEvaluator(5)
    ev.accumulate(preds[:2], gts[:2])
    ev.accumulate([preds[2], preds[3][:4]], [gts[2], gts[3][:4]])  # images of different sizes
    ev.accumulate(preds[3][4:], gts[3][4:])
    ev.accumulate(preds[4:], gts[4:])
    np.testing.assert_array_equal(ev.confusion, batched)
    # Direct per-pixel count.
    direct = np.zeros((5, 5), dtype=np.int64)
    for g, p in zip(gts.ravel(), preds.ravel()):
        if g != 255:
            direct[g, p] += 1
    np.testing.assert_array_equal(batched, direct)


def test_evaluator_report():
    ev = SegmentationEvaluator(4, class_names=["background", "a", "b", "c"])
    ev.accumulate(PRED, GT)
    out = ev.compute()
    assert out["miou"] == pytest.approx(100.0 / 3)
    assert out["iou"][3] is None and out["iou"][:3] == pytest.approx([50.0, 50.0, 0.0])
    assert out["precision"][:2] == pytest.approx([100.0, 50.0]) and out["precision"][3] is None
    assert out["recall"][:3] == pytest.approx([50.0, 100.0, 0.0])
    assert out["fg_precision"] == pytest.approx(75.0) and out["fg_recall"] == pytest.approx(100.0)
    assert out["pixel_accuracy"] == pytest.approx(60.0) and out["num_pixels"] == 5
    assert out["class_names"] == ["background", "a", "b", "c"]


def test_nothing_counted_gives_nan():
    assert np.isnan(mean_iou(np.zeros((3, 3))))
    assert all(np.isnan(v) for v in foreground_precision_recall(np.zeros((3, 3))))


@pytest.mark.parametrize(
    "pred, gt, message",
    [
        (np.array([[0, 5]]), np.array([[0, 1]]), "prediction has the value 5"),
        (np.array([[0, 255]]), np.array([[0, 1]]), "prediction has the value 255"),
        (np.array([[0, 1]]), np.array([[0, 9]]), "ground truth has the value 9"),
        (np.array([[0, -1]]), np.array([[0, 1]]), "prediction has the value -1"),
        (np.array([[0.0, 1.0]]), np.array([[0, 1]]), "integer class indices"),
        (np.zeros((2, 3), int), np.zeros((3, 2), int), "does not match"),
    ],
)
def test_bad_labels_are_refused(pred, gt, message):
    with pytest.raises(ValueError, match=message):
        segmentation_confusion(pred, gt, 4)


def test_miou_equals_torchmetrics_macro_jaccard():
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.classification")
    rng = np.random.default_rng(1)
    num_classes = 6
    gts = rng.integers(0, num_classes - 1, (4, 17, 13))  # the last class appears in neither
    gts[rng.random(gts.shape) < 0.15] = 255
    preds = np.where(rng.random(gts.shape) < 0.6, np.where(gts == 255, 0, gts), rng.integers(0, 4, gts.shape))
    ours = mean_iou(segmentation_confusion(preds, gts, num_classes))
    jaccard = classification.MulticlassJaccardIndex(
        num_classes=num_classes, ignore_index=255, average="macro"
    )
    theirs = 100.0 * float(jaccard(torch.from_numpy(preds), torch.from_numpy(gts)))
    assert ours == pytest.approx(theirs, abs=1e-4)
    # The hand example too (one class absent from both sides).
    jaccard.reset()
    theirs = 100.0 * float(
        jaccard(torch.from_numpy(PRED[None].astype(np.int64)), torch.from_numpy(GT[None].astype(np.int64)))
    )
    assert mean_iou(HAND) == pytest.approx(theirs, abs=1e-4)
