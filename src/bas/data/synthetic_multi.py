"""A synthetic weakly supervised *segmentation* dataset, written in the PASCAL VOC 2012 layout.

Why
---
Weakly supervised semantic segmentation (WSSS) trains from image-level tags and is judged by
the mIoU of its per-pixel seeds. The objects here are those of the WSOL generator
(:mod:`bas.data.synthetic`): a class-textured body whose texture is only partly reliable, plus a
small saturated part that identifies the class for sure, so a plain CAM tends to light up the
parts only and a method that covers whole objects scores visibly higher. Several objects of
several classes share an image, so the tags are multi-label, and the files are those of a real
VOCdevkit, so the same loader, trainer and evaluator serve both.

What an image contains
----------------------
* **1 to max_objects objects** (uniform count), each of a uniformly drawn class, so an image
  often holds two objects of one class and the tags of several. Each object's tight box covers
  a log-uniform 3%-30% of the image (:data:`OBJECT_BOX_AREA_RANGE`); objects are drawn from the
  largest to the smallest, so smaller ones may overlap (occlude) larger ones, but all the later
  ones together never hide more than 40% of an object, nor touch its part. All objects stay
  inside the image (an object that finds no such place is left out).
* **Bodies and parts as in the WSOL set**: the body wears its class's stripe texture, or with
  probability ``1 - body_reliability`` that of another class; the part (a disc of the class hue
  with the class symbol, 3%-8% of the object, at least ``image_size / 40`` px in radius) is
  always the object's own class.
* **Background and distractors as in the WSOL set**: palette gradient, blotchy noise, sometimes
  a faint texture, and 2-5 distractor shapes from the class-free pool, never touching an object.
  With ``striped_background=False`` neither is striped (dots or checker instead, with the same
  random draws), so stripes mark objects only.

Files written under ``root`` (VOC 2012 conventions)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg             RGB JPEG, quality 95, 4:4:4
    VOCdevkit/VOC2012/SegmentationClass/<id>.png      palette PNG: 0 background, k = class k,
                                                      255 = ignore band on every label border
    VOCdevkit/VOC2012/SegmentationObject/<id>.png     palette PNG: object n (1-based, XML order),
                                                      same 255 band
    VOCdevkit/VOC2012/Annotations/<id>.xml            one <object> per object: <name>, visible
                                                      <bndbox> (1-based inclusive pixels, as VOC),
                                                      <occluded>, and a <part> "part" with its box
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval,test}.txt   one id per line
    VOCdevkit/VOC2012/class_names.txt                 line k = name of label k (line 0 background)
    synthetic.json                                    generator version and parameters; last

Image ids are ``2012_NNNNNN`` (1-based, train first, then val, then test). As in VOC, every
object's outline (against the background or against another object, even one of the same class)
is drawn as an ignore band, ``ignore_width`` pixels on each side, in both PNGs.

Determinism: image ``i`` is drawn from ``numpy.random.default_rng([seed, 2, i])``, so the same
parameters give byte-identical files whatever the order of generation. The dataset appears at
``root`` atomically (written into a temporary sibling directory renamed into place at the end).

Speed: about 10 ms of one core per 128 px image, so 300 images take ~3 s.
"""

from __future__ import annotations

import io
import json
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from bas.data.synthetic import (
    _BACKGROUND_KINDS,
    _PALETTE,
    PART_AREA_RANGE,
    ClassStyle,
    _dilate,
    _grid,
    _jitter,
    _mask_box,
    _place_part,
    _sample_object,
    _Shape,
    _smooth_noise,
    _stripes,
    _symbol_mask,
    _Texture,
    _write_bytes,
    class_styles,
)
from bas.errors import BASError
from bas.io import publish_directory, write_json, write_text
from bas.wsss.masks import IGNORE_INDEX, encode_label_png

__all__ = [
    "GENERATOR_VERSION",
    "OBJECT_BOX_AREA_RANGE",
    "SPLITS",
    "VOC_SUBDIR",
    "MultiLabelSample",
    "MultiLabelSpec",
    "SyntheticObject",
    "make_multilabel_dataset",
    "render_multilabel_sample",
]

