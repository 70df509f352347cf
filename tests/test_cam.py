"""Tests of the CAM baseline (bas.models.cam), its checkpoints, recipes and training path."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from bas.checkpoints import load_checkpoint, read_checkpoint_metadata, save_model, save_training_state
from bas.config import list_recipes, load_config
from bas.engine.optim import parameter_groups
from bas.engine.train import FINAL, Trainer
from bas.models import BASOutput, list_models
from bas.models.backbones import Backbone
from bas.models.cam import CAMModel, build_cam_model

# A hand-built case: 3 feature channels on a 2x2 map, 3 classes.
FEATURES = torch.tensor(
    [[[[1.0, 0.0], [2.0, 4.0]], [[0.0, 3.0], [1.0, 0.0]], [[5.0, 1.0], [0.0, 2.0]]]]
)  # (1, C=3, 2, 2)
WEIGHTS = torch.tensor([[1.0, 0.0, 0.0], [0.5, -1.0, 2.0], [0.0, 1.0, 1.0]])  # (K=3, C=3)
BIAS = torch.tensor([0.1, -0.2, 0.3])


def identity_cam() -> CAMModel:
    """A CAM model whose backbone is the identity, so the input *is* the feature map."""
    model = CAMModel(Backbone(nn.Identity(), nn.Identity(), 3, 3), 3, min_input_size=1)
    with torch.no_grad():
        model.fc.weight.copy_(WEIGHTS)
        model.fc.bias.copy_(BIAS)
    return model.eval()


def weighted_sum(k: int) -> torch.Tensor:
    """sum_c w_{k,c} F_c written out channel by channel, (2, 2)."""
    return sum(WEIGHTS[k, c] * FEATURES[0, c] for c in range(3))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_cam_is_the_class_weighted_feature_sum(k):
    out = identity_cam()(FEATURES, torch.tensor([k]))
    assert isinstance(out, BASOutput)
    # class 1: 0.5 * [[1, 0], [2, 4]] - [[0, 3], [1, 0]] + 2 * [[5, 1], [0, 2]] = [[10.5, -1], [0, 6]]
    if k == 1:
        assert torch.equal(out.fg_map[0, 0], torch.tensor([[10.5, -1.0], [0.0, 6.0]]))
    assert torch.allclose(out.fg_map[0, 0], weighted_sum(k))
    assert torch.allclose(out.feature_map[0, k], weighted_sum(k))


def test_logits_are_the_linear_classifier_on_the_pooled_features():
    out = identity_cam()(FEATURES)
    expected = FEATURES.mean(dim=(2, 3)) @ WEIGHTS.T + BIAS
    assert torch.allclose(out.logits, expected)
    assert torch.equal(out.fg_logits, out.logits)
    assert out.fg_score is None and out.bg_score is None


def test_map_selection_follows_labels_and_top_k():
    model = identity_cam()
    logits = model(FEATURES).logits[0]
    order = logits.argsort(descending=True).tolist()
    # No labels: the top-1 predicted class; top_k = 2: the mean of the two best classes' maps.
    assert torch.allclose(model(FEATURES).fg_map[0, 0], weighted_sum(order[0]))
    two = model(FEATURES, top_k=2).fg_map[0, 0]
    assert torch.allclose(two, (weighted_sum(order[0]) + weighted_sum(order[1])) / 2)
    # With labels and top_k = 1 the label's map, whatever the prediction.
    assert torch.allclose(model(FEATURES, torch.tensor([order[-1]])).fg_map[0, 0], weighted_sum(order[-1]))


def test_inputs_are_checked():
    model = identity_cam()
    with pytest.raises(ValueError, match="labels must be in"):
        model(FEATURES, torch.tensor([3]))
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.zeros(1, 4, 2, 2))
    with pytest.raises(ValueError, match="top_k"):
        model(FEATURES, top_k=0)


@pytest.mark.parametrize("arch", list_models())
def test_every_registered_arch_gives_a_head_resolution_cam(arch):
    with torch.device("meta"):
        model = build_cam_model(arch, 7)
        out = model(torch.empty(2, 3, 224, 224))
    assert out.logits.shape == (2, 7)
    assert out.fg_map.shape == (2, 1, 14, 14)
    assert out.feature_map.shape == (2, 7, 14, 14)
    assert [n for n, _ in model.named_children()] == ["mid", "head", "classifier", "fc"]


def test_hidden_adds_one_conv_layer_before_the_pooling():
    plain = build_cam_model("resnet18", 5)
    wide = build_cam_model("resnet18", 5, hidden=32)
    assert len(plain.classifier) == 0 and plain.fc.in_features == 512
    assert isinstance(wide.classifier[0], nn.Conv2d) and wide.classifier[0].out_channels == 32
    assert wide.fc.in_features == 32
    with pytest.raises(ValueError, match="hidden"):
        build_cam_model("resnet18", 5, hidden=-1)


def test_the_classifier_is_a_new_layer_for_the_optimizer():
    model = build_cam_model("resnet18", 5, hidden=8)
    groups = {g["name"]: {id(p) for p in g["params"]} for g in parameter_groups(model, 0.1)}
    assert {id(model.fc.weight), id(model.classifier[0].weight)} <= groups["new_weight"]
    assert {id(model.fc.bias), id(model.classifier[0].bias)} <= groups["new_bias"]
    assert id(model.head.layer4[0].conv1.weight) in groups["backbone_weight"]


@pytest.mark.parametrize("hidden", [None, 8])
def test_checkpoint_round_trip(tmp_path, hidden):
    model = build_cam_model("resnet18", 3, hidden=hidden).eval()
    save_model(tmp_path / "cam.safetensors", model, threshold=0.25, top_k=1, class_names=["a", "b", "c"])
    meta = read_checkpoint_metadata(tmp_path / "cam.safetensors")
    assert (meta["method"], meta["hidden"], meta["threshold"]) == ("cam", hidden or 0, 0.25)
    loaded = load_checkpoint(tmp_path / "cam.safetensors")
    assert isinstance(loaded, CAMModel) and loaded.hidden == (hidden or 0)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x).fg_map, model(x).fg_map)
    save_training_state(tmp_path / "last.ckpt", model=model, epoch=1, step=2)
    assert isinstance(load_checkpoint(tmp_path / "last.ckpt"), CAMModel)


def test_bas_files_still_load_as_bas(tmp_path):
    from bas.models import BASModel, build_model

    save_model(tmp_path / "bas.safetensors", build_model("resnet18", 3, hidden=8))
    assert read_checkpoint_metadata(tmp_path / "bas.safetensors")["method"] == "bas"
    assert isinstance(load_checkpoint(tmp_path / "bas.safetensors"), BASModel)


def test_cam_trains_one_step_through_the_trainer(tmp_path):
    cfg = load_config(
        "demo",
        [
            "method=cam",
            "model.hidden=null",
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "data.synthetic.images_per_class=6",
            "data.synthetic.image_size=64",
            "data.input_size=48",
            "data.resize_size=56",
            "data.batch_size=4",
            "data.options.val_per_class=1",
            "data.workers=0",
            "optim.epochs=1",
            "train.max_steps=1",
            "eval.every=0",
        ],
    )
    trainer = Trainer(cfg, progress=False, device="cpu")
    assert isinstance(trainer.model, CAMModel)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    assert trainer.step == 1
    after = trainer.model.state_dict()
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    assert not torch.equal(before["mid.conv1.weight"], after["mid.conv1.weight"])
    loaded = load_checkpoint(tmp_path / "run" / FINAL)
    assert isinstance(loaded, CAMModel)
    assert torch.equal(loaded.fc.weight, after["fc.weight"])
    assert loaded.bas_meta["config"]["method"] == "cam"


CAM_RECIPES = [r for r in list_recipes() if r.startswith("cam/")]


def test_cam_recipes_exist():
    assert {"cam/cub/resnet50", "cam/cub/vgg16", "cam/ilsvrc/resnet50"} <= set(CAM_RECIPES)


@pytest.mark.parametrize("recipe", CAM_RECIPES)
def test_cam_recipes_load_and_build(recipe):
    cfg = load_config(recipe)
    assert cfg["method"] == "cam"
    assert cfg["eval"]["top_k"] == 1
    with torch.device("meta"):
        model = build_cam_model(cfg["model"]["arch"], 200, hidden=cfg["model"]["hidden"])
    assert isinstance(model, CAMModel)


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_cam_models_export(tmp_path, fmt):
    from bas.export import export_model
    from bas.localization import localization_maps

    if fmt == "onnx":
        pytest.importorskip("onnx")
        ort = pytest.importorskip("onnxruntime")
    model = build_cam_model("resnet18", 3, hidden=8).eval()
    path = export_model(model, tmp_path / f"cam.{fmt}", fmt, top_k=2, input_size=64)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, top_k=2)
        expected = (out.logits, localization_maps(out.fg_map, 64))
        if fmt == "onnx":
            got = [
                torch.from_numpy(a) for a in ort.InferenceSession(str(path)).run(None, {"images": x.numpy()})
            ]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load's deprecation notice
                got = torch.jit.load(str(path))(x)
    for g, e in zip(got, expected):
        assert torch.allclose(g, e, atol=1e-4)
