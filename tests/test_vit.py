"""Tests of the vision-transformer family (timm, random weights, tiny inputs): the split, the
class-token rule of the erase branch, gradient routing, weights from a file, a training step and
ONNX export."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

import bas
from bas._optional import MissingExtraError, optional
from bas.errors import CheckpointError
from bas.losses import bas_loss
from bas.models import BASModel, build_model
from bas.models.families.vit import TIMM_NAMES, create_timm_model, load_timm_weights, vit_split

needs_timm = pytest.mark.skipif(optional("timm") is None, reason="timm is not installed (the timm extra)")
K = 5


def tiny(size: int = 64, split_block: int | None = None, seed: int = 0) -> BASModel:
    """A random-weight DeiT-Tiny BAS model whose position embedding is made for ``size`` pixels."""
    torch.manual_seed(seed)
    return BASModel(vit_split("deit_tiny", split_block, img_size=size), K, arch="deit_tiny", hidden=0)


def images(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def timm_tokens(net, x: torch.Tensor, k: int) -> torch.Tensor:
    """Tokens after block ``k`` computed with timm's own embedding code."""
    t = net.norm_pre(net._pos_embed(net.patch_embed(x)))
    for block in net.blocks[:k]:
        t = block(t)
    return t


# ------------------------------------------------------------------------------------ the split


@needs_timm
def test_registered_names_and_default_split():
    assert set(TIMM_NAMES) <= set(bas.list_models())
    model = build_model("deit_tiny", K, hidden=0)
    assert list(model.mid.blocks) == [str(i) for i in range(8)]  # two thirds of 12 blocks
    assert list(model.head.blocks) == [str(i) for i in range(8, 12)]
    assert "mid.blocks.7.attn.qkv.weight" in model.state_dict()
    assert "head.blocks.8.attn.qkv.weight" in model.state_dict()
    assert [type(m).__name__ for m in model.classifier] == ["Conv2d"]  # hidden 0: the conv1x1 alone
    assert model.classifier[0].kernel_size == (1, 1)
    assert model.generator[0].in_channels == 192


@needs_timm
@pytest.mark.parametrize("size, grid", [(64, 4), (96, 6), (224, 14)])
def test_shapes(size, grid):
    model = build_model("deit_tiny", K, hidden=0).train()
    x, y = images(2, size, 0), torch.tensor([0, 3])
    feat = model.mid(x)
    assert feat.shape == (2, 192, grid, grid)
    assert model.head(feat).shape == (2, 192, grid, grid)
    out = model(x, y)
    assert out.logits.shape == out.fg_logits.shape == (2, K)
    assert out.fg_map.shape == (2, 1, grid, grid)
    assert out.feature_map.shape == (2, K, grid, grid)
    assert out.fg_score.shape == out.bg_score.shape == (2,)


@needs_timm
@pytest.mark.parametrize("size", [64, 96])
def test_mid_is_timms_network_up_to_block_k(size):
    """The grid is timm's patch tokens after block k, with timm's position-embedding interpolation."""
    torch.manual_seed(0)
    net = (
        bas.models.families.vit._timm()
        .create_model(TIMM_NAMES["deit_tiny"], pretrained=False, num_classes=0, dynamic_img_size=True)
        .eval()
    )
    mid = vit_split("deit_tiny", 5, net=net).mid.eval()
    x = images(2, size, 1)
    with torch.no_grad():
        tokens = timm_tokens(net, x, 5)[:, 1:]
        grid = mid(x)
    n = size // 16
    assert torch.allclose(grid.flatten(2).transpose(1, 2), tokens, atol=1e-5)
    assert grid.shape[-2:] == (n, n)


@needs_timm
def test_split_block_is_configurable_and_checked():
    model = tiny(split_block=3)
    assert len(model.mid.blocks) == 3 and len(model.head.blocks) == 9
    for bad in (0, 12):
        with pytest.raises(ValueError, match="split_block"):
            vit_split("deit_tiny", bad, img_size=64)


# ------------------------------------------------------------------------------- class token rule


@needs_timm
def test_all_ones_mask_gives_the_same_background_score_for_any_image():
    """Everything erased: nothing of the image may reach the erase branch (no class token leak)."""
    model = tiny().train()
    x = torch.cat([images(1, 64, 1), 3.0 * images(1, 64, 2)])
    feat = model.mid(x)
    assert not torch.allclose(feat[0], feat[1])
    assert not torch.allclose(model.head(feat)[0], model.head(feat)[1])
    bg = model.background_logits(feat, torch.ones(2, 1, *feat.shape[-2:]))
    assert torch.allclose(bg[0], bg[1], atol=1e-6)


