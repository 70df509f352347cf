"""Image transforms that move the image, its boxes and its masks together.

Every transform here is a :mod:`torchvision.transforms.v2` pipeline applied to a *sample dict*
``{"image": tv_tensors.Image, "boxes": tv_tensors.BoundingBoxes, "mask": tv_tensors.Mask | None,
"ignore": tv_tensors.Mask | None}`` (the datasets build that dict; see
:func:`bas.data.datasets.make_tv_sample`). v2 applies the same geometric operation to every
tv_tensor in the dict, so boxes and masks always stay aligned with the image. A mask is a bool
foreground mask (WSOL) or a uint8 label mask (segmentation: class indices, 255 ignore); masks are
resized with nearest interpolation, and where a transform pads, label masks get 255
(:func:`pad_fill`).

Coordinate conventions
----------------------
Boxes are ``XYXY`` in continuous pixel coordinates of the image they belong to: ``x`` runs from 0
(left edge) to ``W`` (right edge). Hence:

* ``Resize((R, R))`` of a ``W x H`` image maps ``x -> x * R / W`` and ``y -> y * R / H``;
* ``CenterCrop(C)`` after it subtracts ``(R - C) / 2`` (16 for 256 -> 224), which is exactly the
  BAS formula ``x' = x * 256 / W - 16`` (docs/method.md §5);
* a horizontal flip maps ``x -> W - x`` (so ``[x0, x1]`` becomes ``[W - x1, W - x0]``).

After the geometric steps every pipeline clamps the boxes to the image (``[0, W] x [0, H]``).
A box that ends up entirely outside the crop is **kept**, clamped to a zero-width or zero-height
box on the border, so that the number and order of boxes always match the annotation file. Such a
box can never reach IoU 0.5 with a predicted box, which is the right outcome for an object the crop
cut away; code that wants only visible boxes can filter ``(x1 > x0) & (y1 > y0)``.

The standard protocol (docs/method.md §6) resizes ground-truth boxes with ``int(x * 224 / W)``;
:func:`test_transform` with ``mode="resize"`` returns the un-truncated ``x * 224 / W`` and leaves
the truncation to the evaluator.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from bas.wsss.masks import IGNORE_INDEX

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

TEST_MODES = ("crop", "resize")
TRAIN_TRANSFORMS = (
    "resize_crop",
    "scale_crop",
)  # data.train_transform: train_transform, scale_crop_transform


def default_resize_size(input_size: int) -> int:
    """The resize side used before cropping ``input_size``: 256 for 224, scaled alike otherwise."""
    return int(round(input_size * 256 / 224))


def _resize_size(input_size: int, resize_size: int | None) -> int:
    size = default_resize_size(input_size) if resize_size is None else int(resize_size)
    if size < input_size:
        raise ValueError(f"resize_size ({size}) must be >= input_size ({input_size})")
    return size


def _finish(mean: Sequence[float], std: Sequence[float]) -> list[Any]:
    """The steps every pipeline ends with: clamp boxes, uint8 -> float in [0, 1], normalise."""
    return [
        v2.ClampBoundingBoxes(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


def normalize_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> v2.Compose:
    """No geometric change: the image keeps its own size and boxes stay in original pixels."""
    return v2.Compose(_finish(mean, std))


def train_transform(
    input_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """BAS training augmentation.

    ``Resize((R, R))`` (aspect ratio not kept) -> ``RandomCrop(input_size)`` ->
    ``RandomHorizontalFlip`` -> float -> normalise. ``R`` defaults to
    ``round(input_size * 256 / 224)`` (256 for 224).
    """
    size = _resize_size(input_size, resize_size)
    return v2.Compose(
        [
            v2.Resize((size, size), antialias=True),
            v2.RandomCrop(input_size),
            v2.RandomHorizontalFlip(),
            *_finish(mean, std),
        ]
    )


def test_transform(
    input_size: int = 224,
    resize_size: int | None = None,
    mode: str = "crop",
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    image_resize: str = "tensor",
) -> v2.Compose:
    """Deterministic evaluation transform.

    * ``mode="crop"`` (BAS papers): ``Resize((R, R))`` -> ``CenterCrop(input_size)``; boxes become
      ``x * R / W - (R - input_size) / 2``, clamped to ``[0, input_size]``.
    * ``mode="resize"`` (standard protocol, Choe et al.): ``Resize((input_size, input_size))``, no
      crop; boxes become ``x * input_size / W``. ``resize_size`` is ignored.

    ``image_resize``: the image is resized as a uint8 tensor (``"tensor"``, antialiased bilinear)
    or as a PIL image with PIL's bilinear filter (``"pil"``, what ``transforms.Resize`` does to the
    PIL images of the papers' code); the two differ by at most a grey level here and there.
    """
    if image_resize not in ("tensor", "pil"):
        raise ValueError(f"image_resize must be 'tensor' or 'pil', got {image_resize!r}")
    resize = PILResize if image_resize == "pil" else lambda size: v2.Resize(size, antialias=True)
    if mode == "crop":
        size = _resize_size(input_size, resize_size)
        geometry: list[Any] = [resize((size, size)), v2.CenterCrop(input_size)]
    elif mode == "resize":
        geometry = [resize((input_size, input_size))]
    else:
        raise ValueError(f"unknown test mode {mode!r}; expected one of {', '.join(TEST_MODES)}")
    return v2.Compose([*geometry, *_finish(mean, std)])


class RandomLongSide:
    """Resize so that the longer side is a uniform random integer in ``[low, high]``, aspect ratio
    kept (IRN's scale augmentation). Boxes and masks follow; label masks with nearest
    interpolation, as v2 resizes every ``tv_tensors.Mask``. Draws from torch's global generator."""

    def __init__(self, low: int, high: int):
        if not 1 <= low <= high:
            raise ValueError(f"long-side range must satisfy 1 <= low <= high, got [{low}, {high}]")
        self.low, self.high = int(low), int(high)

    def __call__(self, sample: Any) -> Any:
        image = sample["image"] if isinstance(sample, dict) else sample
        height, width = image.shape[-2:]
        side = int(torch.randint(self.low, self.high + 1, ()))
        scale = side / max(height, width)
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        return v2.Resize(size, antialias=True)(sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(low={self.low}, high={self.high})"


class RandomScale:
    """Resize by a uniform random factor in ``[low, high]`` of the image's own size, aspect ratio
    kept (DeepLab's scale augmentation). Boxes and masks follow, label masks with nearest
    interpolation. Draws from torch's global generator."""

    def __init__(self, low: float, high: float):
        if not 0 < low <= high:
            raise ValueError(f"scale range must satisfy 0 < low <= high, got [{low}, {high}]")
        self.low, self.high = float(low), float(high)

    def __call__(self, sample: Any) -> Any:
        image = sample["image"] if isinstance(sample, dict) else sample
        height, width = image.shape[-2:]
        scale = self.low + (self.high - self.low) * float(torch.rand(()))
        size = [max(1, round(height * scale)), max(1, round(width * scale))]
        return v2.Resize(size, antialias=True)(sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(low={self.low}, high={self.high})"


def pad_fill(mean: Sequence[float] = IMAGENET_MEAN) -> dict[Any, Any]:
    """Padding values: the mean colour for the image (0 once normalised), 255 (ignore) for masks."""
    return {tv_tensors.Image: [round(255 * m) for m in mean], tv_tensors.Mask: IGNORE_INDEX, "others": 0}


def scale_crop_transform(
    input_size: int = 512,
    long_side: tuple[int, int] = (320, 640),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """IRN's training augmentation (its CAM network and seeds' training): the longer side resized
    to a random length in ``long_side`` -> ``RandomHorizontalFlip`` -> ``RandomCrop(input_size)``
    padded where the image is smaller (:func:`pad_fill`: the mean colour, masks 255) -> float ->
    normalise."""
    return v2.Compose(
        [
            RandomLongSide(*long_side),
            v2.RandomHorizontalFlip(),
            v2.RandomCrop(input_size, pad_if_needed=True, fill=pad_fill(mean)),
            *_finish(mean, std),
        ]
    )


def segmentation_train_transform(
    crop_size: int = 512,
    scale_range: tuple[float, float] = (0.5, 2.0),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """DeepLab's training augmentation: :class:`RandomScale` in ``scale_range`` ->
    ``RandomCrop(crop_size)`` padded where the image is smaller (:func:`pad_fill`: the mean colour,
    masks 255) -> ``RandomHorizontalFlip`` -> float -> normalise."""
    return v2.Compose(
        [
            RandomScale(*scale_range),
            v2.RandomCrop(crop_size, pad_if_needed=True, fill=pad_fill(mean)),
            v2.RandomHorizontalFlip(),
            *_finish(mean, std),
        ]
    )


class PILResize:
    """``Resize(size)`` of a sample dict whose image is resized by PIL (bilinear), as torchvision's
    ``transforms.Resize`` resizes a PIL image; boxes and masks move as with ``v2.Resize``."""

    def __init__(self, size: tuple[int, int]):
        self.size = (int(size[0]), int(size[1]))  # (H, W)
        self._others = v2.Resize(self.size, antialias=True)

    def __call__(self, sample: Any) -> Any:
        from PIL import Image

        out = self._others(sample)
        image = sample["image"].as_subclass(torch.Tensor)
        pil = v2.functional.to_pil_image(image).resize(self.size[::-1], Image.BILINEAR)
        out["image"] = tv_tensors.Image(v2.functional.pil_to_tensor(pil))
        return out


class TenCropStack:
    """Ten crops of the image stacked on a new first axis: ``(3, H, W) -> (10, 3, S, S)``.

    The order is torchvision's: top-left, top-right, bottom-left, bottom-right, centre, then the
    same five of the horizontally flipped image. Boxes and masks in a sample dict follow the
    *centre* crop (index 4), so they match ``test_transform(mode="crop")``.
    """

    def __init__(self, size: int):
        self.size = int(size)
        self._center = v2.CenterCrop(self.size)

    def _stack(self, image: torch.Tensor) -> tv_tensors.Image:
        crops = v2.functional.ten_crop(image, [self.size, self.size])
        return tv_tensors.Image(torch.stack([c.as_subclass(torch.Tensor) for c in crops]))

    def __call__(self, sample: Any) -> Any:
        if isinstance(sample, dict):
            out = self._center(sample)
            out["image"] = self._stack(sample["image"])
            return out
        return self._stack(sample)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


def ten_crop_transform(
    input_size: int = 224,
    resize_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Ten-crop classification transform: ``Resize((R, R))`` -> ten crops -> float -> normalise.

    The sample's ``image`` is ``(10, 3, input_size, input_size)``; boxes and masks follow the centre
    crop (see :class:`TenCropStack`).
    """
    size = _resize_size(input_size, resize_size)
    return v2.Compose(
        [v2.Resize((size, size), antialias=True), TenCropStack(input_size), *_finish(mean, std)]
    )


def training_transform(data: dict[str, Any]) -> v2.Compose:
    """The training transform of a config's ``data`` section: ``train_transform`` ``resize_crop``
    (:func:`train_transform`) or ``scale_crop`` (:func:`scale_crop_transform` over ``long_side``)."""
    kind = data.get("train_transform", "resize_crop")
    if kind == "resize_crop":
        return train_transform(data["input_size"], data["resize_size"])
    if kind == "scale_crop":
        return scale_crop_transform(data["input_size"], tuple(data["long_side"]))
    raise ValueError(f"unknown training transform {kind!r}; expected {' or '.join(TRAIN_TRANSFORMS)}")


def build_transform(
    kind: str, input_size: int = 224, resize_size: int | None = None, **kwargs: Any
) -> v2.Compose:
    """Transform by name: ``train``, ``scale_crop`` (``kwargs`` may give ``long_side``), ``crop``,
    ``resize``, ``tencrop`` or ``none`` (normalise only)."""
    if kind == "train":
        return train_transform(input_size, resize_size, **kwargs)
    if kind == "scale_crop":
        return scale_crop_transform(input_size, **kwargs)
    if kind in TEST_MODES:
        return test_transform(input_size, resize_size, mode=kind, **kwargs)
    if kind == "tencrop":
        return ten_crop_transform(input_size, resize_size, **kwargs)
    if kind == "none":
        return normalize_transform(**kwargs)
    raise ValueError(f"unknown transform {kind!r}; expected train, scale_crop, crop, resize, tencrop or none")


def denormalize(
    tensor: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo :func:`v2.Normalize` for display: ``(..., 3, H, W)`` -> float in ``[0, 1]``."""
    t = torch.as_tensor(tensor).detach().float()
    m = torch.tensor(mean, dtype=t.dtype, device=t.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=t.dtype, device=t.device).view(-1, 1, 1)
    return (t * s + m).clamp_(0.0, 1.0)


test_transform.__test__ = False  # not a pytest test when imported into a test module
