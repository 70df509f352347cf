"""`bas wsss demo`: one recipe for both methods, the quick mode end to end, reuse of a finished run."""

import json

import numpy as np
import pytest

from bas.cli import main
from bas.engine.compare import load_benchmark, method_config
from bas.errors import ConfigError
from bas.metrics import SegmentationEvaluator
from bas.wsss.demo import (
    EXTRA_KEYS,
    RECIPE,
    format_table,
    full_targets,
    refine_args,
    split_overrides,
    targets,
)
from bas.wsss.masks import read_label_png


def _without_paths(cfg):
    cfg = json.loads(json.dumps(cfg))
    cfg["data"]["root"] = cfg["train"]["output_dir"] = None
    return cfg


def test_both_methods_get_the_same_budget(tmp_path):
    bench = load_benchmark(RECIPE, extra_keys=EXTRA_KEYS)
    assert list(bench.methods) == ["CAM", "BAS"]
    bas, cam = (
        _without_paths(method_config(bench, m, seed=3, output=tmp_path, overrides=["data.root=x"]))
        for m in ("BAS", "CAM")
    )
    assert (bas["method"], cam["method"]) == ("multilabel_bas", "multilabel_cam")
    assert bas["train"]["seed"] == cam["train"]["seed"] == 3
    for section in ("data", "model"):
        assert bas[section] == cam[section], section
    same = ("lr", "momentum", "weight_decay", "epochs", "schedule", "power")
    assert {k: bas["optim"][k] for k in same} == {k: cam["optim"][k] for k in same}
    assert cam["cam"]["frozen"] is False  # from scratch: CAM trains every layer, as BAS does


def test_set_reaches_the_data_and_seed_sections():
    bench = load_benchmark(RECIPE, extra_keys=EXTRA_KEYS)
    rest = split_overrides(
        bench, ["synthetic.images_per_split.train=10", "seed_maps.flip=false", "optim.lr=0.1"]
    )
    assert rest == ["optim.lr=0.1"]
    assert bench.extra["synthetic"]["images_per_split"]["train"] == 10
    assert bench.extra["synthetic"]["images_per_split"]["val"] > 0  # merged, not replaced
    assert bench.extra["seed_maps"]["flip"] is False


def test_targets_and_table():
    row = {"threshold": 0.3, "val_miou": 1.0, "fg_precision": 1.0, "fg_recall": 1.0}
    results = {k: {**row, "seed_miou": v} for k, v in (("bas", 56.0), ("cam", 50.0), ("fused", 57.0))}
    assert targets(results)["met"] and targets(results)["bas_minus_cam"] == pytest.approx(6.0)
    assert not targets({**results, "cam": {**row, "seed_miou": 52.0}})["met"]  # margin < 5
    assert not targets({**results, "bas": {**row, "seed_miou": 49.0}, "cam": {**row, "seed_miou": 1.0}})[
        "met"
    ]
    table = format_table(results)
    assert "BAS - CAM" in table and "+6.00" in table and "BAS + CAM" in table


