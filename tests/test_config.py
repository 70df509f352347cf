"""Tests of the shipped recipes (every one loads, the §4 table is in them), overrides and ``--print-config``."""

from __future__ import annotations

import pytest
import yaml

from bas.cli import main
from bas.config import config_dir, list_recipes, load_config
from bas.engine.train import validate_config
from bas.errors import ConfigError

# docs/method.md §4, IJCV 2023 table: recipe -> (alpha, beta, top_k, threshold, epochs, decay_every, batch).
IJCV = {
    "cub/vgg16": (0, 0.9, 80, 0.10, 120, 80, 32),
    "cub/resnet50": (0.5, 1.5, 200, 0.10, 120, 80, 32),
    "cub/inception_v3": (0.5, 1.0, 200, 0.10, 120, 80, 32),
    "cub/mobilenet_v1": (0.5, 1.9, 80, 0.10, 120, 80, 32),
    "ilsvrc/vgg16": (0.05, 1.0, 1, 0.45, 9, 3, 256),
    "ilsvrc/resnet50": (1, 2.0, 1, 0.25, 9, 3, 128),
    "ilsvrc/inception_v3": (1, 2.5, 1, 0.25, 9, 3, 128),
    "ilsvrc/mobilenet_v1": (0.5, 1.5, 1, 0.50, 9, 3, 128),
}
# docs/method.md §4, CVPR 2022 paragraph (ILSVRC batch: the CVPR training script's 32 x 4).
CVPR = {
    "cvpr2022/cub/vgg16": (0, 0.7, 80, 0.15, 100, 80, 32),
    "cvpr2022/cub/resnet50": (0.5, 1.2, 200, 0.15, 100, 80, 32),
    "cvpr2022/cub/mobilenet_v1": (0.5, 1.5, 200, 0.15, 100, 80, 32),
    "cvpr2022/cub/inception_v3": (0.5, 1.0, 200, 0.10, 100, 80, 32),
    "cvpr2022/ilsvrc/vgg16": (0.05, 1, 1, 0.5, 9, 3, 128),
    "cvpr2022/ilsvrc/resnet50": (1, 2, 1, 0.45, 9, 3, 128),
    "cvpr2022/ilsvrc/mobilenet_v1": (0.5, 1.5, 1, 0.5, 9, 3, 128),
    "cvpr2022/ilsvrc/inception_v3": (1, 2.5, 1, 0.3, 9, 3, 128),
}
SHIPPED_FILES = sorted(
    str(p.relative_to(config_dir()))
    for p in config_dir().rglob("*.yaml")
    if p.relative_to(config_dir()).parts[0] != "benchmark"
)


@pytest.mark.parametrize("name", SHIPPED_FILES)
def test_every_shipped_recipe_loads_and_validates(name):
    """Each file (``_base`` partials included) resolves over the defaults with no unknown key and valid values."""
    cfg = load_config(config_dir() / name)
    validate_config(cfg)


def test_recipe_list():
    recipes = set(list_recipes())
    assert set(IJCV) | set(CVPR) | {"openimages/resnet50", "folder", "demo"} <= recipes
    assert not any(name.rsplit("/", 1)[-1].startswith("_") for name in recipes)  # partials are not listed


@pytest.mark.parametrize("name, row", [*IJCV.items(), *CVPR.items()])
def test_paper_hyper_parameters(name, row):
    cfg = load_config(name)
    alpha, beta, top_k, threshold, epochs, decay, batch = row
    dataset, arch = name.split("/")[-2:]
    assert cfg["model"]["arch"] == arch
    assert cfg["model"]["variant"] == ("cvpr2022" if name.startswith("cvpr2022/") else "ijcv2023")
    assert cfg["model"]["pretrained"] is True
    assert (cfg["loss"]["alpha"], cfg["loss"]["beta"]) == (alpha, beta)
    assert (cfg["eval"]["top_k"], cfg["eval"]["threshold"]) == (top_k, threshold)
    assert (cfg["optim"]["epochs"], cfg["optim"]["decay_every"], cfg["optim"]["gamma"]) == (
        epochs,
        decay,
        0.1,
    )
    assert cfg["data"]["batch_size"] == batch
    assert cfg["train"]["seed"] == {"cub": 6, "ilsvrc": 2}[dataset]
    assert cfg["model"]["num_classes"] == {"cub": 200, "ilsvrc": 1000}[dataset]
    optim = cfg["optim"]
    assert (optim["lr"], optim["momentum"], optim["nesterov"], optim["weight_decay"], optim["lr_mult"]) == (
        0.001,
        0.9,
        True,
        0.0005,
        [1, 2, 10, 20],
    )
    assert (cfg["data"]["input_size"], cfg["data"]["resize_size"]) == (224, 256)
    assert cfg["data"]["dataset"] == "wsol" and cfg["data"]["options"]["metadata"].endswith(dataset.upper())
    assert cfg["data"]["val_split"] == "val" and cfg["data"]["test_split"] == "test"


