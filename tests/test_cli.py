"""The ``bas`` command line: one vocabulary across commands, old spellings as hidden aliases, help
without torch, and the closing summary of ``bas train``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_train import TINY

from bas.cli import build_parser, main
from bas.commands._common import DATASET_KINDS_HELP, DeprecatedAlias
from bas.commands.train import summary

SRC = Path(__file__).resolve().parents[1] / "src"


def commands() -> dict[str, argparse.ArgumentParser]:
    """Every (sub-)command's parser by its command line: ``evaluate``, ``data check``, ..."""
    found = {}

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            found[prefix] = parser
        for action in subs:
            for name, child in action.choices.items():
                walk(f"{prefix} {name}".strip(), child)

    walk("", build_parser())
    return found


COMMANDS = commands()


def visible_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        s: a
        for a in parser._actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, DeprecatedAlias)
        for s in a.option_strings
    }


# concept -> (the one spelling, spellings no command may show, the default every command uses)
CONCEPTS = {
    "dataset kind": ("--dataset", {"--kind", "--dataset-kind", "--dataset-name", "--ds"}, None),
    "data root": ("--data-root", {"--data", "--root", "--data-dir", "--dataset-root", "--data-path"}, None),
    "checkpoint": ("--checkpoint", {"--ckpt", "--weights", "--model", "--checkpoint-file"}, None),
    "output": ("--output", {"--out", "--output-dir", "--out-dir", "--outdir", "-o"}, None),
    "device": ("--device", {"--gpu", "--cuda", "--devices"}, "auto"),
    "threshold": ("--threshold", {"--thr", "--thresh", "--cam-threshold"}, None),
    "top-k": ("--top-k", {"--topk", "--k"}, None),
    "test mode": ("--test-mode", {"--no-crop", "--crop", "--mode"}, None),
}
METAVARS = {
    "--data-root": "DIR",
    "--checkpoint": "FILE",
    "--output": "DIR",
    "--threshold": "T",
    "--top-k": "K",
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("concept", sorted(CONCEPTS))
def test_one_spelling_per_concept(command, concept):
    spelling, others, default = CONCEPTS[concept]
    options = visible_options(COMMANDS[command])
    assert not others & set(options), (
        f"bas {command} spells {concept} {others & set(options)}, not {spelling}"
    )
    if spelling in options:
        action = options[spelling]
        if spelling in METAVARS:
            assert action.metavar == METAVARS[spelling], f"bas {command} {spelling}"
        if default is not None:
            assert action.default == default, f"bas {command} {spelling} default"


def test_no_two_commands_spell_an_option_differently():
    """Options that differ only in '-' / '_' / case are the same option and must be spelt alike."""
    by_key: dict[str, set[str]] = {}
    for parser in COMMANDS.values():
        for option in visible_options(parser):
            by_key.setdefault(option.lstrip("-").replace("_", "").replace("-", "").lower(), set()).add(option)
    assert {k: v for k, v in by_key.items() if len(v) > 1} == {}


def test_shared_options_have_one_meaning():
    """The same option has the same type and help (or a help that starts alike) in every command."""
    for option in ("--checkpoint", "--device", "--threshold", "--data-root", "--no-progress", "--set"):
        actions = [visible_options(p)[option] for p in COMMANDS.values() if option in visible_options(p)]
        assert len(actions) >= 2, option
        assert len({(a.type, a.nargs, a.const, a.metavar) for a in actions}) == 1, option


def test_dataset_help_lists_the_dataset_kinds():
    from bas.data import DATASET_KINDS

    words = DATASET_KINDS_HELP.replace(" or ", ",").split(",")
    assert sorted(w.strip() for w in words) == sorted(DATASET_KINDS)


def parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


CANONICAL = {
    "evaluate": ["--checkpoint", "m.safetensors", "--data-root", "d", "--dataset", "cub", "--output", "o"]
    + ["--threshold", "0.2", "--top-k", "2", "--test-mode", "resize", "--device", "cpu"],
    "explore": ["--checkpoint", "m.safetensors", "--data-root", "d", "--dataset", "cub", "--output", "o"]
    + ["--test-mode", "resize", "--device", "cpu"],
    "predict": ["x.jpg", "--checkpoint", "m.safetensors", "--output", "o", "--threshold", "0.2"]
    + ["--top-k", "2", "--test-mode", "resize", "--device", "cpu"],
    "export": ["out.onnx", "--checkpoint", "m.safetensors", "--format", "onnx", "--top-k", "2"],
    "evaluate-maps": ["--maps", "m", "--metadata", "meta", "--dataset", "cub", "--output", "o"],
    "train": ["--config", "cub/resnet50", "--data-root", "d", "--output", "o", "--device", "cpu"],
    "demo": ["--output", "o", "--device", "cpu"],
    "benchmark": ["synthetic", "--output", "o", "--device", "cpu"],
    "convert": ["a.pth", "b.safetensors", "--arch", "resnet50", "--variant", "cvpr2022"],
    "data check": ["cub", "d"],
    "wsss seeds": ["--checkpoint", "m.safetensors", "--data-root", "d", "--dataset", "voc", "--output", "o"]
    + ["--device", "cpu"],
    "wsss evaluate": ["--seeds", "s", "--data-root", "d", "--dataset", "voc", "--output", "o"],
    "wsss refine": ["--seeds", "s", "--data-root", "d", "--output", "o", "--device", "cpu"],
    "wsss demo": ["--output", "o", "--seed", "1", "--device", "cpu"],
    "wsss train-seg": ["--masks", "m", "--data-root", "d", "--output", "o", "--device", "cpu"],
    "data list": [],
    "zoo": ["cub-vgg16", "--json"],
    "report": [
        "run",
        "--output",
        "o",
        "--checkpoint",
        "m.safetensors",
        "--data-root",
        "d",
        "--device",
        "cpu",
    ],
}


def test_every_command_is_covered():
    assert set(CANONICAL) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(CANONICAL))
