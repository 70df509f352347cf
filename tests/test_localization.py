"""Maps -> normalised maps -> boxes / masks on hand-computed cases."""

import numpy as np
import torch

from bas.localization import localization_maps, maps_to_boxes, maps_to_masks, normalize_maps, upsample_maps


def test_min_max_normalisation_per_image():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 9.0]], [[2.0, 2.0], [2.0, 2.0]]])
    out = normalize_maps(maps)
    assert torch.allclose(out[0], torch.tensor([[0.0, 0.25], [0.5, 1.0]]))
    assert torch.count_nonzero(out[1]) == 0  # constant map -> zeros, no NaN


def test_upsample_bilinear_keeps_constant_and_size():
    maps = torch.full((2, 1, 7, 7), 0.3)
    up = upsample_maps(maps, 28)
    assert up.shape == (2, 1, 28, 28)
    assert torch.allclose(up, torch.full_like(up, 0.3))
    assert localization_maps(torch.rand(3, 1, 7, 7), (20, 30)).shape == (3, 20, 30)


def test_largest_8_connected_component_box_exclusive():
    m = np.zeros((1, 10, 12), np.float32)
    m[0, 1:3, 1:3] = 1.0  # 4 pixels
    m[0, 4, 5] = m[0, 5, 6] = m[0, 6, 7] = m[0, 7, 8] = m[0, 8, 9] = (
        0.9  # diagonal: one 8-connected component of 5
    )
    box = maps_to_boxes(m, 0.5)[0]
    assert box.tolist() == [5, 4, 10, 9]  # x0, y0, x1 (exclusive), y1 (exclusive)


def test_threshold_is_strict_and_empty_gives_whole_image():
    m = np.full((2, 6, 8), 0.5, np.float32)
    m[1, 2:4, 3:5] = 0.6
    boxes = maps_to_boxes(m, 0.5)
    assert boxes[0].tolist() == [0, 0, 8, 6]
    assert boxes[1].tolist() == [3, 2, 5, 4]


def test_masks_keep_largest_component_only():
    m = np.zeros((1, 6, 6), np.float32)
    m[0, 0, 0] = 1
    m[0, 3:6, 3:6] = 1
    mask = maps_to_masks(m, 0.5)[0]
    assert mask.sum() == 9 and not mask[0, 0]
    assert maps_to_masks(m, 0.5, largest_only=False)[0].sum() == 10
