"""The Hide-and-Seek and ADL baselines (bas.methods.has, bas.methods.adl) through the method seam."""

from __future__ import annotations

import warnings

import pytest
import torch

import bas
from bas import methods
from bas.checkpoints import load_checkpoint
from bas.config import list_recipes, load_config
from bas.engine.train import FINAL, LAST, Trainer
from bas.errors import ConfigError
from bas.methods.adl import ADLModel, AttentionDropout, attention_dropout, drop_mask
from bas.methods.has import HaSModel, hide_patches


def test_list_methods_shows_the_baselines():
    assert {"adl", "bas", "cam", "has"} <= set(bas.list_methods())
    for name in ("has", "adl"):
        method = methods.get_method(name)
        cam = methods.get_method("cam")
        assert (method.label_type, method.loss_terms, method.localization_map) == (
            "single",
            ("cls",),
            "fg_map",
        )
        assert method.new_layers == cam.new_layers


# ------------------------------------------------------------------------------ Hide-and-Seek


def _hidden_pixels(images: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """(B, H, W): pixels hidden by hide_patches; the others must be unchanged."""
    hidden = (out == 0).all(dim=1)
    assert torch.equal((out == 0).any(dim=1), hidden)  # every channel of a hidden pixel is 0
    keep = ~hidden[:, None].expand_as(images)
    assert torch.equal(out[keep], images[keep])
    return hidden


def test_hide_patches_hides_whole_cells_at_the_drop_rate():
    images = torch.rand(400, 3, 30, 30) + 1.0  # no zeros; 30 = 7 cells of 4 px and one of 2 px
    original = images.clone()
    for drop_rate in (0.5, 0.25):
        out = hide_patches(images, 4, drop_rate, torch.Generator().manual_seed(0))
        hidden = _hidden_pixels(images, out)
        cells = hidden[:, ::4, ::4]  # the top-left pixel of each cell, (B, 8, 8)
        assert cells.shape == (400, 8, 8)
        expected = cells.repeat_interleave(4, dim=1).repeat_interleave(4, dim=2)[:, :30, :30]
        assert torch.equal(hidden, expected)  # each hidden region is a whole cell (cut at the border)
        assert float(cells.float().mean()) == pytest.approx(drop_rate, abs=0.02)  # 25,600 cells
    assert torch.equal(images, original)  # the input is not modified


def test_hide_patches_is_deterministic_per_seed_and_bounded():
    images = torch.rand(8, 3, 32, 32) + 1.0
    a = hide_patches(images, 8, 0.5, torch.Generator().manual_seed(3))
    b = hide_patches(images, 8, 0.5, torch.Generator().manual_seed(3))
    c = hide_patches(images, 8, 0.5, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(5)
    d = hide_patches(images, 8, 0.5)  # torch's default generator: seeded by the trainer
    torch.manual_seed(5)
    assert torch.equal(d, hide_patches(images, 8, 0.5))
    assert torch.equal(hide_patches(images, 0, 0.5), images)  # grid 0: nothing hidden
    assert torch.equal(hide_patches(images, 4, 0.0), images)
    assert torch.count_nonzero(hide_patches(images, 4, 1.0)) == 0


def _mid_inputs(model: torch.nn.Module) -> list[torch.Tensor]:
    seen: list[torch.Tensor] = []
    model.mid.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    return seen


def test_has_model_hides_in_training_only():
    torch.manual_seed(0)
    model = bas.build_model("resnet18", 3, method="has")
    assert isinstance(model, HaSModel) and (model.grid_size, model.drop_rate) == (4, 0.5)
    cam = bas.build_model("resnet18", 3, method="cam")
    cam.load_state_dict(model.state_dict())  # the same network: every parameter name matches
    seen = _mid_inputs(model)
    x, y = torch.rand(2, 3, 64, 64) + 1.0, torch.tensor([0, 2])
    model.eval(), cam.eval()
    with torch.no_grad():
        out, ref = model(x, y), cam(x, y)
    assert torch.equal(seen[-1], x)
    assert torch.equal(out.logits, ref.logits) and torch.equal(out.fg_map, ref.fg_map)
    model.train()
    model(x, y)
    hidden = _hidden_pixels(x, seen[-1])
    assert 0.3 < float(hidden.float().mean()) < 0.7


# ------------------------------------------------------------------------------------- ADL


def _hand_built() -> torch.Tensor:
    """Two images, 2 channels, 2 x 2: channel means [[1, 2], [5, 10]] and ten times that."""
    attention = torch.tensor([[1.0, 2.0], [5.0, 10.0]])
    first = torch.stack([attention - 1, attention + 1])  # channel mean = attention
    return torch.stack([first, 10 * first])


def test_adl_drop_mask_and_importance_map():
    features = _hand_built()
    attention = features.mean(dim=1, keepdim=True)
    # the threshold is relative to each image's own maximum; positions at or above it are dropped
    expected = torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    assert torch.equal(drop_mask(attention, 0.25), torch.stack([expected, expected])[:, None])
    expected = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    assert torch.equal(drop_mask(attention, 0.9), torch.stack([expected, expected])[:, None])
    assert torch.equal(drop_mask(attention, 0.5), drop_mask(attention, 0.25))  # 5 = 0.5 * 10 is dropped
    # drop_rate 1: always the drop mask; drop_rate 0: always the importance map sigmoid(mean)
    assert torch.equal(attention_dropout(features, 1.0, 0.9), features * drop_mask(attention, 0.9))
    assert torch.allclose(attention_dropout(features, 0.0, 0.9), features * torch.sigmoid(attention))


def test_adl_chooses_the_drop_mask_at_the_drop_rate_and_is_identity_in_eval():
    features = _hand_built()
    dropped = features * drop_mask(features.mean(1, keepdim=True), 0.9)
    generator = torch.Generator().manual_seed(0)
    outs = [attention_dropout(features, 0.75, 0.9, generator) for _ in range(2000)]
    n_drop = sum(torch.equal(o, dropped) for o in outs)  # one branch per call, for the whole batch
    n_importance = sum(
        torch.allclose(o, features * torch.sigmoid(features.mean(1, keepdim=True))) for o in outs
    )
    assert n_drop + n_importance == 2000
    assert n_drop / 2000 == pytest.approx(0.75, abs=0.04)
    layer = AttentionDropout(0.75, 0.9)
    assert layer.eval()(features) is features
    torch.manual_seed(1)
    train_out = layer.train()(features)
    torch.manual_seed(1)
    assert torch.equal(train_out, attention_dropout(features, 0.75, 0.9))


def test_adl_model_acts_after_mid_and_head_in_training_only():
    torch.manual_seed(0)
    model = bas.build_model("vgg16", 3, method="adl", hidden=8)
    assert isinstance(model, ADLModel) and (model.adl.drop_rate, model.adl.threshold) == (0.75, 0.9)
    cam = bas.build_model("vgg16", 3, method="cam", hidden=8)
    cam.load_state_dict(model.state_dict())  # ADL adds no parameter and no buffer
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([0, 1])
    model.eval(), cam.eval()
    with torch.no_grad():
        assert torch.equal(model(x, y).fg_map, cam(x, y).fg_map)
    seen = {}
    for name in ("mid", "head", "classifier"):
        getattr(model, name).register_forward_hook(
            lambda m, a, out, name=name: seen.update({name: (a[0], out)})
        )
    model.train()
    model.adl.drop_rate = 1.0  # always the drop mask: the peak positions of each map become 0
    with torch.no_grad():
        model(x, y)
    for before, after in ((seen["mid"][1], seen["head"][0]), (seen["head"][1], seen["classifier"][0])):
        assert torch.equal(after, before * drop_mask(before.mean(1, keepdim=True), 0.9))


# ------------------------------------------------------------------------- config and recipes


@pytest.mark.parametrize(
    ("method", "key", "value", "message"),
    [
        ("has", "has.drop_rate", 1.5, "has.drop_rate must be a number in [0, 1], got 1.5"),
        ("has", "has.grid_size", -1, "has.grid_size must be an integer >= 0, got -1"),
        (
            "adl",
            "adl.drop_rate",
            "x",
            "adl.drop_rate must be a finite number, got 'x'",
        ),  # the schema's type check
        ("adl", "adl.threshold", 2, "adl.threshold must be a number in [0, 1], got 2"),
    ],
)
def test_config_checks(method, key, value, message):
    # the method's checks run when the config is loaded (bas.schema.check_config calls them)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(None, [f"method={method}", f"{key}={value}"])


RECIPES = [r for r in list_recipes() if r.startswith(("has/", "adl/"))]


def test_recipes_exist():
    for method in ("has", "adl"):
        for recipe in ("cub/resnet50", "cub/vgg16", "ilsvrc/resnet50", "ilsvrc/vgg16"):
            assert f"{method}/{recipe}" in RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipes_are_cam_recipes_with_the_method_settings(recipe):
    cfg = load_config(recipe)
    method, rest = recipe.split("/", 1)
    cam = load_config(f"cam/{rest}")
    assert cfg["method"] == method
    assert (cfg["model"], cfg["optim"], cfg["data"], cfg["eval"]) == (
        cam["model"],
        cam["optim"],
        cam["data"],
        cam["eval"],
    )
    assert (
        cfg[method]
        == {"has": {"grid_size": 4, "drop_rate": 0.5}, "adl": {"drop_rate": 0.75, "threshold": 0.9}}[method]
    )
    methods.get_method(method).check_config(cfg)


# -------------------------------------------------------------------- train, save, load, export


@pytest.mark.parametrize(
    ("method", "settings", "read"),
    [
        ("has", ["has.grid_size=8", "has.drop_rate=0.25"], lambda m: (m.grid_size, m.drop_rate)),
        ("adl", ["adl.drop_rate=0.5", "adl.threshold=0.8"], lambda m: (m.adl.drop_rate, m.adl.threshold)),
    ],
)
def test_baselines_train_save_load_and_export(method, settings, read, tmp_path):
    cfg = load_config(
        "demo",
        [
            f"method={method}",
            f"data.root={tmp_path / 'data'}",
            f"train.output_dir={tmp_path / 'run'}",
            "model.arch=resnet18",
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
            *settings,
        ],
    )
    trainer = Trainer(cfg, progress=False, device="cpu")
    model_class = {"has": HaSModel, "adl": ADLModel}[method]
    assert isinstance(trainer.model, model_class)
    expected = tuple(float(s.split("=")[1]) for s in settings)
    assert read(trainer.model) == expected  # the run's settings reach the model
    before = trainer.model.fc.weight.clone()
    trainer.fit()
    assert not torch.equal(before, trainer.model.fc.weight)
    for name in (FINAL, LAST):
        loaded = load_checkpoint(tmp_path / "run" / name)
        assert isinstance(loaded, model_class) and loaded.meta.method == method
        assert torch.equal(loaded.fc.weight, trainer.model.fc.weight)

    from bas.export import export_model
    from bas.localization import localization_maps

    path = export_model(loaded, tmp_path / f"{method}.pt", "torchscript", top_k=1, input_size=48)
    x = torch.randn(2, 3, 48, 48)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        logits, maps = torch.jit.load(str(path))(x)
    with torch.no_grad():
        out = loaded.eval()(x)  # nothing hidden or dropped at inference
    assert torch.allclose(logits, out.logits, atol=1e-5)
    assert torch.allclose(maps, localization_maps(out.fg_map, 48), atol=1e-5)


# --------------------------------------------------------------------- bas benchmark --methods


def test_benchmark_methods_are_chosen_by_name_in_order():
    from bas.engine.compare import load_benchmark

    assert list(load_benchmark("synthetic").methods) == ["CAM", "BAS"]  # the file's default_methods
    bench = load_benchmark("synthetic", methods=["cam", "has", "adl", "bas"])
    assert list(bench.methods) == ["CAM", "HaS", "ADL", "BAS"]
    assert list(load_benchmark("synthetic", methods=["BAS", "adl"]).methods) == ["BAS", "ADL"]
    with pytest.raises(
        ConfigError, match="--methods: unknown method 'acol'; the benchmark has cam, has, adl, bas"
    ):
        load_benchmark("synthetic", methods=["cam", "acol"])
    with pytest.raises(ConfigError, match="method 'CAM' is listed twice"):
        load_benchmark("synthetic", methods=["cam", "CAM"])


def test_benchmark_baselines_share_cams_settings(tmp_path):
    from bas.engine.compare import load_benchmark, method_config

    bench = load_benchmark("synthetic", methods=["cam", "has", "adl", "bas"])
    cfgs = {name: method_config(bench, name, seed=0, output=tmp_path) for name in bench.methods}
    assert [cfg["method"] for cfg in cfgs.values()] == ["cam", "has", "adl", "bas"]
    # their own learning-rate settings, the ones chosen on val (docs/cam_vs_bas.md)
    chosen = {"HaS": (0.03, [1, 2, 0.1, 0.2]), "ADL": (0.003, [1, 2, 1, 2])}
    for name in ("HaS", "ADL"):  # CAM's network and budget; the data and evaluation of all
        assert cfgs[name]["model"] == cfgs["CAM"]["model"]
        assert (cfgs[name]["optim"]["lr"], cfgs[name]["optim"]["lr_mult"]) == chosen[name]
        rest = {k: v for k, v in cfgs[name]["optim"].items() if k not in ("lr", "lr_mult")}
        assert rest == {k: v for k, v in cfgs["CAM"]["optim"].items() if k not in ("lr", "lr_mult")}
        assert cfgs[name]["data"] == cfgs["BAS"]["data"] and cfgs[name]["eval"] == cfgs["BAS"]["eval"]
    assert cfgs["HaS"]["has"] == {"grid_size": 4, "drop_rate": 0.5}
    assert cfgs["ADL"]["adl"] == {"drop_rate": 0.75, "threshold": 0.9}


@pytest.mark.slow
def test_quick_benchmark_of_four_methods(tmp_path, capsys):
    import json

    from bas.checkpoints import read_checkpoint_metadata
    from bas.cli import main

    out = tmp_path / "bench"
    argv = ["benchmark", "synthetic", "--quick", "--methods", "cam,has,adl,bas"]
    assert main([*argv, "--output", str(out), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "CAM, HaS, ADL, BAS x 1 seed(s)" in printed and "BAS - CAM" in printed
    doc = json.loads((out / "results.json").read_text())
    assert list(doc["methods"]) == ["CAM", "HaS", "ADL", "BAS"]
    for run in doc["runs"]:
        assert read_checkpoint_metadata(run["checkpoint"])["method"] == run["method"].lower()
    markdown = (out / "results.md").read_text()
    assert all(f"| {name} |" in markdown for name in ("CAM", "HaS", "ADL", "BAS"))