def test_openimages_recipe():
    cfg = load_config("openimages/resnet50")
    assert (cfg["model"]["arch"], cfg["loss"]["alpha"], cfg["loss"]["beta"], cfg["eval"]["top_k"]) == (
        "resnet50",
        0.5,
        1.5,
        1,
    )
    assert (cfg["optim"]["epochs"], cfg["optim"]["decay_every"], cfg["data"]["batch_size"]) == (50, 20, 64)
    assert cfg["eval"]["select_metric"] == "PxAP" and cfg["model"]["pretrained"] is True


def test_overrides_and_user_recipe_on_a_shipped_base(tmp_path):
    """``--set`` values win; a user file can build on a shipped recipe and swap the data source."""
    mine = tmp_path / "mine.yaml"
    mine.write_text("base: cub/resnet50\ndata: {dataset: cub, root: CUB_200_2011, options: null}\n")
    cfg = load_config(mine, ["optim.lr=0.01", "data.options.val_per_class=5", "eval.iou_thresholds=[50]"])
    assert cfg["loss"]["beta"] == 1.5 and cfg["train"]["seed"] == 6
    assert cfg["data"]["dataset"] == "cub" and cfg["data"]["options"] == {"val_per_class": 5}
    assert cfg["optim"]["lr"] == 0.01 and cfg["eval"]["iou_thresholds"] == [50]
    with pytest.raises(ConfigError, match="unknown config key 'optim.learning_rate'"):
        load_config("cub/resnet50", ["optim.learning_rate=0.1"])
    typo = tmp_path / "typo.yaml"
    typo.write_text("base: cub/vgg16\nloss: {gamma: 1}\n")
    with pytest.raises(ConfigError, match="unknown config key 'loss.gamma'"):
        load_config(typo)


def test_print_config_shows_the_resolved_config(capsys):
    assert (
        main(
            [
                "train",
                "--config",
                "ilsvrc/vgg16",
                "--set",
                "optim.epochs=3",
                "--data-root",
                "/data/ilsvrc",
                "--print-config",
            ]
        )
        == 0
    )
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_config("ilsvrc/vgg16", ["optim.epochs=3", "data.root=/data/ilsvrc"])
    assert printed == expected and printed["data"]["batch_size"] == 256


# ----------------------------------------------------------------------------- the schema


def test_every_key_has_a_schema_entry():
    """The core schema and default.yaml list the same keys; every method key is in the defaults."""
    from bas.methods import list_methods
    from bas.schema import CORE, flatten, schema

    defaults = flatten(load_config(None), stop=frozenset({"data.options"}))
    assert set(schema()) == set(defaults)
    with open(config_dir() / "default.yaml") as fh:
        core = flatten(yaml.safe_load(fh), stop=frozenset({"data.options"}))
    assert set(core) - set(CORE) <= {k for m in list_methods() for k in schema(m)} - set(CORE)


