"""The benchmark scripts run and check what they claim (tiny sizes; the figures come from full runs).

Every script's ``--quick`` is a smoke run: it says so and gives no verdict.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
SMOKE = "smoke run: not a measurement"


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
    assert SMOKE not in out


def test_every_benchmark_script_is_smoke_tested():
    scripts = {p.stem for p in BENCHMARKS.glob("*.py")} - {"__init__"}
    assert scripts == set(QUICK_SCRIPTS)


QUICK_SCRIPTS = ["cli_startup", "evaluate_maps", "predict", "throughput", "train_step", "wsss_seeds"]


@pytest.mark.parametrize("name", QUICK_SCRIPTS)
def test_quick_is_a_smoke_run_without_verdict(name):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / f"{name}.py"), "--quick"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == SMOKE
    assert not any(word in done.stdout for word in ("NOT met", "-> met", "target:"))
    # Each takes 5-30 s of CPU on an idle 2-core machine. CPU time, unlike wall time, hardly depends
    # on what else the machine runs; the bound catches a --quick that is not quick.
    assert cpu < 150, f"{name} --quick used {cpu:.0f} s of CPU"
