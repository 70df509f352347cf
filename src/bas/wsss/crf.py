"""Fully connected CRF (Krähenbühl and Koltun, NIPS 2011): mean-field refinement of label maps.

The energy of a labelling is a unary term per pixel plus, for every pair of pixels, a Potts
penalty weighted by two Gaussian kernels: an appearance-free one on the positions
(``exp(-|p_i - p_j|^2 / 2 sxy^2)``, weight ``gaussian_compat``) and a bilateral one on positions
and colours (``exp(-|p_i - p_j|^2 / 2 sxy^2 - |I_i - I_j|^2 / 2 srgb^2)``, weight
``bilateral_compat``). Mean-field inference starts from ``Q = softmax(-unary)`` and repeats
``iterations`` times ``Q = softmax(-unary + sum_k compat_k * Kn_k Q)``, where ``Kn = D^-1/2 K D^-1/2``
is the kernel normalised symmetrically by its row sums ``D`` (the kernel includes the pixel
itself), as the reference implementation does by default.

A label map becomes a unary the way IRN's ``crf_inference_label`` does: probability ``gt_prob``
on the pixel's label and the rest spread evenly over the others (:func:`unary_from_labels`).

Backends (:class:`DenseCRF`, ``backend``):

* ``torch``: this module, any device, no extra. The Gaussian kernel is applied exactly, as the
  products with the ``H x H`` and ``W x W`` matrices of the 1-D Gaussian (it is separable). The bilateral kernel lives in a 5-D feature space where exact
  filtering costs ``N^2`` per label and iteration; it is approximated with a permutohedral lattice
  (Adams, Baek and Davis, 2010: splat onto the lattice, blur along its d + 1 axes, slice back), the
  same approximation as the reference implementation, ``O(N (d + 1) L)`` per iteration.
* ``pydensecrf``: the reference C++ implementation (the ``crf`` extra, ``pydensecrf2``).
* ``auto``: ``pydensecrf`` where it is importable, else ``torch``.

:func:`reference_mean_field` is the brute-force version (exact ``N x N`` kernel matrices, float64)
that the tests compare against; it is for images of a few thousand pixels only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bas._optional import optional, require
from bas.errors import ConfigError

__all__ = [
    "BACKENDS",
    "DEFAULT_CRF",
    "DenseCRF",
    "Permutohedral",
    "dense_crf",
    "dense_crf_probs",
    "reference_mean_field",
    "resolve_backend",
    "unary_from_labels",
]

BACKENDS = ("auto", "torch", "pydensecrf")
PYDENSECRF = "pydensecrf.densecrf"
PROB_EPS = 1e-8  # probabilities are clipped to this before the log of a probability unary


def resolve_backend(backend: str) -> str:
    """``torch`` or ``pydensecrf`` for a backend name (``auto``: pydensecrf if importable)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown CRF backend {backend!r} (choose from {', '.join(BACKENDS)})")
    if backend == "auto":
        return "pydensecrf" if optional(PYDENSECRF) is not None else "torch"
    if backend == "pydensecrf":
        require(PYDENSECRF, "crf", "the pydensecrf CRF backend")
    return backend


