"""Synthetic multi-object segmentation data in the VOC 2012 layout."""

import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bas.data.synthetic_multi import (
    VOC_SUBDIR,
    MultiLabelSpec,
    make_multilabel_dataset,
    render_multilabel_sample,
)
from bas.errors import BASError
from bas.wsss import IGNORE_INDEX, read_label_png

PARAMS = dict(num_classes=5, images_per_split={"train": 14, "val": 5, "test": 5}, image_size=96, seed=3)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_multilabel_dataset(tmp_path_factory.mktemp("wsss") / "synth", **PARAMS)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _ids(voc: Path, split: str) -> list[str]:
    return (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


def _objects(voc: Path, image_id: str) -> list[tuple[str, tuple[int, ...], tuple[int, ...]]]:
    root = ET.parse(voc / "Annotations" / f"{image_id}.xml").getroot()
    out = []
    for obj in root.iter("object"):
        box = tuple(int(obj.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax"))
        part = tuple(int(obj.find(f"part/bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax"))
        out.append((obj.find("name").text, box, part))
    return out


def test_same_seed_same_bytes_other_seed_other_images(dataset, tmp_path):
    again = make_multilabel_dataset(tmp_path / "again", **PARAMS)
    assert _files(again) == _files(dataset)
    other = make_multilabel_dataset(tmp_path / "other", **{**PARAMS, "seed": 4})
    name = f"{VOC_SUBDIR}/JPEGImages/2012_000001.jpg"
    assert _files(other)[name] != _files(dataset)[name]


def test_an_image_does_not_depend_on_the_others():
    one = MultiLabelSpec(num_classes=4, train_images=10, val_images=0, test_images=0, image_size=64)
    other = replace(one, train_images=3, val_images=5, test_images=4)
    a, b = render_multilabel_sample(one, 6), render_multilabel_sample(other, 6)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.objects == b.objects


def test_striped_background_only_changes_background_textures(texture_kinds):
    """Without striped backgrounds, no stripe texture outside the objects; the same random draws, so
    the same objects, labels and object pixels."""
    kinds = texture_kinds
    striped = MultiLabelSpec(num_classes=4, train_images=12, val_images=0, test_images=0, image_size=64)
    plain = replace(striped, striped_background=False)
    differs = 0
    for i in range(striped.num_images):
        kinds.clear()
        a = render_multilabel_sample(striped, i)
        striped_kinds = list(kinds)
        kinds.clear()
        b = render_multilabel_sample(plain, i)
        assert "stripes" not in kinds and len(kinds) == len(striped_kinds)
        assert a.objects == b.objects
        np.testing.assert_array_equal(a.labels, b.labels)
        objects = (a.labels > 0) & (a.labels != IGNORE_INDEX)
        np.testing.assert_array_equal(a.image[objects], b.image[objects])
        differs += "stripes" in striped_kinds and not np.array_equal(a.image, b.image)
    assert differs > 0  # the default does draw striped distractors or fields


def test_layout(dataset):
    voc = dataset / VOC_SUBDIR
    splits = {s: _ids(voc, s) for s in ("train", "val", "test", "trainval")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [14, 5, 5]
    assert splits["trainval"] == splits["train"] + splits["val"]
    every = splits["train"] + splits["val"] + splits["test"]
    assert len(set(every)) == 24 and every == sorted(every)
    for folder, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("SegmentationObject", "png")):
        assert sorted(p.stem for p in (voc / folder).glob(f"*.{ext}")) == every
    assert sorted(p.stem for p in (voc / "Annotations").glob("*.xml")) == every
    names = (voc / "class_names.txt").read_text().splitlines()
    assert names[0] == "background" and len(names) == 6 and len(set(names)) == 6
    meta = json.loads((dataset / "synthetic.json").read_text())
    assert meta["params"]["num_classes"] == 5 and meta["class_names"] == names[1:]
    with Image.open(voc / "JPEGImages" / f"{every[0]}.jpg") as im:
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (96, 96)
    with Image.open(voc / "SegmentationClass" / f"{every[0]}.png") as im:
        assert im.mode == "P" and im.size == (96, 96)
    assert not [p for p in dataset.parent.iterdir() if p.name.startswith(".")]  # no temporary dirs


def test_masks_agree_with_xml_boxes_and_tags(dataset):
    voc = dataset / VOC_SUBDIR
    names = (voc / "class_names.txt").read_text().splitlines()
    for image_id in _ids(voc, "train") + _ids(voc, "val") + _ids(voc, "test"):
        labels = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
        instances = read_label_png(voc / "SegmentationObject" / f"{image_id}.png")
        objects = _objects(voc, image_id)
        assert objects, image_id
        # Tags from the mask and from the XML are the same classes.
        from_mask = set(np.unique(labels).tolist()) - {0, IGNORE_INDEX}
        assert from_mask == {names.index(n) for n, _, _ in objects}
        # The ignore band is the same in both PNGs and the class map is the instance map's classes.
        np.testing.assert_array_equal(labels == IGNORE_INDEX, instances == IGNORE_INDEX)
        lut = np.zeros(256, np.uint8)
        lut[IGNORE_INDEX] = IGNORE_INDEX
        for n, (name, _, _) in enumerate(objects, 1):
            lut[n] = names.index(name)
        np.testing.assert_array_equal(lut[instances], labels)
        assert set(np.unique(instances).tolist()) - {0, IGNORE_INDEX} == set(range(1, len(objects) + 1))
        for n, (_, (x0, y0, x1, y1), (px0, py0, px1, py1)) in enumerate(objects, 1):
            ys, xs = np.nonzero(instances == n)
            # Inside the box (1-based inclusive); each side of the box touches the object or its
            # band (thin visible slivers are all band). The exact extent is tested in memory below.
            assert xs.min() + 1 >= x0 and xs.max() + 1 <= x1 and ys.min() + 1 >= y0 and ys.max() + 1 <= y1
            near = (instances == n) | (instances == IGNORE_INDEX)
            inside = near[y0 - 1 : y1, x0 - 1 : x1]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            assert x0 <= px0 <= px1 <= x1 and y0 <= py0 <= py1 <= y1  # the part is inside
        assert (labels == IGNORE_INDEX).any()


def test_boxes_are_the_exact_extent_of_the_visible_pixels():
    spec = MultiLabelSpec(num_classes=4, train_images=8, val_images=0, test_images=0, image_size=96)
    for index in range(8):
        banded = render_multilabel_sample(spec, index)
        plain = render_multilabel_sample(replace(spec, ignore_width=0), index)
        np.testing.assert_array_equal(banded.image, plain.image)  # the band changes no drawing
        assert banded.objects == plain.objects
        keep = banded.instances != IGNORE_INDEX
        np.testing.assert_array_equal(banded.instances[keep], plain.instances[keep])
        assert IGNORE_INDEX not in plain.instances
        for n, obj in enumerate(plain.objects, 1):
            ys, xs = np.nonzero(plain.instances == n)
            assert obj.box == (xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1)
            ys, xs = np.nonzero(plain.part_mask & (plain.instances == n))
            assert obj.part_box == (xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1)


def test_ignore_band_follows_every_outline():
    spec = MultiLabelSpec(
        num_classes=4, train_images=6, val_images=0, test_images=0, image_size=96, ignore_width=2
    )
    for index in range(6):
        sample = render_multilabel_sample(spec, index)
        band = sample.instances == IGNORE_INDEX
        np.testing.assert_array_equal(band, sample.labels == IGNORE_INDEX)
        # Any two 4-neighbours that are both labelled (not ignore) carry the same instance, and a
        # labelled pixel is never next to a different labelled pixel within the band width.
        inst = np.where(band, -1, sample.instances.astype(int))
        for shift in range(1, 3):
            for a, b in ((inst[shift:], inst[:-shift]), (inst[:, shift:], inst[:, :-shift])):
                both = (a >= 0) & (b >= 0)
                assert (a[both] == b[both]).all()
        width = band.sum(axis=1).max()
        assert width >= 2  # the band has some thickness


def test_several_classes_sizes_and_overlaps():
    spec = MultiLabelSpec(num_classes=6, train_images=60, val_images=0, test_images=0, image_size=96)
    samples = [render_multilabel_sample(spec, i) for i in range(60)]
    tags = [len(s.tags) for s in samples]
    assert np.mean(tags) >= 1.7 and max(tags) >= 3
    assert np.mean([len(s.objects) for s in samples]) >= 2.0
    areas = [
        (o.box[2] - o.box[0] + 1) * (o.box[3] - o.box[1] + 1) / 96**2 for s in samples for o in s.objects
    ]
    assert min(areas) < 0.06 and max(areas) > 0.2  # small and large objects
    visible = np.array([o.visible_fraction for s in samples for o in s.objects])
    assert (visible < 1).mean() > 0.1 and visible.min() >= 0.6  # objects overlap, none hidden much
    assert any(len(s.objects) > len(s.tags) for s in samples)  # two objects of one class
    # Each part is the object's own class, its body sometimes another class's texture.
    assert any(o.body_label != o.label for s in samples for o in s.objects)
    assert all(s.part_mask[s.instances == 0].sum() == 0 for s in samples)


def test_reuse_refuse_and_overwrite(dataset, tmp_path):
    stamp = (dataset / "synthetic.json").stat().st_mtime_ns
    assert make_multilabel_dataset(dataset, **PARAMS) == dataset
    assert (dataset / "synthetic.json").stat().st_mtime_ns == stamp
    with pytest.raises(BASError, match="other parameters"):
        make_multilabel_dataset(dataset, **{**PARAMS, "seed": 9})
    root = make_multilabel_dataset(tmp_path / "d", **{**PARAMS, "images_per_split": 2})
    replaced = make_multilabel_dataset(root, **{**PARAMS, "images_per_split": 3}, overwrite=True)
    assert len(_ids(replaced / VOC_SUBDIR, "test")) == 3
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(BASError, match="refusing"):
        make_multilabel_dataset(tmp_path / "mine", **PARAMS, overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"num_classes": 0}, "num_classes must be in 1..254"),
        ({"images_per_split": {"train": 2, "dev": 1}}, "unknown split"),
        ({"images_per_split": {"val": 2}}, "train_images must be >= 1"),
        ({"image_size": 32}, "image_size must be >= 64"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"striped_background": "no"}, "striped_background must be true or false"),
    ],
)
def test_bad_parameters(tmp_path, change, message):
    with pytest.raises(BASError, match=message):
        make_multilabel_dataset(tmp_path / "x", **{**PARAMS, **change})
    assert not (tmp_path / "x").exists()
