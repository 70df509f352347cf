"""``bas zoo``: the checkpoints released with the BAS papers, their reported figures and files."""

from __future__ import annotations

import argparse


def add_parser(sub) -> None:
    p = sub.add_parser(
        "zoo",
        help="list the released checkpoints of both papers and what they report",
        description="Every checkpoint released with BAS (CVPR 2022) and its extension (IJCV 2023): "
        "dataset, architecture, the reported Top-1 / Top-5 / GT-known Loc (PxAP for OpenImages, "
        "seed mIoU for segmentation), the protocol preset and recipe that reproduce it, and the "
        "authors' file name and download pages. Evaluate a downloaded file with "
        "bas evaluate --zoo NAME --checkpoint FILE --data-root DIR.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="show one entry in full")
    shown = p.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the whole table (or NAME) as JSON")
    shown.add_argument("--markdown", action="store_true", help="print docs/zoo.md (generated from the table)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from bas import zoo

    table = zoo.load_zoo()
    if args.name is not None:
        entry = table.get(args.name)
        print(json.dumps(entry.to_dict(), indent=2) if args.json else zoo.format_entry(entry, table))
    elif args.json:
        print(zoo.to_json(table))
    elif args.markdown:
        print(zoo.markdown(table), end="")
    else:
        print(zoo.format_listing(table))
    return 0
