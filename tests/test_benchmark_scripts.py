"""The benchmark scripts run and check what they claim (tiny sizes; the figures come from full runs)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_maps_benchmark_agrees_with_the_reference(capsys):
    status = load("evaluate_maps").main(["--maps", "70", "--reference-maps", "6", "--workers", "2"])
    out = capsys.readouterr().out
    assert status == 0
    assert "agree on the 6 maps: yes" in out
    assert "speed-up per process" in out
