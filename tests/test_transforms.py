"""Box, mask and image arithmetic of bas.data.transforms against docs/method.md §5."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bas.data import transforms as T
from bas.data.datasets import make_tv_sample

W, H = 200, 120  # a non-square original, so x and y scale differently


def _image(color_box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Grey image; optionally a pure red rectangle [x0, x1) x [y0, y1)."""
    arr = np.full((H, W, 3), 90, dtype=np.uint8)
    if color_box is not None:
        x0, y0, x1, y1 = color_box
        arr[y0:y1, x0:x1] = (255, 0, 0)
    return Image.fromarray(arr)


def _run(transform, boxes, mask=None, image=None):
    out = transform(make_tv_sample(image or _image(), np.asarray(boxes, np.float32), mask))
    return out["image"].as_subclass(torch.Tensor), out["boxes"].as_subclass(torch.Tensor), out["mask"]


BOXES = [
    [10.0, 20.0, 150.0, 90.0],  # inside the crop after resizing
    [0.0, 0.0, 200.0, 120.0],  # whole image: clipped on all sides
    [1.0, 2.0, 9.0, 6.0],  # entirely in the cropped-away border
    [37.5, 11.25, 199.0, 119.0],
]


def test_crop_mode_matches_bas_formula():
    image, boxes, _ = _run(T.test_transform(mode="crop"), BOXES)
    assert image.shape == (3, 224, 224) and image.dtype == torch.float32
    b = np.asarray(BOXES)
    expected = np.stack(
        [b[:, 0] * 256 / W - 16, b[:, 1] * 256 / H - 16, b[:, 2] * 256 / W - 16, b[:, 3] * 256 / H - 16], 1
    )
    expected = np.clip(expected, 0, 224)
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)
    # The cut-away box is kept (same count and order as the annotation), clamped to zero width.
    assert boxes.shape == (4, 4)
    assert boxes[2, 0] == boxes[2, 2] == 0.0


def test_resize_mode_scales_without_crop():
    image, boxes, _ = _run(T.test_transform(mode="resize"), BOXES)
    assert image.shape == (3, 224, 224)
    b = np.asarray(BOXES)
    expected = b * np.array([224 / W, 224 / H, 224 / W, 224 / H])
    np.testing.assert_allclose(boxes.numpy(), expected, atol=1e-4)


def test_other_input_size_scales_resize_side():
    assert T.default_resize_size(224) == 256 and T.default_resize_size(448) == 512
    image, boxes, _ = _run(T.test_transform(input_size=112, mode="crop"), [BOXES[0]])
    assert image.shape == (3, 112, 112)
    x0, y0, x1, y1 = BOXES[0]
    expected = np.clip([x0 * 128 / W - 8, y0 * 128 / H - 8, x1 * 128 / W - 8, y1 * 128 / H - 8], 0, 112)
    np.testing.assert_allclose(boxes[0].numpy(), expected, atol=1e-4)
    with pytest.raises(ValueError):
        T.test_transform(input_size=224, resize_size=200)
    with pytest.raises(ValueError):
        T.test_transform(mode="centre")


def test_flip_mirrors_boxes():
    # resize_size == input_size makes the random crop the identity, so only the flip is random.
    transform = T.train_transform(input_size=224, resize_size=224)
    x0, y0, x1, y1 = BOXES[0]
    plain = np.array([x0 * 224 / W, y0 * 224 / H, x1 * 224 / W, y1 * 224 / H])
    mirrored = np.array([224 - plain[2], plain[1], 224 - plain[0], plain[3]])
    torch.manual_seed(0)
    seen = set()
    for _ in range(12):
        _, boxes, _ = _run(transform, [BOXES[0]])
        got = boxes[0].numpy()
        if np.allclose(got, plain, atol=1e-4):
            seen.add("plain")
        elif np.allclose(got, mirrored, atol=1e-4):
            seen.add("mirrored")
        else:
            pytest.fail(f"box {got} is neither {plain} nor its mirror {mirrored}")
    assert seen == {"plain", "mirrored"}


def _mask_box(mask: torch.Tensor) -> list[int]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def test_train_transform_moves_image_boxes_and_mask_together():
    rect = (40, 30, 120, 100)  # pixel-exact rectangle = box = mask
    mask = np.zeros((H, W), dtype=bool)
    mask[rect[1] : rect[3], rect[0] : rect[2]] = True
    transform = T.train_transform()
    torch.manual_seed(1)
    flips = 0
    for _ in range(8):
        image, boxes, out_mask = _run(transform, [rect], mask=mask, image=_image(rect))
        assert image.shape == (3, 224, 224) and out_mask.shape == (224, 224)
        assert out_mask.dtype == torch.bool
        # The mask's extent is the box (up to the one-pixel rounding of nearest resizing).
        np.testing.assert_allclose(_mask_box(out_mask), boxes[0].numpy(), atol=1.5)
        # The red pixels of the image are where the mask is (interpolated borders aside).
        rgb = T.denormalize(image)
        red = (rgb[0] > 0.8) & (rgb[1] < 0.2)
        agree = (red == out_mask.as_subclass(torch.Tensor)).float().mean()
        assert agree > 0.97
        flips += int(boxes[0, 0] > 224 - boxes[0, 2])  # object left of centre unless flipped
    assert 0 < flips < 8


def test_ten_crop_shape_and_centre_crop():
    crop_image, crop_boxes, _ = _run(T.test_transform(mode="crop"), BOXES)
    ten_image, ten_boxes, _ = _run(T.ten_crop_transform(), BOXES)
    assert ten_image.shape == (10, 3, 224, 224)
    torch.testing.assert_close(ten_image[4], crop_image)
    torch.testing.assert_close(ten_image[9], crop_image.flip(-1))
    torch.testing.assert_close(ten_boxes, crop_boxes)
    # Also on a plain image tensor.
    plain = T.ten_crop_transform()(torch.zeros(3, 300, 300, dtype=torch.uint8))
    assert plain.shape == (10, 3, 224, 224)


def test_normalisation_and_denormalize():
    image = _image((0, 0, 50, 50))
    out = T.normalize_transform()(make_tv_sample(image))["image"].as_subclass(torch.Tensor)
    assert out.shape == (3, H, W)  # no geometric change
    red = (torch.tensor([1.0, 0.0, 0.0]) - torch.tensor(T.IMAGENET_MEAN)) / torch.tensor(T.IMAGENET_STD)
    torch.testing.assert_close(out[:, 10, 10], red)
    back = T.denormalize(out)
    torch.testing.assert_close(back[:, 100, 150], torch.full((3,), 90 / 255))
    assert T.denormalize(out[None]).shape == (1, 3, H, W)


def test_build_transform_names():
    for kind in ("train", "crop", "resize", "tencrop", "none"):
        assert callable(T.build_transform(kind))
    with pytest.raises(ValueError):
        T.build_transform("random")
