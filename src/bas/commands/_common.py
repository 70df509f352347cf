"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

# ------------------------------------------------------------------- argument types
# argparse turns the ArgumentTypeError of a type function into "bas CMD: error: argument --x: ..."
# (one line, exit status 2), before anything is read or written.


def _number(text: str, kind: type) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= ``minimum`` (``positive_int``: >= 1, ``count``: >= 0)."""

    def parse(text: str) -> int:
        value = int(_number(text, int))
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)
count = int_at_least(0)


def fraction(text: str) -> float:
    """A number in [0, 1] (a score-map threshold)."""
    value = _number(text, float)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def step_fraction(text: str) -> float:
    """A number in (0, 1] (a threshold step)."""
    value = _number(text, float)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def _existing(is_kind: Callable[[Path], bool], kind: str, other: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        path = Path(text)
        if not is_kind(path):
            raise argparse.ArgumentTypeError(
                f"is a {other}, not a {kind}: {text}" if path.exists() else f"no such {kind}: {text}"
            )
        return text

    parse.__name__ = f"existing {kind}"
    return parse


existing_file = _existing(Path.is_file, "file", "folder")  # a path that must be an existing file
existing_dir = _existing(Path.is_dir, "folder", "file")  # a path that must be an existing folder


def add_checkpoint_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=existing_file,
        help="our .safetensors file or any released BAS checkpoint",
    )


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1 ... (default: cuda when available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def resolve_device(name: str | None) -> str:
    import torch

    if name in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=0.01 (repeatable)",
    )


def format_metrics(result: dict[str, Any]) -> str:
    """Human-readable summary of an evaluation result (percent values)."""
    parts = []
    for key in (
        "top1_cls",
        "top5_cls",
        "gt_known_loc",
        "top1_loc",
        "top5_loc",
        "MaxBoxAccV2",
        "PxAP",
        "PIoU",
    ):
        if key in result:
            parts.append(f"{key}={result[key]:.2f}")
    parts += [f"{k}={v:.2f}" for k, v in result.items() if k.startswith("MaxBoxAcc (")]  # not MaxBoxAccV2
    if isinstance(result.get("MaxBoxAcc"), dict):
        from bas.metrics import iou_percent

        parts.append(
            "MaxBoxAcc@"
            + "/".join(iou_percent(k) for k in result["MaxBoxAcc"])
            + "="
            + "/".join(f"{v:.2f}" for v in result["MaxBoxAcc"].values())
        )
    return "  ".join(parts)
