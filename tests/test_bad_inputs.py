"""Every user mistake ends in one line: the ``bas`` command run on bad inputs, case by case.

Each :class:`Case` of :data:`CASES` builds its inputs in a fresh folder and returns the command's
arguments; :func:`test_bad_input` runs ``bas.cli.main(argv)`` in-process and asserts exit status 2,
exactly one ``error:`` line on stderr that names the file, no traceback, and no file of the folder
written or changed. To add a case, write a ``make`` function and append a :class:`Case`. Cases that
need a signal run in a subprocess (:func:`test_sigint_during_a_checkpoint_save`).

``bas predict`` reports unreadable images one line each and goes on with the rest
(:func:`test_predict_reports_bad_images_and_goes_on`); ``bas data check`` lists them as problems
(:func:`test_data_check_decodes_every_image`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.engine.data import guarded_loader
from bas.errors import DataError
from bas.models import build_model

SRC = Path(bas.__file__).resolve().parents[1]  # the package under test, for subprocesses


@dataclass
class Env:
    """What a case's ``make`` gets: its own folder, pytest's monkeypatch, and shared inputs."""

    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    checkpoint: Path  # a valid tiny model (outside ``tmp``, never changed)
    dataset: Path  # a valid tiny CUB-style dataset (copy it before changing it)

    def copy_dataset(self) -> Path:
        return Path(shutil.copytree(self.dataset, self.tmp / "data"))

    def image(self, name: str = "photo.png") -> Path:
        path = self.tmp / name
        Image.fromarray(np.full((40, 50, 3), 120, dtype=np.uint8)).save(path)
        return path


@dataclass(frozen=True)
class Case:
    """One bad input: ``make(env)`` builds it and returns the ``bas`` arguments; the error line must
    contain ``names`` (the file). ``before`` says what the command did before it was hardened."""

    id: str
    make: Callable[[Env], list[str]]
    names: str
    before: str = ""


# ----------------------------------------------------------------------------- shared inputs


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, build_model("mobilenet_v1", 2, hidden=8), input_size=32, resize_size=36)
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from bas.data.synthetic import make_dataset

    return make_dataset(
        tmp_path_factory.mktemp("data") / "cub", num_classes=2, images_per_class=2, image_size=40, seed=0
    )


def every_image(root: Path) -> list[Path]:
    """The dataset's photos (JPEG; its masks are PNG)."""
    return sorted(root.rglob("*.jpg"))


def evaluate_args(env: Env, data: Path, workers: int = 0) -> list[str]:
    return [
        "evaluate",
        "--checkpoint",
        str(env.checkpoint),
        "--data",
        str(data),
        "--dataset",
        "cub",
        "--output",
        str(env.tmp / "eval"),
        "--workers",
        str(workers),
        "--no-progress",
        "--device",
        "cpu",
    ]


# ----------------------------------------------------------------------------- cases: checkpoints


def missing_checkpoint(env: Env) -> list[str]:
    return ["predict", "--checkpoint", str(env.tmp / "missing.safetensors"), str(env.image())]


def garbage_safetensors(env: Env) -> list[str]:
    path = env.tmp / "garbage.safetensors"
    header = b'{"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "x": '
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    return ["predict", "--checkpoint", str(path), "--no-progress", str(env.image())]


def truncated_safetensors(env: Env) -> list[str]:
    path = env.tmp / "cut.safetensors"
    path.write_bytes(env.checkpoint.read_bytes()[:-1000])
    return ["predict", "--checkpoint", str(path), "--no-progress", str(env.image())]


def not_a_checkpoint(env: Env) -> list[str]:
    path = env.tmp / "notes.pth"
    path.write_text("not a checkpoint\n")
    return ["convert", str(path), str(env.tmp / "out.safetensors")]


# ----------------------------------------------------------------------------- cases: dataset images


def unreadable_image_in_a_worker(env: Env) -> list[str]:
    data = env.copy_dataset()
    for path in every_image(data):
        path.write_bytes(b"not an image")
    return evaluate_args(env, data, workers=2)


def truncated_image_with_load_truncated_on(env: Env) -> list[str]:
    env.monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # as some user code does
    data = env.copy_dataset()
    for path in every_image(data):
        path.write_bytes(path.read_bytes()[:-300])
    return evaluate_args(env, data)


