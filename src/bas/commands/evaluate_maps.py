"""``bas evaluate-maps``: score saved maps with the standard WSOL protocol (Choe et al., CVPR 2020).

Maps are ``<maps>/<image_id>.npy`` (square S x S floats in [0, 1] over the whole image resized to
S x S, 224 in the papers). CUB and ILSVRC give MaxBoxAcc at each IoU threshold and their mean,
MaxBoxAccV2 (multi-contour, IoU 0.3/0.5/0.7: the default; with --largest-contour the mean is reported
as "MaxBoxAcc (largest contour)"); OpenImages gives PxAP and PIoU. --metadata is either the split
folder itself (metadata/CUB/test) or a folder holding <split>/ or <dataset>/<split>/; without it,
<maps>/metadata is used (what ``bas evaluate --save-maps`` writes), and without --dataset the kind
of annotation (boxes or masks) is read from localization.txt.

--protocol cvpr2022-code / ijcv2023-code score the boxes as the papers' scripts do, at one
--threshold (docs/protocols.md): map > threshold, the largest component (raster order on ties),
their ground-truth arithmetic on maps of the whole image, their IoU comparison and mean. What
happens before a map exists (input resizing, crop, normalisation eps, top-k, ten-crop) cannot be
redone on saved maps: those conventions do not apply here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bas.commands._common import (
    add_dataset_arg,
    add_output_arg,
    fraction,
    map_dataset,
    positive_int,
    step_fraction,
)
from bas.errors import ConfigError, DataError


def results_file(value: str) -> Path:
    """``--output DIR``: the results go to ``DIR/metrics.json``; a name ending in ``.json`` (what
    ``--output`` meant before) is the file itself."""
    path = Path(value)
    return path if path.suffix.lower() == ".json" else path / "metrics.json"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate-maps",
        help="evaluate saved score maps (MaxBoxAcc, MaxBoxAccV2, PxAP, PIoU)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--maps", required=True, help="folder of <image_id>.npy score maps")
    parser.add_argument(
        "--metadata", help="metadata split folder, or the metadata root (default: <maps>/metadata)"
    )
    add_dataset_arg(
        parser,
        kind=map_dataset,
        metavar="{cub,ilsvrc,openimages}",
        help="dataset of the metadata, any case (default: from localization.txt)",
    )
    parser.add_argument("--split", help="split name (needed when --metadata is not the split folder)")
    parser.add_argument("--mask-root", help="OpenImages: folder holding OpenImages/<mask paths>")
    parser.add_argument("--image-root", help="CUB/ILSVRC: read image sizes missing from image_sizes.txt here")
    parser.add_argument(
        "--interval", type=step_fraction, default=0.001, help="score-threshold step (default 0.001)"
    )
    parser.add_argument(
        "--multi-contour",
        action="store_true",
        default=True,
        help="boxes of all contours, best IoU counts (the default, MaxBoxAccV2)",
    )
    parser.add_argument(
        "--largest-contour",
        dest="multi_contour",
        action="store_false",
        help="box of the largest contour only (wsolevaluation's MaxBoxAcc default)",
    )
    parser.add_argument(
        "--iou", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="IoU thresholds as fractions"
    )
    parser.add_argument(
        "--protocol",
        default="standard",
        choices=["standard", "cvpr2022-code", "ijcv2023-code"],
        help="standard (MaxBoxAcc/PxAP, the default) or the papers' code at --threshold",
    )
    parser.add_argument(
        "--threshold",
        type=fraction,
        metavar="T",
        help="score threshold in [0, 1] of --protocol cvpr2022-code / ijcv2023-code",
    )
    add_output_arg(parser, type=results_file, help="write the results to DIR/metrics.json (or to FILE.json)")
    parser.add_argument("--curve", help="write the accuracy (or precision-recall) curve to this CSV file")
    parser.add_argument(
        "--workers", type=positive_int, help="processes for the box evaluation (default: all cores)"
    )
    parser.set_defaults(func=run_evaluate_maps)


def resolve_metadata_dir(
    metadata: str | Path | None, dataset: str | None, split: str | None, maps: str | Path = "."
) -> Path:
    """The split folder: ``metadata`` itself, ``metadata/<split>`` or ``metadata/<dataset>/<split>``;
    ``<maps>/metadata`` when ``metadata`` is None."""
    from bas.evaluate_maps import METADATA_FOLDER

    if metadata is None:
        saved = Path(maps) / METADATA_FOLDER
        if not (saved / "image_ids.txt").is_file():
            raise ConfigError(
                f"{Path(maps)} holds no {METADATA_FOLDER}/image_ids.txt (written by bas evaluate "
                "--save-maps); give --metadata"
            )
        return saved
    root = Path(metadata)
    if (root / "image_ids.txt").is_file():
        return root
    if not root.is_dir():
        raise DataError("metadata folder not found", root)
    if split is None:
        raise ConfigError(f"{root} holds no image_ids.txt; give --split to look for <split>/ in it")
    candidates = [root / split] + ([root / dataset / split] if dataset else [])
    for candidate in candidates:
        if (candidate / "image_ids.txt").is_file():
            return candidate
    raise DataError(f"no image_ids.txt here, nor in {' or '.join(str(c) for c in candidates)}", root)


def format_result(result: dict[str, Any]) -> str:
    """Human-readable lines of an :func:`bas.evaluate_maps.evaluate_score_maps` result."""
    from bas.evaluate_maps import box_summary_name
    from bas.metrics import iou_percent

    head = f"{result['dataset'] or 'maps'} {result.get('split', '')}".rstrip()
    sweep = "" if "protocol" in result else f", threshold interval {result['interval']:g}"
    lines = [f"{head}: {result['num_images']} images{sweep}"]
    if "map_size" in result:
        lines[0] += f", {result['map_size']}x{result['map_size']} maps"
    if "protocol" in result:
        mean = "class-balanced mean" if result["class_balanced"] else "mean over images"
        lines[0] += f", protocol {result['protocol']} at threshold {result['threshold']:g} ({mean})"
        for iou, acc in result["box_acc"].items():
            lines.append(f"box accuracy@IoU{iou_percent(iou)}: {acc:.2f}")
        lines.append(f"GT-known Loc: {result['gt_known_loc']:.2f}")
    elif "MaxBoxAcc" in result:
        lines[0] += ", multi-contour" if result["multi_contour"] else ", largest contour"
        for iou, acc in result["MaxBoxAcc"].items():
            lines.append(
                f"MaxBoxAcc@IoU{iou_percent(iou)}: {acc:.2f}  (score threshold {result['best_threshold'][iou]:.3f})"
            )
        name = box_summary_name(result["multi_contour"], result["iou_thresholds"])
        lines.append(f"{name}: {result[name]:.2f}")
    else:
        lines.append(f"PxAP: {result['PxAP']:.2f}")
        lines.append(f"PIoU: {result['PIoU']:.2f}  (score threshold {result['PIoU_threshold']:.3f})")
    return "\n".join(lines)


def run_evaluate_maps(args: argparse.Namespace) -> int:
    from bas.evaluate_maps import evaluate_score_maps, write_curve_csv
    from bas.io import write_json

    if not 0 < args.interval <= 1:
        raise ConfigError(f"--interval must be in (0, 1], got {args.interval}")
    if any(not 0 < d <= 100 for d in args.iou):
        raise ConfigError(f"--iou thresholds must be in (0, 100], got {args.iou}")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {args.workers}")
    if args.protocol == "standard" and args.threshold is not None:
        raise ConfigError(
            "--threshold is for --protocol cvpr2022-code / ijcv2023-code (standard sweeps every threshold)"
        )
    if args.protocol != "standard" and args.curve:
        raise ConfigError(f"--curve: protocol {args.protocol} evaluates one threshold, it has no curve")
    metadata_dir = resolve_metadata_dir(args.metadata, args.dataset, args.split, args.maps)
    result = evaluate_score_maps(
        args.maps,
        metadata_dir,
        args.dataset,
        mask_root=args.mask_root,
        interval=args.interval,
        multi_contour=args.multi_contour,
        iou_thresholds=tuple(args.iou),
        image_root=args.image_root,
        num_workers=args.workers,
        protocol=args.protocol,
        threshold=args.threshold,
    )
    result["split"] = args.split or (metadata_dir.name if args.metadata else "")
    print(format_result(result))
    if args.output:
        write_json(args.output, {k: v for k, v in result.items() if k not in ("curve", "per_image")})
    if args.curve:
        write_curve_csv(args.curve, result)
    return 0