def unary_from_labels(labels: Any, n_labels: int, gt_prob: float = 0.7) -> np.ndarray:
    """Energies ``(n_labels, *labels.shape)`` float32 of a label map: ``-log(gt_prob)`` for the
    pixel's label, ``-log((1 - gt_prob) / (n_labels - 1))`` for every other one."""
    labels = np.asarray(labels)
    if not 0 < gt_prob < 1:
        raise ValueError(f"gt_prob must be in (0, 1), got {gt_prob}")
    if n_labels < 2:
        raise ValueError(f"a label unary needs at least 2 labels, got {n_labels}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"labels must be in 0..{n_labels - 1}")
    unary = np.full((n_labels, *labels.shape), -math.log((1 - gt_prob) / (n_labels - 1)), np.float32)
    np.put_along_axis(unary, labels[None].astype(np.int64), np.float32(-math.log(gt_prob)), axis=0)
    return unary


# ------------------------------------------------------------------------------------ features


def _check_image(image: Any, size: tuple[int, ...]) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"the CRF image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(size):
        raise ValueError(f"an image of size {image.shape[:2]} for maps of size {tuple(size)}")
    return image


def _features(image: np.ndarray, sxy: float, srgb: float | None, dtype: torch.dtype) -> torch.Tensor:
    """``(N, 2)`` positions ``(x, y) / sxy``, with ``srgb`` followed by the colours ``/ srgb``."""
    h, w = image.shape[:2]
    y, x = torch.meshgrid(torch.arange(h, dtype=dtype), torch.arange(w, dtype=dtype), indexing="ij")
    parts = [x.reshape(-1, 1) / sxy, y.reshape(-1, 1) / sxy]
    if srgb is not None:
        parts.append(torch.from_numpy(image.reshape(-1, 3).astype(np.float64)).to(dtype) / srgb)
    return torch.cat(parts, dim=1)


# ------------------------------------------------------------------------------------ lattice


class Permutohedral:
    """Gaussian filtering ``out_i = sum_j exp(-|f_i - f_j|^2 / 2) v_j`` approximated on the
    permutohedral lattice of the ``(N, d)`` features ``f`` (Adams et al. 2010).

    Built once per feature set (the lattice points are found with ``unique`` and the neighbours
    with ``searchsorted``), then ``lattice(values)`` filters ``(N, C)`` values in ``O(N (d + 1) C)``.
    """

    def __init__(self, features: torch.Tensor):
        n, d = features.shape
        f = features.float()
        device = f.device
        # elevate onto the plane x_0 + ... + x_d = 0, scaled so that the blur is a unit Gaussian
        i = torch.arange(d, device=device, dtype=torch.float32)
        cf = f * ((d + 1) * math.sqrt(2 / 3) / torch.sqrt((i + 1) * (i + 2)))
        suffix = cf.flip(1).cumsum(1).flip(1)  # suffix[:, k] = sum of cf[:, k:]
        elevated = torch.cat([suffix[:, :1], F.pad(suffix[:, 1:], (0, 1)) - (i + 1) * cf], dim=1)
        # the nearest remainder-0 lattice point, and the simplex around the point
        scaled = elevated / (d + 1)
        rounded = torch.sign(scaled) * torch.floor(scaled.abs() + 0.5)
        rem0 = (rounded * (d + 1)).long()
        total = rounded.sum(1).long()
        diff = elevated - rem0
        idx = torch.arange(d + 1, device=device)
        later = idx[None, :] > idx[:, None]  # [i, j]: j comes after i
        a, b = diff[:, :, None], diff[:, None, :]
        rank = ((b > a) & later).sum(2) + ((b >= a) & later.T).sum(2) + total[:, None]
        low, high = rank < 0, rank > d
        rank = rank + (d + 1) * low.long() - (d + 1) * high.long()
        rem0 = rem0 + (d + 1) * low.long() - (d + 1) * high.long()
        # barycentric weights of the d + 1 vertices of the simplex
        v = (elevated - rem0) / (d + 1)
        bary = torch.zeros(n, d + 2, device=device)
        bary.scatter_add_(1, d - rank, v)
        bary.scatter_add_(1, d - rank + 1, -v)
        bary[:, 0] += 1 + bary[:, d + 1]
        # the vertices' keys (their first d coordinates), encoded as one int64 each
        r = torch.arange(d + 1, device=device)
        keys = (
            rem0[:, None, :d] + r[None, :, None] - (d + 1) * (rank[:, None, :d] > d - r[None, :, None]).long()
        )
        low_key = keys.reshape(-1, d).amin(0) - (d + 1)  # room for the neighbours, d + 1 away at most
        extent = keys.reshape(-1, d).amax(0) + (d + 1) - low_key + 1
        if float(torch.log2(extent.double()).sum()) > 62:
            raise ValueError("features too spread out for the lattice's int64 keys: scale them down")
        strides = torch.cat([extent.flip(0).cumprod(0).flip(0)[1:], extent.new_ones(1)])
        codes = ((keys - low_key) * strides).sum(-1)
        lattice, offsets = torch.unique(codes.reshape(-1), return_inverse=True)
        self.size = len(lattice)
        self.offsets = offsets.reshape(n, d + 1)
        self.weights = bary[:, : d + 1]
        # neighbours along axis j: +1 on every coordinate but j, -d on j (and the opposite)
        steps = [int(strides.sum()) - (d + 1) * int(strides[j]) for j in range(d)] + [int(strides.sum())]
        self.neighbours = []
        for step in steps:
            pair = []
            for target in (lattice + step, lattice - step):
                pos = torch.searchsorted(lattice, target).clamp(max=self.size - 1)
                pair.append(torch.where(lattice[pos] == target, pos, self.size))  # size: a zero row
            self.neighbours.append(pair)
        self.alpha = 1.0 / (1.0 + 2.0 ** (-d))

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """Filter ``(N, C)`` values: ``(N, C)``."""
        n, c = values.shape
        weights = self.weights.to(values.dtype)
        grid = values.new_zeros(self.size + 1, c)  # the last row stays 0: the missing neighbour
        spread = (weights[:, :, None] * values[:, None, :]).reshape(-1, c)
        grid.index_add_(0, self.offsets.reshape(-1), spread)
        other = grid.clone()
        for forward, backward in self.neighbours:
            sides = torch.index_select(grid, 0, forward) + torch.index_select(grid, 0, backward)
            torch.add(grid[: self.size], sides, alpha=0.5, out=other[: self.size])
            grid, other = other, grid
        sliced = torch.index_select(grid, 0, self.offsets.reshape(-1)).view(n, -1, c)
        return torch.einsum("nkc,nk->nc", sliced, weights) * self.alpha


# ------------------------------------------------------------------------------------ kernels


class _GaussianKernel:
    """The symmetrically normalised position kernel, exact: it is separable, so ``K q`` is
    ``G_y q G_x`` with the ``H x H`` and ``W x W`` matrices of the 1-D Gaussian (BLAS products)."""

    def __init__(self, size: tuple[int, int], sxy: float, device: torch.device):
        self.rows, self.cols = (_gaussian_matrix(n, sxy, device) for n in size)
        self.norm = (self.rows.sum(1)[:, None] * self.cols.sum(0)[None, :]).rsqrt()

    def __call__(self, q: torch.Tensor) -> torch.Tensor:  # (C, H, W)
        return self.norm * (self.rows @ (self.norm * q) @ self.cols)


def _gaussian_matrix(n: int, sigma: float, device: torch.device) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float32, device=device)
    return torch.exp(-((t[:, None] - t[None, :]) ** 2) / (2 * sigma**2))


