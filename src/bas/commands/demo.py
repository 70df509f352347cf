"""``bas demo``: generate the synthetic dataset, train BAS on the CPU, evaluate, write metrics and pictures."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bas.commands._common import (
    add_config_args,
    add_device_args,
    add_output_arg,
    format_metrics,
    resolve_device,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train and evaluate BAS on the built-in synthetic data (CPU, minutes)",
        description="Generates the synthetic WSOL dataset if missing, trains BAS with the 'demo' "
        "recipe, chooses the threshold on the held-out val split, evaluates on test "
        "and writes metrics.json and a grid of heatmap/box overlays.",
    )
    add_output_arg(
        p, default="bas_demo", help="folder for the data, the run and the results (default: bas_demo)"
    )
    p.add_argument("--arch", help="backbone (default: the recipe's, resnet18)")
    p.add_argument("--epochs", type=int, help="training epochs (default: the recipe's)")
    p.add_argument(
        "--quick", action="store_true", help="a tiny run for smoke tests (seconds, meaningless numbers)"
    )
    add_config_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


QUICK = [
    "data.synthetic.images_per_class=12",
    "data.synthetic.image_size=64",
    "data.input_size=48",
    "data.resize_size=56",
    "data.batch_size=8",
    "data.options.val_per_class=2",
    "data.workers=0",
    "model.hidden=32",
    "optim.epochs=1",
    "eval.every=1",
]


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint
    from bas.config import load_config
    from bas.engine.evaluate import evaluate_split, write_evaluation
    from bas.engine.train import FINAL, train

    out = Path(args.output)
    overrides = [f"data.root={out / 'data'}", f"train.output_dir={out / 'run'}"]
    if args.quick:
        overrides += QUICK
    if args.arch:
        overrides.append(f"model.arch={args.arch}")
    if args.epochs:
        overrides.append(f"optim.epochs={args.epochs}")
    cfg = load_config("demo", overrides + list(args.overrides))
    device = resolve_device(args.device)
    progress = not args.no_progress
    start = time.perf_counter()
    print(f"bas demo: synthetic data in {out / 'data'}, run in {out / 'run'}")
    train(cfg, progress=progress, device=device)
    run_dir = Path(cfg["train"]["output_dir"])
    # the last epoch's model, as `bas benchmark synthetic` evaluates it (early maps can score well on
    # a small val split before the classifier has learnt; the threshold is still chosen on val)
    checkpoint = run_dir / FINAL
    model = load_checkpoint(checkpoint, map_location=device)
    report = evaluate_split(
        model,
        cfg,
        cfg["data"]["test_split"],
        select_on=cfg["data"]["val_split"],
        device=device,
        progress=progress,
    )
    report.result["checkpoint"] = str(checkpoint)
    results = out / "results"
    write_evaluation(results, report, model, cfg, save_vis=16, device=device)
    r = report.result
    print(
        f"test ({r['num_images']} images, threshold {r['threshold']:.2f} chosen on val): {format_metrics(r)}"
    )
    print(
        f"GT-known Loc {r['gt_known_loc']:.2f}   Top-1 Loc {r['top1_loc']:.2f}   "
        f"MaxBoxAccV2 {r['MaxBoxAccV2']:.2f}"
    )
    print(f"metrics: {results / 'metrics.json'}")
    print(f"overlays: {results / 'qualitative.png'}")
    print(f"checkpoint: {checkpoint}   ({time.perf_counter() - start:.0f} s)")
    return 0
