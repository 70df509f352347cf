"""Resume: a run killed with SIGKILL part way through an epoch and resumed ends exactly like an
uninterrupted run; a resumed run obeys its config (``--set`` changes are printed and the optimiser is
rebuilt from it) and writes where its checkpoint is; the NaN recovery of docs/training.md works."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import safetensors.torch
import torch
from test_train import STEPS_PER_EPOCH, read_log, tiny_config
from test_wsss_method import TINY_RUN

from bas.cli import main
from bas.config import dump_config, load_config
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.engine.optim import build_optimizer, build_scheduler, rebuild_schedule
from bas.engine.train import BEST, FINAL, LAST, Trainer, train
from bas.methods import get_method
from bas.models import build_model


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


# ----------------------------------------------------------------------------- resume obeys the config


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    return tmp_path_factory.mktemp("data") / "synthetic"


def poison_gradients_while_lr_is_above(monkeypatch, limit: float, from_call: int) -> None:
    """From the ``from_call``-th loss on, while ``optim.lr > limit``: a finite loss whose gradients are
    NaN (``0 * sqrt(0)``), like an overflow in the backward pass."""
    method = get_method("bas")
    real_loss, calls = method.loss, []

    def poisoned(out, labels, cfg):
        total, terms = real_loss(out, labels, cfg)
        calls.append(1)
        if len(calls) >= from_call and cfg["optim"]["lr"] > limit:
            total = total + (terms["cls"] * 0).sqrt() * 0
        return total, terms

    monkeypatch.setattr(method, "loss", poisoned)


def test_nan_stop_then_resume_with_a_lower_lr(tiny_data, tmp_path, monkeypatch, capsys):
    """The documented recovery: a non-finite gradient stops the run before the update with the last
    checkpoint untouched; the run folder, copied elsewhere, resumes from it with a lower lr, which the
    optimiser uses; the run completes in the copy, the original folder is not written."""
    poison_gradients_while_lr_is_above(monkeypatch, 5e-4, from_call=3)
    run = tmp_path / "run"
    recipe = tmp_path / "run.yaml"
    recipe.write_text(dump_config(tiny_config(tiny_data, run, "train.checkpoint_every_steps=1")))
    assert main(["train", "--config", str(recipe), "--no-progress", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: non-finite gradient at step 3 (epoch 1): ")
    assert err[0].endswith(f"stopped before the update, last good checkpoint: {run / LAST}")
    state = torch.load(run / LAST, weights_only=True)
    assert state["step"] == 2 and all(
        v.isfinite().all() for v in state["model"].values() if v.is_floating_point()
    )

    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    args = [
        "train",
        "--resume",
        str(moved / LAST),
        "--set",
        "optim.lr=1e-4",
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "changed on resume: optim.lr 0.001 -> 0.0001" in out
    assert f"changed on resume: train.output_dir {run} -> {moved}" in out
    assert (moved / FINAL).is_file() and not (run / FINAL).exists()
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    final = torch.load(moved / LAST, weights_only=True)
    assert final["epoch"] == 1 and final["config"]["optim"]["lr"] == 1e-4
    for group in final["optimizer"]["param_groups"]:  # the epoch's decay (gamma 0.1) applied to the new lr
        assert group["initial_lr"] == pytest.approx(1e-4 * group["lr_mult"])
        assert group["lr"] == pytest.approx(1e-5 * group["lr_mult"])


def test_resume_rebuilds_the_optimiser_from_the_config(tiny_data, tmp_path, capsys):
    """lr, lr_mult, momentum, weight decay and the schedule of the resumed run are the config's."""
    run = tmp_path / "run"
    train(tiny_config(tiny_data, run, "train.max_steps=2", "eval.every=0"), progress=False, device="cpu")
    changed = ["optim.lr=0.01", "optim.momentum=0.5", "optim.weight_decay=0", "optim.lr_mult=[1, 1, 5, 5]"]
    cfg = tiny_config(tiny_data, run, "eval.every=0", *changed)
    trainer = Trainer(cfg, resume=True, progress=False, device="cpu")
    out = capsys.readouterr().out
    assert "changed on resume: optim.momentum 0.9 -> 0.5" in out and "train.max_steps 2 -> null" in out
    for group, mult in zip(trainer.optimizer.param_groups, [1, 1, 5, 5]):
        assert (group["lr"], group["initial_lr"], group["momentum"], group["weight_decay"]) == (
            0.01 * mult,
            0.01 * mult,
            0.5,
            0,
        )
    assert trainer.scheduler.last_epoch == 0 and trainer.step == 2


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_rebuilt_schedule_matches_an_uninterrupted_one():
    """After e epochs the rebuilt groups hold exactly the lrs of a run with the new config (bitwise),
    and the schedule goes on from there."""
    model = build_model("mobilenet_v1", 3, hidden=8)
    old, new = (
        load_config(None)["optim"],
        load_config(None, ["optim.decay_every=2", "optim.gamma=0.5"])["optim"],
    )
    optimizer = build_optimizer(model, old)
    scheduler = build_scheduler(optimizer, old)
    for _ in range(3):
        scheduler.step()
    rebuilt = rebuild_schedule(optimizer, new, epoch=3, step=30)
    reference = build_optimizer(model, new)
    ref_scheduler = build_scheduler(reference, new)
    for _ in range(3):
        ref_scheduler.step()
    for _ in range(2):
        assert [g["lr"] for g in optimizer.param_groups] == [g["lr"] for g in reference.param_groups]
        rebuilt.step()
        ref_scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.001 * 0.5**2


def test_resume_of_a_missing_checkpoint_names_it(tmp_path, capsys):
    missing = tmp_path / "run" / "last.ckpt"
    assert main(["train", "--resume", str(missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: bas train: argument --resume: no such file: {missing} (see bas train --help)"]
    assert main(["train", "--resume", "--output", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip() == f"error: cannot resume: no checkpoint at {missing}"
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ a model's own generator on resume


def test_resumed_multilabel_bas_draws_the_positives_of_an_uninterrupted_run(tmp_path):
    splits = {"train": 16, "val": 2, "test": 2}
    voc = make_multilabel_dataset(tmp_path / "d", num_classes=4, images_per_split=splits, image_size=64)
    voc = voc / VOC_SUBDIR
    # 4 steps of 4 images (several tags each); the interrupted run stops after step 1, mid-epoch
    settings = [*TINY_RUN, f"data.root={voc}", "data.batch_size=4", "eval.every=0"]

    def trainer(run: str, *more: str, resume: bool = False) -> Trainer:
        cfg = load_config("voc/resnet50", [*settings, f"train.output_dir={tmp_path / run}", *more])
        return Trainer(cfg, resume=resume, progress=False, device="cpu")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer("killed", "train.max_steps=1").fit()
        resumed = trainer("killed", resume=True)
        assert resumed.step == 1
        state = torch.load(tmp_path / "killed" / LAST, weights_only=True)
        assert torch.equal(resumed.model.draws.get_state(), state["generators"]["draws"])
        resumed.fit()
        trainer("reference").fit()
    finally:
        torch.set_num_threads(threads)
    resumed, uninterrupted = (
        safetensors.torch.load_file(str(tmp_path / run / FINAL)) for run in ("killed", "reference")
    )
    assert resumed.keys() == uninterrupted.keys()
    for key, value in uninterrupted.items():
        assert torch.equal(resumed[key], value), key
