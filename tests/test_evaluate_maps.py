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
    assert result["MaxBoxAcc"] == pytest.approx({0.3: 200 / 3, 0.5: 200 / 3, 0.7: 100 / 3})
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
    assert result["MaxBoxAcc"] == pytest.approx({"0.3": 200 / 3, "0.5": 200 / 3, "0.7": 100 / 3})
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
    assert result["MaxBoxAcc"][0.7] == pytest.approx(100 / 3)


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


# ----------------------------------------------------------------------------- map sizes, contour mode


def test_any_square_map_size_scales_the_boxes_from_the_image_size(box_dataset):
    # 448 -> 112: the box [100, 100, 299, 299] becomes [trunc(25.0), trunc(25.0), trunc(74.75), trunc(74.75)]
    maps = box_dataset / "maps"
    small = np.zeros((112, 112), dtype=np.float32)
    small[25:74, 25:74] = 1.0  # boundingRect: x 25, w 49 -> box [25, 25, 74, 74], IoU 1
    for image_id in BOX_IDS:
        np.save(maps / f"{image_id}.npy", small)
    result = evaluate_score_maps(maps, box_dataset / "metadata/CUB/test", "CUB", interval=0.1, num_workers=1)
    assert result["map_size"] == 112
    assert result["MaxBoxAcc"] == pytest.approx({0.3: 100.0, 0.5: 100.0, 0.7: 100.0})
    np.save(maps / f"{BOX_IDS[2]}.npy", np.zeros((224, 224), np.float32))  # sizes must agree
    with pytest.raises(DataError, match=r"expected \(112, 112\)"):
        evaluate_score_maps(maps, box_dataset / "metadata/CUB/test", "CUB", interval=0.1)
    np.save(maps / f"{BOX_IDS[2]}.npy", np.zeros((112, 100), np.float32))
    with pytest.raises(DataError, match="square"):
        evaluate_score_maps(maps, box_dataset / "metadata/CUB/test", "CUB", interval=0.1)


@pytest.fixture
def two_blob_dataset(tmp_path):
    """One 224x224 image whose box is on the smaller of two blobs: only multi-contour finds it."""
    meta = tmp_path / "meta"
    write_split(meta, ["x.jpg"], [0], ["224,224"], ["x.jpg,100,100,139,139"])
    scoremap = block_map((10, 60), (10, 60))  # the largest contour, far from the box
    scoremap[100:139, 100:139] = 1.0  # boundingRect x 100, w 39: the box exactly
    (tmp_path / "maps").mkdir()
    np.save(tmp_path / "maps" / "x.jpg.npy", scoremap)
    return tmp_path


def test_multi_contour_is_the_default_and_names_the_mean(two_blob_dataset, capsys):
    base = ["evaluate-maps", "--maps", str(two_blob_dataset / "maps"), "--metadata"]
    base += [str(two_blob_dataset / "meta"), "--interval", "0.1", "--workers", "1"]
    outputs = {}
    for flag in ("", "--multi-contour", "--largest-contour"):
        out = two_blob_dataset / f"r{flag}.json"
        assert main([*base, *([flag] if flag else []), "--output", str(out)]) == 0
        outputs[flag] = (json.loads(out.read_text()), capsys.readouterr().out)
    default, printed = outputs[""]
    assert outputs["--multi-contour"][0] == default
    assert default["multi_contour"] is True and "MaxBoxAccV2: 100.00" in printed
    assert default["MaxBoxAccV2"] == 100.0 and "MaxBoxAcc (largest contour)" not in default
    largest, printed = outputs["--largest-contour"]
    assert "MaxBoxAccV2" not in largest and "MaxBoxAccV2" not in printed
    assert "MaxBoxAcc (largest contour): 0.00" in printed
    assert largest["MaxBoxAcc (largest contour)"] == 0.0 and largest["multi_contour"] is False


def test_box_summary_name():
    from bas.evaluate_maps import box_summary_name

    assert box_summary_name(True, (0.3, 0.5, 0.7)) == "MaxBoxAccV2"
    assert box_summary_name(False, [0.3, 0.5, 0.7]) == "MaxBoxAcc (largest contour)"
    assert box_summary_name(True, (0.5,)) == "MaxBoxAcc (multi-contour, IoU 50)"
    assert box_summary_name(False, (0.5, 0.75)) == "MaxBoxAcc (largest contour, IoU 50/75)"


