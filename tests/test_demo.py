"""`bas demo`: one recipe with the benchmark, a tiny end-to-end run (with --compare), outputs that say
what was evaluated."""

import json

import pytest
import yaml

from bas.cli import main
from bas.config import load_config
from bas.engine.compare import load_benchmark, method_config


def _without_paths(cfg):
    cfg = json.loads(json.dumps(cfg))
    cfg["data"]["root"] = cfg["train"]["output_dir"] = cfg["train"]["seed"] = None
    return cfg


def test_demo_and_benchmark_read_one_recipe(tmp_path):
    recipe = load_config("demo")
    bench = load_benchmark("synthetic")
    assert bench.recipe == "demo"
    bas = method_config(bench, "BAS", seed=2, output=tmp_path)
    assert _without_paths(bas) == _without_paths(recipe)
    # CAM changes the method, its head and its learning-rate multipliers, nothing else
    cam = _without_paths(method_config(bench, "CAM", seed=2, output=tmp_path))
    assert (cam.pop("method"), cam["model"].pop("hidden"), cam["optim"].pop("lr_mult")) == (
        "cam",
        None,
        [1, 2, 1, 2],
    )
    ref = _without_paths(recipe)
    del ref["method"], ref["model"]["hidden"], ref["optim"]["lr_mult"]
    assert cam == ref


@pytest.mark.slow
def test_demo_quick_compare_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--compare", "--seed", "1", "--threads", "1", "--output", str(out)]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    results = out / "results"
    # the table: both methods, their difference and the whole-image baseline
    rows = {line.split("  ")[0].strip(): line for line in printed.splitlines() if "  " in line}
    assert {"CAM", "BAS", "BAS - CAM", "whole-image box"} <= set(rows)
    # the evaluated checkpoint (the epoch best on val, as the benchmark) is named, and told apart from
    # the final model
    final, best = out / "run" / "model.safetensors", out / "run" / "best.safetensors"
    assert f"evaluated checkpoint: {best} (epoch 1, val MaxBoxAccV2 " in printed
    assert f"not evaluated: {final} (epoch 1, val MaxBoxAccV2 " in printed and "the final model" in printed
    assert "wall time" in printed and "CPU time" in printed and "1 torch thread(s)" in printed

    metrics = json.loads((results / "metrics.json").read_text())
    for key in ("gt_known_loc", "top1_loc", "top5_loc", "top1_cls", "MaxBoxAccV2", "PxAP"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["selected_on"]["split"] == "val"
    assert metrics["threshold"] == metrics["selected_on"]["threshold"]
    choice = metrics["checkpoint_choice"]
    assert metrics["checkpoint"] == str(best) == choice["path"] == choice["trainer_best"]["path"]
    assert choice["final"]["path"] == str(final) and choice["epoch"] == choice["final"]["epoch"] == 1
    assert metrics["seed"] == 1 and metrics["threads"] == 1
    assert 0.0 <= metrics["whole_image"]["MaxBoxAccV2"] <= 100.0
    assert f"{metrics['whole_image']['MaxBoxAccV2']:.2f}" in rows["whole-image box"]
    assert yaml.safe_load((out / "run" / "config.yaml").read_text())["train"]["seed"] == 1

    compared = json.loads((results / "compare.json").read_text())
    assert set(compared["methods"]) == {"CAM", "BAS"}
    assert compared["methods"]["BAS"]["MaxBoxAccV2"] == metrics["MaxBoxAccV2"]
    cam = json.loads((out / "run_cam" / "test_metrics.json").read_text())
    assert compared["methods"]["CAM"]["MaxBoxAccV2"] == cam["MaxBoxAccV2"]
    assert compared["BAS - CAM"]["MaxBoxAccV2"] == metrics["MaxBoxAccV2"] - cam["MaxBoxAccV2"]
    assert yaml.safe_load((out / "run_cam" / "config.yaml").read_text())["method"] == "cam"
    for name in ("comparison.png", "qualitative.png"):
        assert (results / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the evaluate command on the demo's checkpoint reproduces the demo's numbers
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(best),
            "--data",
            str(out / "data"),
            "--select-on",
            "val",
            "--output",
            str(tmp_path / "eval"),
            "--no-progress",
            "--workers",
            "0",
        ]
    )
    assert code == 0
    again = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert again["gt_known_loc"] == metrics["gt_known_loc"] and again["MaxBoxAccV2"] == metrics["MaxBoxAccV2"]
    assert (tmp_path / "eval" / "curve.csv").read_text().startswith("threshold,gt_known_loc,top1_loc")

    # a second demo reuses the finished BAS run
    assert main(["demo", "--quick", "--seed", "1", "--output", str(out), "--no-progress"]) == 0
    assert f"[BAS] reusing the finished run in {out / 'run'}" in capsys.readouterr().out


def test_evaluate_reports_missing_checkpoint(tmp_path, capsys):
    assert (
        main(["evaluate", "--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path)]) == 2
    )
    assert "nope.safetensors" in capsys.readouterr().err
