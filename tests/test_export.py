"""Tests of ``bas export``: the exported graphs reproduce the eager model (logits and fused maps)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import bas
from bas.checkpoints import load_checkpoint, save_model
from bas.cli import main
from bas.export import InferenceModule, read_export_metadata
from bas.localization import localization_maps

ATOL = 1e-4


def onnx_modules():
    """onnx and onnxruntime, or skip the test: they come with the optional 'export' extra."""
    reason = "onnx / onnxruntime not installed (pip install 'bas-wsol[export]')"
    return pytest.importorskip("onnx", reason=reason), pytest.importorskip("onnxruntime", reason=reason)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(
        path,
        bas.build_model("resnet18", 4, hidden=32),
        class_names=list("abcd"),
        threshold=0.35,
        top_k=2,
        input_size=64,
        resize_size=72,
    )
    return path


def eager(checkpoint, images: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs computed with the ordinary model forward."""
    model = load_checkpoint(checkpoint)
    with torch.no_grad():
        out = model(images, top_k=top_k)
        maps = localization_maps(out.fg_map, images.shape[-2:])
    return out.logits.numpy(), maps.numpy()


def inputs(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_onnx_export_matches_eager_for_batch_1_and_3(checkpoint, tmp_path, capsys):
    onnx, ort = onnx_modules()
    path = tmp_path / "model.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", str(path)]) == 0
    assert "top_k=2" in capsys.readouterr().out
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["logits", "maps"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, seed in ((1, 0), (3, 1)):
        x = inputs(batch, 64, seed)
        logits, maps = session.run(None, {"images": x.numpy()})
        ref_logits, ref_maps = eager(checkpoint, x, top_k=2)
        assert logits.shape == (batch, 4) and maps.shape == (batch, 64, 64)
        np.testing.assert_allclose(logits, ref_logits, atol=ATOL)
        np.testing.assert_allclose(maps, ref_maps, atol=ATOL)
    meta = read_export_metadata(path)
    assert meta["class_names"] == list("abcd") and meta["threshold"] == 0.35
    assert (meta["top_k"], meta["input_size"], meta["resize_size"]) == (2, 64, 72)


def test_torchscript_export_matches_eager_for_batch_1_and_3(checkpoint, tmp_path):
    path = tmp_path / "model.pt"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "torchscript", str(path)]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in recent torch
        module = torch.jit.load(str(path))
    for batch, seed in ((1, 2), (3, 3)):
        x = inputs(batch, 64, seed)
        with torch.no_grad():
            logits, maps = module(x)
        assert isinstance(logits, torch.Tensor) and maps.shape == (batch, 64, 64)
        ref_logits, ref_maps = eager(checkpoint, x, top_k=2)
        np.testing.assert_allclose(logits.numpy(), ref_logits, atol=ATOL)
        np.testing.assert_allclose(maps.numpy(), ref_maps, atol=ATOL)
    assert read_export_metadata(path)["top_k"] == 2


def test_export_overrides_top_k_and_input_size(checkpoint, tmp_path):
    onnx, ort = onnx_modules()
    path = tmp_path / "model96.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--format",
                "onnx",
                str(path),
                "--input-size",
                "96",
                "--top-k",
                "1",
                "--opset",
                "18",
            ]
        )
        == 0
    )
    assert onnx.load(str(path)).opset_import[0].version == 18
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = inputs(2, 96, 4)
    logits, maps = session.run(None, {"images": x.numpy()})
    ref_logits, ref_maps = eager(checkpoint, x, top_k=1)
    assert maps.shape == (2, 96, 96)
    np.testing.assert_allclose(maps, ref_maps, atol=ATOL)
    # top_k is really in the graph: the 2-class fusion gives other maps
    _, fused2 = eager(checkpoint, x, top_k=2)
    assert np.abs(fused2 - ref_maps).max() > 1e-2
    assert read_export_metadata(path)["input_size"] == 96


def test_inference_module_returns_a_plain_tuple():
    model = bas.build_model("resnet18", 3, hidden=16).eval()
    with torch.no_grad():
        out = InferenceModule(model, top_k=1, map_size=48)(torch.randn(2, 3, 48, 48))
    assert type(out) is tuple and [t.shape for t in out] == [(2, 3), (2, 48, 48)]
    assert float(out[1].min()) >= 0.0 and float(out[1].max()) <= 1.0


def test_export_rejects_bad_arguments(checkpoint, tmp_path, capsys):
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint),
                "--format",
                "onnx",
                str(tmp_path / "m.onnx"),
                "--top-k",
                "0",
            ]
        )
        == 2
    )
    assert "--top-k" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