@pytest.mark.parametrize(
    "text, value", [("1e-3", 1e-3), ("5E-4", 5e-4), (".5", 0.5), ("1.5e+2", 150.0), ("2", 2), ("1_000", 1000)]
)
def test_yaml_1_2_numbers(tmp_path, text, value):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"optim:\n  lr: {text}\n")
    assert load_config(recipe)["optim"]["lr"] == value
    assert load_config(None, [f"optim.lr={text}"])["optim"]["lr"] == value
    assert type(load_config(recipe)["optim"]["lr"]) is type(value)


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=0.1", "unknown config key 'optim.lrr'; did you mean 'optim.lr'"),
        ("method=bass", "got 'bass'; did you mean 'bas'?"),
        ("optim.lr=abc", "optim.lr must be a finite number, got 'abc'"),
        ("optim.lr=0", "optim.lr must be > 0, got 0"),
        ("eval.threshold=1.5", "eval.threshold must be in [0, 1], got 1.5"),
        ("data.batch_size=0", "data.batch_size must be >= 1, got 0"),
        ("data.batch_size=2.5", "data.batch_size must be an integer, got 2.5"),
        ("optim.lr_mult=[1, 2, 10, -1]", "optim.lr_mult item 3 must be > 0, got -1"),
        ("optim.nesterov=maybe", "optim.nesterov must be true or false, got 'maybe'"),
        ("optim=3", "optim must be a mapping, got 3"),
        ("model.arch=resnet5", "did you mean 'resnet50'"),
        (
            "data.options.val_per_clas=2",
            "unknown option data.options.val_per_clas for the 'synthetic' dataset",
        ),
        ("data.options.load_masks=3", "data.options.load_masks must be true or false, got 3"),
        ("model.hidden=null", "model.hidden must not be null"),
        ("train.max_steps=0", "train.max_steps must be >= 1, got 0"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert message in str(info.value) and "\n" not in str(info.value)


def test_method_keys_follow_the_method():
    """``model.hidden`` may be null for CAM (plain CAM), not for BAS."""
    assert load_config(None, ["method=cam", "model.hidden=null"])["model"]["hidden"] is None
    with pytest.raises(ConfigError, match="model.hidden must not be null"):
        load_config(None, ["model.hidden=null"])


def test_recipe_errors_name_file_and_line(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("base: cub/resnet50\noptim:\n  lr: 1e-3\n  momentum: 2\n")
    with pytest.raises(ConfigError, match=rf"^{recipe}:4: optim.momentum must be in \[0, 1\], got 2$"):
        load_config(recipe)
    recipe.write_text("eval:\n  top_k: 5\n  threshhold: 0.2\n")
    with pytest.raises(
        ConfigError,
        match=rf"^{recipe}:3: unknown config key 'eval.threshhold'; did you mean 'eval.threshold'",
    ):
        load_config(recipe)
    recipe.write_text("data:\n  options: {val_per_class: -1}\n")
    with pytest.raises(ConfigError, match=rf"^{recipe}:2: data.options.val_per_class must be >= 0"):
        load_config(recipe)
    # an override of the bad key replaces the recipe's line, and names no file
    with pytest.raises(ConfigError, match=r"^data.options.val_per_class must be >= 0, got -2"):
        load_config(recipe, ["data.options.val_per_class=-2"])


# ----------------------------------------------------------------------------- property-based

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from bas.schema import check_config  # noqa: E402

SECTIONS = ["method", "model", "data", "loss", "optim", "eval", "train", "optim.lr", "data.options", "x"]
SCALARS = st.sampled_from(
    [
        "1e-3",
        ".5",
        "-1",
        "0",
        "null",
        "true",
        "abc",
        "[1, 2]",
        "{a: 1}",
        ".nan",
        "0b_",
        "1:30",
        "~",
        "'",
        "[",
        "",
    ]
)


@st.composite
def yaml_like(draw) -> str:
    """Text that is often a near-valid recipe: nested keys of the real sections with odd values."""
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        key = draw(st.sampled_from(SECTIONS + ["lr", "batch_size", "val_per_class", "base"]))
        indent = "  " * draw(st.integers(0, 2))
        value = draw(st.one_of(SCALARS, st.text(max_size=8)))
        lines.append(f"{indent}{key}: {value}")
    return "\n".join(lines)


@settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(st.text(max_size=60), yaml_like()))
def test_any_yaml_gives_a_config_or_a_config_error(tmp_path, text):
    recipe = tmp_path / "any.yaml"
    recipe.write_text(text, encoding="utf-8")
    try:
        cfg = load_config(recipe)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        check_config(cfg)


@settings(max_examples=100, deadline=2000)
@given(
    key=st.one_of(st.text(max_size=20), st.sampled_from(["optim.lr", "data.options.seed", "method", "eval"])),
    value=st.one_of(st.text(max_size=20), SCALARS),
)
def test_any_override_gives_a_config_or_a_config_error(key, value):
    try:
        cfg = load_config(None, [f"{key}={value}"])
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)
    else:
        check_config(cfg)
