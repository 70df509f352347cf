"""PASCAL VOC ``Annotations/<id>.xml`` files: the image size and the objects, safely parsed.

A file looks like this (VOC 2007 and 2012 alike; the synthetic multi-object data writes the same)::

    <annotation>
        <filename>000001.jpg</filename>
        <size><width>353</width><height>500</height><depth>3</depth></size>
        <object>
            <name>dog</name><truncated>1</truncated><difficult>0</difficult>
            <bndbox><xmin>48</xmin><ymin>240</ymin><xmax>195</xmax><ymax>371</ymax></bndbox>
        </object>
        ...
    </annotation>

**Coordinates.** VOC numbers pixels from 1 and its ``xmax`` / ``ymax`` are inclusive: the box above
covers the pixel columns 48..195 (1-based). The package's boxes are ``[x0, y0, x1, y1]`` with 0-based
pixels and exclusive ``x1`` / ``y1`` (docs/inference.md), so a box is read as
``[xmin - 1, ymin - 1, xmax, ymax]``: the same pixels, ``[47, 239, 195, 371]``. A box with
``xmax < xmin`` or ``ymax < ymin`` covers no pixel and is refused (``xmax == xmin`` is one column).

**Flags.** ``difficult``, ``truncated`` and ``occluded`` are ``0`` / ``1`` (missing: 0).

**Safety.** The files are parsed with expat directly and any document type declaration is refused,
so no entity can be declared: no entity expansion ("billion laughs"), no external entity or DTD is
fetched or read. VOC files never carry a DOCTYPE. Files over :data:`MAX_BYTES` are refused unread.

Every problem is a one-line :class:`~bas.errors.DataError` naming the file and the line of the
offending element: malformed XML, a missing or non-numeric element, an unknown class name, a
degenerate box, a box outside the stated image size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from bas.data.parsing import box_outside, format_box
from bas.errors import DataError

__all__ = ["MAX_BYTES", "VOCAnnotation", "VOCObject", "parse_voc_xml", "voc_box"]

#: Largest annotation file read (VOC files hold a few kilobytes).
MAX_BYTES = 4 * 1024 * 1024
_FLAGS = ("difficult", "truncated", "occluded")


@dataclass(frozen=True)
class VOCObject:
    """One ``<object>``: class name, box ``[x0, y0, x1, y1]`` (0-based, x1 / y1 exclusive), flags."""

    name: str
    box: tuple[float, float, float, float]
    difficult: bool = False
    truncated: bool = False
    occluded: bool = False
    line: int | None = None  # of the <object> element


@dataclass(frozen=True)
class VOCAnnotation:
    """One annotation file: ``filename`` as stated (or None), ``size`` ``(W, H)`` (or None), objects."""

    path: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[VOCObject, ...] = field(default_factory=tuple)

    @property
    def names(self) -> list[str]:
        return [o.name for o in self.objects]


def voc_box(xmin: float, ymin: float, xmax: float, ymax: float) -> tuple[float, float, float, float]:
    """A VOC box (1-based, inclusive corners) as ``[x0, y0, x1, y1]`` (0-based, exclusive x1 / y1)."""
    return (xmin - 1.0, ymin - 1.0, float(xmax), float(ymax))


# ------------------------------------------------------------------------------------- the tree


@dataclass
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def find(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def findall(self, tag: str) -> list[_Node]:
        return [c for c in self.children if c.tag == tag]


class _Refused(Exception):
    def __init__(self, line: int):
        super().__init__("a DOCTYPE or entity declaration (refused: VOC annotations have none)")
        self.line = line


def _parse_tree(data: bytes) -> _Node:
    """The element tree of ``data``; ExpatError or _Refused on bad input."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def refuse(*_args) -> None:
        raise _Refused(parser.CurrentLineNumber)

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    stack: list[_Node] = []
    roots: list[_Node] = []

    def start(tag: str, _attrs: dict) -> None:
        node = _Node(tag, parser.CurrentLineNumber)
        (stack[-1].children if stack else roots).append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def text(data: str) -> None:
        if stack:
            stack[-1].text += data

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(data, True)
    return roots[0]


# ------------------------------------------------------------------------------------- fields


def _text(node: _Node | None) -> str:
    return "" if node is None else node.text.strip()


