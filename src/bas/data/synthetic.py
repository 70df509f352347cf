"""A synthetic weakly supervised localization dataset, written in the CUB-200-2011 release layout.

Why
---
WSOL methods are judged by how well a classifier trained on image labels alone localizes the
object. The classic failure of CAM is that it fires on the *most discriminative part* only, and
BAS's claim is that its background-suppression loss makes the map cover the whole object. This
generator builds images where that difference is by construction measurable, in seconds, with the
exact files of the real CUB release, so the same loader, trainer and evaluator serve both.

What an image contains
----------------------
* **One object** per image: a convex superellipse "body" (from ellipse to rounded rectangle,
  aspect ratio 1-3, any rotation) with 0-2 elliptic "fins" glued to its sides. Its tight box
  covers ~15%-60% of the image area (log-uniform) and always stays inside the image with a
  margin, so the box is never cut by the border.
* **Body evidence, spread and ambiguous.** The body is filled with a class-specific stripe
  texture: classes come in pairs sharing a colour pair and differing in stripe orientation, and
  every image jitters colour, orientation, period and phase. In addition, with probability
  ``1 - body_reliability`` (default 0.3) the body wears the texture of a different, uniformly
  drawn class, so the body alone caps classification at about ``body_reliability``.
* **One small, decisive part** (the "head"): a saturated disc of a class-specific hue with a
  class-specific symbol (dot, bar, ring, ...), 3%-8% of the object's area, placed inside the body
  near its edge, at one end of the long axis. It identifies the class perfectly, so a plain CAM
  trained on labels tends to fire there and nowhere else.
* **Cluttered background** that is never class-informative: a colour gradient and blotchy
  noise in the same palette as the bodies, half of the time a faint full-image texture, and 3-6
  distractor shapes (1%-8% of the image each) drawn from one pool shared by every class (flat,
  stripes of random orientation, dots, checker; palette colours, so stripes and colours alone do
  not reveal the object). Distractors never overlap the object (they keep a
  small gap), and no background element uses the saturated part hues. With
  ``striped_background=False`` neither the distractors nor the faint texture are striped (their
  stripe draws become dots or checker, with the same random draws otherwise), so stripes mark
  objects only: a map that spreads from a body into striped clutter is then no longer an
  ambiguity of the data. Colours still do not reveal the object.

Files written under ``root`` (CUB-200-2011 release conventions, ids 1-based, class-major order)::

    images.txt              <id> <class folder>/<file>.jpg
    image_class_labels.txt  <id> <class id, 1-based>
    train_test_split.txt    <id> <1 = train | 0 = test>     (per class, ~test_fraction test)
    bounding_boxes.txt      <id> <x> <y> <w> <h>             tight box of the object mask
    classes.txt             <class id> <class folder>        e.g. "1 001.ochre_stripes_000deg"
    images/<class folder>/<file>.jpg                         RGB JPEG, quality 95, 4:4:4
    masks/<class folder>/<file>.png                          object mask, 8-bit, 0 / 255
    parts.txt               <id> <x> <y> <w> <h>             tight box of the part (analysis only)
    body_classes.txt        <id> <class id whose texture the body wears> (analysis only)
    synthetic.json          generator version and parameters; written last

Boxes follow CUB: floats, ``x``/``y`` the top-left corner in pixels, ``w``/``h`` the size, for
the pixel-inclusive mask box ``x = first column``, ``w = last column - first column + 1``
(so ``x + w`` is the exclusive right edge, as in the BAS list files).

Determinism: image ``i`` is drawn from ``numpy.random.default_rng([seed, 0, i])`` and the split of
class ``k`` from ``default_rng([seed, 1, k])``, so the same parameters give byte-identical files
whatever the order of generation. The dataset appears at ``root`` atomically: it is written into a
temporary sibling directory that is renamed into place at the end (images and masks are written
there without a per-file fsync; the text files and synthetic.json go through :mod:`bas.io`).

Speed: about 10 ms of one core per 160 px image (render + JPEG/PNG encoding), so 1,000 images
take ~10 s.
"""

from __future__ import annotations

import colorsys
import functools
import io
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from bas.errors import BASError
from bas.io import publish_directory, write_json, write_text

