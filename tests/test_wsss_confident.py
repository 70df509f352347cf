"""Confident labels: the fg / bg / unsure rules on hand-built maps, with and without the CRF, and
the folder writer on seeds of generated VOC-layout data (resume, settings check)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bas.commands.wsss import open_split
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.errors import ConfigError, DataError
from bas.wsss import confident as K
from bas.wsss import seeds as S
from bas.wsss.crf import DenseCRF
from bas.wsss.masks import read_label_png

TORCH_CRF = DenseCRF(backend="torch")


def test_rules_without_the_crf():
    # classes 2 and 5 (0-based) -> labels 3 and 6
    maps = np.array(
        [
            [[0.9, 0.5, 0.2, 0.1], [0.30, 0.17, 0.0, 0.4]],
            [[0.1, 0.6, 0.25, 0.0], [0.0, 0.0, 0.18, 0.4]],
        ],
        np.float32,
    )
    image = np.zeros((2, 4, 3), np.uint8)
    labels = K.confident_labels(image, maps, [2, 5], crf=None)
    # > 0.30: strongest class; 0.17 < max <= 0.30: unsure; max <= 0.17: background;
    # a tie between classes goes to the first, a map equal to a threshold is not above it
    expected = np.array([[3, 6, 255, 0], [255, 0, 255, 3]], np.uint8)
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.uint8
    wider = K.confident_labels(image, maps, [2, 5], fg_threshold=0.55, bg_threshold=0.05, crf=None)
    np.testing.assert_array_equal(wider, [[3, 6, 255, 255], [255, 255, 255, 255]])


def object_scene():
    """A 40x40 image: a red square (class label 3) inside a green ring, on a blue background, with
    seed maps that are sure inside the square except for holes, have false speckles outside, and
    are in between the thresholds on the ring."""
    image = np.zeros((40, 40, 3), np.uint8)
    image[...] = (30, 40, 160)
    image[6:34, 6:34] = (40, 170, 60)  # ring
    image[12:28, 12:28] = (200, 40, 40)  # object
    image = np.clip(image + np.random.default_rng(0).normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    maps = np.zeros((1, 40, 40), np.float32)
    maps[0, 6:34, 6:34] = 0.24  # ring: above 0.17, not above 0.30
    maps[0, 12:28, 12:28] = 0.9
    maps[0, 15:17, 18:20] = 0.05  # holes in the object
    maps[0, 23, 14] = 0.05
    maps[0, 2, 2] = maps[0, 37, 30] = 0.8  # speckles on the background
    return image, maps


def test_rules_with_the_crf():
    image, maps = object_scene()
    raw = K.confident_labels(image, maps, [2], crf=None)
    assert raw[15, 18] == 0 and raw[2, 2] == 3  # without the CRF the holes and speckles stay
    labels = K.confident_labels(image, maps, [2], crf=TORCH_CRF)
    inside, ring, outside = np.zeros((3, 40, 40), bool)
    inside[12:28, 12:28] = True
    ring[6:34, 6:34] = True
    ring &= ~inside
    outside[...] = True
    outside[6:34, 6:34] = False
    assert (labels[inside] == 3).all()  # holes filled
    assert (labels[outside] == 0).all()  # speckles removed
    assert (labels[ring] == 255).all()  # the refined maps disagree there: unsure


def test_images_without_tags_are_background_and_thresholds_are_checked():
    image, _ = object_scene()
    empty = np.zeros((0, 40, 40), np.float32)
    np.testing.assert_array_equal(K.confident_labels(image, empty, [], crf=TORCH_CRF), 0)
    with pytest.raises(ConfigError):
        K.confident_labels(image, empty, [], fg_threshold=0.1, bg_threshold=0.2)


@pytest.fixture(scope="module")
def seeds_dir(tmp_path_factory):
    """Seeds of 3 generated VOC-layout images: blurred ground-truth masks of the tagged classes."""
    tmp = tmp_path_factory.mktemp("confident")
    root = make_multilabel_dataset(tmp / "voc", num_classes=3, images_per_split={"train": 3}, image_size=64)
    data = root / VOC_SUBDIR
    source = open_split("voc", data, "train", 3)
    out = tmp / "seeds" / "train"
    kernel = torch.ones(1, 1, 5, 5) / 25
    for index, image_id in enumerate(source.image_ids):
        _, tags = source.read(index)
        classes = S.tagged_classes(tags)
        gt = torch.from_numpy(source.read_mask(index).astype(np.int64))
        onehot = torch.stack([(gt == c + 1).float() for c in classes])[:, None]
        full = torch.nn.functional.conv2d(onehot, kernel, padding=2)[:, 0] * 0.9
        low = torch.nn.functional.interpolate(
            full[None], S.strided_size(tuple(gt.shape), 4), mode="bilinear"
        )[0]
        S.write_seeds(out, image_id, S.SeedMaps(classes, low, full), 0.3)
    manifest = {
        "checkpoint": "none",
        "method": "test",
        "dataset": "voc",
        "data_root": str(data),
        "split": "train",
        "num_images": 3,
        "num_classes": 3,
        "bg_threshold": 0.3,
    }
    S.write_manifest(out, manifest)
    return out, source


def test_writer_writes_the_labels_of_every_image_and_resumes(seeds_dir, tmp_path):
    folder, source = seeds_dir
    calls = []
    out = K.write_confident_labels(folder, tmp_path / "conf", crf_backend="torch", progress=calls.append)
    assert out == tmp_path / "conf" and sum(calls) == 3
    assert (out / K.MANIFEST).is_file()
    written = {}
    for index, image_id in enumerate(source.image_ids):
        classes, full = S.read_seeds(folder / "maps" / f"{image_id}.npz")
        image, _ = source.read(index)
        expected = K.confident_labels(image, full, classes, crf=TORCH_CRF)
        written[image_id] = read_label_png(out / f"{image_id}.png")
        np.testing.assert_array_equal(written[image_id], expected)
        assert set(np.unique(expected)) <= {0, 255, *(classes + 1)}
        assert (expected != 255).any() and (expected > 0).any()
    # resume: an existing PNG is kept as it is, a missing one is written again
    first, second = (out / f"{i}.png" for i in source.image_ids[:2])
    first.write_bytes(b"kept")
    second.unlink()
    K.write_confident_labels(folder, out, source=source, crf_backend="torch")
    assert first.read_bytes() == b"kept"
    np.testing.assert_array_equal(read_label_png(second), written[source.image_ids[1]])
    with pytest.raises(ConfigError, match="fg_threshold"):
        K.write_confident_labels(folder, out, source=source, fg_threshold=0.4, crf_backend="torch")


def test_writer_without_crf_and_with_a_missing_seed_file(seeds_dir, tmp_path):
    folder, source = seeds_dir
    out = K.write_confident_labels(folder, tmp_path / "raw", source=source, refine=False)
    image_id = source.image_ids[0]
    classes, full = S.read_seeds(folder / "maps" / f"{image_id}.npz")
    expected = K.confident_labels(source.read(0)[0], full, classes, crf=None)
    np.testing.assert_array_equal(read_label_png(out / f"{image_id}.png"), expected)

    class Renamed:
        image_ids = ["missing"]

        def read(self, index):
            return source.read(0)

    with pytest.raises(DataError, match="no seeds"):
        K.write_confident_labels(folder, tmp_path / "other", source=Renamed(), refine=False)
    assert not (tmp_path / "other" / "missing.png").exists()
