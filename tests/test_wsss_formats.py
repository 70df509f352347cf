"""The multi-label (segmentation) dataset formats: voc, coco, multilabel_folder."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from bas.cli import main
from bas.data import build_dataset, collate
from bas.data.datasets import make_tv_sample
from bas.data.formats import available_splits
from bas.data.formats.voc import VOC_CLASSES
from bas.data.multilabel import check_multilabel, tags_of_mask
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.data.transforms import scale_crop_transform, train_transform
from bas.errors import ConfigError, DataError
from bas.wsss.masks import encode_label_png

# ------------------------------------------------------------------------------------ fixtures


def _image(path: Path, size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (90, 120, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _mask(path: Path, mask: np.ndarray, *, palette: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:
        path.write_bytes(encode_label_png(mask))
    else:  # SBD's SegmentationClassAug: grayscale PNGs of the same values
        Image.fromarray(mask.astype(np.uint8), "L").save(path)


def _label(classes: dict[int, tuple[slice, slice]], size: tuple[int, int] = (40, 30)) -> np.ndarray:
    """A (H, W) label mask: value v in each (rows, cols) region, a 255 border around it."""
    mask = np.zeros(size[::-1], dtype=np.uint8)
    for value, (rows, cols) in classes.items():
        mask[rows, cols] = 255
        mask[rows.start + 1 : rows.stop - 1, cols.start + 1 : cols.stop - 1] = value
    return mask


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    """A hand-made VOC2012 folder: 3 train images, 1 val, SBD masks for a 4th image."""
    root = tmp_path / "VOC2012"
    masks = {
        "2007_000001": _label({1: (slice(2, 12), slice(2, 14)), 15: (slice(14, 28), slice(20, 38))}),
        "2007_000002": _label({8: (slice(5, 25), slice(5, 30))}),
        "2007_000003": _label({20: (slice(0, 10), slice(0, 10))}),
        "2007_000004": _label({12: (slice(3, 20), slice(3, 20))}),
    }
    for image_id, mask in masks.items():
        _image(root / "JPEGImages" / f"{image_id}.jpg")
        _mask(root / "SegmentationClass" / f"{image_id}.png", mask)
        _mask(root / "SegmentationClassAug" / f"{image_id}.png", mask, palette=False)
    _image(root / "JPEGImages" / "2008_000005.jpg")
    _mask(
        root / "SegmentationClassAug" / "2008_000005.png",
        _label({3: (slice(1, 9), slice(1, 9))}),
        palette=False,
    )
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n2007_000003\n")
    (lists / "val.txt").write_text("2007_000004\n")
    return root


# ------------------------------------------------------------------------------------------ voc


def test_voc_tags_come_from_the_masks_without_background_and_ignore(voc):
    ds = build_dataset("voc", voc, "train")
    assert ds.classes == list(VOC_CLASSES) and ds.num_classes == 20
    assert [ds.tags(k) for k in range(len(ds))] == [(0, 14), (7,), (19,)]
    sample = ds[0]
    assert sample["label"].dtype == torch.float32 and sample["label"].shape == (20,)
    assert sample["label"].nonzero().flatten().tolist() == [0, 14]
    assert sample["image_id"] == "2007_000001" and sample["orig_size"] == (40, 30)
    mask = sample["mask"]
    assert mask.dtype == torch.uint8 and mask.shape == (30, 40)
    assert sorted(mask.unique().tolist()) == [0, 1, 15, 255]  # palette values as they are: class c -> c + 1


def test_tags_of_mask_ignores_zero_and_255():
    assert tags_of_mask(np.array([[0, 255, 3], [3, 1, 0]], dtype=np.uint8), 20) == (0, 2)
    assert tags_of_mask(np.array([[0, 255]], dtype=np.uint8), 20) == ()


def test_voc_reads_the_generated_synthetic_folder(tmp_path):
    root = make_multilabel_dataset(
        tmp_path / "syn", num_classes=3, images_per_split={"train": 3, "val": 2, "test": 1}, image_size=64
    )
    assert available_splits("voc", root) == ["test", "train", "trainval", "val"]
    names = (root / VOC_SUBDIR / "class_names.txt").read_text().split()
    for split, n in (("train", 3), ("val", 2), ("test", 1)):
        ds = build_dataset("voc", root, split)
        assert len(ds) == n and ds.classes == names[1:]
        for k in range(n):
            sample = ds[k]
            values = set(sample["mask"].unique().tolist())
            assert values <= {0, 1, 2, 3, 255}
            assert sample["label"].nonzero().flatten().tolist() == [
                v - 1 for v in sorted(values) if 0 < v < 255
            ]
    assert check_multilabel(build_dataset("voc", root, "train")) == []


def _xml(path: Path, names: list[str], difficult: int = 0) -> None:
    objects = "".join(
        f"<object><name>{n}</name><difficult>{difficult}</difficult>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>10</ymax></bndbox></object>"
        for n in names
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><size><width>40</width><height>30</height></size>{objects}</annotation>\n")


def test_voc_tags_from_the_annotations_xml(voc):
    _xml(voc / "Annotations" / "2007_000001.xml", ["person", "aeroplane", "person"])
    _xml(voc / "Annotations" / "2007_000002.xml", ["chair"], difficult=1)  # difficult ones count
    _xml(voc / "Annotations" / "2007_000003.xml", ["sofa", "tvmonitor"])
    ds = build_dataset("voc", voc, "train", tags="xml")
    assert [r.tags for r in ds.records] == [(0, 14), (8,), (17, 19)]
    assert ds[2]["label"].nonzero().flatten().tolist() == [17, 19]
    assert ds[2]["mask"] is not None  # the mask stays part of the sample
    # auto: the mask where there is one, else the XML (a test image has no mask)
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("2007_000003\n2009_000009\n")
    _image(voc / "JPEGImages" / "2009_000009.jpg")
    _xml(voc / "Annotations" / "2009_000009.xml", ["cow"])
    ds = build_dataset("voc", voc, "test")
    assert [r.tags for r in ds.records] == [None, (9,)]
    assert ds.tags(0) == (19,) and ds[1]["mask"] is None
    _xml(voc / "Annotations" / "2007_000002.xml", ["chair", "unicorn"])
    with pytest.raises(DataError, match=r"2007_000002\.xml:1: object 2: unknown class 'unicorn'"):
        build_dataset("voc", voc, "train", tags="xml")


def test_voc_xml_and_mask_tags_agree_on_the_synthetic_data(tmp_path):
    root = make_multilabel_dataset(tmp_path / "syn", num_classes=4, images_per_split=6, image_size=64)
    by_xml = build_dataset("voc", root, "trainval", tags="xml")
    by_mask = build_dataset("voc", root, "trainval", tags="masks")
    assert [r.tags for r in by_xml.records] == [by_mask.tags(k) for k in range(len(by_mask))]


def test_voc_train_aug_reads_sbd_masks_with_or_without_a_list(voc):
    ds = build_dataset("voc", voc, "train_aug")  # no list: the SBD masks minus val
    assert ds.image_ids == ["2007_000001", "2007_000002", "2007_000003", "2008_000005"]
    assert all(r.mask.parent.name == "SegmentationClassAug" for r in ds.records)
    assert ds.tags(3) == (2,)
    assert "train_aug" in available_splits("voc", voc)
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train_aug.txt").write_text("/JPEGImages/2008_000005.jpg /SegAug/2008_000005.png\n2007_000002\n")
    (voc / "SegmentationClassAug").rename(voc / "SegAug")
    ds = build_dataset("voc", voc, "train_aug", aug_dir="SegAug")
    assert ds.image_ids == ["2008_000005", "2007_000002"]
    assert [ds.tags(k) for k in range(2)] == [(2,), (7,)]
    assert ds[0]["mask"].max() == 255


def test_voc_containment_refuses_a_list_entry_leaving_the_root(voc):
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("2007_000001\n../x\n")
    with pytest.raises(DataError, match=r"train\.txt:2: expected an image id .*'\.\./x'"):
        build_dataset("voc", voc, "train")
    (lists / "train.txt").write_text("2007_000001\n/JPEGImages/../../x.jpg /SegmentationClass/x.png\n")
    with pytest.raises(DataError, match=r"train\.txt:2: "):
        build_dataset("voc", voc, "train")
    outside = voc.parent / "outside"
    _image(outside / "2007_000009.jpg")
    (voc / "JPEGImages" / "2007_000009.jpg").symlink_to(outside / "2007_000009.jpg")
    (lists / "train.txt").write_text("2007_000009\n")
    with pytest.raises(DataError, match=r"train\.txt:1: .*symbolic link that leads outside"):
        build_dataset("voc", voc, "train")


def test_voc_bad_lines_and_files_are_one_line_errors(voc):
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("2007_000001\na b c\n")
    with pytest.raises(DataError, match=r"train\.txt:2: expected '<id>' or '<image path> <mask path>'"):
        build_dataset("voc", voc, "train")
    (lists / "train.txt").write_text("2007_000001\n2007_000077\n")
    with pytest.raises(DataError, match=r"train\.txt:2: 2007_000077: no mask .* and no annotation file"):
        build_dataset("voc", voc, "train")
    with pytest.raises(DataError, match=r"train\.txt:2: 2007_000077: mask not found"):
        build_dataset("voc", voc, "train", tags="masks")
    with pytest.raises(DataError, match="not a VOC 2012 folder"):
        build_dataset("voc", voc / "ImageSets", "train")


def test_voc_check_reports_missing_images_bad_masks_and_empty_tags(voc, capsys):
    (voc / "JPEGImages" / "2007_000002.jpg").unlink()
    _mask(voc / "SegmentationClass" / "2007_000003.png", _label({40: (slice(0, 10), slice(0, 10))}))
    _mask(voc / "SegmentationClass" / "2007_000001.png", np.zeros((30, 40), np.uint8))
    ds = build_dataset("voc", voc, "train")
    with pytest.raises(DataError, match=r"2007_000003\.png: label mask value 40 at \(1, 1\) is no class"):
        ds[2]
    problems = [str(p) for p in check_multilabel(ds)]
    assert len(problems) == 3, problems
    assert "2007_000001: no tags" in problems[0] or any("2007_000001: no tags" in p for p in problems)
    assert any("2007_000002.jpg: image not found" in p for p in problems)
    assert any("label mask value 40" in p for p in problems)
    assert main(["data", "check", "voc", str(voc), "--split", "train", "--split", "val"]) == 1
    out = capsys.readouterr().out
    assert "split train: 3 images, 20 classes" in out and "3 problem(s)" in out
    _mask(voc / "SegmentationClass" / "2007_000004.png", np.zeros((5, 5), np.uint8))
    with pytest.raises(DataError, match=r"label mask is 5x5 but the image is 40x30"):
        build_dataset("voc", voc, "val")[0]


def test_training_on_an_image_without_tags_is_a_one_line_error(voc, capsys):
    train = ["train", "--config", "voc/resnet50", "--data-root", str(voc), "--device", "cpu", "--no-progress"]
    for setting in (
        "model.pretrained=false",
        "model.arch=resnet18",
        "data.train_split=train",
        "data.input_size=32",
        "data.resize_size=36",
        "data.batch_size=3",
        "data.workers=0",
        "eval.every=0",
        "train.sync_bn=false",
        f"train.output_dir={voc.parent / 'run'}",
    ):
        train += ["--set", setting]
    lists = voc / "ImageSets" / "Segmentation"
    # tags from the masks: found when the sample is read, named at its list line and mask
    _mask(voc / "SegmentationClass" / "2007_000002.png", np.zeros((30, 40), np.uint8))
    assert main(train) == 2
    err = capsys.readouterr().err.strip().splitlines()
    mask = voc / "SegmentationClass" / "2007_000002.png"
    assert err == [
        f"error: {lists / 'train.txt'}:2: 2007_000002: no tags (no class in its mask {mask}); a training "
        "image needs at least one (bas data check lists every such image)"
    ]
    assert not (voc.parent / "run" / "model.safetensors").exists()
    # bas data check reports it too
    assert main(["data", "check", "voc", str(voc), "--split", "train"]) == 1
    assert "2007_000002: no tags" in capsys.readouterr().out
    # tags from the XML: refused when the dataset is built, before any step
    for image_id, names in (("2007_000001", ["person"]), ("2007_000002", []), ("2007_000003", ["sofa"])):
        _xml(voc / "Annotations" / f"{image_id}.xml", names)
    assert main([*train, "--set", "data.options.tags=xml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {lists / 'train.txt'}:2: 2007_000002: no tags")
    assert "no class in the image's annotation" in err[0]
    # other splits may hold background-only images (they are scored, not trained on)
    (lists / "val.txt").write_text("2007_000002\n")
    assert build_dataset("voc", voc, "val")[0]["label"].sum() == 0


# ----------------------------------------------------------------------------- transforms, collate


def test_train_transform_keeps_image_and_mask_aligned():
    """The image's red channel encodes the mask: after random resize-crop-flip they still agree."""
    rng = np.random.default_rng(0)
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[5:30, 3:25] = 3
    mask[20:44, 35:60] = 7
    mask[0:4, :] = 255
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[..., 0] = np.where(mask == 255, 0, mask)  # red = label value (ignore: 0)
    pixels[..., 1] = rng.integers(0, 255, (48, 64))
    transform = train_transform(32, 40, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        out = transform(make_tv_sample(Image.fromarray(pixels), mask=mask))
        got = out["mask"].as_subclass(torch.Tensor)
        assert got.dtype == torch.uint8 and got.shape == (32, 32)
        assert set(got.unique().tolist()) <= {0, 3, 7, 255}  # nearest: no blended labels
        _aligned(out["image"], got)  # antialiased edges aside
        flipped += int(got[10:, :16].eq(7).sum() > got[10:, 16:].eq(7).sum())
    assert 0 < flipped < 8  # both flipped and unflipped draws were seen


def _aligned(image: torch.Tensor, mask: torch.Tensor) -> None:
    """The red channel (the label value, padding 0) agrees with the mask away from label edges."""
    red = (image[0] * 255).round().to(torch.int32)
    m = mask[None, None].float()
    uniform = (F.max_pool2d(m, 5, 1, 2) == -F.max_pool2d(-m, 5, 1, 2))[0, 0]
    uniform[:2], uniform[-2:], uniform[:, :2], uniform[:, -2:] = False, False, False, False
    expected = torch.where(mask == 255, 0, mask.to(torch.int32))  # ignore pixels are black
    assert uniform.float().mean() > 0.3
    assert (red - expected).abs()[uniform].max() <= 1


def test_scale_crop_transform_pads_the_mask_with_255_and_keeps_it_aligned():
    mask = np.zeros((48, 64), dtype=np.uint8)
    mask[5:30, 3:25] = 3
    mask[20:44, 35:60] = 7
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[..., 0] = mask
    # long side 40..56 with a 48 crop: the short side (30..42) is always padded
    transform = scale_crop_transform(48, (40, 56), mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    sides = set()
    for seed in range(6):
        torch.manual_seed(seed)
        out = transform(make_tv_sample(Image.fromarray(pixels), mask=mask))
        image, got = out["image"], out["mask"].as_subclass(torch.Tensor)
        assert image.shape == (3, 48, 48) and got.dtype == torch.uint8
        padded = got == 255
        assert padded.any() and set(got.unique().tolist()) <= {0, 3, 7, 255}
        assert (image[:, padded] == 0).all()  # the image is padded with the mean (here 0)
        rows = (~padded).any(1).sum().item()
        sides.add(rows)
        _aligned(image, got)
    assert len(sides) > 1  # the scale is random


def test_cam_recipes_train_on_irns_scale_crop_and_the_mask_follows_the_image(voc):
    from torchvision.transforms import v2

    from bas.config import load_config
    from bas.data.transforms import RandomLongSide, denormalize
    from bas.engine.data import make_dataset_split

    # each image's red channel is its mask value x 10 (ignore: 0); PNG content, so no JPEG noise
    for image_id in ("2007_000001", "2007_000002", "2007_000003"):
        mask = np.array(Image.open(voc / "SegmentationClass" / f"{image_id}.png"))
        red = np.where(mask == 255, 0, mask.astype(np.int32) * 10).astype(np.uint8)
        pixels = np.stack([red, np.full_like(red, 60), np.full_like(red, 200)], axis=-1)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg", format="PNG")
    settings = [f"data.root={voc}", "data.train_split=train", "model.pretrained=false"]
    for recipe in ("voc/cam_resnet50", "coco/cam_resnet50"):
        cfg = load_config(recipe, settings)
        assert cfg["data"]["train_transform"] == "scale_crop" and cfg["data"]["long_side"] == [320, 640]
    for recipe in ("voc/resnet50", "coco/resnet50"):  # the paper's: Resize 512x512, RandomCrop 448
        assert load_config(recipe, settings)["data"]["train_transform"] == "resize_crop"
    steps = make_dataset_split(
        load_config("voc/resnet50", settings), "train", train=True
    ).transform.transforms
    assert steps[0].size == [512, 512] and steps[1].size == (448, 448)

    cfg = load_config("voc/cam_resnet50", settings)
    data = make_dataset_split(cfg, "train", train=True)
    steps = data.transform.transforms
    assert isinstance(steps[0], RandomLongSide) and (steps[0].low, steps[0].high) == (320, 640)
    assert isinstance(steps[2], v2.RandomCrop) and steps[2].size == (512, 512)
    visible = set()
    for seed in range(4):
        torch.manual_seed(seed)
        sample = data[seed % 3]
        image, mask = sample["image"], sample["mask"]
        assert image.shape == (3, 512, 512) and mask.shape == (512, 512)
        red = (denormalize(image)[0] * 255).round().to(torch.int32)
        m = mask[None, None].float()
        # away from label edges by more than the upscaling factor (the 40 px images grow 8-16x)
        uniform = (F.max_pool2d(m, 41, 1, 20) == -F.max_pool2d(-m, 41, 1, 20))[0, 0] & (mask != 255)
        assert uniform.float().mean() > 0.05 and (uniform & (mask > 0)).any()
        assert (red - mask.to(torch.int32) * 10).abs()[uniform].max() <= 2  # the mask moved with the image
        visible.add(int((mask != 255).sum()))
    assert len(visible) > 1  # the scale is random
    with pytest.raises(ConfigError, match=r"data.long_side must be \[low, high\] with low <= high"):
        load_config("voc/cam_resnet50", [*settings, "data.long_side=[640, 320]"])
    with pytest.raises(ConfigError, match="data.train_transform"):
        load_config("voc/cam_resnet50", [*settings, "data.train_transform=random"])


def test_collate_stacks_multi_hot_labels_and_masks(voc):
    ds = build_dataset("voc", voc, "train", transform=train_transform(16, 20))
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["label"].shape == (3, 20) and batch["label"].dtype == torch.float32
    assert batch["label"].sum(1).tolist() == [2.0, 1.0, 1.0]
    assert batch["mask"].shape == (3, 16, 16) and batch["mask"].dtype == torch.uint8
    assert batch["image"].shape == (3, 3, 16, 16) and batch["image_id"][0] == "2007_000001"


# ------------------------------------------------------------------------------------ training


def test_bas_train_voc_recipe_on_generated_voc_data(tmp_path):
    root = make_multilabel_dataset(
        tmp_path / "syn", num_classes=3, images_per_split={"train": 8, "val": 4, "test": 2}, image_size=64
    )
    run = tmp_path / "run"
    sets = [
        "model.pretrained=false",
        "model.num_classes=null",
        "data.train_split=train",
        "data.input_size=64",
        "data.resize_size=72",
        "data.batch_size=4",
        "data.eval_batch_size=4",
        "data.workers=0",
        "optim.epochs=1",
        "train.sync_bn=false",
        "train.log_every=1",
        f"train.output_dir={run}",
    ]
    args = ["train", "--config", "voc/resnet50", "--data-root", str(root), "--device", "cpu"]
    assert main([*args, *(a for s in sets for a in ("--set", s))]) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert len(steps) == 2 and all(math.isfinite(r["loss"]) for r in steps)
    (epoch,) = [r for r in records if r["kind"] == "epoch"]
    assert 0 <= epoch["val_mAP"] <= 100 and epoch["val_images"] == 4  # validated by mAP on val
    assert (run / "model.safetensors").is_file()


# ----------------------------------------------------------------------------------------- coco


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """Two annotated images and one without annotations; category ids 1, 3, 90 (gaps, as COCO's)."""
    mask_utils = pytest.importorskip(
        "pycocotools.mask", reason="pycocotools (the 'coco' extra) is not installed"
    )
    root = tmp_path / "coco"
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        _image(root / "train2014" / name, (40, 30))
    crowd = np.zeros((30, 40), dtype=np.uint8, order="F")
    crowd[20:30, 0:10] = 1
    crowd_rle = mask_utils.encode(crowd)
    counts = [int(c) for c in _uncompressed_counts(crowd)]
    small = np.zeros((30, 40), dtype=np.uint8, order="F")
    small[4:8, 4:8] = 1
    small_rle = mask_utils.encode(small)
    small_rle["counts"] = small_rle["counts"].decode()
    data = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 40, "height": 30},
            {"id": 3, "file_name": "c.jpg", "width": 40, "height": 30},
        ],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            # a polygon of car (3 -> index 1): the square 2..12 x 2..12
            {"id": 10, "image_id": 1, "category_id": 3, "iscrowd": 0, "area": 100.0,
             "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]},
            # a small toothbrush (90 -> index 2) inside the car, compressed RLE
            {"id": 11, "image_id": 1, "category_id": 90, "iscrowd": 0, "area": 16.0, "segmentation": small_rle},
            # a crowd of people (1 -> index 0), uncompressed RLE
            {"id": 12, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": 100.0,
             "segmentation": {"size": [30, 40], "counts": counts}},
            {"id": 13, "image_id": 2, "category_id": 1, "iscrowd": 0, "area": 50.0,
             "segmentation": [[20, 5, 30, 5, 30, 10, 20, 10]]},
        ],
    }  # fmt: skip
    assert crowd_rle["size"] == [30, 40]
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2014.json").write_text(json.dumps(data))
    return root


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE: run lengths of the column-major pixels, starting with zeros."""
    flat = mask.flatten(order="F")
    runs, value, length = [], 0, 0
    for v in flat:
        if v == value:
            length += 1
        else:
            runs.append(length)
            value, length = v, 1
    return [*runs, length]


def test_coco_maps_category_ids_to_contiguous_classes_and_renders_masks(coco):
    assert available_splits("coco", coco) == ["train2014"]
    ds = build_dataset("coco", coco, "train")  # train -> train2014
    assert ds.classes == ["person", "car", "toothbrush"] and ds.category_ids == [1, 3, 90]
    assert ds.image_ids == ["a.jpg", "b.jpg"]  # c.jpg has no annotation
    assert [r.tags for r in ds.records] == [(0, 1, 2), (0,)]  # the crowd's class is a tag
    sample = ds[0]
    assert sample["label"].tolist() == [1.0, 1.0, 1.0]
    mask = sample["mask"].numpy()
    assert (mask[20:30, 0:10] == 255).all()  # crowd: ignore
    assert (mask[4:8, 4:8] == 3).all()  # the small object stays in front of the car
    assert (mask[9:12, 9:12] == 2).all() and mask[0, 39] == 0
    assert set(np.unique(mask)) == {0, 2, 3, 255}
    assert set(np.unique(ds[1]["mask"].numpy())) == {0, 1}
    assert len(build_dataset("coco", coco, "train2014", keep_empty=True)) == 3
    assert check_multilabel(ds) == []
    problems = check_multilabel(build_dataset("coco", coco, "train", keep_empty=True))
    assert [str(p) for p in problems] == [
        f"{ds.json_path}: c.jpg: no tags (no class in the image's annotation)"
    ]


def test_coco_bad_entries_are_one_line_errors(coco, monkeypatch):
    path = coco / "annotations" / "instances_train2014.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["category_id"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"instances_train2014\.json: annotations\[1\]: .*known category_id, got 7"
    ):
        build_dataset("coco", coco, "train")
    collected: list = []
    assert len(build_dataset("coco", coco, "train", problems=collected)) == 2 and len(collected) == 1
    data["annotations"][1]["category_id"] = 90
    data["images"][0]["file_name"] = "../../x.jpg"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="leaves the dataset root"):
        build_dataset("coco", coco, "train", problems=None)
    path.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"instances_train2014\.json:2: not valid JSON"):
        build_dataset("coco", coco, "train")
    with pytest.raises(DataError, match="COCO annotation file not found"):
        build_dataset("coco", coco, "val")


def test_coco_masks_without_pycocotools_name_the_extra(coco, monkeypatch):
    import bas._optional

    ds = build_dataset("coco", coco, "train")
    monkeypatch.setattr(bas._optional, "optional", lambda module: None)
    with pytest.raises(bas._optional.MissingExtraError, match=r"needs the 'coco' extra .*bas-wsol\[coco\]"):
        ds[0]
    no_masks = build_dataset("coco", coco, "train", masks=False)  # tags alone need no pycocotools
    assert no_masks[0]["mask"] is None and no_masks[0]["label"].sum() == 3


# ---------------------------------------------------------------------------- multilabel_folder


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    root = tmp_path / "mine"
    for name in ("a.jpg", "sub/b.png", "c.jpg"):
        _image(root / "images" / name)
    (root / "train.csv").write_text('image,tags\na.jpg,dog cat\nsub/b.png,"cat|bird"\n')
    (root / "val.csv").write_text("image,tags\nc.jpg,fish\n")
    _mask(
        root / "masks" / "a.png", _label({1: (slice(2, 12), slice(2, 14)), 3: (slice(14, 28), slice(20, 38))})
    )
    return root


def test_multilabel_folder_reads_the_csv_tags_and_masks(tagged):
    assert available_splits("multilabel_folder", tagged) == ["train", "val"]
    ds = build_dataset("multilabel_folder", tagged, "train")
    assert ds.classes == ["bird", "cat", "dog", "fish"]  # every split's names, sorted
    assert [r.tags for r in ds.records] == [(1, 2), (0, 1)]
    assert ds.image_ids == ["a.jpg", "sub/b.png"]
    assert ds[0]["mask"] is not None and ds[1]["mask"] is None  # b has no mask file
    assert ds[0]["label"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert build_dataset("multilabel_folder", tagged, "val").classes == ds.classes
    (tagged / "classes.txt").write_text("dog\ncat\nbird\nfish\n")
    ds = build_dataset("multilabel_folder", tagged, "train")
    assert ds.classes == ["dog", "cat", "bird", "fish"] and [r.tags for r in ds.records] == [(0, 1), (1, 2)]
    assert check_multilabel(ds) == []


def test_multilabel_folder_malformed_lines_are_one_line_errors(tagged):
    (tagged / "classes.txt").write_text("dog\ncat\nbird\nfish\n")
    csv_path = tagged / "train.csv"
    cases = {
        "a.jpg,dog,cat\n": "train.csv:2: expected '<image>,<tags>'",
        "a.jpg,\n": r"train.csv:2: a.jpg: no tags",
        "a.jpg,dog unicorn\n": r"train.csv:2: a.jpg: unknown class\(es\) unicorn \(not in classes.txt\)",
        "../x.jpg,dog\n": r"train.csv:2: path '../x.jpg' leaves the dataset root",
        "a.jpg,dog\na.jpg,cat\n": r"train.csv:3: a.jpg: already listed on line 2",
    }
    for body, message in cases.items():
        csv_path.write_text("image,tags\n" + body)
        with pytest.raises(DataError, match=message):
            build_dataset("multilabel_folder", tagged, "train")
    csv_path.write_text("file,labels\na.jpg,dog\n")
    with pytest.raises(DataError, match=r"train.csv:1: the first line must be the header 'image,tags'"):
        build_dataset("multilabel_folder", tagged, "train")
    csv_path.write_text("image,tags\na.jpg,dog\nb.jpg\nc.jpg,unicorn\n")
    collected: list = []
    ds = build_dataset("multilabel_folder", tagged, "train", problems=collected)
    assert len(ds) == 1 and [p.line for p in collected] == [3, 4]
    with pytest.raises(DataError, match=r"no tag list for the split 'test' \(test.csv; found: train, val\)"):
        build_dataset("multilabel_folder", tagged, "test")


def test_multilabel_folder_check_finds_missing_images_and_bad_masks(tagged, capsys):
    (tagged / "images" / "c.jpg").unlink()
    _mask(tagged / "masks" / "sub" / "b.png", _label({9: (slice(0, 10), slice(0, 10))}))
    assert main(["data", "check", "multilabel_folder", str(tagged)]) == 1
    out = capsys.readouterr().out
    assert "2 problem(s)" in out and "c.jpg: image not found" in out
    assert "b.png: label mask value 9 at (1, 1) is no class (0 background, 1..4, 255 ignore)" in out


# ------------------------------------------------------------------------------------- registry


def test_the_registry_and_bas_data_list_import_no_torch():
    code = (
        "import sys\nfrom bas.cli import main\nfrom bas.data.formats import get_format\n"
        "assert main(['data', 'list']) == 0\nassert get_format('voc').options['tags'].default == 'auto'\n"
        "print([m for m in ('torch', 'torchvision') if m in sys.modules])"
    )
    src = Path(__file__).resolve().parents[1] / "src"
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(src)},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert any(line.startswith("voc: ") for line in lines) and lines[-1] == "[]"


def test_datasets_are_map_style_datasets_for_torch(voc):
    ds = build_dataset("voc", voc, "train")
    both = ds + build_dataset("voc", voc, "val")
    assert isinstance(both, torch.utils.data.ConcatDataset) and len(both) == 4
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate)
    assert next(iter(loader))["label"].shape == (3, 20)
