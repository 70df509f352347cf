"""Tests of ``bas benchmark`` (bas.engine.compare): configs, aggregation, the quick run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bas.checkpoints import read_checkpoint_metadata
from bas.cli import main
from bas.engine.compare import (
    RunResult,
    format_table,
    load_benchmark,
    method_config,
    run_metrics,
    summarize,
    whole_image_boxacc,
)
from bas.errors import ConfigError


def fake_run(method: str, seed: int, maxbox: float, gt_known: float = 50.0) -> RunResult:
    result = {
        "top1_cls": 90.0,
        "gt_known_loc": gt_known,
        "top1_loc": gt_known - 5,
        "MaxBoxAccV2": maxbox,
        "MaxBoxAcc": {30: maxbox + 10, 50: maxbox, 70: maxbox - 10},
        "threshold": 0.25,
    }
    return RunResult(method, seed, Path("."), Path("x"), result, 1.0, 1.0, 1.0, False)


def test_summary_is_mean_and_sample_std_over_seeds():
    runs = [fake_run("CAM", s, v) for s, v in enumerate((30.0, 40.0, 50.0))]
    runs += [fake_run("BAS", s, v, gt_known=80.0) for s, v in enumerate((60.0, 62.0, 64.0))]
    summary = summarize(runs)
    assert list(summary) == ["CAM", "BAS"]
    assert summary["CAM"]["MaxBoxAccV2"] == {"mean": 40.0, "std": 10.0, "values": [30.0, 40.0, 50.0]}
    assert summary["BAS"]["MaxBoxAccV2"]["std"] == pytest.approx(2.0)
    assert summary["CAM"]["MaxBoxAcc@70"]["mean"] == 30.0
    assert summary["BAS"]["seeds"] == [0, 1, 2]
    text = format_table(summary)
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["method", "Top-1"]
    assert "40.00 ± 10.00" in lines[1] and lines[1].startswith("CAM")
    assert lines[3].startswith("BAS - CAM") and lines[3].split()[-1] == "+22.00"
    assert lines[3].split()[-3] == "+30.00"  # GT-known Loc: 80 - 50
    md = format_table(summary, markdown=True).splitlines()
    assert md[0] == "| method | Top-1 Cls | GT-known Loc | Top-1 Loc | MaxBoxAccV2 |"
    assert md[2] == "| CAM | 90.00 ± 0.00 | 50.00 ± 0.00 | 45.00 ± 0.00 | 40.00 ± 10.00 |"


def test_a_single_seed_has_zero_std():
    summary = summarize([fake_run("CAM", 0, 33.0)])
    assert summary["CAM"]["MaxBoxAccV2"] == {"mean": 33.0, "std": 0.0, "values": [33.0]}
    assert "BAS - CAM" not in format_table(summary)


def test_a_single_seed_table_shows_plain_values_and_the_whole_image_row():
    summary = summarize([fake_run("CAM", 0, 33.0), fake_run("BAS", 0, 61.5)])
    lines = format_table(summary, whole_image=37.5).splitlines()
    assert lines[1].split() == ["CAM", "90.00", "50.00", "45.00", "33.00"]
    assert lines[3].split()[-1] == "+28.50"
    assert lines[4].split() == ["whole-image", "box", "-", "-", "-", "37.50"]
    md = format_table(summary, markdown=True, whole_image=37.5).splitlines()
    assert md[-1] == "| whole-image box | - | - | - | 37.50 |"


def test_whole_image_baseline_on_hand_made_boxes():
    # 10 x 10 images (inclusive corners 0..9): the whole-image box against a full, a half, a quarter
    # and a 70% box: IoU 1, 0.5, 0.25, 0.7
    gt = [
        np.array([[0, 0, 9, 9]]),
        np.array([[0, 0, 4, 9]]),
        np.array([[5, 5, 9, 9]]),
        np.array([[0, 0, 6, 9]]),
    ]
    out = whole_image_boxacc(gt, [(10, 10)] * 4)
    assert out["MaxBoxAcc"] == {0.3: 75.0, 0.5: 75.0, 0.7: 50.0}
    assert out["MaxBoxAccV2"] == pytest.approx(200 / 3)
    # the best of an image's boxes counts; the image's own size matters (20 x 10: IoU 0.5)
    out = whole_image_boxacc(
        [np.array([[0, 0, 1, 1], [5, 5, 9, 9]]), np.array([[0, 0, 9, 9]])], [(10, 10), (10, 20)]
    )
    assert out["MaxBoxAcc"] == {0.3: 50.0, 0.5: 50.0, 0.7: 0.0}


def test_run_metrics_keeps_masks_metrics_when_present():
    result = fake_run("CAM", 0, 40.0).result | {"PxAP": 55.0}
    assert run_metrics(result)["PxAP"] == 55.0
    assert "PxAP" not in run_metrics(fake_run("CAM", 0, 40.0).result)


def test_method_configs_share_everything_but_the_method(tmp_path):
    bench = load_benchmark("synthetic")
    assert list(bench.methods) == ["CAM", "BAS"] and bench.seeds == 3
    cam = method_config(bench, "CAM", seed=1, output=tmp_path, overrides=["model.arch=resnet34"])
    bas = method_config(bench, "BAS", seed=1, output=tmp_path, overrides=["model.arch=resnet34"])
    assert (cam["method"], bas["method"]) == ("cam", "bas")
    assert cam["model"]["hidden"] is None
    assert cam["model"]["arch"] == bas["model"]["arch"] == "resnet34"
    for section in ("data", "eval"):
        assert cam[section] == bas[section]
    for key in ("lr", "epochs", "decay_every", "momentum", "weight_decay"):
        assert cam["optim"][key] == bas["optim"][key]
    assert cam["data"]["root"].startswith(str(tmp_path / "data" / "synthetic-"))
    assert cam["train"]["seed"] == bas["train"]["seed"] == 1
    assert cam["train"]["output_dir"] == str(tmp_path / "runs" / "CAM" / "seed1")
    with pytest.raises(ConfigError, match="unknown config key"):
        method_config(bench, "CAM", seed=0, output=tmp_path, overrides=["optim.lrr=1"])


def test_quick_overrides_apply_before_the_methods(tmp_path):
    bench = load_benchmark("synthetic", quick=True)
    assert bench.seeds == 1
    cam = method_config(bench, "CAM", seed=0, output=tmp_path)
    bas = method_config(bench, "BAS", seed=0, output=tmp_path)
    assert cam["data"]["input_size"] == bas["data"]["input_size"] == 48
    assert cam["model"]["hidden"] is None and bas["model"]["hidden"] == 16
    assert (
        cam["data"]["root"]
        == bas["data"]["root"]
        != method_config(load_benchmark("synthetic"), "CAM", seed=0, output=tmp_path)["data"]["root"]
    )


def test_bad_benchmark_files_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seeds: 1\nmethod: {}\n")
    with pytest.raises(ConfigError, match="unknown benchmark keys"):
        load_benchmark(bad)
    bad.write_text("seeds: 1\nmethods: {}\n")
    with pytest.raises(ConfigError, match="methods"):
        load_benchmark(bad)
    assert main(["benchmark", str(tmp_path / "missing.yaml"), "--quick"]) == 2


@pytest.mark.slow
def test_quick_benchmark_end_to_end(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["benchmark", "synthetic", "--quick", "--output", str(out), "--device", "cpu", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "BAS - CAM" in printed and "MaxBoxAccV2" in printed and "whole-image box" in printed

    doc = json.loads((out / "results.json").read_text())
    assert list(doc["methods"]) == ["CAM", "BAS"]
    assert 0.0 <= doc["whole_image"]["MaxBoxAccV2"] <= 100.0 and set(doc["whole_image"]["MaxBoxAcc"]) == {
        "0.3",
        "0.5",
        "0.7",
    }
    assert doc["cpu_seconds"] > 0 and doc["threads"] >= 1
    for entry in doc["methods"].values():
        assert entry["seeds"] == [0]
        for key in ("gt_known_loc", "top1_loc", "MaxBoxAccV2"):
            assert 0.0 <= entry[key]["mean"] <= 100.0 and entry[key]["std"] == 0.0
    # the table reports exactly what each run's test evaluation measured
    for run in doc["runs"]:
        measured = json.loads((Path(run["checkpoint"]).parent / "test_metrics.json").read_text())
        assert measured["split"] == "test" and measured["selected_on"]["split"] == "val"
        assert doc["methods"][run["method"]]["MaxBoxAccV2"]["mean"] == pytest.approx(measured["MaxBoxAccV2"])
        assert read_checkpoint_metadata(run["checkpoint"])["method"] == run["method"].lower()
    cam, bas = doc["configs"]["CAM"], doc["configs"]["BAS"]
    assert cam["data"] == bas["data"] and cam["optim"]["epochs"] == bas["optim"]["epochs"]

    markdown = (out / "results.md").read_text()
    assert "| method | Top-1 Cls | GT-known Loc | Top-1 Loc | MaxBoxAccV2 |" in markdown
    assert "| CAM |" in markdown and "| BAS |" in markdown
    assert f"| whole-image box | - | - | - | {doc['whole_image']['MaxBoxAccV2']:.2f} |" in markdown
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # a second call reuses the finished runs and gives the same numbers
    assert main(argv) == 0
    again = json.loads((out / "results.json").read_text())
    assert all(run["reused"] and run["train_seconds"] == 0 for run in again["runs"])
    assert again["methods"] == doc["methods"]
