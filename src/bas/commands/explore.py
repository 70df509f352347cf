"""``bas explore``: the CVPR 2022 paper's exploratory experiment (cross-entropy vs activation as masks grow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from bas.commands._common import (
    DATASET_KINDS_HELP,
    add_checkpoint_arg,
    add_data_root_arg,
    add_dataset_arg,
    add_device_args,
    add_output_arg,
    add_test_mode_arg,
    positive_int,
    resolve_device,
    trained_dataset,
    trained_options,
)
from bas.errors import BASError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "explore",
        help="the CVPR paper's exploratory experiment (CE and activations vs mask area)",
        description="For each image with a ground-truth mask (or box), erode and dilate the mask "
        "with 5n x 5n kernels (n = 1..K) at the input resolution, downsample each mask "
        "to the mid-level feature map by area averaging, and record the cross-entropy "
        "and the ground-truth-class score of F*M and the score of F*(1-M) against the "
        "mask area. Writes explore.csv, explore_summary.csv, explore.json, explore.png.",
    )
    add_checkpoint_arg(p)
    add_data_root_arg(p, dest="data", required=True)
    add_dataset_arg(p, help=f"{DATASET_KINDS_HELP} (default: the checkpoint's training dataset, else cub)")
    p.add_argument("--split", default="test", help="split (default: test)")
    p.add_argument(
        "--num-images", type=int, default=100, help="images, spread evenly over the split (default: 100)"
    )
    p.add_argument(
        "--max-n", type=positive_int, default=6, help="largest step K: kernels 5, 10, ..., 5K (default: 6)"
    )
    add_test_mode_arg(p, default="crop")
    add_output_arg(p, help="output folder (default: <checkpoint>_explore/<split>)")
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint
    from bas.data import build_dataset, test_transform
    from bas.data.datasets import check_num_classes
    from bas.explore import run_exploration, write_exploration

    if args.num_images < 1:
        raise BASError(f"--num-images must be >= 1, got {args.num_images}")
    if args.max_n < 0:
        raise BASError(f"--max-n must be >= 0, got {args.max_n}")
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, map_location=device)
    meta = model.bas_meta
    transform = test_transform(
        meta["input_size"], meta["resize_size"], mode=args.test_mode, mean=meta["mean"], std=meta["std"]
    )
    kind = args.dataset or trained_dataset(meta)
    dataset = build_dataset(kind, args.data, args.split, transform, **trained_options(meta, kind))
    if len(dataset) == 0:
        raise BASError(f"split {args.split!r} of {args.data} has no images")
    check_num_classes(dataset, model.num_classes, "the checkpoint")
    result = run_exploration(
        model,
        dataset,
        num_images=args.num_images,
        max_n=args.max_n,
        device=device,
        progress=not args.no_progress,
    )
    if not result.rows:
        raise BASError(f"none of the chosen images of {args.data} ({args.split}) has a mask or a box")
    result.settings.update(
        checkpoint=str(args.checkpoint), data=str(args.data), split=args.split, test_mode=args.test_mode
    )
    out_dir = (
        Path(args.output)
        if args.output
        else Path(f"{Path(args.checkpoint).with_suffix('')}_explore") / args.split
    )
    write_exploration(out_dir, result)
    for row in result.summary:
        print(
            f"step {row['step']:+d} ({row['operation']}, kernel {row['kernel']}): area {row['area_mean']:.3f}  "
            f"CE {row['ce_mean']:.3f}  fg {row['fg_activation_mean']:.3f}  bg {row['bg_activation_mean']:.3f}"
        )
    if result.skipped:
        print(f"skipped {len(result.skipped)} image(s) without a mask or box")
    print(f"wrote {out_dir}")
    return 0
