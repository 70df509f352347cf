"""``bas data check KIND ROOT``: validate a dataset without a model.

Every split is built (annotation errors are collected, not raised), then every image is opened
with PIL ``verify`` (sizes read from the header, no decoding), every mask file looked up, labels
checked against the class count and boxes against the image. Prints a summary per split and every
problem found as ``file[:line]: message``; exits 1 if there is any problem, 0 otherwise.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bas.commands._common import DATASET_KINDS_HELP, dataset_kind
from bas.errors import BASError, DataError

if TYPE_CHECKING:
    from bas.data.datasets import WSOLDataset

# Option name (argparse dest) -> the dataset kinds it applies to.
_OPTIONS: dict[str, tuple[str, ...]] = {
    "val_per_class": ("cub",),
    "seed": ("cub",),
    "metadata": ("wsol",),
    "mask_root": ("wsol",),
    "num_classes": ("wsol", "bas_list"),
    "boxes": ("ilsvrc",),
    "classes": ("ilsvrc",),
    "val_list": ("ilsvrc",),
    "list_file": ("bas_list",),
    "box_file": ("bas_list",),
    "image_root": ("bas_list",),
    "boxes_csv": ("folder",),
}


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="inspect and validate datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser(
        "check",
        help="validate a dataset (images, masks, labels, boxes) without a model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "kind", type=dataset_kind, metavar="KIND", help=f"dataset format: {DATASET_KINDS_HELP}"
    )
    check.add_argument("root", help="dataset root (the image root for 'wsol')")
    check.add_argument("--split", action="append", help="split to check (repeatable; default: all found)")
    check.add_argument("--val-per-class", type=_count_or_fraction, help="cub: held-out val images per class")
    check.add_argument("--seed", type=int, help="cub: seed of the val split")
    check.add_argument("--metadata", help="wsol: metadata folder, e.g. metadata/CUB")
    check.add_argument("--mask-root", help="wsol: root of the OpenImages mask PNGs")
    check.add_argument("--num-classes", type=int, help="wsol, bas_list: number of classes")
    check.add_argument("--boxes", help="ilsvrc: XML folder, LOC_val_solution.csv or val_gt.txt")
    check.add_argument("--classes", help="ilsvrc: train folder or synsets file giving the wnid order")
    check.add_argument("--val-list", help="ilsvrc: BAS val_list.txt (path;label)")
    check.add_argument("--list-file", help="bas_list: path;label list")
    check.add_argument("--box-file", help="bas_list: x0 y0 x1 y1 height width lines")
    check.add_argument("--image-root", help="bas_list: folder the list paths are relative to")
    check.add_argument("--boxes-csv", help="folder: CSV of image_id,x0,y0,x1,y1")
    check.add_argument(
        "--max-problems", type=int, default=0, help="print at most this many problems (0 = all)"
    )
    check.set_defaults(func=run_check)


def _count_or_fraction(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)


def _dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {}
    for name, kinds in _OPTIONS.items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if args.kind not in kinds:
            raise BASError(f"--{name.replace('_', '-')} does not apply to '{args.kind}' datasets")
        options[name] = value
    return options


def _summary(split: str, ds: WSOLDataset) -> list[str]:
    counts = [len(r.boxes) for r in ds.records]
    lines = [f"split {split}: {len(ds)} images, {ds.num_classes} classes"]
    if ds.has_boxes:
        lines.append(
            f"  boxes per image: mean {sum(counts) / max(len(counts), 1):.2f}, min {min(counts)}, "
            f"max {max(counts)}, {sum(1 for c in counts if c == 0)} images without boxes"
        )
    else:
        lines.append("  boxes: none")
    if ds.has_masks:
        lines.append(f"  masks: {sum(1 for r in ds.records if r.masks)} images with masks")
    per_class: dict[int, int] = {}
    for r in ds.records:
        per_class[r.label] = per_class.get(r.label, 0) + 1
    if per_class:
        lines.append(f"  images per class: min {min(per_class.values())}, max {max(per_class.values())}")
    return lines


def run_check(args: argparse.Namespace) -> int:
    from bas.data.datasets import available_splits, build_dataset, check_dataset

    options = _dataset_options(args)
    splits = args.split or available_splits(args.kind, args.root, **options)
    if not splits:
        raise DataError(f"no split of a '{args.kind}' dataset found", args.root)
    problems: list[str] = []
    classes: list[str] | None = None
    for split in splits:
        collected: list[DataError] = []
        try:
            ds = build_dataset(args.kind, args.root, split, None, problems=collected, **dict(options))
        except DataError as exc:
            problems.append(str(exc))
            print(f"split {split}: cannot be built")
            continue
        problems.extend(str(p) for p in collected)
        problems.extend(str(p) for p in check_dataset(ds))
        print("\n".join(_summary(split, ds)))
        if classes is None:
            classes = ds.classes
    if classes is not None:
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        print(f"classes ({len(classes)}): {shown}")
    unique = list(dict.fromkeys(problems))  # a malformed line shows up in every split: report it once
    if not unique:
        print("no problems found")
        return 0
    print(f"{len(unique)} problem(s):")
    limit = args.max_problems if args.max_problems and args.max_problems > 0 else len(unique)
    for text in unique[:limit]:
        print(f"  {text}")
    if limit < len(unique):
        print(f"  ... and {len(unique) - limit} more")
    return 1
