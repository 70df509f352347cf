"""``bas train``: train BAS (or the CAM baseline) from a YAML recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from bas.commands._common import add_config_args, add_device_args, existing_file


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train from a recipe (a file or a shipped name such as cub/resnet50). "
        "The same command runs under torchrun for several GPUs or nodes; "
        "see docs/training.md.",
    )
    p.add_argument(
        "--config",
        help="recipe file or shipped recipe name (default: the built-in defaults; with "
        "--resume CKPT or --resume --output DIR, the run folder's config.yaml)",
    )
    add_config_args(p)
    p.add_argument("--data-root", help="dataset root (same as --set data.root=DIR)")
    p.add_argument(
        "--output",
        help="run folder (same as --set train.output_dir=DIR; with --resume CKPT: default CKPT's folder)",
    )
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        type=existing_file,
        metavar="CKPT",
        help="continue a run exactly where it stopped: from the run folder's last.ckpt, or from CKPT "
        "(--set values apply and are printed as 'changed on resume')",
    )
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    add_device_args(p)
    p.set_defaults(func=run)


def _saved_config(args: argparse.Namespace) -> Path | dict | None:
    """With ``--resume`` and no ``--config``: the ``config.yaml`` of the run being resumed, else the
    config stored in the checkpoint."""
    if args.config or not args.resume:
        return None
    if isinstance(args.resume, str):
        run_dir = Path(args.resume).parent
    elif args.output:
        run_dir = Path(args.output)
    else:
        return None
    saved = run_dir / "config.yaml"
    if saved.is_file():
        return saved
    checkpoint = Path(args.resume) if isinstance(args.resume, str) else run_dir / "last.ckpt"
    if checkpoint.is_file():
        from bas.checkpoints import read_training_config

        return read_training_config(checkpoint)
    return None


def run(args: argparse.Namespace) -> int:
    from bas.config import dump_config, load_config
    from bas.engine import distributed
    from bas.engine.train import validate_config

    overrides = list(args.overrides)
    if args.data_root:
        overrides.append(f"data.root={args.data_root}")
    if args.output:
        overrides.append(f"train.output_dir={args.output}")
    elif isinstance(args.resume, str) and not any(o.startswith("train.output_dir=") for o in overrides):
        # a run folder copied elsewhere continues where its checkpoint now is
        overrides.append(f"train.output_dir={Path(args.resume).parent}")
    cfg = load_config(args.config or _saved_config(args), overrides)
    validate_config(cfg, distributed.world_size_from_env())
    if args.resume is True and not (Path(cfg["train"]["output_dir"]) / "last.ckpt").is_file():
        from bas.errors import TrainingError

        raise TrainingError(
            f"cannot resume: no checkpoint at {Path(cfg['train']['output_dir']) / 'last.ckpt'}"
        )
    if args.print_config:
        print(dump_config(cfg), end="")
        return 0
    from bas.engine.train import train

    train(
        cfg,
        resume=args.resume,
        progress=not args.no_progress,
        device=None if args.device == "auto" else args.device,
    )
    return 0
