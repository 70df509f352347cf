"""The dense CRF: the lattice filter against exact Gaussian filtering, the torch mean-field against
the brute-force one and against pydensecrf2, label clean-up, and the backend choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bas._optional import MissingExtraError
from bas.errors import ConfigError
from bas.wsss import crf as C


def stripes_image(rng, size=(24, 24), colours=((20, 30, 40), (200, 60, 50), (90, 200, 120)), noise=8.0):
    """An image of vertical stripes of the given colours (plus noise) and its true labels."""
    h, w = size
    truth = np.minimum(np.arange(w) * len(colours) // w, len(colours) - 1)[None, :].repeat(h, 0)
    image = np.asarray(colours, np.float64)[truth] + rng.normal(0, noise, (h, w, 3))
    return np.clip(image, 0, 255).astype(np.uint8), truth


def corrupt(rng, labels, n_labels, fraction):
    noisy = labels.copy()
    flip = rng.random(labels.shape) < fraction
    noisy[flip] = rng.integers(0, n_labels, int(flip.sum()))
    return noisy


def test_unary_from_labels_is_the_label_based_energy():
    labels = np.array([[0, 2], [1, 1]])
    u = C.unary_from_labels(labels, 3, gt_prob=0.7)
    assert u.shape == (3, 2, 2) and u.dtype == np.float32
    on, off = -math.log(0.7), -math.log(0.15)
    expected = np.where(np.arange(3)[:, None, None] == labels[None], on, off)
    np.testing.assert_allclose(u, expected, rtol=1e-6)
    with pytest.raises(ValueError):
        C.unary_from_labels(labels, 2)  # label 2 out of range


@pytest.mark.parametrize("dims", [2, 5])
def test_lattice_filter_is_close_to_exact_gaussian_filtering(dims):
    gen = torch.Generator().manual_seed(dims)
    features = torch.rand(1500, dims, generator=gen, dtype=torch.float64) * 1.5
    values = torch.rand(1500, 3, generator=gen)
    lattice = C.Permutohedral(features)
    approx = lattice(values) / lattice(torch.ones(1500, 1))
    kernel = torch.exp(-0.5 * torch.cdist(features, features) ** 2)
    exact = (kernel @ values.double()) / kernel.sum(1, keepdim=True)
    assert (approx.double() - exact).abs().max() < 0.02


def test_torch_mean_field_agrees_with_brute_force_on_a_small_image():
    rng = np.random.default_rng(0)
    image, truth = stripes_image(rng)
    noisy = corrupt(rng, truth, 3, 0.4)
    crf = C.DenseCRF(backend="torch")
    unary = C.unary_from_labels(noisy, 3)
    q = crf.infer(image, unary[None])[0]
    q_ref = C.reference_mean_field(image, unary, crf)
    assert q.shape == (3, 24, 24)
    np.testing.assert_allclose(q.sum(0), 1, atol=1e-5)
    assert (q.argmax(0) == q_ref.argmax(0)).mean() >= 0.99
    assert np.abs(q - q_ref).mean() < 0.02


def test_the_crf_cleans_a_noisy_label_map():
    rng = np.random.default_rng(1)
    image, truth = stripes_image(rng, (32, 32), colours=((30, 40, 200), (220, 200, 40)))
    noisy = corrupt(rng, truth, 2, 0.6)  # 30% of the pixels wrong
    assert (noisy == truth).mean() < 0.75
    refined = C.dense_crf(image, noisy, 2, backend="torch")
    assert refined.shape == truth.shape and refined.dtype == np.int64
    assert (refined == truth).mean() > 0.98


def test_batched_label_maps_equal_one_at_a_time():
    rng = np.random.default_rng(2)
    image, truth = stripes_image(rng, (20, 26))
    maps = np.stack([corrupt(rng, truth, 3, 0.5), corrupt(rng, truth, 3, 0.2)])
    crf = C.DenseCRF(backend="torch", iterations=5)
    batched = crf.labels(image, maps, 3)
    np.testing.assert_array_equal(batched, np.stack([crf.labels(image, m, 3) for m in maps]))


def test_probability_unary_equals_the_label_unary_it_encodes():
    rng = np.random.default_rng(3)
    image, truth = stripes_image(rng, (16, 16))
    noisy = corrupt(rng, truth, 3, 0.3)
    probs = np.where(np.arange(3)[:, None, None] == noisy[None], 0.7, 0.15).astype(np.float32)
    q = C.dense_crf_probs(image, probs, backend="torch")
    q_labels = C.DenseCRF(backend="torch").infer(image, C.unary_from_labels(noisy, 3)[None])[0]
    np.testing.assert_allclose(q, q_labels, atol=1e-5)


def test_pydensecrf_backend_agrees_with_torch():
    pytest.importorskip("pydensecrf.densecrf", reason="the crf extra (pydensecrf2) is not installed")
    rng = np.random.default_rng(4)
    image, truth = stripes_image(rng, (30, 40))
    # blocks of random colours: a harder case for the lattice than stripes
    blocks = rng.integers(0, 256, (4, 5, 3)).repeat(8, 0)[:30].repeat(8, 1).astype(np.float64)
    textured = np.clip(blocks + rng.normal(0, 10, blocks.shape), 0, 255).astype(np.uint8)
    for img in (image, textured):
        unary = C.unary_from_labels(corrupt(rng, truth, 3, 0.5), 3)[None]
        q_torch = C.DenseCRF(backend="torch").infer(img, unary)
        q_ref = C.DenseCRF(backend="pydensecrf").infer(img, unary)
        assert (q_torch.argmax(1) == q_ref.argmax(1)).mean() >= 0.99
        assert np.abs(q_torch - q_ref).mean() < 0.01


def test_auto_backend_and_missing_extra(monkeypatch):
    import importlib

    real = importlib.import_module

    def no_pydensecrf(name, *args, **kwargs):
        if name.startswith("pydensecrf"):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_pydensecrf)
    assert C.resolve_backend("auto") == "torch"
    image, truth = stripes_image(np.random.default_rng(5), (8, 8))
    with pytest.raises(MissingExtraError) as info:
        C.dense_crf(image, truth, 3, backend="pydensecrf")
    message = str(info.value)
    assert "\n" not in message and "bas-wsol[crf]" in message
    with pytest.raises(ConfigError):
        C.DenseCRF(backend="cuda-crf")


def test_bad_input():
    image, truth = stripes_image(np.random.default_rng(6), (8, 8))
    np.testing.assert_array_equal(C.dense_crf(image, np.zeros((8, 8), np.int64)), 0)  # one label
    with pytest.raises(ValueError, match="size"):
        C.dense_crf(image[:4], truth, 3, backend="torch")
    with pytest.raises(ValueError, match="uint8"):
        C.dense_crf(image.astype(np.float32), truth, 3, backend="torch")
