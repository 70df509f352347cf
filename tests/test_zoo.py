"""Tests of the model zoo (``bas zoo``, ``bas evaluate --zoo``, docs/zoo.md).

The end-to-end test rebuilds a released family from ``fixtures/checkpoint_keys.json.gz`` with
random weights, except for the layers that decide the outcome: a zero generator (a constant map,
so no pixel passes the threshold and every box is the whole crop) and a classifier whose biases
rank class 0 first and class 1 second. On data whose ground-truth box is the whole image, the
figures are then known by hand: every box is right, the class-0 images are Top-1 right, the
class-1 images only Top-5 right.
"""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest
import torch
from test_cli import HEAVY, run_python

from bas import zoo
from bas.cli import main
from bas.config import load_config
from bas.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[1]
KEYS = json.loads(gzip.decompress((ROOT / "tests" / "fixtures" / "checkpoint_keys.json.gz").read_bytes()))
ZOO = zoo.load_zoo()
WSOL = [e for e in ZOO.entries if e.task == "wsol"]
# The released families of the fixture: the authors' folder name in the file's path.
FAMILY = {"vgg": "vgg16", "resnet": "resnet50", "mobilenet": "mobilenet_v1", "inception": "inception_v3"}


def family_keys(entry: zoo.ZooEntry) -> dict[str, list[int]]:
    """The fixture's keys and shapes of the family an entry's file belongs to."""
    family = Path(entry.authors_path).parent.name
    if entry.paper == "cvpr2022":
        return KEYS["cvpr2022"][f"{entry.dataset}/{family}"]
    return KEYS["ijcv2023"][family]


# ------------------------------------------------------------------------------------ the table


def test_the_table_covers_both_papers_and_every_released_wsol_family():
    names = ZOO.names()
    assert len(names) == len(set(names))
    released = {
        (p, d, a) for p in ("cvpr2022", "ijcv2023") for d in ("CUB", "ILSVRC") for a in FAMILY.values()
    }
    assert {(e.paper, e.dataset, e.arch) for e in WSOL if e.dataset != "OpenImages"} == released
    assert {e.dataset for e in ZOO.entries} == {"CUB", "ILSVRC", "OpenImages", "VOC2012"}


@pytest.mark.parametrize("entry", ZOO.entries, ids=ZOO.names())
def test_entry_recipe_loads_and_protocol_is_known(entry):
    cfg = load_config(entry.recipe)  # exists, and passes the schema
    assert cfg["model"]["arch"] == entry.arch and cfg["model"]["num_classes"] == entry.num_classes
    assert (cfg["method"], cfg["eval"]["top_k"], cfg["eval"]["threshold"]) == (
        entry.method,
        entry.top_k,
        entry.threshold,
    )
    if entry.task == "wsol":
        assert entry.protocol in zoo.protocol_names()
        assert entry.paper in entry.protocol and cfg["model"]["variant"] == entry.paper
        assert set(entry.reported) in ({"top1_loc", "top5_loc", "gt_known_loc"}, {"PxAP", "PIoU"})
    else:
        assert entry.protocol is None and set(entry.reported) <= {"seed_mIoU"}
    assert all(0 < v <= 100 for v in entry.reported.values())
    assert entry.download and all(url.startswith("https://") for url in entry.download)
    assert entry.source in ZOO.sources and Path(entry.authors_path).name == entry.file


@pytest.mark.parametrize("entry", ZOO.entries, ids=ZOO.names())
def test_entry_arch_is_buildable(entry):
    import bas

    assert entry.arch in bas.list_models() and entry.method in bas.list_methods()
    options = {"variant": entry.variant} if entry.method == "bas" else {}
    with torch.device("meta"):  # no memory: the registry builds the model of the recipe
        model = bas.build_model(entry.arch, entry.num_classes, method=entry.method, **options)
    assert model.num_classes == entry.num_classes and model.arch == entry.arch


@pytest.mark.parametrize("entry", [e for e in WSOL if e.dataset != "OpenImages"], ids=lambda e: e.name)
def test_entry_arch_is_the_one_of_the_released_file(entry):
    """The released file's keys and shapes (the fixture) say the architecture the entry names."""
    from bas.checkpoints import infer_arch

    keys = family_keys(entry)
    assert infer_arch({k: torch.empty(shape, device="meta") for k, shape in keys.items()}) == entry.arch
    if entry.paper == "cvpr2022" or entry.dataset == "CUB":  # the IJCV fixture has 200 classes
        assert keys["classifier_loc.0.weight"][0] == entry.num_classes