#: Bump whenever the drawing changes, so datasets of an older generator are not silently reused.
GENERATOR_VERSION = 1
#: Area of an object's tight box as a fraction of the image area (log-uniform).
OBJECT_BOX_AREA_RANGE = (0.03, 0.30)
#: The splits, in image-id order.
SPLITS = ("train", "val", "test")
#: Where the VOC folders live under the dataset root.
VOC_SUBDIR = "VOCdevkit/VOC2012"

_META_FILE = "synthetic.json"
_MAX_OCCLUSION = 0.4  # largest share of an object that the objects drawn after it may cover
_PLACEMENT_TRIES = 12
_INTEGER_RANGES = {  # parameter: (lowest, highest or None)
    "num_classes": (1, 254),
    "train_images": (1, None),
    "val_images": (0, None),
    "test_images": (0, None),
    "image_size": (64, None),
    "seed": (0, None),
    "max_objects": (1, 8),
    "ignore_width": (0, 8),
    "jpeg_quality": (1, 100),
}


@dataclass(frozen=True)
class MultiLabelSpec:
    """The parameters that determine a synthetic segmentation dataset (stored in synthetic.json)."""

    num_classes: int = 6
    train_images: int = 200
    val_images: int = 50
    test_images: int = 50
    image_size: int = 128
    seed: int = 0
    max_objects: int = 4
    body_reliability: float = 0.7
    ignore_width: int = 1
    jpeg_quality: int = 95
    striped_background: bool = True

    def validate(self) -> None:
        def bad(msg: str) -> BASError:
            return BASError(f"synthetic segmentation dataset: {msg}")

        for name, (lo, hi) in _INTEGER_RANGES.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise bad(f"{name} must be an integer, got {value!r}")
            if value < lo or (hi is not None and value > hi):
                raise bad(f"{name} must be {f'in {lo}..{hi}' if hi is not None else f'>= {lo}'}, got {value}")
        if not 0.0 <= self.body_reliability <= 1.0:
            raise bad(f"body_reliability must be in [0, 1], got {self.body_reliability}")
        if not isinstance(self.striped_background, (bool, np.bool_)):
            raise bad(f"striped_background must be true or false, got {self.striped_background!r}")

    @property
    def num_images(self) -> int:
        return self.train_images + self.val_images + self.test_images

    def split_ranges(self) -> dict[str, range]:
        """The 0-based image indices of each split."""
        out, start = {}, 0
        for split in SPLITS:
            n = getattr(self, f"{split}_images")
            out[split] = range(start, start + n)
            start += n
        return out

    def to_dict(self) -> dict:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v.item() if isinstance(v, np.generic) else v for k, v in values.items()}


@dataclass
class SyntheticObject:
    """One object: 0-based class, the class its body texture comes from, VOC boxes of its pixels."""

    label: int
    body_label: int
    box: tuple[int, int, int, int]  # visible pixels, (xmin, ymin, xmax, ymax), 1-based inclusive
    part_box: tuple[int, int, int, int]
    visible_fraction: float  # of the object's pixels, the share not covered by later objects

    @property
    def occluded(self) -> bool:
        return self.visible_fraction < 1.0


@dataclass
class MultiLabelSample:
    """One rendered image with its ground truth."""

    image: np.ndarray  # H x W x 3 uint8
    labels: np.ndarray  # H x W uint8, 0 background, k + 1 for class k, 255 ignore band
    instances: np.ndarray  # H x W uint8, 0 background, n for objects[n - 1], 255 ignore band
    part_mask: np.ndarray  # H x W bool, the parts of all objects
    objects: list[SyntheticObject]

    @property
    def tags(self) -> list[int]:
        """Sorted 0-based classes present in the image."""
        return sorted({o.label for o in self.objects})


def _voc_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    x, y, w, h = _mask_box(mask)
    return int(x) + 1, int(y) + 1, int(x + w), int(y + h)


