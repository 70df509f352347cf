"""`bas wsss demo`: one recipe for both methods, the quick mode end to end, reuse of a finished run."""

import json

import numpy as np
import pytest

from bas.cli import main
from bas.engine.compare import load_benchmark, method_config
from bas.metrics import SegmentationEvaluator
from bas.wsss.demo import EXTRA_KEYS, RECIPE, format_table, split_overrides, targets
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
