"""``bas data check KIND ROOT``: validate a dataset without a model (``bas data list``: the kinds).

Every split is built (annotation errors are collected, not raised), then every image is decoded
fully (in parallel; truncated and unreadable files are reported), every mask file looked up, labels
checked against the class count and boxes against the image. Prints a summary per split and every
problem found as ``file[:line]: message``; exits 1 if there is any problem, 0 otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from bas.commands._common import count
from bas.data.datasets import WSOLDataset
from bas.data.formats import available_splits, build_dataset, get_format, list_formats
from bas.errors import BASError, DataError


def _command_line_options() -> dict[str, tuple[list[str], Any]]:
    """Option name -> (the kinds that declare it, its Option), for the options with a parser."""
    options: dict[str, tuple[list[str], Any]] = {}
    for kind in list_formats():
        for name, opt in get_format(kind).options.items():
            if opt.type is not None:
                options.setdefault(name, ([], opt))[0].append(kind)
    return options


def _kinds_epilog() -> str:
    lines = ["dataset kinds (bas data list shows their options):"]
    lines += [f"  {kind:<10} {get_format(kind).summary}" for kind in list_formats()]
    return "\n".join(lines)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("data", help="inspect and validate datasets")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    check = sub.add_parser(
        "check",
        help="validate a dataset (images, masks, labels, boxes) without a model",
        description=__doc__,
        epilog=_kinds_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "kind", type=str.lower, choices=list_formats(), metavar="KIND", help="dataset format (see below)"
    )
    check.add_argument("root", help="dataset root (the image root for 'wsol')")
    check.add_argument("--split", action="append", help="split to check (repeatable; default: all found)")
    for name, (kinds, opt) in _command_line_options().items():
        check.add_argument(
            f"--{name.replace('_', '-')}", type=opt.type, help=f"{', '.join(kinds)}: {opt.help}"
        )
    check.add_argument(
        "--max-problems", type=count, default=0, help="print at most this many problems (0 = all)"
    )
    check.set_defaults(func=run_check)
    listing = sub.add_parser("list", help="list the dataset kinds and their options")
    listing.set_defaults(func=run_list)


def _dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    options = {}
    for name, (kinds, _) in _command_line_options().items():
        value = getattr(args, name, None)
        if value is None:
            continue
        if args.kind not in kinds:
            raise BASError(f"--{name.replace('_', '-')} does not apply to '{args.kind}' datasets")
        options[name] = value
    return options


def run_list(args: argparse.Namespace) -> int:
    for kind in list_formats():
        fmt = get_format(kind)
        print(f"{kind}: {fmt.summary}")
        for name, opt in fmt.options.items():
            print(f"    {name} (default {opt.default!r}): {opt.help}")
    return 0


def _multilabel_summary(ds: Any) -> list[str]:
    lines = [f"  masks: {sum(1 for r in ds.records if r.mask is not None)} images with masks"]
    tags = [r.tags for r in ds.records if r.tags is not None]
    if tags:
        sizes = [len(t) for t in tags]
        lines.append(
            f"  tags per image: mean {sum(sizes) / len(sizes):.2f}, min {min(sizes)}, max {max(sizes)}"
        )
    return lines


def _summary(split: str, ds: WSOLDataset) -> list[str]:
    lines = [f"split {split}: {len(ds)} images, {ds.num_classes} classes"]
    if getattr(ds, "multi_label", False):
        return lines + _multilabel_summary(ds)
    counts = [len(r.boxes) for r in ds.records]
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
    from tqdm.auto import tqdm

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
        with tqdm(total=len(ds), desc=f"check {split}", unit="img", leave=False, disable=None) as bar:
            check = get_format(args.kind).check
            problems.extend(str(p) for p in check(ds, progress=lambda n: bar.update(n - bar.n)))
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
