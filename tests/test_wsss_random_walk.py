"""Pixel pairs and their paths against a brute-force enumeration, path affinities, and the sparse
random walk against the dense-matrix one."""

from __future__ import annotations

import math

import pytest
import torch

from bas.wsss import random_walk as R


def brute_force_pairs(height: int, width: int, radius: float) -> dict[tuple[int, int], frozenset[int]]:
    """Every forward pair of the grid within ``radius`` and its path, pixel by pixel, in floats."""
    pairs = {}
    for y0 in range(height):
        for x0 in range(width):
            for y1 in range(height):
                for x1 in range(width):
                    dy, dx = y1 - y0, x1 - x0
                    forward = dy > 0 or (dy == 0 and dx > 0)
                    if not forward or math.hypot(dy, dx) >= radius:
                        continue
                    cells = set()
                    for y in range(min(y0, y1), max(y0, y1) + 1):
                        for x in range(min(x0, x1), max(x0, x1) + 1):
                            # distance of the cell centre to the line through both ends
                            if abs(dy * (x - x0) - dx * (y - y0)) / math.hypot(dy, dx) < 1:
                                cells.add(y * width + x)
                    pairs[(y0 * width + x0, y1 * width + x1)] = frozenset(cells)
    return pairs


def as_dict(index: R.PathIndex) -> dict[tuple[int, int], frozenset[int]]:
    paths = [frozenset(row.tolist()) for group in index.paths for row in group]
    return dict(zip(zip(index.src.tolist(), index.dst.tolist()), paths))


@pytest.mark.parametrize(("size", "radius"), [((6, 7), 4), ((5, 9), 5), ((3, 3), 10), ((4, 2), 2.5)])
def test_path_indices_match_a_brute_force_enumeration(size, radius):
    index = R.path_index(size, radius)
    expected = brute_force_pairs(*size, radius)
    assert index.num_pairs == len(expected)  # no pair twice
    assert as_dict(index) == expected


def test_offsets_and_paths_by_hand():
    assert len(R.offsets(5)) == 34 and len(R.offsets(10)) == 152
    assert R.offsets(2) == [(0, 1), (1, -1), (1, 0), (1, 1)]
    assert R.path_cells(0, 3).tolist() == [[0, 0], [0, 1], [0, 2], [0, 3]]
    # a diagonal also crosses the cells beside it (their centres are 0.71 cells from the line)
    diagonal = sorted(map(tuple, R.path_cells(2, 2).tolist()))
    assert diagonal == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    # a knight's move crosses the two cells between its ends
    assert sorted(map(tuple, R.path_cells(1, -2).tolist())) == [
        (0, -2),
        (0, -1),
        (0, 0),
        (1, -2),
        (1, -1),
        (1, 0),
    ]


def test_affinity_is_one_minus_the_strongest_boundary_on_the_path():
    boundary = torch.zeros(1, 3, 5)
    boundary[0, :, 2] = 0.8  # a vertical wall in column 2
    boundary[0, 0, 4] = 0.3
    index = R.path_index((3, 5), 4)
    aff = dict(
        zip(zip(index.src.tolist(), index.dst.tolist()), R.path_affinities(boundary, index)[0].tolist())
    )
    assert aff[(0, 1)] == pytest.approx(1.0)  # (0,0)-(0,1): left of the wall
    assert aff[(0, 3)] == pytest.approx(0.2)  # crosses the wall
    assert aff[(5 + 3, 5 + 4)] == pytest.approx(1.0)  # right of it
    assert aff[(3, 4)] == pytest.approx(0.7)  # ends on the 0.3 pixel
    assert aff[(1, 2 * 5 + 1)] == pytest.approx(1.0)  # straight down column 1


def test_transition_matrix_rows_sum_to_one():
    torch.manual_seed(0)
    trans = R.transition_matrix(torch.rand(4, 6), radius=3, beta=2).to_dense()
    torch.testing.assert_close(trans.sum(dim=1), torch.ones(24))
    assert torch.equal(trans != 0, (trans != 0).T)  # symmetric support, diagonal included
    assert torch.all(trans.diagonal() > 0)


@pytest.mark.parametrize(("beta", "radius"), [(10.0, 5), (2.0, 3)])
def test_sparse_random_walk_equals_the_dense_matrix_version(beta, radius):
    torch.manual_seed(1)
    boundary = torch.rand(6, 7) ** 3
    maps = torch.rand(3, 6, 7) ** 1.5
    sparse = R.random_walk(maps, boundary, radius=radius, beta=beta, steps=256)
    dense = R.dense_random_walk(maps, boundary, radius=radius, beta=beta, squarings=8)
    torch.testing.assert_close(sparse, dense, rtol=1e-4, atol=1e-6)
    assert (sparse - maps).abs().max() > 1e-3  # it did propagate


def test_a_closed_boundary_stops_the_walk():
    boundary = torch.zeros(5, 8)
    boundary[:, 4] = 1.0  # affinity 0 across column 4
    maps = torch.zeros(2, 5, 8)
    maps[0, 2, 1] = 1.0  # a seed on the left
    maps[1, 0, 6] = 1.0  # another on the right
    out = R.random_walk(maps, boundary, steps=64)
    assert out[0, :, 4:].abs().max() == 0 and out[0, :, :4].min() > 0
    assert out[1, :, :5].abs().max() == 0 and out[1, :, 5:].min() > 0
    # the propagation averages: mass is kept (P is row-stochastic, the columns of a region balance)
    assert out[0].sum() == pytest.approx(1.0, rel=0.3)


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="boundary map"):
        R.random_walk(torch.zeros(1, 4, 4), torch.zeros(4, 5))