__all__ = [
    "GENERATOR_VERSION",
    "PART_AREA_RANGE",
    "BOX_AREA_RANGE",
    "ClassStyle",
    "Sample",
    "SyntheticSpec",
    "class_styles",
    "make_dataset",
    "render_sample",
]

#: Bump whenever the drawing changes, so datasets of an older generator are not silently reused.
GENERATOR_VERSION = 1
#: Area of the part as a fraction of the object's (mask) area.
PART_AREA_RANGE = (0.03, 0.08)
#: Area of the object's tight box as a fraction of the image area.
BOX_AREA_RANGE = (0.15, 0.60)

_META_FILE = "synthetic.json"
_LAYOUT_FILES = (
    "images.txt",
    "image_class_labels.txt",
    "train_test_split.txt",
    "bounding_boxes.txt",
    "classes.txt",
    "parts.txt",
    "body_classes.txt",
)

# Body colour pairs (RGB in [0, 1]), moderately saturated; the background uses the same colours.
_PALETTE_PAIRS: tuple[tuple[str, tuple[float, float, float], tuple[float, float, float]], ...] = (
    ("ochre", (0.80, 0.62, 0.30), (0.35, 0.25, 0.15)),
    ("steel", (0.30, 0.50, 0.65), (0.80, 0.82, 0.75)),
    ("olive", (0.45, 0.60, 0.30), (0.20, 0.25, 0.15)),
    ("rose", (0.70, 0.42, 0.42), (0.90, 0.80, 0.70)),
    ("lavender", (0.52, 0.47, 0.66), (0.25, 0.22, 0.30)),
    ("sand", (0.76, 0.70, 0.47), (0.45, 0.36, 0.26)),
    ("teal", (0.38, 0.62, 0.60), (0.15, 0.25, 0.28)),
    ("ash", (0.60, 0.56, 0.52), (0.86, 0.86, 0.84)),
)
_PALETTE = np.array([c for _, a, b in _PALETTE_PAIRS for c in (a, b)], dtype=np.float32)
_SYMBOLS = ("dot", "hbar", "vbar", "ring", "cross", "square")
_BASE_PERIOD = 0.06  # stripe period as a fraction of the image side (~10 px at 160 px)