def decompression_bomb_in_the_dataset(env: Env) -> list[str]:
    env.monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300)  # the 40 x 40 images exceed twice the limit
    return evaluate_args(env, env.dataset)


# ----------------------------------------------------------------------------- cases: output files


def _previous_output(env: Env) -> Path:
    out = env.tmp / "out"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"the previous file")
    return out / "model.safetensors"


def _failing(name: str, code: int) -> Callable:
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code), args[0] if args and isinstance(args[0], str) else None)

    fail.__name__ = name
    return fail


def disk_full(env: Env) -> list[str]:
    dst = _previous_output(env)
    env.monkeypatch.setattr(os, "fsync", _failing("fsync", errno.ENOSPC))  # the kernel's answer
    return ["convert", str(env.checkpoint), str(dst)]


def read_only_folder(env: Env) -> list[str]:
    dst = _previous_output(env)
    env.monkeypatch.setattr(tempfile, "mkstemp", _failing("mkstemp", errno.EROFS))
    return ["convert", str(env.checkpoint), str(dst)]


def permission_denied(env: Env) -> list[str]:
    dst = _previous_output(env)
    env.monkeypatch.setattr(tempfile, "mkstemp", _failing("mkstemp", errno.EACCES))
    return ["convert", str(env.checkpoint), str(dst)]


def output_under_a_file(env: Env) -> list[str]:
    (env.tmp / "plain.txt").write_text("a file, not a folder\n")
    return ["convert", str(env.checkpoint), str(env.tmp / "plain.txt" / "model.safetensors")]


def predict_disk_full(env: Env) -> list[str]:
    env.monkeypatch.setattr(os, "fsync", _failing("fsync", errno.ENOSPC))
    return [
        "predict",
        "--checkpoint",
        str(env.checkpoint),
        "--output",
        str(env.tmp / "pred"),
        "--no-progress",
    ] + [str(env.image())]


CASES = [
    Case("checkpoint-missing", missing_checkpoint, "missing.safetensors", "one line"),
    Case("checkpoint-garbage-safetensors", garbage_safetensors, "garbage.safetensors", "one line"),
    Case("checkpoint-truncated-safetensors", truncated_safetensors, "cut.safetensors", "one line"),
    Case("checkpoint-not-a-checkpoint", not_a_checkpoint, "notes.pth", "one line"),
    Case(
        "image-unreadable-in-worker",
        unreadable_image_in_a_worker,
        ".jpg",
        "exit 2, the worker's traceback folded into the message (many lines)",
    ),
    Case(
        "image-truncated-load-truncated-on",
        truncated_image_with_load_truncated_on,
        ".jpg",
        "exit 0, truncated images evaluated with grey fill",
    ),
    Case(
        "image-decompression-bomb",
        decompression_bomb_in_the_dataset,
        ".jpg",
        "DecompressionBombError traceback",
    ),
    Case("output-disk-full", disk_full, "model.safetensors", "OSError traceback"),
    Case("output-read-only", read_only_folder, "model.safetensors", "OSError traceback"),
    Case("output-permission-denied", permission_denied, "model.safetensors", "OSError traceback"),
    Case("output-under-a-file", output_under_a_file, "plain.txt", "FileExistsError traceback"),
    Case("predict-disk-full", predict_disk_full, ".png", "OSError traceback"),
]


# ----------------------------------------------------------------------------- cases: arguments and configs


def _predict(env: Env, *extra: str) -> list[str]:
    return [
        "predict",
        "--checkpoint",
        str(env.checkpoint),
        "--output",
        str(env.tmp / "pred"),
        *extra,
        str(env.image()),
    ]


def _train(env: Env, *extra: str) -> list[str]:
    return ["train", "--output", str(env.tmp / "run"), "--set", f"data.root={env.tmp / 'data'}", *extra]


def _export(env: Env, *extra: str) -> list[str]:
    return [
        "export",
        str(env.tmp / "m.onnx"),
        "--checkpoint",
        str(env.checkpoint),
        "--format",
        "onnx",
        *extra,
    ]


def _demo(env: Env, *extra: str) -> list[str]:
    return ["demo", "--output", str(env.tmp / "demo"), *extra]


def _benchmark(env: Env, *extra: str) -> list[str]:
    return ["benchmark", "synthetic", "--output", str(env.tmp / "bench"), *extra]


def _recipe(env: Env, text: str) -> str:
    path = env.tmp / "recipe.yaml"
    path.write_text(text)
    return str(path)