def test_bad_data_file_is_reported(monkeypatch):
    good = zoo.zoo_text()
    for old, new, message in (
        ("protocol: cvpr2022-code", "protocol: cvpr2022", "unknown protocol 'cvpr2022'"),
        ("source: ijcv2023-zoo", "source: nowhere", "source 'nowhere'"),
        ("{PxAP: 66.86", "{mAP: 66.86", "unknown reported metrics"),
        ("    table: CUB models", "    tabel: CUB models", r"unknown fields \['tabel'\]"),
    ):
        monkeypatch.setattr(zoo, "zoo_text", lambda old=old, new=new: good.replace(old, new, 1))
        zoo.load_zoo.cache_clear()
        with pytest.raises(ConfigError, match=message):
            zoo.load_zoo()
    zoo.load_zoo.cache_clear()


def test_unknown_entry_names_the_closest():
    with pytest.raises(UsageError, match="did you mean cvpr2022-cub-vgg16"):
        ZOO.get("cvpr2022-cub-vgg")


# ---------------------------------------------------------------------------------- bas zoo


def test_bas_zoo_lists_every_entry_without_torch():
    done = run_python(f"import sys\nfrom bas.cli import main\nassert main(['zoo']) == 0\nprint({HEAVY})")
    assert done.returncode == 0, done.stderr
    *table, heavy = done.stdout.strip().splitlines()
    assert heavy == "[]"
    listed = [line.split()[0] for line in table[1:] if line.strip()]
    assert listed[: len(ZOO.entries)] == ZOO.names()
    for entry in ZOO.entries:
        line = next(row for row in table if row.startswith(entry.name + " "))
        assert entry.recipe in line and entry.file in line and entry.arch in line
        assert all(f"{v:.2f}" in line for v in entry.reported.values())


