"""``bas train``: train BAS (or the CAM baseline) from a YAML recipe."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from bas.commands._common import (
    add_config_args,
    add_data_root_arg,
    add_device_args,
    add_output_arg,
    add_resume_arg,
)


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
    add_data_root_arg(p, help="dataset root (same as --set data.root=DIR)")
    add_output_arg(
        p, help="run folder (same as --set train.output_dir=DIR; with --resume CKPT: default CKPT's folder)"
    )
    add_resume_arg(
        p,
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

    start = time.perf_counter()
    last = train(
        cfg,
        resume=args.resume,
        progress=not args.no_progress,
        device=None if args.device == "auto" else args.device,
    )
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 wrote the files
        print("\n".join(summary(Path(cfg["train"]["output_dir"]), last, time.perf_counter() - start)))
    return 0


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {seconds:02d} s"


def _last_epoch(log: Path) -> dict[str, Any]:
    """The last ``epoch`` record of ``metrics.jsonl`` (empty if there is none)."""
    record: dict[str, Any] = {}
    if log.is_file():
        for line in log.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            if entry.get("kind") == "epoch":
                record = entry
    return record


def _validation(record: dict[str, Any], threshold: float) -> str:
    metric = record["select_metric"]
    return (
        f"epoch {record['epoch']} (step {record['step']}), {record['split']} {metric} "
        f"{record['val'][metric]:.2f}, threshold {threshold:.3g}"
    )


def summary(run_dir: Path, last: dict[str, Any], seconds: float) -> list[str]:
    """The closing lines of ``bas train``: what the run produced and where.

    ``last`` is what :func:`bas.engine.train.train` returns (the last validation record); the best
    model's record and each model's threshold are read from the files' metadata.
    """
    from bas.checkpoints import read_checkpoint_metadata
    from bas.engine.train import BEST, FINAL, LAST, LOG

    epoch = _last_epoch(run_dir / LOG)
    done = f"{epoch['epoch']} epoch(s), {epoch['step']} step(s)" if epoch else "no complete epoch"
    lines = [f"training finished in {_duration(seconds)}: {done}, run folder {run_dir}"]
    best = run_dir / BEST
    if best.is_file():
        meta = read_checkpoint_metadata(best)
        lines.append(f"best:    {_validation(meta['metrics'], meta['threshold'])} -> {best}")
    else:
        lines.append("best:    none (no validation ran: eval.every is 0 or there is no val split)")
    final = run_dir / FINAL
    if final.is_file():
        threshold = read_checkpoint_metadata(final)["threshold"]
        at = _validation(last, threshold) if last else f"not validated, threshold {threshold:.3g}"
        lines.append(f"final:   {at} -> {final}")
    lines.append(f"resume:  {run_dir / LAST} (training state; bas train --resume)")
    files = [run_dir / LOG, run_dir / "config.yaml"] + ([run_dir / "tb"] if (run_dir / "tb").is_dir() else [])
    lines.append(f"metrics: {'  '.join(str(f) for f in files)}")
    return lines
