"""DistributedDataParallel on the CPU (gloo) through torchrun: 2 processes with batch 2 each, on one
node or on two "nodes" (two torchrun launches with --nnodes/--node_rank/--rdzv_endpoint), end with the
weights of 1 process with batch 4; only rank 0 logs and writes; the logged metrics are global means.

VGG16 (no BatchNorm, whose per-rank batch statistics would differ from the single-process ones).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
from test_train import STEPS_PER_EPOCH, read_log, tiny_config

from bas.config import dump_config
from bas.engine.train import BEST, FINAL, train

SETTINGS = ["model.arch=vgg16", "optim.epochs=1"]
LAUNCH = [sys.executable, "-m", "torch.distributed.run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The data root and the run folder of the single-process run (batch 4)."""
    tmp = tmp_path_factory.mktemp("ddp")
    train(tiny_config(tmp / "data", tmp / "single", *SETTINGS), progress=False, device="cpu")
    return tmp / "data", tmp / "single"


def bas_train(run: Path, data_root: Path) -> list[str]:
    """The ``bas train`` arguments of a 2-process run into ``run``."""
    recipe = run.with_suffix(".yaml")
    recipe.write_text(dump_config(tiny_config(data_root, run, *SETTINGS)))
    return ["-m", "bas.cli", "train", "--config", str(recipe), "--no-progress", "--device", "cpu"]


def launch(*commands: list[str]) -> None:
    """Run the launcher commands side by side and wait for all of them."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out[-3000:]


def assert_same_run(single: Path, ddp: Path) -> None:
    one, two = (safetensors.torch.load_file(str(run / FINAL)) for run in (single, ddp))
    assert one.keys() == two.keys()
    worst = max(float((one[k] - two[k]).abs().max()) for k in one)
    assert worst <= 1e-5, worst
    assert (ddp / BEST).is_file()
    # Rank 0 alone wrote the log (each step once); the losses are averaged over both ranks.
    log_one, log_two = read_log(single), read_log(ddp)
    assert [r["step"] for r in log_two if r["kind"] == "train"] == list(range(1, STEPS_PER_EPOCH + 1))
    assert len(log_two) == len(log_one)
    for a, b in zip(log_one, log_two):
        for key in ("loss", "cls", "fg_cls", "bas", "area"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), (b["kind"], b["step"], key)
    assert log_two[-1]["val_MaxBoxAccV2"] == pytest.approx(log_one[-1]["val_MaxBoxAccV2"])


@pytest.mark.slow
def test_two_processes_match_one_process(reference, tmp_path):
    data_root, single = reference
    ddp = tmp_path / "ddp"
    launch([*LAUNCH, "--nproc_per_node=2", f"--master_port={free_port()}", *bas_train(ddp, data_root)])
    assert_same_run(single, ddp)


@pytest.mark.slow
def test_two_nodes_match_one_process(reference, tmp_path):
    """The multi-node command line of docs/training.md, both "nodes" on this machine."""
    data_root, single = reference
    ddp = tmp_path / "ddp"
    endpoint = f"127.0.0.1:{free_port()}"
    launch(
        *(
            [
                *LAUNCH,
                "--nnodes=2",
                f"--node_rank={rank}",
                "--nproc_per_node=1",
                f"--rdzv_endpoint={endpoint}",
                *bas_train(ddp, data_root),
            ]
            for rank in (0, 1)
        )
    )
    assert_same_run(single, ddp)