@needs_timm
def test_head_starts_from_the_learned_class_token():
    """head(grid) depends on the grid and the head's own class token only."""
    net = create_timm_model("deit_tiny", 64)
    head = vit_split("deit_tiny", 8, net=net).head.eval()
    assert torch.equal(head.cls_token, (net.cls_token + net.pos_embed[:, :1]).detach())
    grid = torch.randn(2, 192, 4, 4)
    with torch.no_grad():
        before = head(grid)
        assert torch.equal(head(grid), before)
        head.cls_token.add_(1.0)
        assert not torch.allclose(head(grid), before)


# ------------------------------------------------------------------------------- gradient routing


@needs_timm
def test_bas_term_reaches_only_the_generator_and_mid():
    model = tiny().train()
    x, y = images(4, 64, 3), torch.tensor([0, 1, 2, 3])
    _, terms = bas_loss(model(x, y), y, alpha=0.5, beta=1.5, variant="ijcv2023", arch=model.arch)
    assert terms["bas"].item() > 0
    terms["bas"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    for name, grad in grads.items():
        if name.startswith(("head.", "classifier.")):
            assert grad is None or not grad.abs().any(), name
    assert grads["generator.0.weight"].abs().sum() > 0
    assert grads["mid.blocks.7.mlp.fc2.weight"].abs().sum() > 0  # feeds the generator
    assert grads["mid.cls_token"].abs().sum() > 0


# --------------------------------------------------------------------------------- weights


@needs_timm
def test_weights_from_a_timm_state_dict(tmp_path):
    torch.manual_seed(1)
    net = create_timm_model("deit_tiny", 64)
    state = net.state_dict()
    state["head.weight"], state["head.bias"] = torch.zeros(1000, 192), torch.zeros(1000)  # ignored
    path = tmp_path / "deit_tiny.pth"
    torch.save(state, path)
    model = tiny()
    load_timm_weights(model, path)
    # through build_model (the family's loader), into a 224-pixel model: the 4x4 position grid resampled
    built = build_model("deit_tiny", K, hidden=0, pretrained=path)
    from timm.layers import resample_abs_pos_embed

    assert torch.allclose(built.mid.pos_embed, resample_abs_pos_embed(net.pos_embed, (14, 14)))
    assert torch.equal(built.head.blocks["9"].attn.proj.weight, net.blocks[9].attn.proj.weight)
    with pytest.raises(CheckpointError, match="no weights are downloaded"):
        build_model("deit_tiny", K, hidden=0, pretrained=True)
    assert torch.equal(model.mid.pos_embed, net.pos_embed)
    assert torch.equal(model.mid.blocks["0"].attn.qkv.weight, net.blocks[0].attn.qkv.weight)
    assert torch.equal(model.head.blocks["11"].mlp.fc2.weight, net.blocks[11].mlp.fc2.weight)
    assert torch.equal(model.head.norm.weight, net.norm.weight)
    assert torch.equal(model.head.cls_token, (net.cls_token + net.pos_embed[:, :1]).detach())


@needs_timm
def test_weights_file_errors(tmp_path):
    model = tiny()
    with pytest.raises(CheckpointError, match="no weights are downloaded"):
        load_timm_weights(model, None)
    state = create_timm_model("deit_tiny", 64).state_dict()
    del state["norm.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="missing keys: norm.weight; unexpected keys: extra.weight"):
        load_timm_weights(model, path)
    small = create_timm_model("deit_small", 64).state_dict()
    torch.save(small, path)
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_timm_weights(model, path)


def test_missing_timm_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(MissingExtraError, match=r"bas-wsol\[timm\]"):
        build_model("deit_tiny", K, hidden=0)


# ------------------------------------------------------------------------------ training, export


@needs_timm
def test_one_training_step_on_synthetic_data(tmp_path, monkeypatch):
    """One AdamW step of BAS on DeiT-Tiny: finite terms, every part of the model moved."""
    from bas.checkpoints import load_checkpoint
    from bas.engine import train as train_module
    from bas.engine.train import FINAL, LOG, train
    from tests.test_train import tiny_config

    initial = {}

    def recording_create_model(cfg, num_classes):
        model = real_create_model(cfg, num_classes)
        initial.update({k: v.clone() for k, v in model.state_dict().items()})
        return model

    real_create_model = train_module.create_model
    monkeypatch.setattr(train_module, "create_model", recording_create_model)

    cfg = tiny_config(
        tmp_path / "data",
        tmp_path / "run",
        "model.arch=deit_tiny",
        "model.hidden=0",
        "optim.optimizer=adamw",
        "optim.schedule=cosine",
        "optim.lr=0.001",
        "optim.weight_decay=0.05",
        "train.max_steps=1",
        "eval.every=0",
    )
    train(cfg, progress=False, device="cpu")
    (record,) = [json.loads(line) for line in (tmp_path / "run" / LOG).read_text().splitlines()]
    assert record["step"] == 1
    assert all(math.isfinite(record[k]) for k in ("loss", "cls", "fg_cls", "bas", "area"))
    trained = load_checkpoint(tmp_path / "run" / FINAL)
    assert trained.arch == "deit_tiny" and trained.meta.hidden == 0
    for key in (
        "mid.blocks.0.attn.qkv.weight",
        "head.cls_token",
        "classifier.0.weight",
        "generator.0.weight",
    ):
        assert not torch.equal(trained.state_dict()[key], initial[key]), key


@needs_timm
def test_onnx_export_matches_eager(tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the export extra)")
    pytest.importorskip("onnx", reason="onnx is not installed (the export extra)")
    from bas.export import InferenceModule, export_model

    model = tiny(64).eval()
    path = export_model(model, tmp_path / "vit.onnx", "onnx", top_k=2, input_size=64)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, seed in ((1, 0), (3, 1)):
        x = images(batch, 64, seed)
        logits, maps = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            ref_logits, ref_maps = InferenceModule(model, 2, 64)(x)
        np.testing.assert_allclose(logits, ref_logits.numpy(), atol=1e-4)
        np.testing.assert_allclose(maps, ref_maps.numpy(), atol=1e-4)


# ------------------------------------------------------------------------ recipes and files


@needs_timm
@pytest.mark.parametrize("recipe", ["cub/deit_small", "ilsvrc/deit_small"])
def test_recipes_use_adamw_with_warmup_and_cosine(recipe):
    from bas.config import load_config
    from bas.engine.optim import build_optimizer, build_scheduler
    from bas.engine.train import validate_config

    cfg = load_config(recipe)
    validate_config(cfg)
    assert (cfg["model"]["arch"], cfg["model"]["hidden"]) == ("deit_small", 0)
    o = cfg["optim"]
    model = build_model("deit_tiny", K, hidden=0)
    optimizer = build_optimizer(model, o)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert {g["name"]: g["lr"] / o["lr"] for g in optimizer.param_groups} == {
        "backbone_weight": 1,
        "backbone_bias": 1,
        "new_weight": 10,
        "new_bias": 10,
    }
    scheduler = build_scheduler(optimizer, o)
    factors = []
    for _ in range(o["epochs"]):
        factors.append(optimizer.param_groups[0]["lr"] / o["lr"])
        optimizer.step()
        scheduler.step()
    warmup = o["warmup_epochs"]
    assert factors[:warmup] == pytest.approx([(i + 1) / (warmup + 1) for i in range(warmup)])
    assert factors[warmup] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(factors[warmup:], factors[warmup + 1 :]))  # cosine decay
    assert factors[-1] > o["min_lr"] / o["lr"]


@needs_timm
def test_a_file_without_metadata_tells_the_conv1x1_classifier():
    from bas.methods import get_method

    state = tiny().state_dict()
    assert get_method("bas").infer_options(state) == {"num_classes": K, "hidden": 0}
    wide = BASModel(vit_split("deit_tiny", img_size=64), K, arch="deit_tiny", hidden=8).state_dict()
    assert get_method("bas").infer_options(wide) == {"num_classes": K, "hidden": 8}


def test_files_without_metadata_skip_the_family_when_timm_is_missing(monkeypatch):
    from bas.checkpoints import legacy

    state = build_model("resnet18", 3, hidden=8).state_dict()
    legacy._arch_signature.cache_clear()
    monkeypatch.setitem(sys.modules, "timm", None)
    try:
        assert legacy.infer_arch(state) == "resnet18"
    finally:
        legacy._arch_signature.cache_clear()
