"""Tests of the WSOL metadata reader, bas.evaluate_maps and ``bas evaluate-maps``."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from bas.cli import main
from bas.data.metadata import load_metadata
from bas.errors import DataError
from bas.evaluate_maps import evaluate_score_maps, write_curve_csv

# Lines as in docs/method.md §10 (real wsolevaluation metadata).
CUB_IDS = [
    "001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg",
    "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
    "001.Black_footed_Albatross/Black_Footed_Albatross_0085_92.jpg",
    "001.Black_footed_Albatross/Black_Footed_Albatross_0025_796057.jpg",
]
CUB_SIZES = ["500,335", "500,347", "500,470", "250,208"]
CUB_BOXES = ["60,27,385,331", "14,112,402,298", "33,53,284,448", "27,4,226,205"]
OPENIMAGES_LOC = [
    "test/01226z/7af766bd43da900b.jpg,test/01226z/7af766bd43da900b_m01226z_6554d965.png,"
    "test/01226z/7af766bd43da900b_ignore.png",
    "test/01226z/7af766bd43da900b.jpg,test/01226z/7af766bd43da900b_m01226z_8856c605.png,",
    "test/01226z/973645e9516726b3.jpg,test/01226z/973645e9516726b3_m01226z_9ad378d4.png,"
    "test/01226z/973645e9516726b3_ignore.png",
]


def write_lines(path, lines, newline_at_end=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + ("\n" if newline_at_end else ""), encoding="utf-8")


def write_split(folder, ids, labels, sizes, localization):
    write_lines(folder / "image_ids.txt", ids)
    write_lines(folder / "class_labels.txt", [f"{i},{label}" for i, label in zip(ids, labels)])
    write_lines(folder / "image_sizes.txt", [f"{i},{s}" for i, s in zip(ids, sizes)])
    write_lines(folder / "localization.txt", localization)


# ----------------------------------------------------------------------------- metadata


def test_cub_metadata(tmp_path):
    write_split(tmp_path, CUB_IDS, [0] * 4, CUB_SIZES, [f"{i},{b}" for i, b in zip(CUB_IDS, CUB_BOXES)])
    meta = load_metadata(tmp_path)
    assert meta.image_ids == CUB_IDS
    assert meta.labels[CUB_IDS[3]] == 0
    assert meta.sizes[CUB_IDS[0]] == (500, 335)
    np.testing.assert_array_equal(meta.boxes[CUB_IDS[0]], [[60, 27, 385, 331]])
    assert meta.kind == "boxes" and len(meta) == 4 and not meta.masks


def test_ilsvrc_several_boxes_crlf_and_empty_sizes(tmp_path):
    ids = ["val2/0/0.jpeg", "val2/0/5.jpeg"]
    (tmp_path / "image_ids.txt").write_bytes(b"\xef\xbb\xbfval2/0/0.jpeg\r\nval2/0/5.jpeg\r\n")
    write_lines(tmp_path / "class_labels.txt", [f"{ids[0]},65", f"{ids[1]},970"], newline_at_end=True)
    write_lines(tmp_path / "image_sizes.txt", [])
    loc = ["val2/0/0.jpeg,156,163,318,230", "val2/0/5.jpeg,70,162,410,326", "val2/0/5.jpeg,71,305,140,473"]
    write_lines(tmp_path / "localization.txt", [*loc, "val2/0/5.jpeg,110,286,209,477"])
    meta = load_metadata(tmp_path, kind="boxes")
    assert meta.image_ids == ids and meta.labels == {ids[0]: 65, ids[1]: 970}
    assert meta.sizes == {}
    assert meta.boxes[ids[1]].shape == (3, 4)
    np.testing.assert_array_equal(meta.boxes[ids[1]][2], [110, 286, 209, 477])


def test_openimages_masks_and_empty_ignore_path(tmp_path):
    ids = ["test/01226z/7af766bd43da900b.jpg", "test/01226z/973645e9516726b3.jpg"]
    write_split(tmp_path, ids, [3, 3], [], OPENIMAGES_LOC)
    meta = load_metadata(tmp_path)
    assert meta.kind == "masks" and meta.sizes == {} and not meta.boxes
    assert meta.masks[ids[0]] == [
        ("test/01226z/7af766bd43da900b_m01226z_6554d965.png", "test/01226z/7af766bd43da900b_ignore.png"),
        ("test/01226z/7af766bd43da900b_m01226z_8856c605.png", None),
    ]


def test_training_split_without_localization(tmp_path):
    write_lines(tmp_path / "image_ids.txt", CUB_IDS[:2])
    write_lines(tmp_path / "class_labels.txt", [f"{i},0" for i in CUB_IDS[:2]])
    meta = load_metadata(tmp_path)
    assert meta.kind is None and meta.sizes == {}


@pytest.mark.parametrize(
    ("file", "lines", "message"),
    [
        (
            "localization.txt",
            [f"{CUB_IDS[0]},60,27,385,331", f"{CUB_IDS[1]},14,112,402"],
            "localization.txt:2:",
        ),
        (
            "localization.txt",
            [f"{CUB_IDS[0]},60,27,385,331", f"{CUB_IDS[1]},14,112,a,298"],
            "localization.txt:2:",
        ),
        (
            "localization.txt",
            [f"{CUB_IDS[0]},385,27,60,331", f"{CUB_IDS[1]},14,112,402,298"],
            "localization.txt:1:",
        ),
        ("localization.txt", [f"{CUB_IDS[0]},60,27,385,331", f"{CUB_IDS[1]},14,112,501,298"], "outside"),
        ("class_labels.txt", [f"{CUB_IDS[0]},0", f"{CUB_IDS[1]},zero"], "class_labels.txt:2:"),
        ("image_sizes.txt", [f"{CUB_IDS[0]},500", f"{CUB_IDS[1]},500,347"], "image_sizes.txt:1:"),
        ("image_ids.txt", [CUB_IDS[0], CUB_IDS[0]], "image_ids.txt:2:"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, file, lines, message):
    ids = CUB_IDS[:2]
    write_split(tmp_path, ids, [0, 0], CUB_SIZES[:2], [f"{i},{b}" for i, b in zip(ids, CUB_BOXES)])
    write_lines(tmp_path / file, lines)
    with pytest.raises(DataError, match=message) as info:
        load_metadata(tmp_path)
    assert info.value.path == str(tmp_path / file)


def test_ids_that_differ_between_files(tmp_path):
    ids = CUB_IDS[:2]
    write_split(tmp_path, ids, [0, 0], CUB_SIZES[:2], [f"{i},{b}" for i, b in zip(ids, CUB_BOXES)])
    write_lines(tmp_path / "class_labels.txt", [f"{ids[0]},0", f"{ids[1]},0", "other/x.jpg,1"])
    with pytest.raises(
        DataError, match=r"class_labels.txt:3: .*'other/x.jpg' is not listed in image_ids.txt"
    ):
        load_metadata(tmp_path)
    write_lines(tmp_path / "class_labels.txt", [f"{ids[0]},0"])
    with pytest.raises(DataError, match=r"image_ids.txt:2: .* has no line in class_labels.txt"):
        load_metadata(tmp_path)
    write_lines(tmp_path / "class_labels.txt", [f"{ids[0]},0", f"{ids[1]},0"])
    write_lines(tmp_path / "localization.txt", [f"{ids[0]},1,2,3,4"])
    with pytest.raises(DataError, match=r"image_ids.txt:2: .* has no line in localization.txt"):
        load_metadata(tmp_path)


def test_wrong_localization_kind(tmp_path):
    write_split(tmp_path, CUB_IDS[:1], [0], CUB_SIZES[:1], [f"{CUB_IDS[0]},{CUB_BOXES[0]}"])
    with pytest.raises(DataError, match="mask_path"):
        load_metadata(tmp_path, kind="masks")


# ----------------------------------------------------------------------------- evaluate-maps

BOX_IDS = ["a/0.jpg", "a/1.jpg", "b/2.jpg"]


def block_map(rows, cols):
    scoremap = np.zeros((224, 224), dtype=np.float32)
    scoremap[rows[0] : rows[1], cols[0] : cols[1]] = 1.0
    return scoremap


@pytest.fixture
def box_dataset(tmp_path):
    """Three 448x448 images whose box [100, 100, 299, 299] becomes [50, 50, 149, 149] in the map."""
    meta = tmp_path / "metadata" / "CUB" / "test"
    write_split(meta, BOX_IDS, [0, 1, 1], ["448,448"] * 3, [f"{i},100,100,299,299" for i in BOX_IDS])
    maps = tmp_path / "maps"
    arrays = [
        block_map((50, 149), (50, 149)),  # boundingRect 50 + 99 = 149: the box exactly
        np.zeros((224, 224), dtype=np.float32),  # box [0, 0, 0, 0]: a miss
        block_map((50, 99), (50, 149)),  # box [50, 50, 149, 99]: IoU 0.5
    ]
    for image_id, arr in zip(BOX_IDS, arrays):
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", arr)
    return tmp_path


def test_evaluate_score_maps_boxes(box_dataset):
    result = evaluate_score_maps(
        box_dataset / "maps", box_dataset / "metadata/CUB/test", "CUB", interval=0.01, num_workers=1
    )
    assert result["num_images"] == 3
    assert result["MaxBoxAcc"] == pytest.approx({30: 200 / 3, 50: 200 / 3, 70: 100 / 3})
    assert result["MaxBoxAccV2"] == pytest.approx(500 / 9)


def test_cli_end_to_end_with_the_metadata_root(box_dataset, capsys):
    out, curve = box_dataset / "out" / "result.json", box_dataset / "curve.csv"
    args = ["evaluate-maps", "--maps", str(box_dataset / "maps"), "--metadata", str(box_dataset / "metadata")]
    args += ["--dataset", "CUB", "--split", "test", "--interval", "0.01", "--multi-contour"]
    args += ["--output", str(out), "--curve", str(curve), "--workers", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "MaxBoxAccV2: 55.56" in printed
    result = json.loads(out.read_text())
    assert result["MaxBoxAcc"] == pytest.approx({"30": 200 / 3, "50": 200 / 3, "70": 100 / 3})
    assert result["split"] == "test" and result["multi_contour"] is True and "curve" not in result
    rows = list(csv.reader(curve.open()))
    assert rows[0] == ["threshold", "iou30", "iou50", "iou70"] and len(rows) == 101
    assert rows[1] == ["0", "66.666667", "66.666667", "33.333333"]


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("missing", "score map not found"),
        ("nan", "NaN"),
        ("shape", "shape"),
        ("range", r"\[0, 1\]"),
    ],
)
def test_cli_bad_map_exits_2_and_writes_nothing(box_dataset, capsys, breakage, message):
    target = box_dataset / "maps" / f"{BOX_IDS[1]}.npy"
    if breakage == "missing":
        target.unlink()
    elif breakage == "nan":
        bad = np.zeros((224, 224), dtype=np.float32)
        bad[3, 4] = np.nan
        np.save(target, bad)
    elif breakage == "shape":
        np.save(target, np.zeros((112, 112), dtype=np.float32))
    else:
        np.save(target, np.full((224, 224), 2.0, dtype=np.float32))
    out = box_dataset / "result.json"
    args = ["evaluate-maps", "--maps", str(box_dataset / "maps"), "--metadata"]
    args += [
        str(box_dataset / "metadata/CUB/test"),
        "--dataset",
        "CUB",
        "--interval",
        "0.1",
        "--output",
        str(out),
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(target) in err
    assert len(list(box_dataset.glob("**/*.json"))) == 0
    with pytest.raises(DataError, match=message):
        evaluate_score_maps(box_dataset / "maps", box_dataset / "metadata/CUB/test", "CUB", interval=0.1)


def test_sizes_from_the_images_when_image_sizes_is_empty(box_dataset):
    meta = box_dataset / "metadata/CUB/test"
    (meta / "image_sizes.txt").write_text("")
    with pytest.raises(DataError, match="no size"):
        evaluate_score_maps(box_dataset / "maps", meta, "CUB", interval=0.1)
    images = box_dataset / "images"
    for image_id in BOX_IDS:
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(images / image_id), np.zeros((448, 448, 3), dtype=np.uint8))
    result = evaluate_score_maps(box_dataset / "maps", meta, "CUB", interval=0.1, image_root=images)
    assert result["MaxBoxAcc"][70] == pytest.approx(100 / 3)


@pytest.fixture
def mask_dataset(tmp_path):
    """Two OpenImages images with 112x112 masks (each pixel becomes 2x2 in the 224 map)."""
    ids = ["test/c/0.jpg", "test/c/1.jpg"]
    loc = [
        "test/c/0.jpg,test/c/0_m_a.png,test/c/0_ignore.png",
        "test/c/0.jpg,test/c/0_m_b.png,",
        "test/c/1.jpg,test/c/1_m_a.png,test/c/1_ignore.png",
    ]
    write_split(tmp_path / "meta", ids, [0, 0], [], loc)
    masks = tmp_path / "masks" / "OpenImages" / "test" / "c"
    masks.mkdir(parents=True)

    def png(name, rows, cols):
        image = np.zeros((112, 112), dtype=np.uint8)
        image[rows[0] : rows[1], cols[0] : cols[1]] = 255
        cv2.imwrite(str(masks / name), image)

    png("0_m_a.png", (10, 30), (10, 30))
    png("0_m_b.png", (60, 70), (60, 80))
    png("0_ignore.png", (90, 100), (0, 112))
    png("1_m_a.png", (20, 60), (20, 60))
    png("1_ignore.png", (0, 0), (0, 0))
    maps = tmp_path / "maps"
    first = block_map((20, 60), (20, 60))
    first[120:140, 120:160] = 1.0  # the second instance
    first[180:200, :] = 1.0  # inside the ignore region only
    second = block_map((40, 120), (40, 120))
    for image_id, arr in zip(ids, (first, second)):
        (maps / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{image_id}.npy", arr)
    return tmp_path


def test_openimages_pxap_end_to_end(mask_dataset, capsys):
    out = mask_dataset / "result.json"
    args = ["evaluate-maps", "--maps", str(mask_dataset / "maps"), "--metadata", str(mask_dataset / "meta")]
    args += ["--dataset", "OpenImages", "--mask-root", str(mask_dataset / "masks"), "--interval", "0.01"]
    assert main([*args, "--output", str(out)]) == 0
    result = json.loads(out.read_text())
    # The maps are 1 exactly on the (resized, OR-ed) instance masks and on the ignored band.
    assert result["PxAP"] == pytest.approx(100.0) and result["PIoU"] == pytest.approx(100.0)
    assert result["num_images"] == 2 and "PxAP: 100.00" in capsys.readouterr().out

    (mask_dataset / "masks/OpenImages/test/c/0_ignore.png").unlink()
    assert main([*args, "--output", str(mask_dataset / "second.json")]) == 2
    assert "0_ignore.png" in capsys.readouterr().err
    assert not (mask_dataset / "second.json").exists()


def test_openimages_without_ignore_region_scores_lower(mask_dataset):
    meta = mask_dataset / "meta"
    loc = (meta / "localization.txt").read_text().replace("test/c/0_ignore.png", "")
    (meta / "localization.txt").write_text(loc)
    result = evaluate_score_maps(
        mask_dataset / "maps", meta, "OpenImages", mask_root=mask_dataset / "masks", interval=0.01
    )
    # The band now counts as false positives wherever the foreground is predicted.
    fg = 40 * 40 + 20 * 40 + 80 * 80
    fp = 20 * 224
    assert result["PxAP"] == pytest.approx(100.0 * fg / (fg + fp))
    assert result["PIoU"] == pytest.approx(100.0 * fg / (fg + fp))


def test_write_curve_csv_for_masks(mask_dataset, tmp_path):
    result = evaluate_score_maps(
        mask_dataset / "maps",
        mask_dataset / "meta",
        "OpenImages",
        mask_root=mask_dataset / "masks",
        interval=0.25,
    )
    write_curve_csv(tmp_path / "pr.csv", result)
    rows = list(csv.reader((tmp_path / "pr.csv").open()))
    assert rows[0] == ["threshold", "precision", "recall", "iou"]
    assert [r[0] for r in rows[1:]] == ["0", "0.25", "0.5", "0.75", "1"]
