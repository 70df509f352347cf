"""Datasets of every annotation format, collate, DataLoader workers and ``bas data check``.

Every dataset is written in tmp_path with lines exactly like the samples of docs/method.md §10 (last line
without a newline, the literal double backslash of val_gt.txt, ``;`` separators).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from bas.cli import main
from bas.data import (
    BASListDataset,
    CUBDataset,
    ILSVRCTrainDataset,
    ILSVRCValDataset,
    ImageFolderDataset,
    build_dataset,
    check_dataset,
    collate,
)
from bas.data import transforms as T
from bas.errors import ConfigError, DataError

# ----------------------------------------------------------------------------- helpers


def _image(path: Path, size: tuple[int, int], color=(90, 120, 150)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def _mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    arr = np.zeros((size[1], size[0]), dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path)


def _lines(path: Path, lines: list[str]) -> Path:
    """Write lines like the real files: separated by newlines, the last one without."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


CUB_CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross"]


def _cub_box(i: int) -> tuple[int, int, int, int]:
    """Integer x, y, w, h of image i (1-based)."""
    return 2 + i % 3, 3 + i % 2, 20 + i, 12 + i % 4


def _cub_size(i: int) -> tuple[int, int]:
    return (48, 36) if i % 2 else (40, 44)


def make_cub(root: Path, per_class: int = 6, test_per_class: int = 2, masks: bool = True) -> Path:
    """CUB-200-2011 release layout, ids class-major, the last test_per_class of each class test."""
    images, labels, split, boxes = [], [], [], []
    i = 0
    for k, name in enumerate(CUB_CLASSES):
        for j in range(per_class):
            i += 1
            rel = f"{name}/{name.split('.')[1]}_{j:04d}_{i}.jpg"
            x, y, w, h = _cub_box(i)
            _image(root / "images" / rel, _cub_size(i))
            if masks:
                _mask((root / "masks" / rel).with_suffix(".png"), _cub_size(i), (x, y, x + w, y + h))
            images.append(f"{i} {rel}")
            labels.append(f"{i} {k + 1}")
            split.append(f"{i} {int(j < per_class - test_per_class)}")
            boxes.append(f"{i} {x:.1f} {y:.1f} {w:.1f} {h:.1f}")
    _lines(root / "images.txt", images)
    _lines(root / "image_class_labels.txt", labels)
    _lines(root / "train_test_split.txt", split)
    _lines(root / "bounding_boxes.txt", boxes)
    _lines(root / "classes.txt", [f"{k + 1} {n}" for k, n in enumerate(CUB_CLASSES)])
    return root


@pytest.fixture
def cub(tmp_path: Path) -> Path:
    return make_cub(tmp_path / "CUB_200_2011")


# ----------------------------------------------------------------------------- CUB


def test_cub_sample_contract(cub: Path):
    ds = CUBDataset(cub, "test")
    assert ds.classes == CUB_CLASSES and ds.num_classes == 2 and len(ds) == 4
    sample = ds[0]
    record = ds.records[0]
    i = int(record.image_id.rsplit("_", 1)[1].split(".")[0])
    x, y, w, h = _cub_box(i)
    W, H = _cub_size(i)
    assert sample["image"].shape == (3, H, W) and sample["image"].dtype == torch.float32
    assert sample["label"] == 0 and sample["orig_size"] == (W, H)
    assert sample["image_id"] == record.image_id and sample["image_id"].startswith(
        "001.Black_footed_Albatross/"
    )
    assert sample["boxes"].dtype == torch.float32
    torch.testing.assert_close(sample["boxes"], torch.tensor([[x, y, x + w, y + h]], dtype=torch.float32))
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[y : y + h, x : x + w] = True
    assert sample["mask"].dtype == torch.bool and torch.equal(sample["mask"], expected)
    assert sample["ignore"] is None

    resized = CUBDataset(cub, "test", transform=T.test_transform(mode="resize"))[0]
    scale = torch.tensor([224 / W, 224 / H, 224 / W, 224 / H])
    torch.testing.assert_close(resized["boxes"][0], torch.tensor([x, y, x + w, y + h]) * scale)
    assert resized["mask"].shape == (224, 224) and resized["orig_size"] == (W, H)