def _fit_shapes(shapes: Sequence[_Shape], target: float, rng: np.random.Generator, size: int) -> list[_Shape]:
    """``shapes`` rescaled so that their box covers ``target`` of the image, placed inside it at random."""
    ext = np.array([s.extent() for s in shapes])
    x0, x1 = ext[:, 0].min(), ext[:, 1].max()
    y0, y1 = ext[:, 2].min(), ext[:, 3].max()
    margin = 2.0
    scale = math.sqrt(target * size * size / ((x1 - x0) * (y1 - y0)))
    scale = min(scale, (size - 2 * margin - 1) / (x1 - x0), (size - 2 * margin - 1) / (y1 - y0))
    nx = rng.uniform(margin, size - margin - scale * (x1 - x0))
    ny = rng.uniform(margin, size - margin - scale * (y1 - y0))
    return [s.scaled(scale, nx - scale * x0, ny - scale * y0) for s in shapes]


def _union(shapes: Sequence[_Shape], xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """The pixels of any of ``shapes``, each evaluated in its own box only."""
    mask = np.zeros(xs.shape, dtype=bool)
    h, w = xs.shape
    for s in shapes:
        x0, x1, y0, y1 = s.extent()
        win = (
            slice(min(h, max(0, int(y0))), min(h, max(0, int(y1) + 1))),
            slice(min(w, max(0, int(x0))), min(w, max(0, int(x1) + 1))),
        )
        mask[win] |= s.mask(xs[win], ys[win])
    return mask


@dataclass
class _Placed:
    mask: np.ndarray  # all of the object's pixels, before later objects cover some
    part: np.ndarray
    part_geometry: tuple[float, float, float]  # centre x, centre y, radius


def _place_objects(
    rng: np.random.Generator, spec: MultiLabelSpec, xs: np.ndarray, ys: np.ndarray
) -> list[_Placed]:
    """Object geometry, largest first; an object that cannot avoid hiding earlier ones is dropped."""
    size = spec.image_size
    lo, hi = OBJECT_BOX_AREA_RANGE
    targets = np.exp(rng.uniform(math.log(lo), math.log(hi), int(rng.integers(1, spec.max_objects + 1))))
    min_part_area = math.pi * (size / 40.0) ** 2
    instances = np.zeros((size, size), dtype=np.uint8)
    protected = np.zeros((size, size), dtype=bool)  # the earlier objects' parts, with a margin
    placed: list[_Placed] = []
    for target in sorted(targets, reverse=True):
        shapes = _sample_object(rng, size)[0]
        visible = [instances == n + 1 for n in range(len(placed))]
        for _attempt in range(_PLACEMENT_TRIES):
            shapes = _fit_shapes(shapes, float(target), rng, size)
            mask = _union(shapes, xs, ys)
            still_seen = [
                (v & ~mask).sum() >= (1.0 - _MAX_OCCLUSION) * p.mask.sum() for v, p in zip(visible, placed)
            ]
            if all(still_seen) and not (mask & protected).any():
                break
        else:
            continue  # no room for this one
        instances[mask] = len(placed) + 1
        area = max(int(mask.sum()), round(min_part_area / PART_AREA_RANGE[0]))
        part, pcx, pcy, pr = _place_part(rng, shapes[0], area, xs, ys)
        protected |= _dilate(part, 2)
        placed.append(_Placed(mask, part, (pcx, pcy, pr)))
    return placed


def _background(
    rng: np.random.Generator, size: int, xs: np.ndarray, ys: np.ndarray, kinds: Sequence[str]
) -> np.ndarray:
    """Palette gradient, blotchy noise and, half of the time, a faint full-image texture of ``kinds``."""
    ca, cb = (_jitter(rng, _PALETTE[rng.integers(len(_PALETTE))], 0.1) for _ in range(2))
    angle = rng.uniform(0.0, 2.0 * math.pi)
    g = (xs * math.cos(angle) + ys * math.sin(angle)) / size
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    noise = _smooth_noise(rng, size, 4, 0.08)
    tint = noise[..., 1:2] * np.array([0.4, -0.2, -0.2], np.float32)
    img = ca + (cb - ca) * g[..., None] + noise[..., :1] + tint
    img = img + _smooth_noise(rng, size, max(4, size // 10), 0.035)
    if rng.random() < 0.5:
        kind = str(rng.choice(kinds))
        alpha = rng.uniform(0.15, 0.35)
        img = (1.0 - alpha) * img + alpha * _Texture.sample(rng, size, kind).colors(xs, ys)
    return img


def _add_distractors(
    rng: np.random.Generator,
    img: np.ndarray,
    keep_out: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    kinds: Sequence[str],
) -> None:
    """Paint 2-5 class-free shapes of texture ``kinds`` (0.5%-4% of the image each) that do not
    touch ``keep_out``."""
    size = img.shape[0]
    for _ in range(int(rng.integers(2, 6))):
        texture = _Texture.sample(rng, size, str(rng.choice(kinds)))
        area = rng.uniform(0.005, 0.04) * size * size
        aspect = math.exp(rng.uniform(0.0, math.log(3.0)))
        a = math.sqrt(area / math.pi * aspect)
        n = float(rng.choice([2.0, rng.uniform(2.0, 4.0), rng.uniform(6.0, 10.0)]))
        theta = rng.uniform(0.0, math.pi)
        for _attempt in range(10):
            cx, cy = rng.uniform(-0.05, 1.05, 2) * size
            m = _union([_Shape(cx, cy, a, area / math.pi / a, theta, n)], xs, ys)
            if m.any() and not (m & keep_out).any():
                img[m] = texture.colors(xs[m], ys[m])
                break


def _border(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (chessboard distance) of a pixel of another label."""
    out = np.zeros(labels.shape, dtype=bool)
    if width == 0:
        return out
    for value in np.unique(labels):
        region = labels == value
        out |= _dilate(region, width) & ~region
    return out


def render_multilabel_sample(
    spec: MultiLabelSpec, index: int, styles: Sequence[ClassStyle] | None = None
) -> MultiLabelSample:
    """Render image ``index`` (0-based, train first) of ``spec`` in memory."""
    if not 0 <= index < spec.num_images:
        raise BASError(
            f"synthetic segmentation dataset: image index {index} out of range 0..{spec.num_images - 1}"
        )
    styles = class_styles(spec.num_classes) if styles is None else styles
    size = spec.image_size
    xs, ys = _grid(size)
    rng = np.random.default_rng([spec.seed, 2, index])
    field_kinds, distractor_kinds = _BACKGROUND_KINDS[bool(spec.striped_background)]
    img = _background(rng, size, xs, ys, field_kinds)
    placed = _place_objects(rng, spec, xs, ys)
    instances = np.zeros((size, size), dtype=np.uint8)
    for n, obj in enumerate(placed):
        instances[obj.mask] = n + 1

    keep_out = _dilate(instances > 0, max(2, round(size / 50)))
    _add_distractors(rng, img, keep_out, xs, ys, distractor_kinds)

    # Paint bodies and parts in drawing order; later objects cover earlier ones.
    objects, part_mask = [], np.zeros((size, size), dtype=bool)
    labels = np.zeros((size, size), dtype=np.uint8)
    for n, obj in enumerate(placed):
        mask, part = obj.mask, obj.part
        label = int(rng.integers(spec.num_classes))
        body_label = label
        if spec.num_classes > 1 and rng.random() >= spec.body_reliability:
            body_label = int((label + rng.integers(1, spec.num_classes)) % spec.num_classes)
        st = styles[body_label]
        c1, c2 = (_jitter(rng, c, 0.06) for c in st.body_colors)
        angle = math.radians(st.stripe_angle + rng.uniform(-8.0, 8.0))
        period = st.stripe_period * size * rng.uniform(0.85, 1.15)
        t = _stripes(xs[mask], ys[mask], angle, period, rng.uniform(0.0, 2.0 * math.pi))
        img[mask] = c1 + (c2 - c1) * t[:, None]
        pst = styles[label]
        pcol = np.clip(np.asarray(pst.part_color, np.float32) * rng.uniform(0.92, 1.05), 0.0, 1.0)
        lum = 0.299 * float(pcol[0]) + 0.587 * float(pcol[1]) + 0.114 * float(pcol[2])
        img[part] = pcol
        img[part & _symbol_mask(pst.symbol, xs, ys, *obj.part_geometry)] = 0.08 if lum > 0.5 else 0.95
        labels[mask] = label + 1
        part_mask |= part
        visible = instances == n + 1
        objects.append(
            SyntheticObject(
                label=label,
                body_label=body_label,
                box=_voc_box(visible),
                part_box=_voc_box(part),
                visible_fraction=float(visible.sum() / mask.sum()),
            )
        )

    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    border = _border(instances, spec.ignore_width)
    labels[border] = IGNORE_INDEX
    instances[border] = IGNORE_INDEX
    return MultiLabelSample(
        image=image, labels=labels, instances=instances, part_mask=part_mask, objects=objects
    )


# ----------------------------------------------------------------------------------- on disk


def _image_id(index: int) -> str:
    return f"2012_{index + 1:06d}"


def _class_names(styles: Sequence[ClassStyle]) -> list[str]:
    return [s.name.split(".", 1)[1] for s in styles]


def _annotation(image_id: str, size: int, sample: MultiLabelSample, names: Sequence[str]) -> bytes:
    def sub(parent: ET.Element, tag: str, text: object = None) -> ET.Element:
        el = ET.SubElement(parent, tag)
        if text is not None:
            el.text = str(text)
        return el

    def box(parent: ET.Element, b: Sequence[int]) -> None:
        bb = sub(parent, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), b):
            sub(bb, tag, v)

    root = ET.Element("annotation")
    sub(root, "folder", "VOC2012")
    sub(root, "filename", f"{image_id}.jpg")
    src = sub(root, "source")
    sub(src, "database", "bas-wsol synthetic segmentation")
    dims = sub(root, "size")
    for tag, v in (("width", size), ("height", size), ("depth", 3)):
        sub(dims, tag, v)
    sub(root, "segmented", 1)
    for obj in sample.objects:
        el = sub(root, "object")
        sub(el, "name", names[obj.label])
        sub(el, "pose", "Unspecified")
        sub(el, "truncated", 0)
        sub(el, "occluded", int(obj.occluded))
        sub(el, "difficult", 0)
        box(el, obj.box)
        part = sub(el, "part")
        sub(part, "name", "part")
        box(part, obj.part_box)
    ET.indent(root, "\t")
    return ET.tostring(root, encoding="utf-8") + b"\n"


def _metadata(spec: MultiLabelSpec, names: Sequence[str]) -> dict:
    return {
        "format": "bas-synthetic-wsss",
        "generator_version": GENERATOR_VERSION,
        "params": spec.to_dict(),
        "num_images": spec.num_images,
        "voc_dir": VOC_SUBDIR,
        "class_names": list(names),
        "object_box_area_range": list(OBJECT_BOX_AREA_RANGE),
    }


def _write_dataset(out: Path, spec: MultiLabelSpec) -> None:
    styles = class_styles(spec.num_classes)
    names = _class_names(styles)
    voc = out / VOC_SUBDIR
    dirs = {d: voc / d for d in ("JPEGImages", "SegmentationClass", "SegmentationObject", "Annotations")}
    for d in dirs.values():
        d.mkdir(parents=True)
    lists = {}
    for split, indices in spec.split_ranges().items():
        ids = []
        for index in indices:
            sample = render_multilabel_sample(spec, index, styles)
            image_id = _image_id(index)
            buf = io.BytesIO()
            Image.fromarray(sample.image, "RGB").save(buf, "JPEG", quality=spec.jpeg_quality, subsampling=0)
            _write_bytes(dirs["JPEGImages"] / f"{image_id}.jpg", buf.getvalue())
            _write_bytes(dirs["SegmentationClass"] / f"{image_id}.png", encode_label_png(sample.labels))
            _write_bytes(dirs["SegmentationObject"] / f"{image_id}.png", encode_label_png(sample.instances))
            _write_bytes(
                dirs["Annotations"] / f"{image_id}.xml", _annotation(image_id, spec.image_size, sample, names)
            )
            ids.append(image_id)
        lists[split] = ids
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        write_text(voc / "ImageSets" / "Segmentation" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    write_text(voc / "class_names.txt", "".join(f"{n}\n" for n in ["background", *names]))
    write_json(out / _META_FILE, _metadata(spec, names))  # last: marks the dataset complete


def _is_complete(root: Path, spec: MultiLabelSpec) -> bool:
    voc = root / VOC_SUBDIR
    for split, indices in spec.split_ranges().items():
        try:
            ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text(encoding="utf-8").split()
        except OSError:
            return False
        if ids != [_image_id(i) for i in indices]:
            return False
    files = [
        (d, ext) for d, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png"), ("Annotations", "xml"))
    ]
    files.append(("SegmentationObject", "png"))
    return (voc / "class_names.txt").is_file() and all(
        (voc / d / f"{_image_id(i)}.{ext}").is_file() for i in range(spec.num_images) for d, ext in files
    )


def _check_existing(root: Path, spec: MultiLabelSpec, overwrite: bool) -> bool:
    """True if ``root`` already holds this dataset; raise if it holds something that must stay."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise BASError(f"synthetic segmentation dataset: {root} exists and is not a directory")
    if not any(root.iterdir()):
        return False
    try:
        meta = json.loads((root / _META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != "bas-synthetic-wsss":
        raise BASError(
            f"synthetic segmentation dataset: {root} is not empty and is not a synthetic segmentation "
            "dataset; refusing to touch it (choose another root or delete it)"
        )
    same = meta.get("generator_version") == GENERATOR_VERSION and meta.get("params") == spec.to_dict()
    if same and _is_complete(root, spec):
        return True
    if overwrite:
        return False
    what = "is incomplete" if same else "was generated with other parameters"
    raise BASError(f"synthetic segmentation dataset: {root} {what}; pass overwrite=True to regenerate it")


def _spec_from(images_per_split: int | Mapping[str, int], **params: object) -> MultiLabelSpec:
    if isinstance(images_per_split, Mapping):
        unknown = sorted(set(images_per_split) - set(SPLITS))
        if unknown:
            raise BASError(
                f"synthetic segmentation dataset: unknown split(s) {unknown}; the splits are {list(SPLITS)}"
            )
        counts = {f"{s}_images": images_per_split.get(s, 0) for s in SPLITS}
    else:
        counts = {f"{s}_images": images_per_split for s in SPLITS}
    spec = MultiLabelSpec(**counts, **params)  # type: ignore[arg-type]
    spec.validate()
    return spec


def make_multilabel_dataset(
    root: str | os.PathLike,
    *,
    num_classes: int = 6,
    images_per_split: int | Mapping[str, int] = 100,
    image_size: int = 128,
    seed: int = 0,
    max_objects: int = 4,
    body_reliability: float = 0.7,
    ignore_width: int = 1,
    jpeg_quality: int = 95,
    striped_background: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic segmentation dataset to ``root`` (VOC 2012 layout) and return ``root``.

    ``images_per_split`` is one count for train, val and test, or a mapping such as
    ``{"train": 200, "val": 50, "test": 50}`` (a split left out is empty). The VOC folders are
    under ``root / VOC_SUBDIR``. An existing complete dataset of the same parameters is returned
    untouched; anything else at ``root`` raises :class:`BASError`, except that ``overwrite``
    replaces an earlier synthetic segmentation dataset (never an unrelated directory).
    """
    spec = _spec_from(
        images_per_split,
        num_classes=num_classes,
        image_size=image_size,
        seed=seed,
        max_objects=max_objects,
        body_reliability=body_reliability,
        ignore_width=ignore_width,
        jpeg_quality=jpeg_quality,
        striped_background=striped_background,
    )
    root = Path(root).expanduser().absolute()
    if _check_existing(root, spec, overwrite):
        return root
    publish_directory(
        root, lambda tmp: _write_dataset(tmp, spec), lambda: _check_existing(root, spec, overwrite)
    )
    return root
