"""The dataset-format registry, ``bas data list`` and the containment of paths from data files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bas.cli import main
from bas.data import DATASET_KINDS, build_dataset, get_format, list_formats
from bas.data.formats import DatasetFormat, Option, register_format
from bas.data.paths import resolve_in_root
from bas.errors import ConfigError, DataError

# the kinds with the containment and symlink tests below (coco's JSON has no lines: tests/test_wsss_formats.py)
BUILTIN = {"bas_list", "cub", "folder", "ilsvrc", "multilabel_folder", "synthetic", "voc", "wsol"}


def _write(path: Path, lines: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("relpath", "parts"),
    [("a/b.jpg", ("a", "b.jpg")), ("a\\b.jpg", ("a", "b.jpg")), ("./a//b.jpg", ("a", "b.jpg"))],
)
def test_resolve_in_root_accepts_relative_paths(tmp_path: Path, relpath: str, parts: tuple[str, ...]):
    assert resolve_in_root(tmp_path, relpath, file="list.txt", line=3) == tmp_path.joinpath(*parts)


@pytest.mark.parametrize(
    "relpath",
    [
        "../x.jpg",
        "a/../../x.jpg",
        "..\\x.jpg",
        "a\\..\\..\\x.jpg",
        "/etc/passwd",
        "C:\\x.jpg",
        "\\\\srv\\x",
        "",
    ],
)
def test_resolve_in_root_rejects_escaping_paths(tmp_path: Path, relpath: str):
    with pytest.raises(DataError, match=r"^list\.txt:3: ") as info:
        resolve_in_root(tmp_path, relpath, file="list.txt", line=3)
    assert (info.value.path, info.value.line) == ("list.txt", 3)


# ----------------------------------------------------------------------------- one bad id per kind

BAD_IDS = ["../escape.jpg", "..\\escape.jpg", "/abs/escape.jpg"]


def _cub(root: Path, bad: str) -> tuple[Path, dict]:
    _write(root / "classes.txt", ["1 001.A"])
    _write(root / "images.txt", ["1 001.A/a.jpg", f"2 {bad}"])
    _write(root / "image_class_labels.txt", ["1 1", "2 1"])
    _write(root / "train_test_split.txt", ["1 0", "2 0"])
    return root / "images.txt", {}


def _synthetic(root: Path, bad: str) -> tuple[Path, dict]:
    where = _cub(root, bad)
    (root / "synthetic.json").write_text(json.dumps({"format": "bas-synthetic-wsol"}), encoding="utf-8")
    return where


def _wsol(root: Path, bad: str) -> tuple[Path, dict]:
    meta = root / "metadata" / "test"
    _write(meta / "image_ids.txt", ["a/a.jpg", bad])
    _write(meta / "class_labels.txt", ["a/a.jpg,0", f"{bad},0"])
    return meta / "image_ids.txt", {"metadata": str(meta)}


def _ilsvrc(root: Path, bad: str) -> tuple[Path, dict]:
    gt = _write(root / "val_gt.txt", ["n01\\\\a.JPEG 10 10 ; 0 0 5 5", f"{bad} 10 10 ; 0 0 5 5"])
    return gt, {"boxes": str(gt), "classes": ["n01"]}


def _bas_list(root: Path, bad: str) -> tuple[Path, dict]:
    return _write(root / "test_list.txt", ["001.A/a.jpg;0", f"{bad};0"]), {}


def _folder(root: Path, bad: str) -> tuple[Path, dict]:
    (root / "cls").mkdir(parents=True)
    csv = _write(root / "boxes.csv", ["image_id,x0,y0,x1,y1", f"{bad},0,0,1,1"])
    return csv, {"boxes_csv": str(csv)}


def _voc(root: Path, bad: str) -> tuple[Path, dict]:
    (root / "JPEGImages").mkdir(parents=True)
    for image_id in ("2007_000001", bad):
        if "/" not in bad and "\\" not in bad:  # the masks of the ids that name no folder
            _write(root / "SegmentationClass" / f"{image_id}.png", ["x"])
    return _write(root / "ImageSets" / "Segmentation" / "test.txt", ["2007_000001", bad]), {}


def _multilabel_folder(root: Path, bad: str) -> tuple[Path, dict]:
    return _write(root / "test.csv", ["image,tags", f"{bad},dog", "a.jpg,cat"]), {}


WRITERS = {
    "voc": _voc,
    "multilabel_folder": _multilabel_folder,
    "cub": _cub,
    "synthetic": _synthetic,
    "wsol": _wsol,
    "ilsvrc": _ilsvrc,
    "bas_list": _bas_list,
    "folder": _folder,
}


def test_every_builtin_kind_has_a_containment_test():
    assert set(WRITERS) == BUILTIN <= set(list_formats())


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_ids_leaving_the_root_raise_naming_file_and_line(tmp_path: Path, kind: str, bad: str):
    file, options = WRITERS[kind](tmp_path / "data", bad)
    with pytest.raises(DataError) as info:
        build_dataset(kind, tmp_path / "data", "test", None, **options)
    assert (info.value.path, info.value.line) == (str(file), 2)
    assert str(info.value).startswith(f"{file}:2: ") and repr(bad)[1:-1] in str(info.value)


@pytest.mark.parametrize("kind", ["cub", "bas_list", "ilsvrc", "folder"])
def test_data_check_lists_ids_leaving_the_root(tmp_path: Path, kind: str, capsys):
    file, options = WRITERS[kind](tmp_path / "data", "../escape.jpg")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if k != "classes"]
    assert main(["data", "check", kind, str(tmp_path / "data"), "--split", "test", *args]) == 1
    assert f"{file}:2: path '../escape.jpg' leaves the dataset root" in capsys.readouterr().out


def test_wsol_mask_paths_leaving_the_root(tmp_path: Path):
    meta = tmp_path / "test"
    _write(meta / "image_ids.txt", ["a.jpg"])
    _write(meta / "class_labels.txt", ["a.jpg,0"])
    _write(meta / "localization.txt", ["a.jpg,masks/a.png,..\\..\\ignore.png"])
    with pytest.raises(DataError, match=r"localization\.txt:1: path .* leaves the dataset root"):
        build_dataset("wsol", tmp_path, "test", None, metadata=str(meta))


def test_wsol_label_out_of_range_names_its_line(tmp_path: Path):
    meta = tmp_path / "test"
    _write(meta / "image_ids.txt", ["a.jpg", "b.jpg"])
    _write(meta / "class_labels.txt", ["a.jpg,0", "b.jpg,3"])
    with pytest.raises(DataError, match=r"class_labels\.txt:2: b\.jpg: label 3 outside 0\.\.1"):
        build_dataset("wsol", tmp_path, "test", None, metadata=str(meta), num_classes=2)


@pytest.mark.parametrize("source", ["csv", "val_list"])
def test_ilsvrc_csv_and_val_list_ids_leaving_the_root(tmp_path: Path, source: str):
    csv = _write(tmp_path / "LOC_val_solution.csv", ["ImageId,PredictionString", "../escape,n01 0 0 5 5"])
    options: dict = {"boxes": str(csv), "classes": ["n01"]}
    if source == "val_list":
        _write(csv, ["ImageId,PredictionString", "escape,n01 0 0 5 5"])
        options["val_list"] = str(_write(tmp_path / "val_list.txt", ["n01/x.JPEG;0", "..\\escape.JPEG;0"]))
    with pytest.raises(DataError, match="leaves the dataset root") as info:
        build_dataset("ilsvrc", tmp_path, "val", None, **options)
    assert (info.value.path, info.value.line) == (options["val_list" if source == "val_list" else "boxes"], 2)


def test_ilsvrc_xml_wnid_leaving_the_root(tmp_path: Path):
    xml = tmp_path / "xml" / "ILSVRC2012_val_00000001.xml"
    xml.parent.mkdir()
    xml.write_text(
        "<annotation><filename>ILSVRC2012_val_00000001</filename><object><name>..</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object></annotation>",
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="leaves the dataset root") as info:
        build_dataset("ilsvrc", tmp_path, "val", None, boxes=str(xml.parent), classes=[".."])
    assert info.value.path == str(xml)


# ----------------------------------------------------------------------------- registry and CLI


def test_registry_lists_the_builtin_kinds():
    assert set(DATASET_KINDS) == set(list_formats()) and BUILTIN <= set(DATASET_KINDS)
    for kind in DATASET_KINDS:
        fmt = get_format(kind)
        assert fmt.name == kind and fmt.summary and all(isinstance(o, Option) for o in fmt.options.values())
    assert get_format("cub").options["val_per_class"].default == 5
    with pytest.raises(ConfigError, match="unknown dataset 'coco2017'; expected one of bas_list, coco, cub"):
        get_format("coco2017")


def test_a_registered_format_is_built_and_listed(tmp_path: Path, capsys, monkeypatch):
    from bas.data.datasets import Record, WSOLDataset
    from bas.data.formats import registry

    def build(root, split, transform, problems, *, count):
        return WSOLDataset([Record(f"{k}.png", root / f"{k}.png", 0) for k in range(count)], ["x"], transform)

    monkeypatch.setattr(registry, "_FORMATS", dict(registry._FORMATS))
    register_format(
        DatasetFormat(
            "toy", "a toy format", build, lambda root, **o: ["test"], {"count": Option(2, "n", int)}
        )
    )
    assert len(build_dataset("toy", tmp_path)) == 2 and len(build_dataset("toy", tmp_path, count=3)) == 3
    with pytest.raises(ValueError, match="already registered"):
        register_format(DatasetFormat("toy", "again", build, lambda root, **o: []))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "toy: a toy format" in out and "count (default 2): n" in out
    assert "cub: CUB-200-2011" in out and "val_per_class (default 5)" in out


def test_data_check_help_lists_the_kinds(capsys):
    with pytest.raises(SystemExit):
        main(["data", "check", "--help"])
    out = capsys.readouterr().out
    for kind in list_formats():
        assert f"  {kind} " in out
    assert "--val-per-class" in out and "--boxes-csv" in out


def test_synthetic_needs_its_marker(tmp_path: Path):
    _cub(tmp_path, "001.A/b.jpg")
    assert len(build_dataset("cub", tmp_path, "test")) == 2
    with pytest.raises(DataError, match=r"synthetic\.json: not a synthetic dataset"):
        build_dataset("synthetic", tmp_path, "test")
    (tmp_path / "synthetic.json").write_text(json.dumps({"format": "bas-synthetic-wsol"}), encoding="utf-8")
    assert build_dataset("synthetic", tmp_path, "test").image_ids == ["001.A/a.jpg", "001.A/b.jpg"]


# ----------------------------------------------------------------------------- symbolic links

#: Per kind: the id of a listed image, as its annotation line spells it, and where the format
#: looks for that image under the dataset root.
LINKED = {
    "cub": ("001.A/link.jpg", "images/001.A/link.jpg"),
    "synthetic": ("001.A/link.jpg", "images/001.A/link.jpg"),
    "wsol": ("a/link.jpg", "a/link.jpg"),
    "ilsvrc": ("n01\\\\link.JPEG", "n01/link.JPEG"),
    "bas_list": ("001.A/link.jpg", "001.A/link.jpg"),
    "folder": ("cls/link.jpg", "cls/link.jpg"),
    "voc": ("link", "JPEGImages/link.jpg"),
    "multilabel_folder": ("link.jpg", "images/link.jpg"),
}


def _link_out(tmp_path: Path, inside: Path, target_name: str = "secret.jpg") -> Path:
    target = tmp_path / "outside" / target_name
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(b"not yours")
    inside.parent.mkdir(parents=True, exist_ok=True)
    inside.symlink_to(target)
    return target


def test_every_builtin_kind_has_a_symlink_test():
    assert set(LINKED) == BUILTIN


@pytest.mark.parametrize("kind", sorted(LINKED))
def test_image_links_leading_out_of_the_root_raise_naming_file_and_line(tmp_path: Path, kind: str):
    image_id, where = LINKED[kind]
    data = tmp_path / "data"
    file, options = WRITERS[kind](data, image_id)
    _link_out(tmp_path, data / where)
    with pytest.raises(DataError, match="symbolic link that leads outside the dataset root") as info:
        build_dataset(kind, data, "test", None, **options)
    if kind == "folder":  # the scanned image is refused before the CSV line that names it
        file = data / where
    assert (info.value.path, info.value.line) == (str(file), None if kind == "folder" else 2)


@pytest.mark.parametrize("kind", sorted(LINKED))
def test_links_inside_the_root_are_followed(tmp_path: Path, kind: str):
    image_id, where = LINKED[kind]
    data = tmp_path / "data"
    file, options = WRITERS[kind](data, image_id)
    real = (data / where).parent.parent / "store" / "real.jpg"  # inside the image root
    real.parent.mkdir(parents=True)
    real.write_bytes(b"x")
    (data / where).parent.mkdir(parents=True, exist_ok=True)
    (data / where).symlink_to(real)
    dataset = build_dataset(kind, data, "test", None, **options)
    assert data / where in [r.path for r in dataset.records]


def test_a_linked_dataset_root_is_fine(tmp_path: Path):
    file, options = WRITERS["bas_list"](tmp_path / "data", "001.A/b.jpg")
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    assert len(build_dataset("bas_list", tmp_path / "alias", "test")) == 2


def test_a_linked_class_folder_leading_out_is_refused(tmp_path: Path):
    (tmp_path / "data").mkdir()
    _link_out(tmp_path, tmp_path / "outside_cls" / "x.jpg", "x.jpg")
    (tmp_path / "data" / "cls").symlink_to(tmp_path / "outside_cls")
    with pytest.raises(DataError, match="symbolic link that leads outside") as info:
        build_dataset("folder", tmp_path / "data", "all")
    assert info.value.path == str(tmp_path / "data" / "cls" / "x.jpg")


@pytest.mark.parametrize(("kind", "name"), [("cub", "images.txt"), ("bas_list", "test_list.txt")])
def test_list_files_linked_out_of_the_root_are_refused(tmp_path: Path, kind: str, name: str):
    data = tmp_path / "data"
    WRITERS[kind](data, "001.A/b.jpg")
    (tmp_path / "outside").mkdir()
    (data / name).rename(tmp_path / "outside" / name)
    (data / name).symlink_to(tmp_path / "outside" / name)
    with pytest.raises(DataError, match="symbolic link that leads outside") as info:
        build_dataset(kind, data, "test")
    assert info.value.path == str(data / name)


def test_wsol_mask_link_leading_out(tmp_path: Path):
    meta = tmp_path / "meta" / "test"
    _write(meta / "image_ids.txt", ["a.jpg"])
    _write(meta / "class_labels.txt", ["a.jpg,0"])
    loc = _write(meta / "localization.txt", ["a.jpg,masks/a.png,"])
    _link_out(tmp_path, tmp_path / "data" / "masks" / "a.png", "a.png")
    with pytest.raises(DataError, match="symbolic link that leads outside") as info:
        build_dataset("wsol", tmp_path / "data", "test", None, metadata=str(meta))
    assert (info.value.path, info.value.line) == (str(loc), 1)


@pytest.mark.parametrize("kind", ["cub", "bas_list", "ilsvrc", "folder", "wsol"])
def test_data_check_lists_links_leading_out(tmp_path: Path, kind: str, capsys):
    image_id, where = LINKED[kind]
    file, options = WRITERS[kind](tmp_path / "data", image_id)
    _link_out(tmp_path, tmp_path / "data" / where)
    args = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if k != "classes"]
    assert main(["data", "check", kind, str(tmp_path / "data"), "--split", "test", *args]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(f"{file}:2: path " in s and "is a symbolic link that leads outside" in s for s in lines)


# ----------------------------------------------------------------------------- EXIF frame


def _rotated_jpeg(path: Path) -> Path:
    """A 40x20 (W x H, as stored) JPEG whose EXIF orientation says 'turn 90 degrees'."""
    import numpy as np
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 40, 3), dtype=np.uint8)).save(path, exif=exif, quality=95)
    return path


def test_datasets_read_images_in_the_stored_frame_photos_in_the_viewer_frame(tmp_path: Path):
    from bas.io import read_image

    _rotated_jpeg(tmp_path / "001.A" / "a.jpg")
    _write(tmp_path / "test_list.txt", ["001.A/a.jpg;0"])
    _write(tmp_path / "test_bounding_box.txt", ["1 1 39 19 20 40"])  # a box of the stored frame
    dataset = build_dataset("bas_list", tmp_path, "test")
    sample = dataset[0]
    assert sample["orig_size"] == (40, 20) and tuple(sample["image"].shape) == (3, 20, 40)
    assert get_format("bas_list").check(dataset) == []  # the box lies inside the stored frame
    assert read_image(tmp_path / "001.A" / "a.jpg").size == (20, 40)  # bas predict's view


def test_evaluate_maps_sizes_agree_with_the_dataset_reader(tmp_path: Path):
    from bas.data.datasets import image_size
    from bas.data.metadata import load_metadata
    from bas.evaluate_maps import _image_size

    image = _rotated_jpeg(tmp_path / "images" / "a.jpg")
    meta = tmp_path / "meta"
    _write(meta / "image_ids.txt", ["a.jpg"])
    _write(meta / "class_labels.txt", ["a.jpg,0"])
    assert _image_size(load_metadata(meta), "a.jpg", tmp_path / "images") == image_size(image) == (40, 20)


def test_label_masks_truncated_or_bombs_are_data_errors(tmp_path: Path, monkeypatch):
    import numpy as np
    from PIL import Image

    from bas.wsss.masks import read_label_png

    Image.fromarray(np.zeros((60, 60), dtype=np.uint8), "L").save(tmp_path / "m.png")
    data = (tmp_path / "m.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.png: cannot read the label mask"):
        read_label_png(tmp_path / "cut.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 3600 pixels > 2 x the limit
    with pytest.raises(DataError, match=r"m\.png: the label mask refused as a possible decompression bomb"):
        read_label_png(tmp_path / "m.png")


def test_writers_refuse_links_in_the_output_folder_that_lead_out(tmp_path: Path):
    from bas.io import path_inside

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "cls").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(
        DataError, match="'cls/a.jpg' is a symbolic link that leads outside the output folder"
    ):
        path_inside(tmp_path / "out", "cls/a.jpg", ".npy")
    (tmp_path / "out" / "inner").mkdir()
    (tmp_path / "out" / "alias").symlink_to(tmp_path / "out" / "inner")
    assert path_inside(tmp_path / "out", "alias/a.jpg", ".npy") == tmp_path / "out" / "alias" / "a.jpg.npy"
