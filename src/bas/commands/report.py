"""``bas report``: one self-contained HTML page of a run's results."""

from __future__ import annotations

import argparse

from bas.commands._common import (
    add_checkpoint_arg,
    add_data_root_arg,
    add_device_args,
    add_output_arg,
    resolve_device,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "report",
        help="write one self-contained HTML page of a run's results",
        description="Writes RUN_DIR/report.html (or --output): the metrics, the threshold curves with "
        "the threshold used, a sortable per-class table, the best and worst images of the "
        "evaluated split with their maps and boxes, the training log, the config and the "
        "environment. RUN_DIR is a run folder of bas train (its evaluation found in results/ or "
        "<checkpoint>_eval/<split>/), the output folder of bas demo, or an evaluation folder. "
        "The gallery uses --checkpoint (default: the evaluated checkpoint, else the run's) on "
        "the data of the run's config. Images are embedded; the page needs no network.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="run, demo or evaluation folder")
    add_output_arg(
        p, help="write the page to DIR/report.html, or to FILE.html (default: RUN_DIR/report.html)"
    )
    p.add_argument("--eval", dest="eval_dir", metavar="DIR", help="evaluation folder (holding metrics.json)")
    add_checkpoint_arg(p, required=False)
    add_data_root_arg(p, help="dataset root for the gallery (default: the run config's data.root)")
    p.add_argument(
        "--gallery", type=int, default=6, metavar="N", help="best and worst images shown (default: 6 each)"
    )
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bas.report import write_report

    out = write_report(
        args.run_dir,
        args.output,
        eval_dir=args.eval_dir,
        checkpoint=args.checkpoint,
        data_root=args.data_root,
        gallery_size=args.gallery,
        device=resolve_device(args.device),
    )
    print(f"wrote {out}")
    return 0
