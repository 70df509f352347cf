"""VOC Annotations XML parsing (bas.data.voc_xml) and the ``voc07`` dataset kind."""

from __future__ import annotations

import pytest

from bas.data.voc_xml import MAX_BYTES, parse_voc_xml, voc_box
from bas.errors import DataError

# The layout of a VOC 2007 file (000001.xml's fields, values of our own).
VOC_FILE = b"""<annotation>
\t<folder>VOC2007</folder>
\t<filename>000001.jpg</filename>
\t<source><database>The VOC2007 Database</database></source>
\t<size>
\t\t<width>300</width>
\t\t<height>200</height>
\t\t<depth>3</depth>
\t</size>
\t<segmented>0</segmented>
\t<object>
\t\t<name>dog</name>
\t\t<pose>Left</pose>
\t\t<truncated>1</truncated>
\t\t<difficult>0</difficult>
\t\t<bndbox>
\t\t\t<xmin>48</xmin>
\t\t\t<ymin>40</ymin>
\t\t\t<xmax>195</xmax>
\t\t\t<ymax>171</ymax>
\t\t</bndbox>
\t</object>
\t<object>
\t\t<name>person</name>
\t\t<pose>Unspecified</pose>
\t\t<truncated>0</truncated>
\t\t<difficult>1</difficult>
\t\t<bndbox>
\t\t\t<xmin>1</xmin>
\t\t\t<ymin>1</ymin>
\t\t\t<xmax>300</xmax>
\t\t\t<ymax>200</ymax>
\t\t</bndbox>
\t</object>
</annotation>
"""


