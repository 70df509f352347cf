"""A tiny end-to-end run: generate, train, choose the threshold on val, evaluate on test, write outputs."""

import json

import pytest

from bas.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--output", str(out), "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "GT-known Loc" in printed and "Top-1 Loc" in printed and str(out / "results") in printed
    metrics = json.loads((out / "results" / "metrics.json").read_text())
    for key in ("gt_known_loc", "top1_loc", "top5_loc", "top1_cls", "MaxBoxAccV2", "PxAP"):
        assert 0.0 <= metrics[key] <= 100.0, key
    assert metrics["selected_on"]["split"] == "val"
    assert metrics["threshold"] == metrics["selected_on"]["threshold"]
    assert (out / "results" / "qualitative.png").stat().st_size > 0
    assert (out / "run" / "best.safetensors").is_file() and (out / "run" / "config.yaml").is_file()
    assert metrics["checkpoint"].endswith("model.safetensors")

    # the evaluate command on the demo's checkpoint reproduces the demo's numbers
    code = main(
        [
            "evaluate",
            "--checkpoint",
            str(out / "run" / "model.safetensors"),
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


def test_evaluate_reports_missing_checkpoint(tmp_path, capsys):
    assert (
        main(["evaluate", "--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path)]) == 2
    )
    assert "nope.safetensors" in capsys.readouterr().err