def test_cub_val_is_a_deterministic_held_out_part_of_train(cub: Path):
    train, val, test = (CUBDataset(cub, s, val_per_class=1) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 4)
    assert sorted(val.labels) == [0, 1]  # one per class
    ids = {s: set(d.image_ids) for s, d in (("train", train), ("val", val), ("test", test))}
    assert not ids["train"] & ids["val"] and not ids["test"] & (ids["train"] | ids["val"])
    official_train = set(CUBDataset(cub, "train", val_per_class=0).image_ids)
    assert ids["train"] | ids["val"] == official_train and len(official_train) == 8
    assert CUBDataset(cub, "val", val_per_class=0).records == []
    assert CUBDataset(cub, "val", val_per_class=1).image_ids == val.image_ids  # deterministic
    by_seed = {tuple(CUBDataset(cub, "val", val_per_class=1, seed=s).image_ids) for s in range(8)}
    assert len(by_seed) > 1  # the seed matters
    assert len(CUBDataset(cub, "val", val_per_class=0.5)) == 4  # a fraction of each class
    assert len(CUBDataset(cub, "val", val_per_class=50)) == 4  # at most half of each class
    with pytest.raises(ConfigError, match="unknown CUB split 'dev'"):
        CUBDataset(cub, "dev")
    with pytest.raises(ConfigError, match="val_per_class"):
        CUBDataset(cub, "val", val_per_class=1.5)


def test_cub_masks_are_optional(cub: Path, tmp_path: Path):
    assert CUBDataset(cub, "test", load_masks=False)[0]["mask"] is None
    bare = make_cub(tmp_path / "bare", masks=False)
    assert CUBDataset(bare, "test")[0]["mask"] is None


def test_cub_malformed_line_names_file_and_line(cub: Path):
    lines = (cub / "bounding_boxes.txt").read_text().split("\n")
    lines[2] = "3 4.0 3.0 twenty 15.0"
    _lines(cub / "bounding_boxes.txt", lines)
    with pytest.raises(DataError, match=r"bounding_boxes\.txt:3: .*twenty"):
        CUBDataset(cub, "train")
    collected: list[DataError] = []
    ds = CUBDataset(cub, "train", val_per_class=0, problems=collected)
    assert len(collected) == 1 and collected[0].line == 3 and len(ds) == 7  # the bad image is skipped


def test_cub_label_out_of_range(cub: Path):
    lines = (cub / "image_class_labels.txt").read_text().split("\n")
    lines[-1] = lines[-1].split()[0] + " 3"
    _lines(cub / "image_class_labels.txt", lines)
    with pytest.raises(DataError, match=r"image_class_labels\.txt:12: class id must be in 1\.\.2"):
        CUBDataset(cub, "test")


def test_missing_image_is_reported_when_loaded(cub: Path):
    ds = CUBDataset(cub, "test")
    ds.records[1].path.unlink()
    ds[0]  # the others still load
    with pytest.raises(DataError, match="image not found") as info:
        ds[1]
    assert info.value.path == str(ds.records[1].path)


def test_synthetic_dataset_loads_with_masks(tmp_path: Path):
    from bas.data.synthetic import make_dataset

    root = make_dataset(tmp_path / "syn", num_classes=2, images_per_class=3, image_size=40, seed=0)
    ds = build_dataset("cub", root, "test", None)
    assert len(ds) == 2 and ds.num_classes == 2
    for k in range(len(ds)):
        s = ds[k]
        ys, xs = torch.nonzero(s["mask"], as_tuple=True)
        mask_box = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
        torch.testing.assert_close(s["boxes"][0], mask_box)  # synthetic boxes are the masks' extents


# ----------------------------------------------------------------------------- collate, workers


def test_collate_and_dataloader_workers(cub: Path):
    ds = CUBDataset(cub, "train", transform=T.train_transform(input_size=32, resize_size=40), val_per_class=0)
    batch = collate([ds[0], ds[1], ds[2]])
    assert batch["image"].shape == (3, 3, 32, 32)
    assert batch["label"].dtype == torch.int64 and batch["label"].tolist() == [
        ds.records[k].label for k in range(3)
    ]
    assert isinstance(batch["boxes"], list) and [b.shape for b in batch["boxes"]] == [(1, 4)] * 3
    assert batch["mask"].shape == (3, 32, 32) and batch["mask"].dtype == torch.bool
    assert batch["ignore"] is None
    assert batch["orig_size"].dtype == torch.int64 and batch["orig_size"].shape == (3, 2)
    assert batch["image_id"] == ds.image_ids[:3]

    no_mask = dict(ds[3], mask=None)
    assert collate([ds[0], no_mask])["mask"] is None

    loader = DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate)
    batches = list(loader)
    assert sum(len(b["image_id"]) for b in batches) == 8
    assert sorted(i for b in batches for i in b["image_id"]) == sorted(ds.image_ids)