def _maps(env: Env) -> str:
    (env.tmp / "maps").mkdir()
    return str(env.tmp / "maps")


ARGUMENT_CASES = [
    # (id, make, names, before)
    (
        "arg-evaluate-threshold",
        lambda e: [*evaluate_args(e, e.dataset), "--threshold", "5"],
        "--threshold",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "arg-predict-threshold",
        lambda e: _predict(e, "--threshold", "-0.1"),
        "--threshold",
        "accepted: exit 0",
    ),
    (
        "arg-predict-batch-size",
        lambda e: _predict(e, "--batch-size", "0"),
        "--batch-size",
        "exit 2: --batch-size must be >= 1, got 0",
    ),
    (
        "arg-predict-top-k",
        lambda e: _predict(e, "--top-k", "abc"),
        "--top-k",
        "usage + argparse error, SystemExit from main()",
    ),
    (
        "arg-evaluate-top-k",
        lambda e: [*evaluate_args(e, e.dataset), "--top-k", "0"],
        "--top-k",
        "ValueError traceback",
    ),
    (
        "arg-evaluate-workers",
        lambda e: [*evaluate_args(e, e.dataset), "--workers", "-1"],
        "--workers",
        "ValueError traceback",
    ),
    (
        "arg-evaluate-interval",
        lambda e: [*evaluate_args(e, e.dataset), "--interval", "2"],
        "--interval",
        "ValueError traceback",
    ),
    (
        "arg-evaluate-save-vis",
        lambda e: [*evaluate_args(e, e.dataset), "--save-vis", "-3"],
        "--save-vis",
        "accepted: exit 0",
    ),
    (
        "arg-evaluate-missing-data",
        lambda e: evaluate_args(e, e.tmp / "nowhere"),
        "nowhere",
        "exit 2: T/nowhere: CUB dataset folder not found",
    ),
    (
        "arg-evaluate-missing-checkpoint",
        lambda e: ["evaluate", "--checkpoint", str(e.tmp / "gone.safetensors"), "--data", str(e.dataset)],
        "gone.safetensors",
        "exit 2: T/gone.safetensors: no such file",
    ),
    (
        "arg-export-opset",
        lambda e: _export(e, "--opset", "0"),
        "--opset",
        "RuntimeError traceback",
    ),
    (
        "arg-export-input-size",
        lambda e: _export(e, "--input-size", "-32"),
        "--input-size",
        "exit 2: --input-size must be at least 32 for mobilenet_v1, got -32",
    ),
    (
        "arg-explore-max-n",
        lambda e: [
            "explore",
            "--checkpoint",
            str(e.checkpoint),
            "--data",
            str(e.dataset),
            "--output",
            str(e.tmp / "x"),
            "--max-n",
            "0",
        ],
        "--max-n",
        "accepted: exit 0",
    ),
    (
        "arg-evaluate-maps-interval",
        lambda e: ["evaluate-maps", "--maps", _maps(e), "--interval", "0"],
        "--interval",
        "exit 2: --interval must be in (0, 1], got 0.0",
    ),
    (
        "arg-evaluate-maps-missing",
        lambda e: ["evaluate-maps", "--maps", str(e.tmp / "no_maps")],
        "no_maps",
        "exit 2: T/no_maps holds no metadata/image_ids.txt (written by bas evaluate --save-maps); give --metadata",
    ),
    (
        "arg-convert-missing-src",
        lambda e: ["convert", str(e.tmp / "old.pth"), str(e.tmp / "new.safetensors")],
        "old.pth",
        "exit 2: T/old.pth: no such file",
    ),
    (
        "arg-convert-num-classes",
        lambda e: ["convert", str(e.checkpoint), str(e.tmp / "n.safetensors"), "--num-classes", "0"],
        "--num-classes",
        "accepted: exit 0",
    ),
    (
        "arg-data-check-max-problems",
        lambda e: ["data", "check", "cub", str(e.dataset), "--max-problems", "-1"],
        "--max-problems",
        "accepted: exit 0",
    ),
    (
        "arg-demo-epochs",
        lambda e: _demo(e, "--epochs", "0"),
        "--epochs",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "arg-benchmark-seeds",
        lambda e: _benchmark(e, "--seeds", "0"),
        "--seeds",
        "exit 2: --seeds must be >= 1, got 0",
    ),
    (
        "arg-unknown-command",
        lambda e: ["evaluat"],
        "evaluat",
        "usage + argparse error, SystemExit from main()",
    ),
    (
        "resume-missing-file",
        lambda e: ["train", "--resume", str(e.tmp / "run" / "last.ckpt")],
        "last.ckpt",
        "exit 2: data.root is not set (give --data-root or --set data.root=DIR)",
    ),
    (
        "resume-no-checkpoint-in-output",
        lambda e: ["train", "--resume", "--output", str(e.tmp / "run")],
        "last.ckpt",
        "exit 2: data.root is not set (give --data-root or --set data.root=DIR)",
    ),
    (
        "resume-not-a-training-state",
        lambda e: ["train", "--resume", str(e.checkpoint)],
        "tiny.safetensors",
        "exit 2: data.root is not set (give --data-root or --set data.root=DIR)",
    ),
    (
        "config-set-not-a-number",
        lambda e: _train(e, "--set", "optim.lr=abc"),
        "optim.lr",
        "exit 2: optim.lr must be a finite positive number, got 'abc'",
    ),
    (
        "config-set-yaml12-out-of-range",
        lambda e: _train(e, "--set", "optim.lr=-1e-3"),
        "optim.lr",
        "exit 2: optim.lr must be a finite positive number, got '-1e-3'",
    ),
    (
        "config-set-unknown-key",
        lambda e: _train(e, "--set", "optim.lrr=0.1"),
        "did you mean 'optim.lr'",
        "exit 2: unknown config key 'optim.lrr'",
    ),
    (
        "config-set-threshold-range",
        lambda e: _train(e, "--set", "eval.threshold=1.5"),
        "eval.threshold",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "config-set-bool",
        lambda e: _train(e, "--set", "optim.nesterov=maybe"),
        "optim.nesterov",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "config-set-format-option",
        lambda e: _train(e, "--set", "data.options.val_per_clas=2"),
        "val_per_clas",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "config-set-format-option-type",
        lambda e: _train(e, "--set", "data.options.seed=-1"),
        "data.options.seed",
        "accepted: starts working (no error after 12 s)",
    ),
    (
        "config-set-synthetic-range",
        lambda e: _train(e, "--set", "data.synthetic.body_reliability=2"),
        "data.synthetic.body_reliability",
        "exit 2: synthetic dataset: body_reliability must be in [0, 1], got 2",
    ),
    (
        "config-set-no-equals",
        lambda e: _train(e, "--set", "optim.lr"),
        "optim.lr",
        "exit 2: override 'optim.lr' is not of the form key=value",
    ),
    (
        "config-file-bad-value",
        lambda e: [
            "train",
            "--config",
            _recipe(e, "optim:\n  momentum: 2\n"),
            "--output",
            str(e.tmp / "run"),
        ],
        "recipe.yaml:2: optim.momentum",
        "exit 2: data.root is not set (give --data-root or --set data.root=DIR)",
    ),
    (
        "config-file-unknown-key",
        lambda e: [
            "train",
            "--config",
            _recipe(e, "eval:\n  top_k: 1\n  threshhold: 0.2\n"),
            "--output",
            str(e.tmp / "run"),
        ],
        "recipe.yaml:3: unknown config key 'eval.threshhold'; did you mean 'eval.threshold'",
        "exit 2: unknown config key 'eval.threshhold'",
    ),
    (
        "config-file-invalid-yaml",
        lambda e: ["train", "--config", _recipe(e, "optim: [1,\n"), "--output", str(e.tmp / "run")],
        "recipe.yaml:2",
        "exit 2: T/recipe.yaml:2: invalid YAML (expected the node content, but found '<stream end>')",
    ),
    (
        "config-file-missing",
        lambda e: ["train", "--config", str(e.tmp / "absent.yaml")],
        "absent.yaml",
        "exit 2: config file not found: T/absent.yaml (neither a file nor a recipe in <configs>)",
    ),
    (
        "config-evaluate-set",
        lambda e: [*evaluate_args(e, e.dataset), "--set", "eval.interval=0"],
        "eval.interval",
        "ValueError traceback",
    ),
    (
        "config-demo-set",
        lambda e: _demo(e, "--set", "method=bass"),
        "did you mean 'bas'",
        "exit 2: method must be one of bas, cam, got 'bass'",
    ),
    (
        "config-benchmark-set",
        lambda e: _benchmark(e, "--set", "optim.epochs=0"),
        "optim.epochs",
        "exit 2: optim.epochs must be an integer >= 1, got 0",
    ),
    (
        "config-nesterov-without-momentum",
        lambda e: _train(e, "--set", "optim.momentum=0"),
        "optim.nesterov",
        "accepted: starts working (no error after 12 s)",
    ),
]
CASES += [Case(id, make, names, before) for id, make, names, before in ARGUMENT_CASES]


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root`` (hidden ones too): mode and content hash."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha1(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_one_error_line(err: str, names: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    assert names in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case, tmp_path, monkeypatch, capsys, checkpoint, dataset):
    argv = case.make(Env(tmp_path, monkeypatch, checkpoint, dataset))
    before = snapshot(tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in out
    assert_one_error_line(err, case.names)
    monkeypatch.undo()  # reading the files back needs the real os.fsync / mkstemp
    assert snapshot(tmp_path) == before


class BadSample(torch.utils.data.Dataset):
    """Sample 2 of 4 has a malformed annotation."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        if index == 2:
            raise DataError("box 5 3 1 1 is inverted", "labels.txt", 3)
        return {
            "image": torch.zeros(3, 2, 2),
            "label": index,
            "boxes": torch.zeros(0, 4),
            "image_id": str(index),
            "orig_size": (2, 2),
        }


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_errors_arrive_as_themselves(workers):
    loader = guarded_loader(BadSample(), batch_size=1, num_workers=workers)
    with pytest.raises(DataError) as info:
        list(loader)
    assert str(info.value) == "labels.txt:3: box 5 3 1 1 is inverted"
    assert (info.value.path, info.value.line) == ("labels.txt", 3)


# ----------------------------------------------------------------------------- debug and bugs


def test_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    argv = missing_checkpoint(Env(tmp_path, monkeypatch, Path(), Path()))
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")
    monkeypatch.setenv("BAS_DEBUG", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_is_not_turned_into_one_line(tmp_path, monkeypatch):
    import bas.commands.predict as predict_command

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(predict_command, "run", broken)
    with pytest.raises(ZeroDivisionError):
        main(["predict", "--checkpoint", "x", "y"])


# ----------------------------------------------------------------------------- per-image errors


def test_predict_reports_bad_images_and_goes_on(tmp_path, capsys, monkeypatch, checkpoint):
    env = Env(tmp_path, monkeypatch, checkpoint, Path())
    good = [env.image("a.png"), env.image("c.png")]
    (tmp_path / "b.png").write_bytes(b"not an image")
    Image.fromarray(np.zeros((60, 60, 3), dtype=np.uint8)).save(tmp_path / "bomb.png")
    cut = tmp_path / "cut.jpg"
    Image.fromarray(np.zeros((40, 40, 3), dtype=np.uint8)).save(cut)
    cut.write_bytes(cut.read_bytes()[:-100])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1500)  # bomb.png (3600 px) exceeds twice the limit
    files = [good[0], tmp_path / "b.png", tmp_path / "bomb.png", cut, good[1]]
    out_dir = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(checkpoint), "--output", str(out_dir), "--no-progress"]
    code = main([*argv, *map(str, files)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    for name in ("/b.png", "/bomb.png", "/cut.jpg"):
        assert len([line for line in err.splitlines() if line.startswith("skipped") and name in line]) == 1
    records = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    assert [Path(r["path"]).name for r in records] == ["a.png", "c.png"]


def test_data_check_decodes_every_image(tmp_path, capsys, dataset, monkeypatch):
    data = Path(shutil.copytree(dataset, tmp_path / "data"))
    images = every_image(data)
    images[0].write_bytes(images[0].read_bytes()[:-300])  # truncated JPEG: PIL's verify passes it
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    assert main(["data", "check", "cub", str(data)]) == 1
    out = capsys.readouterr().out
    assert f"{images[0]}: cannot read image" in out and "truncated" in out
    assert sum(str(images[0]) in line for line in out.splitlines()) == 1


# ----------------------------------------------------------------------------- signals (subprocess)

SIGINT_DURING_SAVE = """
import os, signal, sys
import torch
from bas import cli

real_save, saves = torch.save, []


class Interrupting:
    # the file torch writes the checkpoint to; Ctrl-C arrives part way through
    def __init__(self, fh):
        self.fh, self.writes = fh, 0

    def write(self, data):
        self.writes += 1
        if self.writes == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return self.fh.write(data)

    def __getattr__(self, name):
        return getattr(self.fh, name)


def save(obj, f, *args, **kwargs):
    saves.append(1)
    if len(saves) == 2:  # the second checkpoint of the run
        f = Interrupting(f)
    return real_save(obj, f, *args, **kwargs)


torch.save = save
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigint_during_a_checkpoint_save(tmp_path):
    settings = [
        "data.dataset=synthetic",
        f"data.root={tmp_path / 'data'}",
        f"train.output_dir={tmp_path / 'run'}",
        "data.synthetic.num_classes=2",
        "data.synthetic.images_per_class=4",
        "data.synthetic.image_size=40",
        "data.options.val_per_class=1",
        "data.input_size=32",
        "data.resize_size=36",
        "data.batch_size=2",
        "data.workers=0",
        "model.arch=mobilenet_v1",
        "model.hidden=8",
        "optim.epochs=1",
        "train.checkpoint_every_steps=1",
        "eval.every=0",
    ]
    argv = ["train", "--no-progress", *(a for s in settings for a in ("--set", s))]
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-c", SIGINT_DURING_SAVE, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1] == "interrupted"
    run = tmp_path / "run"
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temporary file left

    state = torch.load(run / "last.ckpt", weights_only=True)  # the previous checkpoint, whole
    assert state["step"] == 1


# ----------------------------------------------------------------------------- cases: annotation values
# Checked values of annotation files, maps and the checkpoint/dataset class count: each names the
# file and line (where there is one) and the value.


def _edit_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cub_edit(file: str, number: int, text: str) -> Callable[[Env], list[str]]:
    """``bas evaluate`` on a copy of the dataset whose ``file`` has line ``number`` replaced."""

    def make(env: Env) -> list[str]:
        data = env.copy_dataset()
        _edit_line(data / file, number, text)
        return evaluate_args(env, data)

    return make


def more_classes_than_the_checkpoint(env: Env) -> list[str]:
    data = env.copy_dataset()
    with open(data / "classes.txt", "a", encoding="utf-8") as fh:
        fh.write("3 003.extra\n")
    _edit_line(data / "image_class_labels.txt", 4, "4 3")  # a test image of the third class
    return evaluate_args(env, data)


def explore_more_classes_than_the_checkpoint(env: Env) -> list[str]:
    """``bas explore`` meets the dataset through the same class-count check as ``bas evaluate``."""
    args = more_classes_than_the_checkpoint(env)
    data = args[args.index("--data") + 1]
    return ["explore", "--checkpoint", str(env.checkpoint), "--data-root", data, "--dataset", "cub"]


def _maps_split(
    env: Env, sizes: str = "a.jpg,40,30", box: str = "a.jpg,1,2,20,20", label: str = "a.jpg,0"
) -> Path:
    """A one-image standard metadata split and its maps folder (``<maps>/metadata``)."""
    maps = env.tmp / "maps"
    meta = maps / "metadata"
    meta.mkdir(parents=True)
    (meta / "image_ids.txt").write_text("a.jpg\n")
    (meta / "class_labels.txt").write_text(label + "\n")
    (meta / "image_sizes.txt").write_text(sizes + "\n")
    (meta / "localization.txt").write_text(box + "\n")
    np.save(maps / "a.jpg.npy", np.full((8, 8), 0.5, dtype=np.float32))
    return maps


def _maps_with(array: np.ndarray) -> Callable[[Env], list[str]]:
    def make(env: Env) -> list[str]:
        maps = _maps_split(env)
        np.save(maps / "a.jpg.npy", array)
        return ["evaluate-maps", "--maps", str(maps)]

    return make


def _maps_metadata(**lines: str) -> Callable[[Env], list[str]]:
    def make(env: Env) -> list[str]:
        return ["evaluate-maps", "--maps", str(_maps_split(env, **lines))]

    return make


def _bas_list_boxes(line: str) -> Callable[[Env], list[str]]:
    """``bas data check`` is not a one-line command; ``bas evaluate`` on a bas_list dataset is."""

    def make(env: Env) -> list[str]:
        data = env.copy_dataset()
        ids = [t.split(" ", 1)[1] for t in (data / "images.txt").read_text().splitlines()]
        (data / "test_list.txt").write_text(f"{ids[0]};0\n{ids[3]};1\n")
        (data / "test_bounding_box.txt").write_text(f"1 1 20 20 40 40\n{line}\n")
        args = evaluate_args(env, data)
        args[args.index("cub")] = "bas_list"
        return args

    return make


NAN_MAP = np.full((8, 8), 0.5, dtype=np.float32)
NAN_MAP[2, 3] = np.nan

DATA_CASES = [
    Case("cub-box-nan", _cub_edit("bounding_boxes.txt", 1, "1 nan 12.0 16.0 16.0"), "bounding_boxes.txt:1"),
    Case(
        "cub-box-negative-width", _cub_edit("bounding_boxes.txt", 1, "1 17 12 -16 16"), "bounding_boxes.txt:1"
    ),
    Case(
        "cub-box-outside-the-image",
        _cub_edit("bounding_boxes.txt", 1, "1 17.0 12.0 60.0 16.0"),
        "bounding_boxes.txt:1",
        "exit 0, the box evaluated as it was",
    ),
    Case("cub-label-out-of-range", _cub_edit("image_class_labels.txt", 1, "1 7"), "image_class_labels.txt:1"),
    Case(
        "cub-label-not-an-integer",
        _cub_edit("image_class_labels.txt", 1, "1 1.5"),
        "image_class_labels.txt:1",
    ),
    Case(
        "checkpoint-fewer-classes-than-the-dataset",
        more_classes_than_the_checkpoint,
        "bounding_boxes.txt:4",
        "IndexError traceback",
    ),
    Case(
        "bas-list-size-not-an-integer",
        _bas_list_boxes("1 1 20 20 40.5 40"),
        "test_bounding_box.txt:2",
        "exit 0, the size truncated",
    ),
    Case("bas-list-size-zero", _bas_list_boxes("1 1 20 20 0 40"), "test_bounding_box.txt:2", "exit 0"),
    Case(
        "bas-list-box-outside-its-size",
        _bas_list_boxes("1 1 60 20 40 40"),
        "test_bounding_box.txt:2",
        "exit 0, the box evaluated as it was",
    ),
    Case("bas-list-box-inverted", _bas_list_boxes("30 1 20 20 40 40"), "test_bounding_box.txt:2"),
    Case(
        "cub-box-zero-width",
        _cub_edit("bounding_boxes.txt", 1, "1 17.0 12.0 0.0 16.0"),
        "bounding_boxes.txt:1",
        "exit 0, an empty box evaluated",
    ),
    Case("metadata-box-empty", _maps_metadata(box="a.jpg,5,2,5,20"), "localization.txt:1", "exit 0"),
    Case(
        "explore-fewer-classes-than-the-dataset",
        explore_more_classes_than_the_checkpoint,
        "bounding_boxes.txt:4",
        "IndexError traceback",
    ),
    Case("metadata-size-not-an-integer", _maps_metadata(sizes="a.jpg,40.5,30"), "image_sizes.txt:1"),
    Case("metadata-size-zero", _maps_metadata(sizes="a.jpg,0,30"), "image_sizes.txt:1"),
    Case("metadata-box-inverted", _maps_metadata(box="a.jpg,20,2,1,20"), "localization.txt:1"),
    Case("metadata-box-infinite", _maps_metadata(box="a.jpg,1,2,inf,20"), "localization.txt:1"),
    Case("metadata-box-outside-the-image", _maps_metadata(box="a.jpg,1,2,41,20"), "localization.txt:1"),
    Case("metadata-label-negative", _maps_metadata(label="a.jpg,-1"), "class_labels.txt:1"),
    Case("map-integer-dtype", _maps_with(np.ones((8, 8), dtype=np.int64)), "a.jpg.npy"),
    Case("map-complex-dtype", _maps_with(np.full((8, 8), 0.5 + 0j)), "a.jpg.npy"),
    Case("map-nan", _maps_with(NAN_MAP), "a.jpg.npy"),
    Case("map-3d", _maps_with(np.full((3, 8, 8), 0.5, dtype=np.float32)), "a.jpg.npy"),
    Case("map-not-square", _maps_with(np.full((8, 6), 0.5, dtype=np.float32)), "a.jpg.npy"),
]


@pytest.mark.parametrize("case", DATA_CASES, ids=[c.id for c in DATA_CASES])
def test_bad_annotation_value(case, tmp_path, monkeypatch, capsys, checkpoint, dataset):
    test_bad_input(case, tmp_path, monkeypatch, capsys, checkpoint, dataset)