class _BilateralKernel:
    """The symmetrically normalised bilateral kernel on the permutohedral lattice."""

    def __init__(self, image: np.ndarray, sxy: float, srgb: float, device: torch.device):
        self.size = image.shape[:2]
        self.lattice = Permutohedral(_features(image, sxy, srgb, torch.float32).to(device))
        ones = torch.ones(self.lattice.offsets.shape[0], 1, device=device)
        self.norm = self.lattice(ones).clamp_min(1e-20).rsqrt()

    def __call__(self, q: torch.Tensor) -> torch.Tensor:  # (C, H, W)
        flat = q.reshape(len(q), -1).T
        return (self.norm * self.lattice(self.norm * flat)).T.reshape(q.shape)


# ------------------------------------------------------------------------------------ the CRF


@dataclass(frozen=True)
class DenseCRF:
    """A dense CRF's settings; defaults are those of IRN's confident labels (BAS WSSS code).

    ``crf.infer(image, unary)`` runs the mean-field on energies ``(B, L, H, W)`` of one uint8
    ``(H, W, 3)`` image (the B unaries share the kernels) and gives ``Q`` of that shape;
    ``crf.labels`` and ``crf.probs`` wrap it for label maps and probabilities.
    """

    iterations: int = 10
    gt_prob: float = 0.7
    gaussian_sxy: float = 3.0
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0
    bilateral_srgb: float = 5.0
    bilateral_compat: float = 10.0
    backend: str = "auto"
    device: str = "cpu"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown CRF backend {self.backend!r} (choose from {', '.join(BACKENDS)})")
        if self.iterations < 0 or not 0 < self.gt_prob < 1:
            raise ConfigError(f"CRF iterations must be >= 0 and gt_prob in (0, 1), got {self}")
        if min(self.gaussian_sxy, self.bilateral_sxy, self.bilateral_srgb) <= 0:
            raise ConfigError("CRF kernel widths (sxy, srgb) must be > 0")

    def settings(self) -> dict[str, Any]:
        """The parameters that change the result (everything but the backend and the device)."""
        return {k: v for k, v in asdict(self).items() if k not in ("backend", "device")}

    def infer(self, image: Any, unary: Any) -> np.ndarray:
        """Mean-field marginals ``Q`` (B, L, H, W) float32 of energies ``unary`` (B, L, H, W)."""
        unary = np.asarray(unary, dtype=np.float32)
        if unary.ndim != 4:
            raise ValueError(f"unary energies must be (B, L, H, W), got {unary.shape}")
        image = _check_image(image, unary.shape[2:])
        if resolve_backend(self.backend) == "pydensecrf":
            return np.stack([self._pydensecrf(image, u) for u in unary])
        return self._torch(image, unary)

    def labels(self, image: Any, labels: Any, n_labels: int | None = None) -> np.ndarray:
        """The refined label map(s), int64 of the shape of ``labels`` ((H, W) or (B, H, W)),
        from the unary of :func:`unary_from_labels` with ``gt_prob``."""
        labels = np.asarray(labels)
        batch = labels if labels.ndim == 3 else labels[None]
        n = int(batch.max()) + 1 if n_labels is None else int(n_labels)
        if n < 2:  # one label: nothing to choose
            return np.zeros(labels.shape, np.int64)
        unary = np.stack([unary_from_labels(b, n, self.gt_prob) for b in batch])
        out = self.infer(image, unary).argmax(axis=1)
        return out if labels.ndim == 3 else out[0]

    def probs(self, image: Any, probs: Any) -> np.ndarray:
        """Refined probabilities (L, H, W) float32 from probabilities ``probs`` (L, H, W), whose
        unary is ``-log(max(p, 1e-8))``."""
        p = np.asarray(probs, dtype=np.float32)
        if p.ndim != 3:
            raise ValueError(f"probabilities must be (L, H, W), got {p.shape}")
        return self.infer(image, -np.log(np.maximum(p, PROB_EPS))[None])[0]

    def _pydensecrf(self, image: np.ndarray, unary: np.ndarray) -> np.ndarray:
        dcrf = require(PYDENSECRF, "crf", "the pydensecrf CRF backend")
        n_labels, h, w = unary.shape
        crf = dcrf.DenseCRF2D(w, h, n_labels)
        crf.setUnaryEnergy(np.ascontiguousarray(unary.reshape(n_labels, -1)))
        crf.addPairwiseGaussian(sxy=self.gaussian_sxy, compat=self.gaussian_compat)
        crf.addPairwiseBilateral(
            sxy=self.bilateral_sxy,
            srgb=self.bilateral_srgb,
            rgbim=np.array(image, order="C"),  # a writable copy
            compat=self.bilateral_compat,
        )
        return np.asarray(crf.inference(self.iterations), dtype=np.float32).reshape(n_labels, h, w)

    @torch.no_grad()
    def _torch(self, image: np.ndarray, unary: np.ndarray) -> np.ndarray:
        device = torch.device(self.device)
        b, n_labels, h, w = unary.shape
        u = torch.from_numpy(unary).to(device).reshape(b * n_labels, h, w)
        gaussian = _GaussianKernel((h, w), self.gaussian_sxy, device)
        bilateral = _BilateralKernel(image, self.bilateral_sxy, self.bilateral_srgb, device)
        q = _softmax(-u, b)
        for _ in range(self.iterations):
            message = self.gaussian_compat * gaussian(q) + self.bilateral_compat * bilateral(q)
            q = _softmax(message - u, b)
        return q.reshape(b, n_labels, h, w).cpu().numpy()


