"""Arguments and helpers shared by several sub-commands."""

from __future__ import annotations

import argparse
from typing import Any


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
