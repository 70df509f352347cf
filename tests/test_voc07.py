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