def test_bas_zoo_json_and_one_entry(capsys):
    assert main(["zoo", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in document["entries"]] == ZOO.names()
    first = document["entries"][0]
    assert first["reported"] == ZOO.entries[0].reported and first["top_k"] == ZOO.entries[0].top_k

    entry = ZOO.get("ijcv2023-ilsvrc-resnet50")
    assert main(["zoo", entry.name]) == 0
    shown = capsys.readouterr().out
    for text in (entry.recipe, entry.protocol, entry.file, entry.authors_path, *entry.download, "57.46"):
        assert text in shown
    assert main(["zoo", entry.name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.25
    assert main(["zoo", "nope"]) == 2


def test_docs_zoo_md_is_generated_from_the_data_file(capsys):
    committed = (ROOT / "docs" / "zoo.md").read_text(encoding="utf-8")
    assert committed == zoo.markdown(ZOO), "regenerate it: bas zoo --markdown > docs/zoo.md"
    assert main(["zoo", "--markdown"]) == 0
    assert capsys.readouterr().out == committed
    for entry in ZOO.entries:
        assert f"`{entry.name}`" in committed


# ---------------------------------------------------------------------------- bas evaluate --zoo


def released_file(entry: zoo.ZooEntry, path: Path) -> Path:
    """The entry's released family with random weights, saved as the authors did (see the module doc)."""
    gen = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in family_keys(entry).items():
        if not shape:  # num_batches_tracked
            state[key] = torch.tensor(10)
            continue
        values = torch.rand(shape, generator=gen) * 2 - 1
        state[key] = (
            values.abs() * 0.5 + 0.5 if len(shape) == 1 else values / math.sqrt(math.prod(shape) // shape[0])
        )
    state["classifier_loc.0.weight"].zero_()
    state["classifier_loc.0.bias"].zero_()
    state["classifier_cls.4.weight"].zero_()
    state["classifier_cls.4.bias"].zero_()
    state["classifier_cls.4.bias"][:2] = torch.tensor([10.0, 5.0])  # class 0 first, class 1 second
    on_disk = {"model": state, "best_thr": 0.37, "epoch": 99} if entry.paper == "ijcv2023" else state
    torch.save(on_disk, path, _use_new_zipfile_serialization=False)
    return path


@pytest.fixture(scope="module")
def whole_image_boxes(tmp_path_factory) -> Path:
    """Synthetic CUB-layout data, every ground-truth box the whole image; test split: three
    class-0 images and one class-1 image."""
    from bas.data.synthetic import make_dataset

    root = make_dataset(
        tmp_path_factory.mktemp("zoo") / "data", num_classes=2, images_per_class=4, image_size=64
    )
    ids = [line.split()[0] for line in (root / "images.txt").read_text().splitlines()]
    labels = dict(line.split() for line in (root / "image_class_labels.txt").read_text().splitlines())
    test = [i for i in ids if labels[i] == "1"][:3] + [i for i in ids if labels[i] == "2"][:1]
    (root / "train_test_split.txt").write_text("".join(f"{i} {0 if i in test else 1}\n" for i in ids))
    (root / "bounding_boxes.txt").write_text("".join(f"{i} 0 0 64 64\n" for i in ids))
    return root


@pytest.mark.parametrize(
    "name,expected",
    [
        ("ijcv2023-cub-mobilenet_v1", {"top1_loc": 75.0, "top5_loc": 100.0, "gt_known_loc": 100.0}),
        ("cvpr2022-cub-mobilenet_v1", {"top1_loc": 50.0, "top5_loc": 100.0, "gt_known_loc": 100.0}),
    ],
)
def test_evaluate_zoo_end_to_end(whole_image_boxes, tmp_path, capsys, name, expected):
    entry = ZOO.get(name)
    checkpoint = released_file(entry, tmp_path / entry.file)
    out = tmp_path / "eval"
    args = ["evaluate", "--zoo", name, "--checkpoint", str(checkpoint), "--data-root", str(whole_image_boxes)]
    args += ["--dataset", "cub", "--output", str(out), "--no-progress", "--set", "data.workers=0"]
    args += ["--set", "data.input_size=64", "--set", "data.resize_size=72"]  # small images, fast
    assert main(args) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "metrics.json").read_text())
    # the entry's settings, not the file's best_thr nor the defaults
    assert (result["threshold"], result["top_k"], result["ten_crop"]) == (entry.threshold, entry.top_k, True)
    assert result["test_mode"] == entry.test_mode == "crop" and result["num_images"] == 4
    assert result["protocol"] == entry.protocol  # the preset of the authors' code was applied
    # the figures worked out by hand, in the mean the paper used (class-balanced for the CVPR code)
    rows = {row["key"]: row for row in result["zoo"]["comparison"]}
    assert set(rows) == set(entry.reported)
    for key, value in expected.items():
        assert rows[key]["measured"] == pytest.approx(value)
        assert rows[key]["reported"] == entry.reported[key]
        assert rows[key]["difference"] == pytest.approx(value - entry.reported[key])
        line = next(ln for ln in printed.splitlines() if ln.startswith(zoo.METRICS[key] + " "))
        assert line.split()[-3:] == [
            f"{entry.reported[key]:.2f}",
            f"{value:.2f}",
            f"{value - entry.reported[key]:+.2f}",
        ]
    assert f"protocol {entry.protocol}" in printed


def test_evaluate_zoo_says_where_to_get_a_missing_file(tmp_path, capsys):
    entry = ZOO.get("cvpr2022-ilsvrc-resnet50")
    for given, missing in ((tmp_path / "nope.pth.tar", "nope.pth.tar"), (tmp_path, entry.file)):
        args = ["evaluate", "--zoo", entry.name, "--checkpoint", str(given), "--data-root", str(tmp_path)]
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")
        assert missing in err and entry.file in err and entry.authors_path in err
        assert all(url in err for url in entry.download)
    assert not (tmp_path / "nope.pth.tar_eval").exists()


def test_evaluate_zoo_refuses_segmentation_entries(tmp_path, capsys):
    args = [
        "evaluate",
        "--zoo",
        "ijcv2023-voc-bas-resnet50",
        "--checkpoint",
        "x",
        "--data-root",
        str(tmp_path),
    ]
    assert main(args) == 2
    assert "segmentation entry" in capsys.readouterr().err