# ----------------------------------------------------------------------------- ILSVRC

WNIDS = ["n01440764", "n01751748", "n09193705"]
VAL_SIZE = (50, 40)


def _ilsvrc_train(root: Path) -> Path:
    for wnid in WNIDS:
        for j in range(2):
            _image(root / "train" / wnid / f"{wnid}_{j}.JPEG", (30, 20))
    (root / "train" / WNIDS[0] / "readme.txt").write_text("not an image")
    return root / "train"


def test_ilsvrc_train_folder(tmp_path: Path):
    ds = ILSVRCTrainDataset(_ilsvrc_train(tmp_path))
    assert ds.classes == WNIDS and len(ds) == 6
    assert ds.labels == [0, 0, 1, 1, 2, 2]
    assert ds[5]["boxes"].shape == (0, 4) and ds[5]["image_id"] == "n09193705/n09193705_1.JPEG"


def _xml(name: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> str:
    objs = "".join(
        f"<object><name>{w}</name><pose>Unspecified</pose><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for w, b in objects
    )
    return (
        f"<annotation><folder>val</folder><filename>{name}</filename><size><width>{VAL_SIZE[0]}</width>"
        f"<height>{VAL_SIZE[1]}</height><depth>3</depth></size>{objs}</annotation>"
    )


def test_ilsvrc_val_from_xml(tmp_path: Path):
    train = _ilsvrc_train(tmp_path)
    xml_dir = tmp_path / "val_xml"
    xml_dir.mkdir()
    (xml_dir / "ILSVRC2012_val_00000001.xml").write_text(
        _xml("ILSVRC2012_val_00000001", [(WNIDS[1], (11, 10, 44, 19))])
    )
    (xml_dir / "ILSVRC2012_val_00000002.xml").write_text(
        _xml("ILSVRC2012_val_00000002", [(WNIDS[2], (4, 4, 49, 16)), (WNIDS[2], (0, 6, 43, 20))])
    )
    for n in (1, 2):
        _image(tmp_path / "val" / f"ILSVRC2012_val_0000000{n}.JPEG", VAL_SIZE)
    ds = ILSVRCValDataset(tmp_path / "val", xml_dir, classes=train)
    assert ds.classes == WNIDS and ds.labels == [1, 2]
    assert ds.image_ids == ["ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000002.JPEG"]
    torch.testing.assert_close(ds[1]["boxes"], torch.tensor([[4.0, 4, 49, 16], [0, 6, 43, 20]]))
    assert check_dataset(ds) == []

    (xml_dir / "ILSVRC2012_val_00000003.xml").write_text("<annotation><object>")
    with pytest.raises(DataError, match=r"ILSVRC2012_val_00000003\.xml:1: malformed XML"):
        ILSVRCValDataset(tmp_path / "val", xml_dir, classes=train)


def test_ilsvrc_val_from_loc_solution_csv(tmp_path: Path):
    synsets = _lines(tmp_path / "LOC_synset_mapping.txt", [f"{w} some name, other name" for w in WNIDS])
    csv = _lines(
        tmp_path / "LOC_val_solution.csv",
        [
            "ImageId,PredictionString",
            f"ILSVRC2012_val_00000002,{WNIDS[2]} 4 4 49 16 {WNIDS[2]} 0 6 43 20 ",
            f"ILSVRC2012_val_00000001,{WNIDS[0]} 11 10 44 19 ",
        ],
    )
    for n in (1, 2):
        _image(tmp_path / "val" / f"ILSVRC2012_val_0000000{n}.JPEG", VAL_SIZE)
    ds = build_dataset("ilsvrc", tmp_path, "val", None)  # finds the CSV and the synsets file
    assert ds.classes == WNIDS
    by_id = {r.image_id: r for r in ds.records}
    assert by_id["ILSVRC2012_val_00000001.JPEG"].label == 0
    assert by_id["ILSVRC2012_val_00000002.JPEG"].label == 2
    np.testing.assert_array_equal(
        by_id["ILSVRC2012_val_00000002.JPEG"].boxes, [[4, 4, 49, 16], [0, 6, 43, 20]]
    )

    text = csv.read_text().split("\n")
    text[2] = f"ILSVRC2012_val_00000001,{WNIDS[0]} 11 10 44"
    _lines(csv, text)
    with pytest.raises(DataError, match=r"LOC_val_solution\.csv:3: expected"):
        ILSVRCValDataset(tmp_path / "val", csv, classes=synsets)


def test_ilsvrc_val_from_bas_val_gt_and_val_list(tmp_path: Path):
    _lines(
        tmp_path / "val_gt.txt",
        [
            f"{WNIDS[1]}\\\\ILSVRC2012_val_00000001.JPEG 50 40 ; 11 10 44 19",
            f"{WNIDS[2]}\\\\ILSVRC2012_val_00000002.JPEG 50 40 ; 4 4 49 16 2 6 43 20",
        ],
    )
    _lines(
        tmp_path / "val_list.txt",
        [f"{WNIDS[1]}/ILSVRC2012_val_00000001.JPEG;65", f"{WNIDS[2]}/ILSVRC2012_val_00000002.JPEG;970"],
    )
    assert "\\\\ILSVRC" in (tmp_path / "val_gt.txt").read_text()  # the literal double backslash
    for n, wnid in ((1, WNIDS[1]), (2, WNIDS[2])):
        _image(tmp_path / "val" / wnid / f"ILSVRC2012_val_0000000{n}.JPEG", VAL_SIZE)
    ds = build_dataset("ilsvrc", tmp_path, "val", None)  # finds val_gt.txt and val_list.txt
    assert ds.image_ids == [
        f"{WNIDS[1]}/ILSVRC2012_val_00000001.JPEG",
        f"{WNIDS[2]}/ILSVRC2012_val_00000002.JPEG",
    ]
    assert ds.labels == [65, 970] and ds.num_classes == 971
    assert ds.records[0].size == (50, 40)
    sample = ds[1]
    torch.testing.assert_close(sample["boxes"], torch.tensor([[4.0, 4, 49, 16], [2, 6, 43, 20]]))
    assert sample["orig_size"] == VAL_SIZE
    assert check_dataset(ds) == []
    # Without val_list the labels come from the wnid folder of each path.
    ds = ILSVRCValDataset(tmp_path / "val", tmp_path / "val_gt.txt", classes=WNIDS)
    assert ds.labels == [1, 2]
    # A val_list label that disagrees with the class list is reported.
    with pytest.raises(DataError, match=r"val_list\.txt:1: .*label 65 but n01751748 is class 1"):
        ILSVRCValDataset(
            tmp_path / "val", tmp_path / "val_gt.txt", classes=WNIDS, val_list=tmp_path / "val_list.txt"
        )

    lines = (tmp_path / "val_gt.txt").read_text().split("\n")
    lines[1] = lines[1].replace(" ; ", " ")
    _lines(tmp_path / "val_gt.txt", lines)
    with pytest.raises(DataError, match=r"val_gt\.txt:2: expected"):
        build_dataset("ilsvrc", tmp_path, "val", None)


# ----------------------------------------------------------------------------- BAS lists, folders


def test_bas_list_with_boxes(tmp_path: Path):
    rels = [
        "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
        "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
        "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
    ]
    for rel in rels:
        _image(tmp_path / "images" / rel, (50, 34))
    _lines(tmp_path / "test_list.txt", [f"{rels[0]};0", f"{rels[1]};0", f"{rels[2]};1"])
    box_file = _lines(
        tmp_path / "test_bounding_box.txt",
        ["6.0 2.0 38.0 33.0 34 50", "1.0 11.0 40.0 29.0 34 50", "3.0 5.0 28.0 30.0 1.0 1.0 4.0 4.0 34 50"],
    )
    ds = build_dataset("bas_list", tmp_path, "test", None)
    assert ds.classes == CUB_CLASSES and ds.labels == [0, 0, 1]
    torch.testing.assert_close(ds[0]["boxes"], torch.tensor([[6.0, 2, 38, 33]]))
    assert ds.records[2].boxes.shape == (2, 4) and ds.records[0].size == (50, 34)
    assert check_dataset(ds) == []

    _lines(box_file, box_file.read_text().split("\n")[:2])
    with pytest.raises(DataError, match="2 box lines for 3 images"):
        BASListDataset(tmp_path / "images", tmp_path / "test_list.txt", box_file)
    _lines(tmp_path / "bad_list.txt", [f"{rels[0]};0", f"{rels[1]} 0"])
    with pytest.raises(DataError, match=r"bad_list\.txt:2: expected 'path;label'"):
        BASListDataset(tmp_path / "images", tmp_path / "bad_list.txt")


def test_image_folder_with_box_csv(tmp_path: Path):
    for split, names in (("train", ["cat", "dog"]), ("test", ["dog"])):
        for name in names:
            _image(tmp_path / split / name / "a.png", (40, 30))
            _image(tmp_path / split / name / "sub" / "b.webp", (40, 30))
    csv = _lines(tmp_path / "boxes.csv", ["image_id,x0,y0,x1,y1", "dog/a.png,1,2,30,20", "dog/a.png,5,5,9,9"])
    ds = ImageFolderDataset(tmp_path, "test", boxes_csv=csv)
    assert ds.classes == ["cat", "dog"]  # classes numbered alike in every split
    assert ds.image_ids == ["dog/a.png", "dog/sub/b.webp"] and ds.labels == [1, 1]
    torch.testing.assert_close(ds[0]["boxes"], torch.tensor([[1.0, 2, 30, 20], [5, 5, 9, 9]]))
    assert ds[1]["boxes"].shape == (0, 4)
    assert len(build_dataset("folder", tmp_path, "train", None)) == 4

    # one CSV may serve every split: another split's lines are skipped, not errors
    shared = _lines(
        tmp_path / "all.csv", ["train/cat/a.png,1,1,9,9", "test/dog/a.png,2,2,8,8", "dog/sub/b.webp,3,3,7,7"]
    )
    train = ImageFolderDataset(tmp_path, "train", boxes_csv=shared)
    assert [len(r.boxes) for r in train.records] == [1, 0, 0, 1]  # cat/a.png and dog/sub/b.webp
    test = ImageFolderDataset(tmp_path, "test", boxes_csv=shared)
    assert [len(r.boxes) for r in test.records] == [1, 1]

    _lines(csv, ["dog/a.png,1,2,30,20", "dog/missing.png,1,2,3,4"])  # no header this time
    with pytest.raises(DataError, match=r"boxes\.csv:2: unknown image id"):
        ImageFolderDataset(tmp_path, "test", boxes_csv=csv)


# ----------------------------------------------------------------------------- bas data check


def test_data_check_passes_on_a_clean_dataset(cub: Path, capsys):
    assert main(["data", "check", "cub", str(cub), "--val-per-class", "1"]) == 0
    out = capsys.readouterr().out
    assert "split train: 6 images, 2 classes" in out and "split test: 4 images" in out
    assert "001.Black_footed_Albatross" in out and "no problems found" in out


def test_data_check_lists_every_problem(cub: Path, capsys):
    lines = (cub / "bounding_boxes.txt").read_text().split("\n")
    lines[1] = "2 1.0 1.0 100.0 10.0"  # wider than the image
    lines[3] = "4 1.0 1.0 oops"  # malformed
    lines[5] = "6 1.0 1.0 -3.0 2.0"  # negative width
    _lines(cub / "bounding_boxes.txt", lines)
    ds = CUBDataset(cub, "train", val_per_class=0, problems=[])
    rel = ds.records[0].image_id
    ds.records[0].path.write_bytes(b"not a jpeg")
    (cub / "masks" / rel).with_suffix(".png").unlink()
    assert main(["data", "check", "cub", str(cub)]) == 1
    out = capsys.readouterr().out
    assert "bounding_boxes.txt:2: " in out and "outside the 40x44 image" in out
    assert "bounding_boxes.txt:4: " in out and "bounding_boxes.txt:6: " in out
    assert out.count("bounding_boxes.txt:4: ") == 1  # reported once, not once per split
    assert f"{rel}: cannot read image" in out
    assert "mask not found" in out
    assert "5 problem(s)" in out


def test_build_dataset_options(cub: Path, tmp_path: Path):
    with pytest.raises(
        ConfigError, match=r"unknown option\(s\) boxes for the 'cub' dataset; accepted: .*val_per_class"
    ):
        build_dataset("cub", cub, "train", None, boxes="x.csv")
    with pytest.raises(ConfigError, match="unknown dataset 'coco2017'"):
        build_dataset("coco2017", cub, "train", None)
    with pytest.raises(ConfigError, match="needs the option metadata"):
        build_dataset("wsol", cub, "train", None)
    # A config shared by both ILSVRC splits: the validation options do not reach the train folder.
    train = _ilsvrc_train(tmp_path / "ilsvrc")
    ds = build_dataset(
        "ilsvrc", train.parent, "train", None, boxes="LOC_val_solution.csv", val_list="x", classes=train
    )
    assert ds.classes == WNIDS and len(ds) == 6


def test_data_check_usage_errors(tmp_path: Path, capsys):
    assert main(["data", "check", "cub", str(tmp_path / "nowhere")]) == 1
    assert "CUB dataset folder not found" in capsys.readouterr().out
    assert main(["data", "check", "cub", str(tmp_path), "--boxes", "x.csv"]) == 2
    assert "--boxes does not apply to 'cub'" in capsys.readouterr().err


# ----------------------------------------------------------------------------- standard metadata


def test_metadata_dataset_with_boxes(tmp_path: Path):
    ids = ["val2/0/0.jpeg", "val2/0/5.jpeg"]
    for i in ids:
        _image(tmp_path / "ILSVRC" / i, (60, 50))
    meta = tmp_path / "metadata" / "ILSVRC" / "val"
    _lines(meta / "image_ids.txt", ids)
    _lines(meta / "class_labels.txt", [f"{ids[0]},0", f"{ids[1]},2"])
    _lines(meta / "image_sizes.txt", [f"{ids[0]},60,50", f"{ids[1]},60,50"])
    _lines(
        meta / "localization.txt",
        [f"{ids[0]},15,16,31,23", f"{ids[1]},7,16,41,32", f"{ids[1]},7,30,14,47", f"{ids[1]},11,28,20,47"],
    )
    ds = build_dataset(
        "wsol", tmp_path / "ILSVRC", "val", T.test_transform(mode="resize"), metadata=meta.parent
    )
    assert ds.image_ids == ids and ds.labels == [0, 2] and ds.num_classes == 3
    sample = ds[1]
    expected = torch.tensor([[7.0, 16, 41, 32], [7, 30, 14, 47], [11, 28, 20, 47]])
    expected *= torch.tensor([224 / 60, 224 / 50, 224 / 60, 224 / 50])
    torch.testing.assert_close(sample["boxes"], expected)
    assert sample["mask"] is None and sample["orig_size"] == (60, 50)
    assert check_dataset(ds) == []
    assert main(["data", "check", "wsol", str(tmp_path / "ILSVRC"), "--metadata", str(meta.parent)]) == 0


def test_metadata_dataset_with_openimages_masks(tmp_path: Path):
    data = tmp_path / "dataset"
    image_id = "test/01226z/7af766bd43da900b.jpg"
    _image(data / "OpenImages" / image_id, (40, 30))
    stem = "test/01226z/7af766bd43da900b"
    _mask(data / "OpenImages" / f"{stem}_m01226z_6554d965.png", (40, 30), (2, 2, 10, 10))
    _mask(data / "OpenImages" / f"{stem}_m01226z_8856c605.png", (40, 30), (20, 5, 30, 25))
    _mask(data / "OpenImages" / f"{stem}_ignore.png", (40, 30), (0, 0, 25, 12))
    meta = tmp_path / "metadata" / "OpenImages" / "test"
    _lines(meta / "image_ids.txt", [image_id])
    _lines(meta / "class_labels.txt", [f"{image_id},4"])
    _lines(meta / "image_sizes.txt", [])
    _lines(
        meta / "localization.txt",
        [
            f"{image_id},{stem}_m01226z_6554d965.png,{stem}_ignore.png",
            f"{image_id},{stem}_m01226z_8856c605.png,",
        ],
    )
    ds = build_dataset("wsol", data / "OpenImages", "test", None, metadata=meta.parent, mask_root=data)
    sample = ds[0]
    expected = torch.zeros(30, 40, dtype=torch.bool)
    expected[2:10, 2:10] = True
    expected[5:25, 20:30] = True  # the two instance masks OR-ed
    assert torch.equal(sample["mask"], expected)
    ignore = torch.zeros(30, 40, dtype=torch.bool)
    ignore[0:12, 0:25] = True
    assert torch.equal(sample["ignore"], ignore & ~expected)  # foreground is never ignored
    assert sample["boxes"].shape == (0, 4)
    batch = collate([sample, sample])
    assert batch["ignore"].shape == (2, 30, 40) and batch["mask"].dtype == torch.bool
    # Without mask_root the masks are found next to the images.
    assert torch.equal(
        build_dataset("wsol", data / "OpenImages", "test", None, metadata=meta)[0]["mask"], expected
    )

    (data / "OpenImages" / f"{stem}_m01226z_8856c605.png").unlink()
    with pytest.raises(DataError, match="mask not found"):
        ds[0]
    assert main(["data", "check", "wsol", str(data / "OpenImages"), "--metadata", str(meta.parent)]) == 1