@dataclass(frozen=True)
class SyntheticSpec:
    """The parameters that determine a synthetic dataset (all of them are stored in synthetic.json)."""

    num_classes: int = 4
    images_per_class: int = 100
    image_size: int = 160
    seed: int = 0
    test_fraction: float = 0.3
    body_reliability: float = 0.7
    jpeg_quality: int = 95
    striped_background: bool = True

    def validate(self) -> None:
        def bad(msg: str) -> BASError:
            return BASError(f"synthetic dataset: {msg}")

        for name in ("num_classes", "images_per_class", "image_size", "seed", "jpeg_quality"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise bad(f"{name} must be an integer, got {value!r}")
        if not 1 <= self.num_classes <= 999:
            raise bad(f"num_classes must be in 1..999, got {self.num_classes}")
        if self.images_per_class < 1:
            raise bad(f"images_per_class must be >= 1, got {self.images_per_class}")
        if self.image_size < 32:
            raise bad(f"image_size must be >= 32, got {self.image_size}")
        if self.seed < 0:
            raise bad(f"seed must be >= 0, got {self.seed}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise bad(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if not 0.0 <= self.body_reliability <= 1.0:
            raise bad(f"body_reliability must be in [0, 1], got {self.body_reliability}")
        if not 1 <= self.jpeg_quality <= 100:
            raise bad(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if not isinstance(self.striped_background, (bool, np.bool_)):
            raise bad(f"striped_background must be true or false, got {self.striped_background!r}")

    @property
    def num_images(self) -> int:
        return self.num_classes * self.images_per_class

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ClassStyle:
    """How class ``index`` (0-based) looks: its body texture and its part."""

    index: int
    name: str  # class folder name, e.g. "001.ochre_stripes_000deg"
    body_colors: tuple[tuple[float, float, float], tuple[float, float, float]]
    stripe_angle: float  # degrees, direction across the stripes in image coordinates (0 = vertical stripes)
    stripe_period: float  # fraction of the image side
    part_color: tuple[float, float, float]
    symbol: str


@dataclass
class Sample:
    """One rendered image with its ground truth (0-based labels, CUB boxes ``(x, y, w, h)``)."""

    image: np.ndarray  # H x W x 3 uint8
    mask: np.ndarray  # H x W bool, object (body + part)
    part_mask: np.ndarray  # H x W bool, the part disc
    distractor_mask: np.ndarray  # H x W bool, all distractor pixels
    label: int
    body_label: int  # class whose texture the body wears
    box: tuple[float, float, float, float]
    part_box: tuple[float, float, float, float]


def class_styles(num_classes: int) -> list[ClassStyle]:
    """The fixed look of each class; depends on the class index and ``num_classes`` only."""
    styles = []
    for k in range(num_classes):
        pair = k // 2
        pname, c1, c2 = _PALETTE_PAIRS[pair % len(_PALETTE_PAIRS)]
        cycle = pair // len(_PALETTE_PAIRS)  # beyond 16 classes, palettes repeat with other periods
        angle = float((pair * 37 + (k % 2) * 50 + cycle * 19) % 180)
        period = _BASE_PERIOD * (1.0 + 0.3 * (cycle % 3))
        hue = k / num_classes
        part = tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.95, 0.95))
        styles.append(
            ClassStyle(
                index=k,
                name=f"{k + 1:03d}.{pname}_stripes_{int(angle):03d}deg",
                body_colors=(c1, c2),
                stripe_angle=angle,
                stripe_period=period,
                part_color=part,  # type: ignore[arg-type]
                symbol=_SYMBOLS[k % len(_SYMBOLS)],
            )
        )
    return styles


# ----------------------------------------------------------------------------------- drawing


@functools.lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates ``(xs, ys)``, each ``size x size`` float32."""
    c = np.arange(size, dtype=np.float32) + 0.5
    xs, ys = np.meshgrid(c, c)
    xs.setflags(write=False)
    ys.setflags(write=False)
    return xs, ys


@dataclass(frozen=True)
class _Shape:
    """A rotated superellipse ``|u/a|^n + |v/b|^n <= 1`` centred at ``(cx, cy)``."""

    cx: float
    cy: float
    a: float
    b: float
    theta: float
    n: float

    def value(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.theta), math.sin(self.theta)
        dx, dy = xs - self.cx, ys - self.cy
        u = (dx * c + dy * s) / self.a
        v = (dy * c - dx * s) / self.b
        return np.abs(u) ** self.n + np.abs(v) ** self.n

    def mask(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self.value(xs, ys) <= 1.0

    def contains(self, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        return self.value(px, py) <= 1.0

    def radius(self, phi: float) -> float:
        """Distance from the centre to the boundary along local direction ``phi``."""
        c, s = abs(math.cos(phi)), abs(math.sin(phi))
        return ((c / self.a) ** self.n + (s / self.b) ** self.n) ** (-1.0 / self.n)

    def extent(self) -> tuple[float, float, float, float]:
        """Tight axis-aligned box ``(x0, x1, y0, y1)`` of the continuous shape."""
        t = np.linspace(0.0, 2.0 * np.pi, 256, endpoint=False)
        ct, st = np.cos(t), np.sin(t)
        u = self.a * np.sign(ct) * np.abs(ct) ** (2.0 / self.n)
        v = self.b * np.sign(st) * np.abs(st) ** (2.0 / self.n)
        c, s = math.cos(self.theta), math.sin(self.theta)
        x = self.cx + u * c - v * s
        y = self.cy + u * s + v * c
        return float(x.min()), float(x.max()), float(y.min()), float(y.max())

    def scaled(self, scale: float, dx: float, dy: float) -> _Shape:
        return _Shape(
            self.cx * scale + dx, self.cy * scale + dy, self.a * scale, self.b * scale, self.theta, self.n
        )


def _upsample_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear (align_corners=False) taps: output ``o`` = ``(1 - w) * in[i0] + w * in[i1]``."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, sigma: float) -> np.ndarray:
    """Gaussian noise on a ``cells x cells`` grid, bilinearly upsampled to ``size x size x 3``.

    Written with gathers rather than matrix products so that the result never depends on the
    BLAS library or its thread count (the files must be byte-identical everywhere).
    """
    g = rng.normal(0.0, sigma, (cells, cells, 3)).astype(np.float32)
    i0, i1, w = _upsample_taps(size, cells)
    rows = g[i0] * (1.0 - w)[:, None, None] + g[i1] * w[:, None, None]
    return rows[:, i0] * (1.0 - w)[None, :, None] + rows[:, i1] * w[None, :, None]


def _jitter(rng: np.random.Generator, color: Sequence[float], amount: float) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.uniform(-amount, amount, 3), 0.0, 1.0).astype(
        np.float32
    )


def _stripes(xs: np.ndarray, ys: np.ndarray, angle: float, period: float, phase: float) -> np.ndarray:
    """Stripe profile in [0, 1] (a clipped, sharpened sine)."""
    d = xs * math.cos(angle) + ys * math.sin(angle)
    return np.clip(0.5 + 0.9 * np.sin(d * (2.0 * np.pi / period) + phase), 0.0, 1.0)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by a ``(2r+1)`` square, separable, with no wrap-around."""
    out = mask.copy()
    for axis in (0, 1):
        acc = out.copy()
        for s in range(1, r + 1):
            if axis == 0:
                acc[s:] |= out[:-s]
                acc[:-s] |= out[s:]
            else:
                acc[:, s:] |= out[:, :-s]
                acc[:, :-s] |= out[:, s:]
        out = acc
    return out


def _mask_box(mask: np.ndarray) -> tuple[float, float, float, float]:
    """CUB box ``(x, y, w, h)`` of the pixels of ``mask`` (pixel-inclusive)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])
    return float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)


def _sample_object(rng: np.random.Generator, size: int) -> tuple[list[_Shape], _Shape]:
    """The object's shapes in pixels (body first, then fins) and the body alone."""
    aspect = math.exp(rng.uniform(0.0, math.log(3.0)))
    theta = rng.uniform(0.0, math.pi)
    body = _Shape(0.0, 0.0, math.sqrt(aspect), 1.0 / math.sqrt(aspect), theta, rng.uniform(2.0, 3.5))
    shapes = [body]
    n_fins = int(rng.choice(3, p=[0.3, 0.4, 0.3]))
    side = rng.choice([-1.0, 1.0])
    for i in range(n_fins):
        phi = (side if i == 0 else -side) * rng.uniform(math.radians(50), math.radians(130))
        dist = rng.uniform(0.55, 0.85) * body.radius(phi)
        ax = math.cos(theta + phi) * dist
        ay = math.sin(theta + phi) * dist
        major = rng.uniform(0.4, 0.7)
        shapes.append(
            _Shape(ax, ay, major, major * rng.uniform(0.45, 0.8), theta + phi + rng.uniform(-0.5, 0.5), 2.0)
        )

    # Scale so that the tight box covers the drawn fraction of the image, then place it inside.
    margin = max(2.0, size / 32.0)
    ext = np.array([s.extent() for s in shapes])
    x0, x1 = ext[:, 0].min(), ext[:, 1].max()
    y0, y1 = ext[:, 2].min(), ext[:, 3].max()
    target = math.exp(rng.uniform(math.log(BOX_AREA_RANGE[0]), math.log(BOX_AREA_RANGE[1])))
    scale = math.sqrt(target * size * size / ((x1 - x0) * (y1 - y0)))
    scale = min(scale, (size - 2 * margin - 1) / (x1 - x0), (size - 2 * margin - 1) / (y1 - y0))
    cx = rng.uniform(margin - scale * x0, size - margin - scale * x1)
    cy = rng.uniform(margin - scale * y0, size - margin - scale * y1)
    placed = [s.scaled(scale, cx, cy) for s in shapes]
    return placed, placed[0]


def _place_part(
    rng: np.random.Generator, body: _Shape, object_area: int, xs: np.ndarray, ys: np.ndarray
) -> tuple[np.ndarray, float, float, float]:
    """A disc inside the (convex) body near one end of its long axis; returns (mask, cx, cy, r)."""
    frac = rng.uniform(PART_AREA_RANGE[0] + 0.005, PART_AREA_RANGE[1] - 0.005)
    target = frac * object_area
    r = math.sqrt(target / math.pi)
    phi = rng.choice([0.0, math.pi]) + rng.uniform(-0.4, 0.4)
    ray = body.theta + phi
    dx, dy = math.cos(ray), math.sin(ray)
    reach = body.radius(phi)
    circle = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    for _ in range(20):
        # Outermost centre along the ray whose disc (radius r_fit, room to adjust r) fits.
        t = np.linspace(reach, 0.0, 48)[:, None]
        r_fit = r * 1.15 + 1.0
        px = body.cx + t * dx + r_fit * np.cos(circle)[None, :]
        py = body.cy + t * dy + r_fit * np.sin(circle)[None, :]
        ok = body.contains(px, py).all(axis=1)
        if ok.any():
            tc = float(t[int(np.argmax(ok)), 0])
            break
        r *= 0.85
    else:  # pragma: no cover - the body always has room for a one-pixel disc
        tc, r_fit = 0.0, r
    pcx, pcy = body.cx + tc * dx, body.cy + tc * dy
    d2 = (xs - pcx) ** 2 + (ys - pcy) ** 2
    # Nudge the radius so that the *pixel* count hits the drawn fraction.
    for _ in range(6):
        count = int((d2 <= r * r).sum())
        if count and abs(count - target) <= max(1.0, 0.05 * target):
            break
        r = min(r * (math.sqrt(target / count) if count else 1.2), r_fit)
    return d2 <= r * r, pcx, pcy, r


def _symbol_mask(symbol: str, xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    u, v = (xs - cx) / r, (ys - cy) / r
    d = np.sqrt(u * u + v * v)
    if symbol == "dot":
        return d <= 0.4
    if symbol == "ring":
        return (d >= 0.4) & (d <= 0.65)
    hbar = (np.abs(v) <= 0.22) & (np.abs(u) <= 0.7)
    vbar = (np.abs(u) <= 0.22) & (np.abs(v) <= 0.7)
    if symbol == "hbar":
        return hbar
    if symbol == "vbar":
        return vbar
    if symbol == "cross":
        return hbar | vbar
    return (np.abs(u) <= 0.42) & (np.abs(v) <= 0.42)  # square


@dataclass(frozen=True)
class _Texture:
    """A background/distractor texture in palette colours, evaluated at given pixel centres."""

    kind: str  # flat | stripes | dots | checker
    c1: np.ndarray
    c2: np.ndarray
    period: float
    angle: float
    phase: float

    @staticmethod
    def sample(rng: np.random.Generator, size: int, kind: str) -> _Texture:
        return _Texture(
            kind=kind,
            c1=_jitter(rng, _PALETTE[rng.integers(len(_PALETTE))], 0.08),
            c2=_jitter(rng, _PALETTE[rng.integers(len(_PALETTE))], 0.08),
            period=size * _BASE_PERIOD * rng.uniform(0.6, 1.8),
            angle=rng.uniform(0.0, math.pi),
            phase=rng.uniform(0.0, 2.0 * math.pi),
        )

    def colors(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Colours (``... x 3``) at coordinates ``x``, ``y``."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        u = (x * c + y * s) / self.period
        v = (y * c - x * s) / self.period
        if self.kind == "flat":
            t = np.zeros_like(x)
        elif self.kind == "stripes":
            t = _stripes(x, y, self.angle, self.period, self.phase)
        elif self.kind == "dots":
            t = (((u - np.round(u)) ** 2 + (v - np.round(v)) ** 2) <= 0.09).astype(np.float32)
        else:  # checker
            t = ((np.floor(u) + np.floor(v)) % 2).astype(np.float32)
        return self.c1 + (self.c2 - self.c1) * t[..., None]


#: Texture kinds of the faint full-image field and of the distractors, by ``striped_background``.
_BACKGROUND_KINDS = {
    True: (("stripes", "dots", "checker"), ("flat", "stripes", "stripes", "dots", "checker")),
    False: (("dots", "checker", "dots"), ("flat", "dots", "checker", "dots", "checker")),
}


def render_sample(spec: SyntheticSpec, index: int, styles: Sequence[ClassStyle] | None = None) -> Sample:
    """Render image ``index`` (0-based, class-major) of ``spec`` in memory."""
    if not 0 <= index < spec.num_images:
        raise BASError(f"synthetic dataset: image index {index} out of range 0..{spec.num_images - 1}")
    styles = class_styles(spec.num_classes) if styles is None else styles
    size = spec.image_size
    xs, ys = _grid(size)
    rng = np.random.default_rng([spec.seed, 0, index])
    label = index // spec.images_per_class
    body_label = label
    if spec.num_classes > 1 and rng.random() >= spec.body_reliability:
        body_label = int((label + rng.integers(1, spec.num_classes)) % spec.num_classes)

    # Background: palette gradient, blotchy (mostly luminance) noise, sometimes a faint texture.
    ca = _jitter(rng, _PALETTE[rng.integers(len(_PALETTE))], 0.1)
    cb = _jitter(rng, _PALETTE[rng.integers(len(_PALETTE))], 0.1)
    g_angle = rng.uniform(0.0, 2.0 * math.pi)
    g = (xs * math.cos(g_angle) + ys * math.sin(g_angle)) / size
    g = (g - g.min()) / max(float(g.max() - g.min()), 1e-6)
    img = ca + (cb - ca) * g[..., None]
    lum = _smooth_noise(rng, size, 4, 0.08)
    img = img + lum[..., :1] + 0.4 * lum[..., 1:2] * np.array([1.0, -0.5, -0.5], np.float32)
    img = img + _smooth_noise(rng, size, max(4, size // 10), 0.035)
    # Without striped backgrounds the stripe draws become dots or checker (the same number of
    # random draws, so everything else in the image stays as it would be).
    field_kinds, distractor_kinds = _BACKGROUND_KINDS[bool(spec.striped_background)]
    if rng.random() < 0.5:
        field = _Texture.sample(rng, size, str(rng.choice(field_kinds)))
        alpha = rng.uniform(0.15, 0.35)
        img = (1.0 - alpha) * img + alpha * field.colors(xs, ys)

    # Object geometry (drawn later, on top).
    shapes, body = _sample_object(rng, size)
    values = [s.value(xs, ys) for s in shapes]
    mask = np.zeros((size, size), dtype=bool)
    for v in values:
        mask |= v <= 1.0

    # Distractors: shared pool, never touching the object.
    keep_out = _dilate(mask, max(2, round(size / 50)))
    distractors = np.zeros_like(mask)
    for _ in range(int(rng.integers(3, 7))):
        texture = _Texture.sample(rng, size, str(rng.choice(distractor_kinds)))
        area = rng.uniform(0.01, 0.08) * size * size
        aspect = math.exp(rng.uniform(0.0, math.log(3.0)))
        a = math.sqrt(area / math.pi * aspect)
        b = area / math.pi / a
        n = float(rng.choice([2.0, rng.uniform(2.0, 4.0), rng.uniform(6.0, 10.0)]))
        theta = rng.uniform(0.0, math.pi)
        for _attempt in range(10):
            cx, cy = rng.uniform(-0.05, 1.05, 2) * size
            shape = _Shape(cx, cy, a, b, theta, n)
            x0, x1, y0, y1 = shape.extent()
            win = (
                slice(max(0, int(y0)), min(size, int(y1) + 1)),
                slice(max(0, int(x0)), min(size, int(x1) + 1)),
            )
            m = shape.mask(xs[win], ys[win])
            if m.any() and not (m & keep_out[win]).any():
                img[win][m] = texture.colors(xs[win][m], ys[win][m])
                distractors[win] |= m
                break

    # Body texture: stripes of the body class, jittered per image, with gentle shading.
    st = styles[body_label]
    c1 = _jitter(rng, st.body_colors[0], 0.06)
    c2 = _jitter(rng, st.body_colors[1], 0.06)
    angle = math.radians(st.stripe_angle + rng.uniform(-8.0, 8.0))
    period = st.stripe_period * size * rng.uniform(0.85, 1.15)
    t = _stripes(xs, ys, angle, period, rng.uniform(0.0, 2.0 * math.pi))
    body_rgb = c1 + (c2 - c1) * t[..., None]
    if rng.random() < 0.5:  # darker towards the rim of the body
        body_rgb = body_rgb * (1.0 - 0.18 * np.clip(values[0], 0.0, 1.0) ** 2)[..., None]
    img[mask] = body_rgb[mask]

    # The part: saturated class hue plus the class symbol, inside the body near its edge.
    part, pcx, pcy, pr = _place_part(rng, body, int(mask.sum()), xs, ys)
    pst = styles[label]
    pcol = np.clip(np.asarray(pst.part_color, np.float32) * rng.uniform(0.92, 1.05), 0.0, 1.0)
    lum = 0.299 * float(pcol[0]) + 0.587 * float(pcol[1]) + 0.114 * float(pcol[2])
    scol = np.full(3, 0.08 if lum > 0.5 else 0.95, np.float32)
    img[part] = pcol
    img[part & _symbol_mask(pst.symbol, xs, ys, pcx, pcy, pr)] = scol
    mask |= part

    # Global photometric jitter and sensor noise.
    img = img * rng.uniform(0.9, 1.1) + rng.normal(0.0, 0.02, img.shape).astype(np.float32)
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return Sample(
        image=image,
        mask=mask,
        part_mask=part,
        distractor_mask=distractors,
        label=label,
        body_label=body_label,
        box=_mask_box(mask),
        part_box=_mask_box(part),
    )


# ----------------------------------------------------------------------------------- on disk


def make_dataset(
    root: str | os.PathLike,
    num_classes: int = 4,
    images_per_class: int = 100,
    image_size: int = 160,
    seed: int = 0,
    *,
    test_fraction: float = 0.3,
    body_reliability: float = 0.7,
    jpeg_quality: int = 95,
    striped_background: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write the synthetic dataset to ``root`` (CUB-200-2011 layout) and return ``root``.

    If ``root`` already holds a complete dataset generated with the same parameters (and the same
    generator version), it is returned untouched. If it holds anything else (other parameters, an
    incomplete dataset, unrelated files), :class:`BASError` is raised, unless ``overwrite`` is set,
    in which case a previous *synthetic* dataset (one with a ``synthetic.json``) is replaced; a
    directory that does not look like one is never deleted. An empty directory is filled.
    """
    spec = SyntheticSpec(
        num_classes=num_classes,
        images_per_class=images_per_class,
        image_size=image_size,
        seed=seed,
        test_fraction=test_fraction,
        body_reliability=body_reliability,
        jpeg_quality=jpeg_quality,
        striped_background=striped_background,
    )
    spec.validate()
    root = Path(root).expanduser().absolute()
    if _existing_matches(root, spec, overwrite):
        return root

    publish_directory(
        root, lambda tmp: _write_dataset(tmp, spec), lambda: _existing_matches(root, spec, overwrite)
    )
    return root


def _metadata(spec: SyntheticSpec) -> dict:
    return {
        "format": "bas-synthetic-wsol",
        "generator_version": GENERATOR_VERSION,
        "params": spec.to_dict(),
        "num_images": spec.num_images,
        "part_area_range": list(PART_AREA_RANGE),
        "box_area_range": list(BOX_AREA_RANGE),
        "files": {
            "parts.txt": "<id> <x> <y> <w> <h>: tight box of the discriminative part",
            "body_classes.txt": "<id> <class id>: class whose stripe texture the body wears",
            "masks/": "object masks, same relative path as the image with .png, 0/255",
        },
    }


def _read_metadata(root: Path) -> dict | None:
    try:
        with open(root / _META_FILE, encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _is_complete(root: Path, spec: SyntheticSpec) -> bool:
    if not all((root / name).is_file() for name in _LAYOUT_FILES):
        return False
    try:
        lines = (root / "images.txt").read_text(encoding="utf-8").split("\n")
    except OSError:
        return False
    rows = [ln.split() for ln in lines if ln.strip()]
    if len(rows) != spec.num_images or any(len(r) != 2 for r in rows):
        return False
    rels = [r[1] for r in rows]
    return all(
        (root / "images" / rel).is_file() and (root / "masks" / rel).with_suffix(".png").is_file()
        for rel in rels
    )


def _existing_matches(root: Path, spec: SyntheticSpec, overwrite: bool) -> bool:
    """True if ``root`` is a complete dataset for ``spec``; raise if it cannot be (re)generated."""
    if not root.exists():
        return False
    if not root.is_dir():
        raise BASError(f"synthetic dataset: {root} exists and is not a directory")
    if not any(root.iterdir()):
        return False
    meta = _read_metadata(root)
    if meta is None:
        raise BASError(
            f"synthetic dataset: {root} is not empty and has no readable {_META_FILE}; "
            "refusing to touch it (choose another root or delete it)"
        )
    same = meta.get("generator_version") == GENERATOR_VERSION and meta.get("params") == spec.to_dict()
    if same and _is_complete(root, spec):
        return True
    if overwrite:
        return False
    if not same:
        old = meta.get("params") if isinstance(meta.get("params"), dict) else {}
        diff = [f"{k}: {old.get(k)!r} -> {v!r}" for k, v in spec.to_dict().items() if old.get(k) != v]
        if meta.get("generator_version") != GENERATOR_VERSION:
            diff.insert(0, f"generator_version: {meta.get('generator_version')!r} -> {GENERATOR_VERSION}")
        raise BASError(
            f"synthetic dataset: {root} was generated with other parameters ({'; '.join(diff)}); "
            "pass overwrite=True to regenerate it"
        )
    raise BASError(f"synthetic dataset: {root} is incomplete; pass overwrite=True to regenerate it")


def _write_bytes(path: Path, data: bytes) -> None:
    """Write an image file under a temporary name and rename it.

    No per-file fsync (it would triple the generation time): these files live in the private
    temporary dataset directory, and it is the final directory rename that publishes them.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _split(spec: SyntheticSpec, label: int) -> np.ndarray:
    """Per-class boolean ``is_train``; at least one train and (if possible) one test image."""
    n = spec.images_per_class
    n_test = round(spec.test_fraction * n)
    if spec.test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    order = np.random.default_rng([spec.seed, 1, label]).permutation(n)
    is_train = np.ones(n, dtype=bool)
    is_train[order[:n_test]] = False
    return is_train


def _fmt(box: Sequence[float]) -> str:
    return " ".join(f"{v:.1f}" for v in box)


def _write_dataset(out: Path, spec: SyntheticSpec) -> None:
    styles = class_styles(spec.num_classes)
    images, labels, split, boxes, parts, bodies = [], [], [], [], [], []
    for label, style in enumerate(styles):
        folder = style.name
        stem = folder.split(".", 1)[1]
        (out / "images" / folder).mkdir(parents=True)
        (out / "masks" / folder).mkdir(parents=True)
        is_train = _split(spec, label)
        for j in range(spec.images_per_class):
            index = label * spec.images_per_class + j
            sample = render_sample(spec, index, styles)
            rel = f"{folder}/{stem}_{j + 1:04d}.jpg"
            buf = io.BytesIO()
            Image.fromarray(sample.image, "RGB").save(buf, "JPEG", quality=spec.jpeg_quality, subsampling=0)
            _write_bytes(out / "images" / rel, buf.getvalue())
            buf = io.BytesIO()
            Image.fromarray(sample.mask.astype(np.uint8) * 255, "L").save(buf, "PNG")
            _write_bytes((out / "masks" / rel).with_suffix(".png"), buf.getvalue())
            i = index + 1
            images.append(f"{i} {rel}")
            labels.append(f"{i} {label + 1}")
            split.append(f"{i} {int(is_train[j])}")
            boxes.append(f"{i} {_fmt(sample.box)}")
            parts.append(f"{i} {_fmt(sample.part_box)}")
            bodies.append(f"{i} {sample.body_label + 1}")
    for name, lines in (
        ("images.txt", images),
        ("image_class_labels.txt", labels),
        ("train_test_split.txt", split),
        ("bounding_boxes.txt", boxes),
        ("classes.txt", [f"{s.index + 1} {s.name}" for s in styles]),
        ("parts.txt", parts),
        ("body_classes.txt", bodies),
    ):
        write_text(out / name, "\n".join(lines) + "\n")
    write_json(out / _META_FILE, _metadata(spec))  # last: marks the dataset complete


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value