def test_canonical_spellings_parse(command, capsys):
    args = parse([*command.split(), *CANONICAL[command]])
    assert callable(args.func)
    assert capsys.readouterr().err == ""  # no deprecation note for the canonical names
    if "--device" in CANONICAL[command]:
        assert args.device == "cpu"
    if "--test-mode" in CANONICAL[command]:
        assert args.test_mode == "resize"
    if "--threshold" in CANONICAL[command]:
        assert args.threshold == 0.2


def test_the_names_the_commands_read():
    """The attribute names the command bodies read stay what they were."""
    assert parse(["evaluate", *CANONICAL["evaluate"]]).data == "d"
    assert parse(["explore", *CANONICAL["explore"]]).data == "d"
    assert parse(["train", *CANONICAL["train"]]).data_root == "d"
    args = parse(["evaluate-maps", *CANONICAL["evaluate-maps"]])
    assert args.dataset == "CUB" and args.output == Path("o") / "metrics.json"
    args = parse(["evaluate-maps", *CANONICAL["evaluate-maps"][:-1], "r.json"])  # the file, as before
    assert args.output == Path("r.json")


@pytest.mark.parametrize(
    ("argv", "name", "value", "note"),
    [
        (["evaluate", "--checkpoint", "m", "--data", "d"], "data", "d", "--data is deprecated"),
        (["explore", "--checkpoint", "m", "--data", "d"], "data", "d", "--data is deprecated"),
        (["train", "--data", "d"], "data_root", "d", "--data is deprecated"),
        (["predict", "x.jpg", "--checkpoint", "m", "--no-crop"], "test_mode", "resize", "--no-crop"),
    ],
)
def test_old_spellings_still_work_with_a_note(argv, name, value, note, capsys):
    assert getattr(parse(argv), name) == value
    err = capsys.readouterr().err
    assert note in err and len(err.strip().splitlines()) == 1


def test_old_spellings_are_hidden_from_help(capsys):
    for command in ("evaluate", "explore", "predict"):
        with pytest.raises(SystemExit):
            parse([command, "--help"])
        out = capsys.readouterr().out
        assert "--data-root" in out or command == "predict"
        assert "--data " not in out and "--data\n" not in out and "--no-crop" not in out