def _number(parent: _Node, tag: str, path: Path, what: str) -> float:
    node = parent.find(tag)
    if node is None:
        raise DataError(f"{what}: missing <{tag}>", path, parent.line)
    try:
        value = float(_text(node))
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{what}: <{tag}> is not a number ({_text(node)!r})", path, node.line)
    return value


def _flag(parent: _Node, tag: str, path: Path, what: str) -> bool:
    node = parent.find(tag)
    if node is None:
        return False
    value = _text(node)
    if value not in ("0", "1"):
        raise DataError(f"{what}: <{tag}> must be 0 or 1, got {value!r}", path, node.line)
    return value == "1"


def _size(root: _Node, path: Path) -> tuple[int, int] | None:
    node = root.find("size")
    if node is None:
        return None
    dims = []
    for tag in ("width", "height"):
        value = _number(node, tag, path, "<size>")
        if value < 1 or value != int(value):
            raise DataError(f"<size>: <{tag}> must be a whole number >= 1, got {value:g}", path, node.line)
        dims.append(int(value))
    return dims[0], dims[1]


def _object(
    node: _Node, index: int, path: Path, classes: Sequence[str] | None, size: tuple[int, int] | None
) -> VOCObject:
    what = f"object {index}"
    name_node = node.find("name")
    name = _text(name_node)
    if not name:
        raise DataError(f"{what}: missing or empty <name>", path, node.line)
    if classes is not None and name not in classes:
        shown = ", ".join(classes[:25]) + (", ..." if len(classes) > 25 else "")
        raise DataError(f"{what}: unknown class {name!r} (expected one of {shown})", path, name_node.line)
    bndbox = node.find("bndbox")
    if bndbox is None:
        raise DataError(f"{what} ({name}): missing <bndbox>", path, node.line)
    xmin, ymin, xmax, ymax = (
        _number(bndbox, tag, path, f"{what} ({name}) <bndbox>") for tag in ("xmin", "ymin", "xmax", "ymax")
    )
    if xmax < xmin or ymax < ymin:
        raise DataError(
            f"{what} ({name}): degenerate <bndbox> xmin {xmin:g} ymin {ymin:g} xmax {xmax:g} ymax {ymax:g} "
            "(needs xmin <= xmax and ymin <= ymax)",
            path,
            bndbox.line,
        )
    box = voc_box(xmin, ymin, xmax, ymax)
    if size is not None and (msg := box_outside(box, size)):
        raise DataError(
            f"{what} ({name}): {msg} (VOC corners {format_box((xmin, ymin, xmax, ymax))})", path, bndbox.line
        )
    flags = {tag: _flag(node, tag, path, f"{what} ({name})") for tag in _FLAGS}
    return VOCObject(name, box, line=node.line, **flags)


def parse_voc_xml(
    path: str | Path, *, classes: Sequence[str] | None = None, data: bytes | None = None
) -> VOCAnnotation:
    """Parse one VOC annotation file.

    Args:
        path: the file (read unless ``data`` is given; always the name in errors).
        classes: the known class names; an object of another name is an error (None: any name).
        data: the file's bytes, when already read.

    Raises:
        DataError: ``file:line: ...`` for an unreadable, oversized, malformed or hostile file, a
        missing or non-numeric field, an unknown class or a degenerate box.
    """
    path = Path(path)
    if data is None:
        try:
            if path.stat().st_size > MAX_BYTES:
                raise DataError(f"annotation file larger than {MAX_BYTES} bytes (refused)", path)
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError("annotation file not found", path) from None
        except IsADirectoryError:
            raise DataError("expected an annotation file, found a directory", path) from None
    if len(data) > MAX_BYTES:
        raise DataError(f"annotation file larger than {MAX_BYTES} bytes (refused)", path)
    try:
        root = _parse_tree(data)
    except expat.ExpatError as exc:
        raise DataError(f"malformed XML ({expat.errors.messages[exc.code]})", path, exc.lineno) from None
    except _Refused as exc:
        raise DataError(f"hostile or unsupported XML: {exc}", path, exc.line) from None
    if root.tag != "annotation":
        raise DataError(f"the root element is <{root.tag}>, expected <annotation>", path, root.line)
    size = _size(root, path)
    objects = tuple(
        _object(node, k, path, classes, size) for k, node in enumerate(root.findall("object"), start=1)
    )
    return VOCAnnotation(path, _text(root.find("filename")) or None, size, objects)
