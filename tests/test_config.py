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