def test_canonical_and_old_spelling_together_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse(["evaluate", "--checkpoint", "m", "--data-root", "a", "--data", "b"])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("command", "spelling", "expected"),
    [
        ("evaluate", "CUB", "cub"),
        ("evaluate", "Bas_List", "bas_list"),
        ("explore", "ILSVRC", "ilsvrc"),
        ("evaluate-maps", "cub", "CUB"),
        ("evaluate-maps", "ilsvrc", "ILSVRC"),
        ("evaluate-maps", "openimages", "OpenImages"),
        ("evaluate-maps", "OPENIMAGES", "OpenImages"),
    ],
)
def test_dataset_names_in_any_case(command, spelling, expected):
    argv = ["--maps", "m", "--metadata", "x"] if command == "evaluate-maps" else ["--checkpoint", "m"]
    argv += ["--data-root", "d"] if command != "evaluate-maps" else []
    assert parse([command, *argv, "--dataset", spelling]).dataset == expected


def test_data_check_kind_in_any_case():
    assert parse(["data", "check", "CUB", "d"]).kind == "cub"


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--checkpoint", "m", "--data-root", "d", "--dataset", "imagenet"],
        ["evaluate-maps", "--maps", "m", "--metadata", "x", "--dataset", "voc"],
        ["data", "check", "coco2017", "d"],
        ["convert", "a", "b", "--arch", "resnet9"],
        ["convert", "a", "b", "--variant", "eccv"],
        ["evaluate", "--checkpoint", "m"],  # --data-root is required
    ],
)
def test_unknown_names_are_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        parse(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- no torch


def run_python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


HEAVY = "[m for m in ('torch', 'torchvision') if m in sys.modules]"


@pytest.mark.parametrize("command", ["", *sorted(COMMANDS)])
def test_help_imports_no_torch(command):
    code = (
        "import sys\nfrom bas.cli import main\n"
        f"try:\n    main({[*command.split(), '--help']!r})\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"print({HEAVY})"
    )
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_import_bas_imports_no_torch_and_keeps_its_names():
    done = run_python(
        f"import sys, bas\nprint({HEAVY})\nprint(sorted(bas.__all__))\n"
        "print(set(bas.__all__) <= set(dir(bas)))\n"
        "from bas import build_model, Localizer, load_checkpoint\nprint(Localizer.__module__)"
    )
    assert done.returncode == 0, done.stderr
    heavy, names, in_dir, module = done.stdout.strip().splitlines()
    assert heavy == "[]" and in_dir == "True" and module == "bas.predict"
    public = "BASModel BASOutput Localizer Prediction __version__ build_model list_methods list_models load_checkpoint save_model"
    assert eval(names) == public.split()


def test_unknown_attribute_of_bas_is_an_attribute_error():
    import bas

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        bas.nope  # noqa: B018


def test_evaluate_maps_runs_without_torch(tmp_path):
    """Scoring saved maps is numpy and OpenCV only: the command never loads torch."""
    import numpy as np

    meta = tmp_path / "meta"
    meta.mkdir()
    ids = ["a/1.jpg", "a/2.jpg"]
    (meta / "image_ids.txt").write_text("\n".join(ids))
    (meta / "class_labels.txt").write_text("\n".join(f"{i},0" for i in ids))
    (meta / "image_sizes.txt").write_text("\n".join(f"{i},448,448" for i in ids))
    (meta / "localization.txt").write_text("\n".join(f"{i},100,100,300,300" for i in ids))
    for image_id in ids:
        scoremap = np.zeros((224, 224), np.float32)
        scoremap[50:150, 50:150] = 1.0  # the box, in map coordinates
        (tmp_path / "maps" / image_id).parent.mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "maps" / f"{image_id}.npy", scoremap)
    argv = ["evaluate-maps", "--maps", "maps", "--metadata", "meta", "--dataset", "cub", "--output", "res"]
    done = run_python(
        f"import sys\nfrom bas.cli import main\nassert main({argv + ['--workers', '1']!r}) == 0\nprint({HEAVY})",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert json.loads((tmp_path / "res" / "metrics.json").read_text())["MaxBoxAccV2"] == pytest.approx(100.0)


# ------------------------------------------------------------------------- train summary


def test_train_prints_a_closing_summary(tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["train", "--data-root", str(tmp_path / "data"), "--output", str(run)]
    argv += [x for item in [*TINY, "optim.epochs=2"] for x in ("--set", item)]
    assert main([*argv, "--no-progress", "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()[-5:]
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r["kind"] == "epoch"]
    best = max(epochs, key=lambda r: r["val_MaxBoxAccV2"])  # the first of equal values is kept
    from bas.checkpoints import read_checkpoint_metadata

    threshold = read_checkpoint_metadata(run / "best.safetensors")["threshold"]
    assert lines[0].startswith("training finished in ") and "2 epoch(s), 8 step(s)" in lines[0]
    assert lines[1] == (
        f"best:    epoch {best['epoch']} (step {best['step']}), val MaxBoxAccV2 "
        f"{best['val_MaxBoxAccV2']:.2f}, threshold {threshold:.3g} -> {run / 'best.safetensors'}"
    )
    assert lines[2].startswith(
        f"final:   epoch 2 (step 8), val MaxBoxAccV2 {epochs[-1]['val_MaxBoxAccV2']:.2f}"
    )
    assert lines[2].endswith(str(run / "model.safetensors"))
    assert lines[3] == f"resume:  {run / 'last.ckpt'} (training state; bas train --resume)"
    assert lines[4].startswith(f"metrics: {run / 'metrics.jsonl'}  {run / 'config.yaml'}")


def test_summary_without_validation(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"kind": "epoch", "epoch": 3, "step": 12}) + "\n")
    lines = summary(tmp_path, {}, 75.4)
    assert lines[0] == f"training finished in 1 min 15 s: 3 epoch(s), 12 step(s), run folder {tmp_path}"
    assert lines[1].startswith("best:    none (no validation ran")
    assert not any(line.startswith("final:") for line in lines)  # no model.safetensors in the folder


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({}, "cub"),
        ({"config": {"data": {"dataset": "synthetic"}}}, "cub"),
        ({"config": {"data": {"dataset": "ilsvrc"}}}, "ilsvrc"),
        ({"config": None}, "cub"),
    ],
)
def test_default_dataset_is_the_checkpoints(meta, expected):
    """``--dataset`` defaults alike in ``evaluate`` and ``explore``: the checkpoint's training dataset."""
    from bas.commands._common import trained_dataset

    assert trained_dataset(meta) == expected
    for command in ("evaluate", "explore"):
        assert parse([command, "--checkpoint", "m", "--data-root", "d"]).dataset is None


