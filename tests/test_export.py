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


# ------------------------------------------------------------------- per-class maps and scores


def eager_class_maps(model, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Reference per-class outputs from the ordinary forward: the probabilities, and for every
    class the map of the model run with that class as the label (``top_k=1``), normalised and
    upsampled as the fused map is."""
    k = model.num_classes
    with torch.no_grad():
        logits = model(images).logits
        maps = []
        for c in range(k):
            label = torch.full((images.shape[0],), c)
            if model.label_type == "multi_hot":
                label = torch.nn.functional.one_hot(label, k).float()
            maps.append(localization_maps(model(images, label, top_k=1).fg_map, images.shape[-2:]))
    multi = model.label_type == "multi_hot"
    probs = logits.sigmoid() if multi else logits.softmax(1)
    return probs.numpy(), torch.stack(maps, dim=1).numpy()


SMALL_MODELS = {
    "bas": lambda: bas.build_model("resnet18", 4, hidden=32),
    "cam": lambda: bas.build_model("resnet18", 4, method="cam"),
    "multilabel_bas": lambda: bas.build_model("resnet50_os16", 3, method="multilabel_bas"),
}


@pytest.mark.parametrize("method", sorted(SMALL_MODELS))
def test_onnx_class_maps_and_top_k_match_eager(tmp_path, method, capsys):
    onnx, ort = onnx_modules()
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_model(path, SMALL_MODELS[method](), threshold=0.3, top_k=1, input_size=64, resize_size=72)
    model = load_checkpoint(path)
    k = model.num_classes
    x = inputs(3, 64, 5)
    ref_probs, ref_maps = eager_class_maps(model, x)
    assert np.abs(ref_maps[:, 0] - ref_maps[:, 1]).max() > 1e-2  # the classes' maps differ

    classes = tmp_path / "classes.onnx"
    assert (
        main(["export", "--checkpoint", str(path), "--format", "onnx", str(classes), "--outputs", "classes"])
        == 0
    )
    assert f"class_maps (B, {k}, 64, 64)" in capsys.readouterr().out
    assert [o.name for o in onnx.load(str(classes)).graph.output] == ["logits", "probs", "class_maps"]
    session = ort.InferenceSession(str(classes), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        logits, probs, class_maps = session.run(None, {"images": x[:batch].numpy()})
        assert class_maps.shape == (batch, k, 64, 64) and logits.shape == (batch, k)
        np.testing.assert_allclose(probs, ref_probs[:batch], atol=ATOL)
        np.testing.assert_allclose(class_maps, ref_maps[:batch], atol=ATOL)
    assert read_export_metadata(classes)["outputs"] == ["logits", "probs", "class_maps"]

    top = tmp_path / "top.onnx"
    args = [
        "export",
        "--checkpoint",
        str(path),
        "--format",
        "onnx",
        str(top),
        "--outputs",
        "top-k",
        "--top-k",
        "2",
    ]
    assert main(args) == 0
    session = ort.InferenceSession(str(top), providers=["CPUExecutionProvider"])
    _, probs, top_classes, top_probs, top_maps = session.run(None, {"images": x.numpy()})
    order = np.argsort(-ref_probs, axis=1, kind="stable")[:, :2]
    assert top_classes.dtype == np.int64 and (top_classes == order).all()
    np.testing.assert_allclose(top_probs, np.take_along_axis(ref_probs, order, 1), atol=ATOL)
    np.testing.assert_allclose(top_maps, ref_maps[np.arange(3)[:, None], order], atol=ATOL)
    assert read_export_metadata(top)["top_k"] == 2


def test_torchscript_top_k_outputs_match_eager(checkpoint, tmp_path):
    path = tmp_path / "top.pt"
    args = [
        "export",
        "--checkpoint",
        str(checkpoint),
        "--format",
        "torchscript",
        str(path),
        "--outputs",
        "top-k",
    ]
    assert main(args) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path))
    x = inputs(2, 64, 6)
    with torch.no_grad():
        _, probs, top_classes, top_probs, top_maps = module(x)
    ref_probs, ref_maps = eager_class_maps(load_checkpoint(checkpoint), x)
    assert top_classes.shape == (2, 2)  # the checkpoint's top_k
    np.testing.assert_allclose(probs.numpy(), ref_probs, atol=ATOL)
    np.testing.assert_allclose(
        top_maps.numpy(), ref_maps[np.arange(2)[:, None], top_classes.numpy()], atol=ATOL
    )


def test_generic_localize_classes_equals_the_methods_own():
    """The default (one forward per class) and the one-pass override give the same maps."""
    from bas.methods.base import WSOLModel

    for build in (SMALL_MODELS["bas"], SMALL_MODELS["cam"]):
        model = build().eval()
        x = inputs(2, 64, 7)
        with torch.no_grad():
            own, generic = model.localize_classes(x), WSOLModel.localize_classes(model, x)
        for a, b in zip(own, generic, strict=True):
            torch.testing.assert_close(a, b)


def test_fused_output_is_unchanged_by_the_option(checkpoint, tmp_path):
    """--outputs fused is the default graph: the same file as without the option."""
    onnx, _ = onnx_modules()
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    assert main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", str(a)]) == 0
    assert (
        main(["export", "--checkpoint", str(checkpoint), "--format", "onnx", str(b), "--outputs", "fused"])
        == 0
    )
    assert onnx.load(str(a)).graph == onnx.load(str(b)).graph


def test_the_output_sets_of_the_command_are_the_exporters():
    from bas.commands import export as command
    from bas.export import OUTPUTS

    assert list(command.OUTPUTS) == list(OUTPUTS)
    for name, names in OUTPUTS.items():
        assert [part.split(" (")[0] for part in command.OUTPUTS[name].split("), ")] == list(names)


def test_documented_box_extraction_runs_on_an_exported_graph(checkpoint, tmp_path, monkeypatch):
    """The post-processing example of docs/inference.md, run as written on a top-k export."""
    from pathlib import Path

    from PIL import Image

    onnx_modules()
    text = (Path(__file__).resolve().parents[1] / "docs" / "inference.md").read_text()
    section = text[text.index("### Boxes from an exported graph") :]
    code = section[section.index("```python\n") + 10 : section.index("\n```\n")]
    args = ["export", "--checkpoint", str(checkpoint), "--format", "onnx", str(tmp_path / "model_topk.onnx")]
    assert main([*args, "--outputs", "top-k", "--top-k", "3"]) == 0
    photo = (np.random.default_rng(0).random((90, 120, 3)) * 255).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/inference.md", "exec"), scope)
    kept = scope["kept"]
    assert kept and all(0 <= x0 < x1 <= 120 and 0 <= y0 < y1 <= 90 for _, _, (x0, y0, x1, y1) in kept)
    assert [s for _, s, _ in kept] == sorted((s for _, s, _ in kept), reverse=True)
    ranked = dict(zip(scope["top_classes"][0].tolist(), scope["top_probs"][0].tolist()))
    top1 = int(scope["top_classes"][0, 0])
    assert all(label == top1 or ranked[label] >= 0.1 for label, _, _ in kept)