@pytest.mark.slow
def test_quick_demo_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["wsss", "demo", "--quick", "--seed", "1", "--threads", "1", "--output", str(out), "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "numbers mean nothing" in printed
    assert "[CAM] training" in printed and "[BAS] training" in printed
    rows = {line.split("  ")[0].strip() for line in printed.splitlines() if "  " in line}
    assert {"BAS", "CAM", "BAS + CAM", "BAS - CAM"} <= rows

    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["seed"] == 1
    assert set(results["splits"]) == {"train", "val", "test"} and results["splits"]["test"] == 4
    assert results["wall_seconds"] > 0 and results["threads"] == 1
    for key in ("bas", "cam", "fused"):
        r = results[key]
        assert 0.0 <= r["seed_miou"] <= 100.0 and 0.0 < r["threshold"] < 1.0, key
        # the reported mIoU is the test split's, at the threshold chosen on val: recompute it
        seeds = out / "seeds" / "seed1" / key
        evaluation = json.loads((seeds / "test" / "evaluation.json").read_text())
        assert evaluation["chosen_on"] == "select" and evaluation["threshold"] == r["threshold"]
        assert evaluation["miou"] == r["seed_miou"]
    assert results["fused"]["fused_with"].endswith("CAM/seed1/model.safetensors")
    assert results["bas"]["fused_with"] is None
    figure = out / "seeds.png"
    assert figure.is_file() and figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the pseudo-masks of the fixed threshold are the seeds' own files, scored like any prediction
    voc = next((out / "data").iterdir()) / "VOCdevkit" / "VOC2012"
    masks = sorted((out / "seeds" / "seed1" / "bas" / "test" / "masks").glob("*.png"))
    assert len(masks) == 4
    ev = SegmentationEvaluator(num_classes=5)
    for path in masks:
        ev.accumulate(read_label_png(path), read_label_png(voc / "SegmentationClass" / path.name))
    assert np.isfinite(ev.compute()["miou"])

    # a second call reuses both finished runs and the finished seeds, and reports the same numbers
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "[CAM] reusing the finished run" in printed and "[BAS] reusing the finished run" in printed
    again = json.loads((out / "results.json").read_text())
    assert all(run["reused"] for run in again["runs"].values())
    assert {k: again[k]["seed_miou"] for k in ("bas", "cam", "fused")} == {
        k: results[k]["seed_miou"] for k in ("bas", "cam", "fused")
    }

    # another training setting retrains, and the seeds of the old models are not reused
    assert main([*argv, "--device", "cpu", "--set", "optim.lr=0.002"]) == 0
    printed = capsys.readouterr().out
    assert "[BAS] training" in printed and "[CAM] training" in printed
    assert not any(run["reused"] for run in json.loads((out / "results.json").read_text())["runs"].values())


def test_small_backbone_and_unfrozen_cam():
    import torch
    from torch import nn

    from bas.methods import get_method
    from bas.models import build_model

    images = torch.randn(2, 3, 64, 64)
    bas = build_model("resnet18_os16", 3, method="multilabel_bas").eval()
    assert bas.class_maps(images).shape == (2, 3, 4, 4)  # output stride 16
    cam = build_model("resnet18_os16", 3, method="multilabel_cam")
    assert not cam.mid.layer1[0].conv1.weight.requires_grad  # IRN's freezing by default
    cam.train()
    assert not any(m.training for m in cam.modules() if isinstance(m, nn.BatchNorm2d))
    get_method("multilabel_cam").configure(cam, {"cam": {"frozen": False}})
    cam.train()
    assert all(p.requires_grad for p in cam.parameters())
    assert all(m.training for m in cam.modules() if isinstance(m, nn.BatchNorm2d))
    loss = cam(images).logits.sum()
    loss.backward()
    assert cam.mid.conv1.weight.grad is not None  # the stem trains


@pytest.mark.slow
def test_quick_full_chain_reports_every_stage(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["wsss", "demo", "--quick", "--full", "--threads", "1", "--output", str(out), "--no-progress"]
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "refined mIoU" in printed and "segmentation mIoU" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["full"] is True and set(results["full_targets"]) == {"bas", "cam"}
    voc = next((out / "data").iterdir()) / "VOCdevkit" / "VOC2012"
    train_ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    walk_steps = load_benchmark(RECIPE, quick=True, extra_keys=EXTRA_KEYS).extra["refine"]["walk_steps"]
    for key in ("bas", "cam"):
        r = results[key]
        refined = out / "refined" / "seed0" / key
        # the refined stage: IRN trained on the training split, the same network walks val and test
        assert (refined / "train" / "irn.pt").is_file() and not (refined / "test" / "irn.pt").exists()
        walk = json.loads((refined / "test" / "seeds.json").read_text())["refined"]["walk"]
        assert walk["steps"] == walk_steps and walk["radius"] == 5  # the recipe's walk reaches refine
        assert len(list((refined / "train" / "confident").glob("*.png"))) == len(train_ids)
        evaluation = json.loads((refined / "test" / "evaluation.json").read_text())
        assert evaluation["miou"] == r["refined_miou"] and evaluation["chosen_on"] == "select"
        assert evaluation["threshold"] == r["refined_threshold"]
        # the network trains on the training split's refined masks at that threshold
        masks = sorted((out / "pseudo_masks" / "seed0" / key).glob("*.png"))
        assert [m.stem for m in masks] == sorted(train_ids)
        metrics = json.loads((out / "segnet" / "seed0" / key / "metrics.json").read_text())
        assert metrics["results"]["test"]["miou"] == r["segmentation_miou"]
        ft = results["full_targets"][key]
        assert ft["refined_minus_seeds"] == pytest.approx(r["refined_miou"] - r["seed_miou"])
        assert ft["segmentation_minus_refined"] == pytest.approx(r["segmentation_miou"] - r["refined_miou"])
    assert "refined_miou" not in results["fused"]
    # a second call reuses the runs, seeds, IRN and refined maps (the network is trained again)
    assert main([*argv, "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "reusing" in printed and "0 written now" in printed
    again = json.loads((out / "results.json").read_text())
    assert again["bas"]["refined_miou"] == results["bas"]["refined_miou"]


def test_refine_settings_go_through_the_refine_commands_own_parser(tmp_path):
    ckpt = tmp_path / "model.safetensors"
    ckpt.write_bytes(b"")
    irn = tmp_path / "refined" / "train" / "irn.pt"
    args = refine_args(tmp_path, tmp_path / "out", "train", ckpt, {"walk_steps": 8, "lr": 0.05}, irn, "cpu")
    assert (args.walk_steps, args.lr, args.irn, args.backbone_from) == (8, 0.05, None, str(ckpt))
    assert (args.epochs, args.crop_size, args.walk_radius) == (3, 512, None)  # the command's defaults
    irn.parent.mkdir(parents=True)
    irn.write_bytes(b"")
    assert refine_args(tmp_path, tmp_path / "out", "val", ckpt, {}, irn, "cpu").irn == str(irn)
    with pytest.raises(ConfigError, match="walk-stepz"):
        refine_args(tmp_path, tmp_path / "out", "train", ckpt, {"walk_stepz": 8}, irn, "cpu")
    with pytest.raises(ConfigError, match="--walk-steps: must be an integer >= 1"):
        refine_args(tmp_path, tmp_path / "out", "train", ckpt, {"walk_steps": 0}, irn, "cpu")


def test_full_targets_and_table():
    row = {"threshold": 0.3, "val_miou": 1.0, "fg_precision": 1.0, "fg_recall": 1.0}
    results = {
        "bas": {**row, "seed_miou": 50.0, "refined_miou": 54.0, "segmentation_miou": 52.0},
        "cam": {**row, "seed_miou": 45.0, "refined_miou": 47.0, "segmentation_miou": 47.5},
        "fused": {**row, "seed_miou": 51.0},
    }
    t = full_targets(results)
    assert t["bas"]["met"] and not t["cam"]["met"]  # CAM gains only 2 from refinement
    assert not full_targets({**results, "bas": {**results["bas"], "segmentation_miou": 50.5}})["bas"]["met"]
    table = format_table(results)
    assert "refined mIoU" in table and "54.00" in table and "47.50" in table