# ----------------------------------------------------------------------------- the round trip


@pytest.fixture(scope="module")
def tiny_model_and_data(tmp_path_factory):
    import torch

    import bas
    from bas.checkpoints import save_model
    from bas.data.synthetic import make_dataset

    root = tmp_path_factory.mktemp("roundtrip")
    data = make_dataset(root / "data", num_classes=2, images_per_class=8, image_size=64, seed=0)
    checkpoint = root / "tiny.safetensors"
    torch.manual_seed(0)
    model = bas.build_model("resnet18", 2, hidden=32)
    save_model(checkpoint, model, threshold=0.5, top_k=1, input_size=48, resize_size=56)
    return data, checkpoint


def evaluate_args(data, checkpoint, out, *extra):
    args = ["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--dataset", "cub"]
    args += ["--split", "test", "--output", str(out), "--set", "data.workers=0", "--no-progress"]
    return [*args, "--set", "eval.interval=0.05", *extra]


@pytest.mark.parametrize("multi_contour", [True, False])
def test_evaluate_save_maps_then_evaluate_maps_give_the_same_numbers(
    tiny_model_and_data, tmp_path, capsys, multi_contour
):
    data, checkpoint = tiny_model_and_data
    saved, out = tmp_path / "saved", tmp_path / "eval"
    extra = [] if multi_contour else ["--set", "eval.multi_contour=false"]
    assert (
        main(evaluate_args(data, checkpoint, out, "--save-maps", str(saved), "--save-vis", "2", *extra)) == 0
    )
    printed = capsys.readouterr().out
    assert "note: --save-maps" in printed and "48x48, no crop" in printed  # the switch is stated
    # the standard layout: one map per image id, of the model's input size, and the metadata
    ids = (saved / "metadata" / "image_ids.txt").read_text().split()
    assert len(ids) >= 4
    for name in ("class_labels.txt", "image_sizes.txt", "localization.txt"):
        assert (saved / "metadata" / name).is_file()
    assert all(np.load(saved / f"{i}.npy").shape == (48, 48) for i in ids)
    evaluated = json.loads((out / "metrics.json").read_text())
    from PIL import Image

    overlays = sorted((out / "vis").rglob("*.png"))
    assert len(overlays) == 2  # the --save-vis images, at the photo's 64x64, not the 48x48 input
    for path in overlays:
        with Image.open(path) as im:
            assert im.size == (64, 64)

    result_file = tmp_path / "maps.json"
    args = ["evaluate-maps", "--maps", str(saved), "--interval", "0.05", "--output", str(result_file)]
    assert main([*args, *([] if multi_contour else ["--largest-contour"])]) == 0
    from_maps = json.loads(result_file.read_text())
    name = "MaxBoxAccV2" if multi_contour else "MaxBoxAcc (largest contour)"
    assert name in evaluated and name in from_maps
    assert ("MaxBoxAccV2" in evaluated) == ("MaxBoxAccV2" in from_maps) == multi_contour
    assert from_maps[name] == pytest.approx(evaluated[name], abs=1e-9)
    assert from_maps["MaxBoxAcc"] == pytest.approx(evaluated["MaxBoxAcc"], abs=1e-9)
    assert from_maps["best_threshold"] == pytest.approx(evaluated["MaxBoxAcc_threshold"])
    assert from_maps["num_images"] == evaluated["num_images"] == len(ids)
    # and the whole curve, threshold by threshold
    with open(out / "maxboxacc_curve.csv") as fh:
        rows = list(csv.DictReader(fh))
    curve = from_maps_curve(saved, multi_contour)
    for row, (t, *accs) in zip(rows, curve, strict=True):
        assert float(row["threshold"]) == pytest.approx(t)
        assert [float(row[f"box_acc_{d}"]) for d in (30, 50, 70)] == pytest.approx(accs)


def from_maps_curve(saved, multi_contour):
    result = evaluate_score_maps(saved, saved / "metadata", interval=0.05, multi_contour=multi_contour)
    acc = result["curve"]["accuracy"]
    return [(t, acc[0.3][i], acc[0.5][i], acc[0.7][i]) for i, t in enumerate(result["curve"]["thresholds"])]