@pytest.mark.parametrize(
    ("trained", "kind", "expected"),
    [
        ("synthetic", "cub", {"val_per_class": 20}),  # the synthetic folder read as CUB: the run's val split
        ("synthetic", "synthetic", {"val_per_class": 20}),
        ("cub", "cub", {"val_per_class": 20}),
        ("cub", "ilsvrc", {}),  # another format's options do not apply
        ("no-such-kind", "cub", {}),
    ],
)
def test_trained_options_follow_the_data_kind(trained, kind, expected):
    from bas.commands._common import trained_options

    meta = {"config": {"data": {"dataset": trained, "options": {"val_per_class": 20}}}}
    assert trained_options(meta, kind) == expected


def test_evaluate_keeps_a_synthetic_runs_val_split():
    """``bas evaluate`` of a demo checkpoint selects on the run's own val split, not CUB's default one."""
    from bas.commands.evaluate import evaluation_config

    meta = {"config": {"data": {"dataset": "synthetic", "options": {"val_per_class": 20}}}}
    args = parse(["evaluate", "--checkpoint", "m", "--data-root", "d", "--select-on", "val"])
    cfg = evaluation_config(meta, args)
    assert cfg["data"]["dataset"] == "cub" and cfg["data"]["options"] == {"val_per_class": 20}
    args = parse(["evaluate", "--checkpoint", "m", "--data-root", "d", "--dataset", "ilsvrc"])
    assert evaluation_config(meta, args)["data"]["options"] == {}
