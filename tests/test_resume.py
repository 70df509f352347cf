"""A run killed with SIGKILL part way through an epoch and resumed ends exactly like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
from test_train import STEPS_PER_EPOCH, read_log, tiny_config

from bas.cli import main
from bas.config import dump_config
from bas.engine.train import BEST, FINAL, LAST


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_is_exact(tmp_path):
    data_root = tmp_path / "data"
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    # 2 epochs of 4 steps, lr decay after epoch 1, validation every epoch, a checkpoint every step.
    # The killed run loads with 2 workers, the reference in the main process: the sampler design
    # makes the data identical either way.
    settings = ["optim.epochs=2", "train.checkpoint_every_steps=1"]
    recipe = tmp_path / "run.yaml"
    recipe.write_text(dump_config(tiny_config(data_root, killed, *settings, "data.workers=2")))

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bas.cli",
            "train",
            "--config",
            str(recipe),
            "--no-progress",
            "--device",
            "cpu",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # its own process group: the loader workers die with it
    try:
        deadline = time.monotonic() + 120
        while not (killed / LAST).exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint after 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = torch.load(killed / LAST, weights_only=True)
    assert 0 < state["extra"]["batch_in_epoch"] < STEPS_PER_EPOCH and state["epoch"] == 0  # killed mid-epoch
    assert not (killed / FINAL).exists()

    # Resume from the checkpoint alone: the run's config.yaml supplies the config.
    assert main(["train", "--resume", str(killed / LAST), "--no-progress", "--device", "cpu"]) == 0
    assert (
        main(
            [
                "train",
                "--config",
                str(recipe),
                "--output",
                str(reference),
                "--set",
                "data.workers=0",
                "--no-progress",
                "--device",
                "cpu",
            ]
        )
        == 0
    )

    for name in (FINAL, BEST):
        resumed, uninterrupted = (safetensors.torch.load_file(str(run / name)) for run in (killed, reference))
        assert resumed.keys() == uninterrupted.keys()
        for key, value in uninterrupted.items():
            assert torch.equal(resumed[key], value), f"{name}: {key}"
    # The log holds each step once: records after the checkpoint were dropped and written again.
    log = read_log(killed)
    assert [r["step"] for r in log if r["kind"] == "train"] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [1, 2]
    assert [r["val_MaxBoxAccV2"] for r in log if r["kind"] == "epoch"] == [
        r["val_MaxBoxAccV2"] for r in read_log(reference) if r["kind"] == "epoch"
    ]
