"""``bas convert SRC DST``: rewrite any supported checkpoint as our self-describing ``.safetensors`` file.

SRC may be a released CVPR 2022 or IJCV 2023 file, a released segmentation file (the BAS network,
IRN's ``res50_cam.pth``), a state dict (plain, under ``state_dict`` or
``model``, behind ``module.`` / ``model.`` prefixes, or a Lightning checkpoint), a training-state
file or one of ours. What the file does not say (architecture, class count, variant) is inferred from its keys
and shapes unless given; the authors' best threshold and the paper defaults are kept as the
inference defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bas.commands._common import match_choice
from bas.errors import CheckpointError


def _arch(value: str) -> str:
    from bas.models.registry import list_models

    return match_choice(value, list_models(), "architecture")


def _variant(value: str) -> str:
    from bas.models.bas import VARIANTS

    return match_choice(value, VARIANTS, "variant")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert a released or own checkpoint to the bas .safetensors format",
        description="Rewrite any supported checkpoint (CVPR 2022, IJCV 2023, a state dict: plain, under "
        "'state_dict' or 'model', with module./model. prefixes or from Lightning; training state; ours) as "
        "one self-describing .safetensors file.",
    )
    parser.add_argument("src", type=Path, help="checkpoint to read (.pth/.pth.tar/.pt/.safetensors)")
    parser.add_argument("dst", type=Path, help="file to write (.safetensors)")
    parser.add_argument(
        "--arch", type=_arch, help="architecture, one of bas.list_models() (default: inferred from the keys)"
    )
    parser.add_argument(
        "--num-classes", type=int, help="number of classes (default: inferred from the shapes)"
    )
    parser.add_argument(
        "--variant",
        type=_variant,
        metavar="{cvpr2022,ijcv2023}",
        help="classifier variant (default: ijcv2023 for IJCV files, cvpr2022 for other released files)",
    )
    parser.add_argument("--class-names", type=Path, metavar="FILE", help="text file, one class name per line")
    parser.set_defaults(func=run)


def read_class_names(path: Path) -> list[str]:
    """Class names from a text file, one per line; blank lines are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise CheckpointError(f"cannot read class names: {exc}") from None
    return [line.strip() for line in lines if line.strip()]


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint, save_model

    model = load_checkpoint(args.src, arch=args.arch, num_classes=args.num_classes, variant=args.variant)
    meta = model.meta
    class_names = read_class_names(args.class_names) if args.class_names else None
    extra = {**meta.extra, "converted_from": {"file": args.src.name, "source": meta.source}}
    save_model(args.dst, model, class_names=class_names, extra=extra)
    print(
        f"wrote {args.dst}: {meta.method} {meta.arch}, {meta.num_classes} classes, variant {meta.variant}, "
        f"threshold {meta.threshold:g}, top_k {meta.top_k} (from a {meta.source} checkpoint)"
    )
    return 0
