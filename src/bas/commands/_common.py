"""Arguments and helpers shared by several sub-commands: one spelling, one default per concept.

Every command that takes a concept below declares it through the helper named here, so that
``bas <command> --help`` reads the same everywhere:

=================  ==========================  =========================================
concept            option                      helper
=================  ==========================  =========================================
dataset kind       ``--dataset KIND``          :func:`add_dataset_arg`
data root          ``--data-root DIR``         :func:`add_data_root_arg`
checkpoint         ``--checkpoint FILE``       :func:`add_checkpoint_arg`
output             ``--output DIR``            :func:`add_output_arg`
device             ``--device DEVICE``         :func:`add_device_args`
threshold          ``--threshold T``           :func:`add_threshold_arg`
fused classes      ``--top-k K``               :func:`add_top_k_arg`
test-time resize   ``--test-mode crop|resize`` :func:`add_test_mode_arg`
config overrides   ``--set KEY=VALUE``         :func:`add_config_args`
=================  ==========================  =========================================

Dataset names are lower case (``cub``, ``ilsvrc``, ``openimages``); other cases are accepted.
Old spellings stay as hidden aliases for one release and print a one-line note when used.

Nothing here imports torch: ``bas --help`` and ``bas <command> --help`` stay fast. Names are
checked against the package's own lists when the command line is parsed.
"""

from __future__ import annotations

import argparse
import math
import sys
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


def existing_file(text: str) -> str:
    """A path that must be an existing file."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"{'is a folder, not a file' if path.exists() else 'no such file'}: {text}"
        )
    return text


#: The dataset kinds of ``--dataset`` (:data:`bas.data.DATASET_KINDS`), for help texts.
DATASET_KINDS_HELP = "bas_list, coco, cub, folder, ilsvrc, multilabel_folder, synthetic, voc, voc07 or wsol"


class DeprecatedAlias(argparse.Action):
    """A hidden old spelling of an option: it stores like the new one and prints a one-line note."""

    def __init__(self, option_strings, dest, *, new: str, **kwargs):
        self.new = new
        kwargs.setdefault("default", argparse.SUPPRESS)
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(
            f"note: {option_string} is deprecated and will be removed in the next release; use {self.new}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_alias(parser, old: str, new: str, dest: str, **kwargs) -> None:
    """Register ``old`` as a hidden, deprecated spelling of the option ``new`` (same ``dest``)."""
    parser.add_argument(old, dest=dest, action=DeprecatedAlias, new=new, **kwargs)


def match_choice(value: str, choices: list[str] | tuple[str, ...], what: str) -> str:
    """``value`` as spelled in ``choices``, compared case-insensitively."""
    by_lower = {c.lower(): c for c in choices}
    try:
        return by_lower[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {value!r} (choose from {', '.join(c.lower() for c in choices)})"
        ) from None


def dataset_kind(value: str) -> str:
    """``--dataset`` of the commands that read images: a kind of :func:`bas.data.build_dataset`."""
    from bas.data import DATASET_KINDS

    return match_choice(value, DATASET_KINDS, "dataset")


def map_dataset(value: str) -> str:
    """``--dataset`` of ``bas evaluate-maps``: a benchmark of the standard metadata, returned in the
    spelling of :data:`bas.evaluate_maps.DATASETS` (the metadata folder's name)."""
    from bas.evaluate_maps import DATASETS

    return match_choice(value, DATASETS, "dataset")


def trained_dataset(meta: dict[str, Any]) -> str:
    """The default ``--dataset``: the kind a checkpoint was trained on (``cub`` for the synthetic
    data, which has CUB's layout, and when the checkpoint does not say)."""
    kind = ((meta.get("config") or {}).get("data") or {}).get("dataset") or "cub"
    return "cub" if kind == "synthetic" else kind


def trained_options(meta: dict[str, Any], kind: str) -> dict[str, Any]:
    """The checkpoint's ``data.options`` that apply when its data is read as ``kind``: all of them for
    the kind it was trained on; for another kind, those both formats declare alike (the synthetic data
    read as ``cub`` keeps the run's val split), none otherwise. Imports the format registry (no torch)."""
    from bas.data.formats.registry import get_format
    from bas.errors import ConfigError

    data = (meta.get("config") or {}).get("data") or {}
    options = dict(data.get("options") or {})
    trained = data.get("dataset") or "cub"
    if kind == trained:
        return options
    try:
        before, after = get_format(trained).options, get_format(kind).options
    except ConfigError:  # an unknown kind: its options cannot be matched
        return {}
    return {k: v for k, v in options.items() if k in after and after[k] is before.get(k)}


def add_dataset_arg(parser, *, help: str, kind=dataset_kind, metavar: str = "KIND", **kwargs) -> None:
    parser.add_argument("--dataset", type=kind, metavar=metavar, help=help, **kwargs)


def add_data_root_arg(
    parser, *, dest: str = "data_root", required: bool = False, help: str = "dataset root"
) -> None:
    """``--data-root DIR`` (old spelling ``--data``)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--data-root", dest=dest, metavar="DIR", help=help)
    add_alias(group, "--data", "--data-root", dest)


def add_checkpoint_arg(parser, *, required: bool = True) -> None:
    parser.add_argument(
        "--checkpoint",
        required=required,
        metavar="FILE",
        help="our .safetensors file or any released BAS checkpoint",
    )


def add_output_arg(parser, *, help: str, **kwargs) -> None:
    parser.add_argument("--output", metavar="DIR", help=help, **kwargs)


def add_resume_arg(parser: argparse.ArgumentParser, *, help: str) -> None:
    """``--resume [CKPT]``: True without a value (the run folder's ``last.ckpt``), else the file."""
    parser.add_argument(
        "--resume", nargs="?", const=True, default=None, type=existing_file, metavar="CKPT", help=help
    )


def add_device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:1 ... (default: auto, cuda when available)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_threshold_arg(parser) -> None:
    parser.add_argument(
        "--threshold", type=fraction, metavar="T", help="map threshold in [0, 1] (default: the checkpoint's)"
    )


def add_top_k_arg(parser, *, help: str = "classes whose maps are fused (default: the checkpoint's)") -> None:
    parser.add_argument("--top-k", type=positive_int, metavar="K", help=help)


TEST_MODE_HELP = "crop: Resize + CenterCrop, as in the papers; resize: the whole image resized, as in the standard protocol"


def add_test_mode_arg(parser, *, default: str | None, help: str = TEST_MODE_HELP, **kwargs) -> None:
    parser.add_argument("--test-mode", choices=("crop", "resize"), default=default, help=help, **kwargs)


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
        "CorLoc",
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