def write(tmp_path, data: bytes, name: str = "000001.xml"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------------------ the parser


def test_parse_voc_file_converts_corners_and_reads_flags(tmp_path):
    ann = parse_voc_xml(write(tmp_path, VOC_FILE))
    assert ann.filename == "000001.jpg" and ann.size == (300, 200)
    dog, person = ann.objects
    # columns 48..195 and rows 40..171, 1-based inclusive -> 0-based, x1 / y1 exclusive
    assert dog.name == "dog" and dog.box == (47.0, 39.0, 195.0, 171.0)
    assert dog.box[2] - dog.box[0] == 195 - 48 + 1  # the same number of pixels
    assert (dog.truncated, dog.difficult, dog.occluded) == (True, False, False)
    # a box of the whole image is exactly [0, 0, W, H]
    assert person.box == (0.0, 0.0, 300.0, 200.0) and person.difficult and not person.truncated
    assert dog.line == 11 and person.line == 23
    assert voc_box(1, 1, 1, 1) == (0.0, 0.0, 1.0, 1.0)  # one pixel


def test_parse_voc_file_without_size_or_flags(tmp_path):
    data = b"<annotation><object><name>cat</name><bndbox><xmin>2.5</xmin><ymin>3</ymin>"
    data += b"<xmax>10</xmax><ymax>9.5</ymax></bndbox></object></annotation>"
    ann = parse_voc_xml(write(tmp_path, data))
    assert ann.size is None and ann.filename is None
    assert ann.objects[0].box == (1.5, 2.0, 10.0, 9.5)
    assert not ann.objects[0].difficult and not ann.objects[0].truncated


@pytest.mark.parametrize(
    ("old", "new", "message", "line"),
    [
        (
            b"<xmax>195</xmax>",
            b"<xmax>40</xmax>",
            r"object 1 \(dog\): degenerate <bndbox> xmin 48 .* xmax 40",
            16,
        ),
        (b"<ymax>171</ymax>", b"<ymax>39</ymax>", r"degenerate <bndbox>", 16),
        (b"<xmin>48</xmin>", b"<xmin>4 8</xmin>", r"<xmin> is not a number \('4 8'\)", 17),
        (b"<xmin>48</xmin>", b"<xmin>nan</xmin>", r"<xmin> is not a number", 17),
        (b"<xmin>48</xmin>", b"", r"object 1 \(dog\) <bndbox>: missing <xmin>", 16),
        (b"<name>dog</name>", b"<name> </name>", r"object 1: missing or empty <name>", 11),
        (
            b"<difficult>0</difficult>",
            b"<difficult>yes</difficult>",
            r"<difficult> must be 0 or 1, got 'yes'",
            15,
        ),
        (b"<xmax>195</xmax>", b"<xmax>305</xmax>", r"outside the 300x200 image", 16),
        (b"<width>300</width>", b"<width>0</width>", r"<size>: <width> must be a whole number >= 1", 5),
        (b"<width>300</width>", b"<width>30.5</width>", r"<width> must be a whole number", 5),
    ],
)
def test_parse_voc_file_errors_name_file_and_element(tmp_path, old, new, message, line):
    path = write(tmp_path, VOC_FILE.replace(old, new, 1))
    with pytest.raises(DataError, match=message) as info:
        parse_voc_xml(path)
    assert info.value.path == str(path) and info.value.line == line
    assert "\n" not in str(info.value)


def test_parse_voc_file_unknown_class(tmp_path):
    path = write(tmp_path, VOC_FILE)
    with pytest.raises(
        DataError, match=r"object 2: unknown class 'person' \(expected one of dog, cat\)"
    ) as info:
        parse_voc_xml(path, classes=["dog", "cat"])
    assert info.value.line == 24  # the <name> element
    assert len(parse_voc_xml(path, classes=["dog", "person"]).objects) == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", r"malformed XML \(no element found\)"),
        (b"<annotation><object></annotation>", r"malformed XML \(mismatched tag\)"),
        (b"<annotation>&lol;</annotation>", r"malformed XML \(undefined entity\)"),
        (b"\xff\xfe<annotation/>", r"malformed XML"),
        (b"<annotations/>", r"root element is <annotations>, expected <annotation>"),
    ],
)
def test_malformed_xml(tmp_path, data, message):
    path = write(tmp_path, data)
    with pytest.raises(DataError, match=message) as info:
        parse_voc_xml(path)
    assert str(info.value).startswith(f"{path}:")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match="annotation file not found"):
        parse_voc_xml(tmp_path / "nope.xml")
    with pytest.raises(DataError, match="found a directory"):
        parse_voc_xml(tmp_path)


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE annotation [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<annotation><object><name>&lol9;</name></object></annotation>
"""


def test_hostile_xml_is_refused(tmp_path):
    # entity expansion
    path = write(tmp_path, BILLION_LAUGHS)
    with pytest.raises(DataError, match="hostile or unsupported XML: a DOCTYPE") as info:
        parse_voc_xml(path)
    assert info.value.line == 2
    # an external entity naming a local file: refused, the file's content never appears
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    xxe = (
        b'<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY x SYSTEM "file://'
        + str(secret).encode()
        + b'">]>\n<annotation><object><name>&x;</name></object></annotation>'
    )
    with pytest.raises(DataError, match="hostile") as info:
        parse_voc_xml(write(tmp_path, xxe, "xxe.xml"), classes=["dog"])
    assert "TOP-SECRET" not in str(info.value)
    # an external DTD alone is refused too
    dtd = b'<!DOCTYPE annotation SYSTEM "http://example.invalid/a.dtd"><annotation/>'
    with pytest.raises(DataError, match="hostile"):
        parse_voc_xml(write(tmp_path, dtd, "dtd.xml"))
    # an oversized file is not read
    big = tmp_path / "big.xml"
    with big.open("wb") as fh:
        fh.truncate(MAX_BYTES + 1)
    with pytest.raises(DataError, match="larger than"):
        parse_voc_xml(big)


# ------------------------------------------------------------------------------ the voc07 kind


def voc_xml(width: int, height: int, objects) -> bytes:
    """A VOC annotation of ``(name, (xmin, ymin, xmax, ymax) 1-based inclusive, difficult)`` objects."""
    parts = [f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, (x0, y0, x1, y1), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><truncated>0</truncated><difficult>{int(difficult)}</difficult>"
            f"<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        )
    return ("\n".join(parts) + "\n</annotation>\n").encode()


def write_voc(root, images: dict, splits: dict, *, year: str = "2007", image_set: str = "Main", classes=None):
    """A VOCdevkit under ``root``: ``images`` maps an id to ``(RGB uint8 array, objects)`` (objects
    as for :func:`voc_xml`), ``splits`` a split to its ids. Returns the VOC<year> folder."""
    import numpy as np
    from PIL import Image

    voc = root / "VOCdevkit" / f"VOC{year}"
    for sub in ("JPEGImages", "Annotations", f"ImageSets/{image_set}"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for image_id, (pixels, objects) in images.items():
        pixels = np.asarray(pixels, dtype=np.uint8)
        Image.fromarray(pixels).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=100, subsampling=0)
        (voc / "Annotations" / f"{image_id}.xml").write_bytes(
            voc_xml(pixels.shape[1], pixels.shape[0], objects)
        )
    for split, ids in splits.items():
        (voc / "ImageSets" / image_set / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    if classes is not None:
        (voc / "class_names.txt").write_text("".join(f"{c}\n" for c in classes))
    return voc


def blank(width: int = 40, height: int = 30):
    import numpy as np

    return np.zeros((height, width, 3), np.uint8)


SMALL = {
    "000001": (blank(), [("dog", (2, 3, 10, 12), False), ("person", (5, 5, 40, 30), True)]),
    "000002": (blank(), [("cat", (1, 1, 20, 20), False), ("dog", (21, 1, 40, 15), False)]),
    "000003": (blank(), [("dog", (4, 4, 8, 8), True)]),
}


def test_voc07_reads_every_object_with_its_class_and_flag(tmp_path):
    import numpy as np
    import torch

    from bas.data import available_splits, build_dataset
    from bas.data.formats.voc07 import VOC_CLASSES

    write_voc(tmp_path, SMALL, {"trainval": list(SMALL), "test": ["000002"]})
    assert available_splits("voc07", tmp_path) == ["trainval", "test"]
    ds = build_dataset("voc07", tmp_path, "trainval")
    assert ds.classes == list(VOC_CLASSES) and ds.image_ids == list(SMALL)
    dog, cat, person = (VOC_CLASSES.index(n) for n in ("dog", "cat", "person"))
    first, second, third = ds.records
    assert first.boxes.tolist() == [[1, 2, 10, 12], [4, 4, 40, 30]]  # 1-based inclusive -> 0-based exclusive
    assert first.box_labels.tolist() == [dog, person] and first.difficult.tolist() == [False, True]
    assert first.label == dog and first.tags == sorted([dog, person]) and first.size == (40, 30)
    assert second.tags == sorted([cat, dog]) and third.tags == [dog]
    # CorLoc's objects: difficult ones left out unless asked for
    boxes, labels = ds.objects(0)
    assert boxes.tolist() == [[1, 2, 10, 12]] and labels.tolist() == [dog]
    assert len(ds.objects(2)[0]) == 0
    with_difficult = build_dataset("voc07", tmp_path, "trainval", difficult=True)
    assert with_difficult.objects(0)[1].tolist() == [dog, person]
    sample = ds[1]
    assert sample["tags"].dtype == torch.float32 and torch.nonzero(sample["tags"]).flatten().tolist() == [
        cat,
        dog,
    ]
    assert sample["box_labels"].tolist() == [cat, dog] and sample["difficult"].tolist() == [False, False]
    assert sample["boxes"].shape == (2, 4) and sample["label"] == cat
    assert np.array_equal(ds.tags(1), sample["tags"].numpy())


def test_voc07_finds_its_folder_and_lists(tmp_path):
    from bas.data import build_dataset

    voc = write_voc(tmp_path, SMALL, {"test": ["000002"]}, classes=["cat", "dog", "person"])
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        ds = build_dataset("voc07", root, "test")
        assert ds.classes == ["cat", "dog", "person"] and ds.records[0].box_labels.tolist() == [0, 1]
    # the 2012 layout with ImageSets/Segmentation, as the synthetic data writes it
    write_voc(
        tmp_path / "v12",
        SMALL,
        {"val": ["000001"]},
        year="2012",
        image_set="Segmentation",
        classes=["background", "dog", "person", "cat"],
    )
    ds = build_dataset("voc07", tmp_path / "v12", "val")
    assert ds.classes == ["dog", "person", "cat"] and ds.voc_dir.name == "VOC2012"
    with pytest.raises(DataError, match=r"no VOC folder .*VOCdevkit/VOC2007"):
        build_dataset("voc07", tmp_path / "v12", "val", year="2007")
    assert build_dataset("voc07", tmp_path / "v12", "val", year=2012, image_set="Segmentation").image_ids == [
        "000001"
    ]
    with pytest.raises(DataError, match="no id list for the split 'train'"):
        build_dataset("voc07", tmp_path, "train")
    names = tmp_path / "names.txt"
    names.write_text("person\ndog\ncat\n")
    assert build_dataset("voc07", tmp_path, "test", classes=str(names)).records[0].box_labels.tolist() == [
        2,
        1,
    ]


def test_voc07_errors_name_the_file_and_line(tmp_path):
    from bas.cli import main
    from bas.data import build_dataset

    voc = write_voc(tmp_path, SMALL, {"test": list(SMALL)}, classes=["dog", "person"])
    with pytest.raises(DataError, match=r"000002\.xml:2: object 1: unknown class 'cat'") as info:
        build_dataset("voc07", tmp_path, "test")
    assert info.value.path == str(voc / "Annotations" / "000002.xml")
    problems = []
    ds = build_dataset("voc07", tmp_path, "test", problems=problems)
    assert ds.image_ids == ["000001", "000003"] and len(problems) == 1
    # ids that leave the dataset
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n../../../etc/passwd\n")
    with pytest.raises(
        DataError, match=r"test\.txt:2: path '\.\./\.\./\.\./etc/passwd\.jpg' leaves the dataset root"
    ) as info:
        build_dataset("voc07", tmp_path, "test")
    # an annotation linked out of the dataset
    (voc / "ImageSets" / "Main" / "test.txt").write_text("000001\n000004\n")
    (tmp_path / "outside.xml").write_bytes(voc_xml(40, 30, [("dog", (1, 1, 5, 5), False)]))
    (voc / "Annotations" / "000004.xml").symlink_to(tmp_path / "outside.xml")
    (voc / "JPEGImages" / "000004.jpg").write_bytes((voc / "JPEGImages" / "000001.jpg").read_bytes())
    with pytest.raises(
        DataError, match=r"test\.txt:2: path '000004\.xml' is a symbolic link that leads outside"
    ):
        build_dataset("voc07", tmp_path, "test")
    # bas data check lists every problem, one line each
    (voc / "Annotations" / "000004.xml").unlink()
    (voc / "Annotations" / "000004.xml").write_bytes(b"<annotation><object>")
    assert main(["data", "check", "voc07", str(tmp_path), "--split", "test"]) != 0


def test_voc07_reads_the_synthetic_multi_object_data(tmp_path):
    import numpy as np

    from bas.data import build_dataset
    from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
    from bas.wsss.masks import read_label_png

    root = make_multilabel_dataset(
        tmp_path / "multi", images_per_split=3, image_size=64, num_classes=3, seed=1, ignore_width=0
    )
    ds = build_dataset("voc07", root, "test")
    names = (root / VOC_SUBDIR / "class_names.txt").read_text().split()[1:]
    assert ds.classes == names and len(ds) == 3 and ds.voc_dir == root / VOC_SUBDIR
    for record in ds.records:
        # each box is the bounding box of its object's visible pixels in the instance PNG
        instances = read_label_png(root / VOC_SUBDIR / "SegmentationObject" / f"{record.image_id}.png")
        for n, box in enumerate(record.boxes, start=1):
            ys, xs = np.nonzero(instances == n)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        classes = read_label_png(root / VOC_SUBDIR / "SegmentationClass" / f"{record.image_id}.png")
        assert record.tags == sorted({int(v) - 1 for v in np.unique(classes) if 0 < v < 255})


# ------------------------------------------------------------------------------ fuzzing

XML_TOKENS = [
    "<annotation>", "</annotation>", "<object>", "</object>", "<name>", "</name>", "dog", "<bndbox>",
    "</bndbox>", "<xmin>", "</xmin>", "<xmax>", "</xmax>", "<ymin>", "</ymin>", "<ymax>", "</ymax>",
    "<size>", "</size>", "<width>", "</width>", "<height>", "</height>", "<difficult>", "</difficult>",
    "1", "0", "10", "-3", "nan", "1e309", "&amp;", "&x;", "<!DOCTYPE a>", "<!ENTITY x 'y'>", "<?xml version='1.0'?>",
    " ", "\n", "\xff", "]]>",
]  # fmt: skip


def test_any_bytes_give_an_annotation_or_a_data_error():
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    content = st.one_of(
        st.lists(st.sampled_from(XML_TOKENS), max_size=40).map(
            lambda t: "".join(t).encode("utf-8", "surrogatepass")
        ),
        st.binary(max_size=200),
    )

    @settings(max_examples=150, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
    @given(content)
    def check(data: bytes) -> None:
        try:
            ann = parse_voc_xml("fuzz.xml", data=data, classes=["dog"])
        except DataError as exc:
            assert str(exc).startswith("fuzz.xml") and "\n" not in str(exc)
            return
        for obj in ann.objects:
            assert obj.name == "dog" and obj.box[0] < obj.box[2] and obj.box[1] < obj.box[3]

    check()