#: The settings of IRN's confident labels, backend ``auto``.
DEFAULT_CRF = DenseCRF()


def _softmax(x: torch.Tensor, batch: int) -> torch.Tensor:
    """Softmax over the labels of ``(B * L, H, W)`` stacked unaries."""
    return x.reshape(batch, -1, *x.shape[1:]).softmax(1).reshape(x.shape)


def dense_crf(
    image: Any,
    labels: Any,
    n_labels: int | None = None,
    *,
    t: int = 10,
    gt_prob: float = 0.7,
    backend: str = "auto",
    **pairwise: Any,
) -> np.ndarray:
    """A label map ``(H, W)`` refined by the dense CRF; IRN's ``crf_inference_label(img, labels,
    t, n_labels, gt_prob)``. ``pairwise`` overrides :class:`DenseCRF`'s kernel settings."""
    return DenseCRF(iterations=t, gt_prob=gt_prob, backend=backend, **pairwise).labels(
        image, labels, n_labels
    )


def dense_crf_probs(
    image: Any, probs: Any, *, t: int = 10, backend: str = "auto", **pairwise: Any
) -> np.ndarray:
    """Probabilities ``(L, H, W)`` refined by the dense CRF (unary ``-log p``)."""
    return DenseCRF(iterations=t, backend=backend, **pairwise).probs(image, probs)


# ------------------------------------------------------------------------------------ reference


def reference_mean_field(image: Any, unary: Any, crf: DenseCRF | None = None) -> np.ndarray:
    """Brute-force mean-field: exact ``N x N`` kernel matrices in float64, ``Q`` (L, H, W).

    For tests on small images (memory ``2 N^2`` doubles)."""
    crf = crf or DEFAULT_CRF
    u = torch.from_numpy(np.asarray(unary, dtype=np.float64))
    n_labels, h, w = u.shape
    image = _check_image(image, (h, w))
    flat = u.reshape(n_labels, -1)
    message_kernel = 0
    for sxy, srgb, compat in (
        (crf.gaussian_sxy, None, crf.gaussian_compat),
        (crf.bilateral_sxy, crf.bilateral_srgb, crf.bilateral_compat),
    ):
        f = _features(image, sxy, srgb, torch.float64)
        k = torch.exp(-0.5 * torch.cdist(f, f) ** 2)
        norm = k.sum(1).rsqrt()
        message_kernel = message_kernel + compat * norm[:, None] * k * norm[None, :]
    q = torch.softmax(-flat, 0)
    for _ in range(crf.iterations):
        q = torch.softmax(q @ message_kernel - flat, 0)  # the kernel is symmetric
    return q.reshape(n_labels, h, w).float().numpy()