def test_save_maps_with_an_explicit_crop_mode_is_refused(tiny_model_and_data, tmp_path, capsys):
    data, checkpoint = tiny_model_and_data
    args = evaluate_args(data, checkpoint, tmp_path / "e", "--save-maps", str(tmp_path / "s"))
    assert main([*args, "--test-mode", "crop"]) == 2
    assert "--test-mode resize" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_evaluate_maps_without_metadata_says_what_is_missing(box_dataset, capsys):
    assert main(["evaluate-maps", "--maps", str(box_dataset / "maps")]) == 2
    assert "metadata/image_ids.txt" in capsys.readouterr().err


# ----------------------------------------------------------------------------- threshold curves


def test_the_paper_curve_follows_eval_interval_and_the_box_machinery():
    import torch

    from bas.engine.evaluate import BatchPrediction, Evaluator
    from bas.metrics import BoxEvaluator

    rng = np.random.default_rng(0)
    low = torch.from_numpy(rng.random((12, 1, 7, 7))).float()
    maps = torch.nn.functional.interpolate(low, size=(56, 56), mode="bilinear")[:, 0]
    maps = (maps - maps.amin((1, 2), keepdim=True)) / (
        maps.amax((1, 2), keepdim=True) - maps.amin((1, 2), keepdim=True)
    )
    boxes = [torch.tensor([[5.0, 8.0, 40.0, 50.0]]) for _ in range(12)]
    labels = torch.tensor([0, 1] * 6)
    logits = torch.nn.functional.one_hot(torch.tensor([0, 0] * 6), 2).float()  # half right
    pred = BatchPrediction(logits, maps, labels, boxes, None, None, [str(i) for i in range(12)])
    evaluator = Evaluator(2, threshold=0.3, interval=0.05)
    evaluator.update(pred)
    curve = evaluator.paper_curve()
    assert len(curve["threshold"]) == 20 and curve["threshold"][1] == pytest.approx(0.05)
    reference = BoxEvaluator((0.5,), interval=0.05, multi_contour=False, num_workers=1)
    reference.accumulate(maps.numpy(), [b.numpy() for b in boxes])
    np.testing.assert_allclose(curve["gt_known_loc"], reference.compute()["curve"]["accuracy"][0.5])
    right = BoxEvaluator((0.5,), interval=0.05, multi_contour=False, num_workers=1)
    right.accumulate(maps.numpy()[::2], [b.numpy() for b in boxes[::2]])
    np.testing.assert_allclose(curve["top1_loc"], right.compute()["curve"]["accuracy"][0.5] / 2)
    assert 0 < curve["gt_known_loc"].max() and curve["gt_known_loc"].min() < 100


def test_curves_mark_the_chosen_threshold(tmp_path):
    from PIL import Image

    from bas.visualize import save_curve

    t = np.arange(0, 1, 0.1)
    plain = save_curve(tmp_path / "a.png", t, {"IoU >= 0.50": t * 50}, chosen={}, mark_max=False)
    marked = save_curve(tmp_path / "b.png", t, {"IoU >= 0.50": t * 50}, chosen={"threshold used": 0.35})
    with Image.open(plain) as a, Image.open(marked) as b:
        assert a.size == b.size
        assert np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).sum() > 0


def test_write_metadata_reads_back_exactly(tmp_path):
    from bas.evaluate_maps import write_metadata

    boxes = np.array([[60, 27.3, 385, 331], [1.5, 2, 3, 4]], dtype=np.float32)
    entries = [("a,b/x.jpg", 3, (500, 335), boxes), ("c/y.jpg", 0, (10, 20), np.array([[0, 0, 9, 19]]))]
    write_metadata(tmp_path / "meta", entries)
    meta = load_metadata(tmp_path / "meta")
    assert meta.image_ids == ["a,b/x.jpg", "c/y.jpg"] and meta.labels == {"a,b/x.jpg": 3, "c/y.jpg": 0}
    assert meta.sizes == {"a,b/x.jpg": (500, 335), "c/y.jpg": (10, 20)}
    np.testing.assert_array_equal(meta.boxes["a,b/x.jpg"], boxes.astype(np.float64))
    with pytest.raises(DataError, match="line break"):
        write_metadata(tmp_path / "bad", [("x\ny.jpg", 0, (1, 1), np.zeros((1, 4)))])
