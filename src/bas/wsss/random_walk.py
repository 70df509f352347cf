"""Pixel pairs within a radius, their paths, and the random walk of IRN (docs/segmentation.md).

**Pairs and paths.** Two pixels of an ``H x W`` grid are a pair when their offset ``(dy, dx)``
satisfies ``0 < dy^2 + dx^2 < radius^2`` and points forward (``dy > 0``, or ``dy = 0`` and
``dx > 0``), so every unordered pair is listed once. The path of an offset is the set of cells of
the box spanned by ``(0, 0)`` and ``(dy, dx)`` whose centre lies less than one cell from the line
through both ends; it holds both ends. The affinity of a pair is ``1 - max(boundary)`` over its
path: two pixels are alike unless a boundary crosses the segment between them.

**Random walk.** With affinities ``a`` (pairs) and ``1`` on the diagonal, ``A = a^beta`` is a
symmetric sparse matrix and ``P = D^-1 A`` its row-normalised transition matrix. The seed maps
``x`` (``C`` classes, each first multiplied by ``1 - boundary``) are propagated ``steps`` times:
``x <- P x``. IRN computes the same ``P^(2^8) x`` by squaring a dense ``N x N`` matrix eight times
(``N`` = pixels at stride 4, ~11,750 for a VOC image: 0.5 GB and ~10^13 multiply-adds); here the
sparse ``P`` (``N x (2 * offsets + 1)`` entries) is applied 256 times to the ``N x C`` maps, all
classes at once, which costs ~``256 * 69 * N * C`` multiply-adds at radius 5.
:func:`dense_random_walk` is the dense-matrix version, for tests.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

BETA = 10.0  # affinities are raised to this power
STEPS = 256  # 2^8 random-walk steps
RADIUS = 5  # the random walk's pair radius (training uses 10)


def offsets(radius: int) -> list[tuple[int, int]]:
    """The forward offsets ``(dy, dx)`` with ``0 < dy^2 + dx^2 < radius^2``, row by row."""
    r = int(math.ceil(radius))
    return [
        (dy, dx)
        for dy in range(r)
        for dx in range(-r + 1, r)
        if (dy > 0 or dx > 0) and 0 < dy * dy + dx * dx < radius * radius
    ]


def path_cells(dy: int, dx: int) -> np.ndarray:
    """``(L, 2)`` int64 cells of the path from ``(0, 0)`` to ``(dy, dx)`` (both ends included)."""
    ys = np.arange(min(0, dy), max(0, dy) + 1)
    xs = np.arange(min(0, dx), max(0, dx) + 1)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    near = (dy * xx - dx * yy) ** 2 < dy * dy + dx * dx  # squared distance to the line < 1
    return np.stack([yy[near], xx[near]], axis=1).astype(np.int64)


@dataclass
class PathIndex:
    """Every pair of an ``H x W`` grid within ``radius``, in flat pixel indices ``y * W + x``.

    ``src`` and ``dst`` are ``(E,)``; ``paths`` holds, per group of offsets with paths of one
    length ``L``, an ``(E_g, L)`` tensor of the path cells of those pairs; the groups, in order,
    list the pairs in the order of ``src`` / ``dst``.
    """

    size: tuple[int, int]
    radius: float
    src: torch.Tensor
    dst: torch.Tensor
    paths: list[torch.Tensor]

    @property
    def num_pairs(self) -> int:
        return len(self.src)

    def to(self, device: torch.device | str) -> PathIndex:
        return PathIndex(
            self.size,
            self.radius,
            self.src.to(device),
            self.dst.to(device),
            [p.to(device) for p in self.paths],
        )


def path_index(size: tuple[int, int], radius: float) -> PathIndex:
    """The :class:`PathIndex` of an ``H x W`` grid (pairs of every offset whose both ends are inside)."""
    height, width = int(size[0]), int(size[1])
    by_length: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    for dy, dx in offsets(radius):
        ys = np.arange(0, height - dy)
        xs = np.arange(max(0, -dx), width - max(0, dx))
        if not len(ys) or not len(xs):
            continue
        src = (ys[:, None] * width + xs[None, :]).reshape(-1)
        cells = path_cells(dy, dx)
        path = src[:, None] + (cells[:, 0] * width + cells[:, 1])[None, :]
        by_length.setdefault(len(cells), []).append((src, src + dy * width + dx, path))
    groups = [by_length[k] for k in sorted(by_length)]
    src = np.concatenate([s for g in groups for s, _, _ in g]) if groups else np.zeros(0, np.int64)
    dst = np.concatenate([d for g in groups for _, d, _ in g]) if groups else np.zeros(0, np.int64)
    paths = [torch.from_numpy(np.concatenate([p for _, _, p in g])) for g in groups]
    return PathIndex((height, width), radius, torch.from_numpy(src), torch.from_numpy(dst), paths)


def path_affinities(boundary: torch.Tensor, index: PathIndex) -> torch.Tensor:
    """``(B, E)`` affinities ``1 - max(boundary over the path)`` of a ``(B, H, W)`` boundary map."""
    flat = boundary.reshape(len(boundary), -1)
    if not index.paths:
        return flat.new_zeros(len(flat), 0)
    return 1 - torch.cat([flat[:, p].amax(dim=-1) for p in index.paths], dim=1)


# ------------------------------------------------------------------------------------ random walk


def transition_matrix(boundary: torch.Tensor, radius: float = RADIUS, beta: float = BETA) -> torch.Tensor:
    """The sparse (CSR) row-normalised ``N x N`` transition matrix of a ``(H, W)`` boundary map."""
    height, width = boundary.shape
    n = height * width
    index = path_index((height, width), radius).to(boundary.device)
    weight = path_affinities(boundary[None].float(), index)[0].clamp(min=0) ** beta
    diag = torch.arange(n, device=boundary.device)
    rows = torch.cat([index.src, index.dst, diag])
    cols = torch.cat([index.dst, index.src, diag])
    values = torch.cat([weight, weight, torch.ones(n, device=boundary.device)])
    values = values / torch.zeros(n, device=boundary.device).index_add_(0, rows, values)[rows]
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta")
        return coo.coalesce().to_sparse_csr()


def random_walk(
    maps: torch.Tensor,
    boundary: torch.Tensor,
    *,
    radius: float = RADIUS,
    beta: float = BETA,
    steps: int = STEPS,
) -> torch.Tensor:
    """Propagate ``(C, H, W)`` maps over a ``(H, W)`` boundary map: ``steps`` sparse steps ``x <- P x``
    of ``x = maps * (1 - boundary)``, all classes at once; returns ``(C, H, W)``."""
    channels, height, width = maps.shape
    if boundary.shape != (height, width):
        raise ValueError(f"a boundary map of size {tuple(boundary.shape)} for maps of size {(height, width)}")
    trans = transition_matrix(boundary, radius, beta)
    x = (maps.float() * (1 - boundary.float())).reshape(channels, -1).T.contiguous()  # (N, C)
    for _ in range(steps):
        x = trans @ x
    return x.T.reshape(channels, height, width)


def dense_random_walk(
    maps: torch.Tensor,
    boundary: torch.Tensor,
    *,
    radius: float = RADIUS,
    beta: float = BETA,
    squarings: int = 8,
) -> torch.Tensor:
    """The dense-matrix random walk, IRN's way (pad the boundary map with 1, square the transition
    matrix ``squarings`` times): for tests on small grids only."""
    channels, height, width = maps.shape
    r = int(math.ceil(radius))
    padded = F.pad(boundary.double()[None], (r, r, 0, r), value=1.0)[0]  # no pair leaves the grid
    ph, pw = padded.shape
    index = path_index((ph, pw), radius)
    weight = path_affinities(padded[None], index)[0]
    dense = torch.eye(ph * pw, dtype=torch.float64)
    dense[index.src, index.dst] = weight
    dense[index.dst, index.src] = weight
    keep = torch.zeros(ph, pw, dtype=torch.bool)
    keep[:height, r : r + width] = True
    keep = keep.reshape(-1)
    a = dense[keep][:, keep] ** beta
    trans = a / a.sum(dim=0, keepdim=True)  # column-normalised: x (C, N) @ trans
    for _ in range(squarings):
        trans = trans @ trans
    x = (maps.double() * (1 - boundary.double())).reshape(channels, -1)
    return (x @ trans).reshape(channels, height, width).float()
