"""``bas demo``: generate the synthetic dataset, train BAS (and CAM with ``--compare``), evaluate, write
metrics and pictures.

The demo reads the recipe of ``bas benchmark synthetic`` (``configs/demo.yaml``, through
``configs/benchmark/synthetic.yaml``), so one seed of the benchmark and ``bas demo --seed N`` train
the same models.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bas.commands._common import (
    add_config_args,
    add_device_args,
    add_output_arg,
    positive_int,
    resolve_device,
)

#: Why the demo evaluates the checkpoint it does (the benchmark file's ``checkpoint`` setting).
WHY = {
    "final": "the final model, as the benchmark file asks (checkpoint: final)",
    "best": "the epoch best on val {metric} (the trainer's best.safetensors), as `bas benchmark synthetic` "
    "evaluates it; late in training the maps shrink as the classifier saturates",
}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="train and evaluate BAS on the built-in synthetic data (CPU, minutes)",
        description="Generates the synthetic WSOL dataset if missing, trains BAS with the recipe of "
        "`bas benchmark synthetic` (configs/demo.yaml), chooses the threshold on the held-out val "
        "split, evaluates the epoch best on val on test and writes metrics.json and a grid of heatmap/box "
        "overlays. --compare also trains CAM on the same data and seed and draws both side by side.",
    )
    add_output_arg(
        p, default="bas_demo", help="folder for the data, the runs and the results (default: bas_demo)"
    )
    p.add_argument("--seed", type=int, default=0, help="training seed (the data is fixed; default 0)")
    p.add_argument("--compare", action="store_true", help="also train CAM under the same budget and compare")
    p.add_argument("--arch", help="backbone (default: the recipe's, resnet18)")
    p.add_argument("--epochs", type=positive_int, help="training epochs (default: the recipe's)")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    p.add_argument(
        "--quick", action="store_true", help="a tiny run for smoke tests (seconds, meaningless numbers)"
    )
    add_config_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint, read_checkpoint_metadata
    from bas.engine import compare
    from bas.engine.evaluate import write_evaluation
    from bas.engine.train import BEST, FINAL
    from bas.io import write_json

    out = Path(args.output)
    bench = compare.load_benchmark("synthetic", quick=args.quick)
    threads = compare.use_threads(args.threads)
    overrides = [f"data.root={out / 'data'}"]
    if args.arch:
        overrides.append(f"model.arch={args.arch}")
    if args.epochs:
        overrides.append(f"optim.epochs={args.epochs}")
    overrides += list(args.overrides)
    methods = ["CAM", "BAS"] if args.compare else ["BAS"]
    device = resolve_device(args.device)
    progress = not args.no_progress
    start, cpu_start = time.perf_counter(), compare.cpu_seconds()
    print(
        f"bas demo: {' and '.join(methods)}, seed {args.seed}, {threads} torch thread(s); "
        f"synthetic data in {out / 'data'}"
    )
    runs: dict[str, compare.RunResult] = {}
    configs: dict[str, dict] = {}
    for method in methods:
        cfg = configs[method] = compare.method_config(
            bench, method, seed=args.seed, output=out, overrides=overrides
        )
        cfg["train"]["output_dir"] = str(out / ("run" if method == "BAS" else f"run_{method.lower()}"))
        reuse = compare.run_is_finished(cfg)
        print(
            f"[{method}] {'reusing the finished run' if reuse else 'training'} in {cfg['train']['output_dir']}"
        )
        runs[method] = compare.train_and_evaluate(
            method, cfg, checkpoint=bench.checkpoint, device=device, progress=progress, reuse=reuse
        )
    bas, cfg = runs["BAS"], configs["BAS"]
    whole = compare.whole_image_baseline(cfg)

    # What was evaluated, and the other checkpoint of the run (final model or trainer's best) for contrast.
    def describe(path: Path) -> dict:
        meta = (read_checkpoint_metadata(path).get("metrics") or {}) if path.is_file() else {}
        metric = meta.get("select_metric") or cfg["eval"]["select_metric"]
        score = (meta.get("val") or {}).get(metric)
        found = str(path) if path.is_file() else None
        return {"path": found, "epoch": meta.get("epoch"), "val": score, "select_metric": metric}

    best_path, final_path = bas.run_dir / BEST, bas.run_dir / FINAL
    other = final_path if bas.checkpoint == best_path else best_path
    checkpoint = {
        **describe(bas.checkpoint),
        "why": WHY[bench.checkpoint].format(metric=cfg["eval"]["select_metric"]),
        "trainer_best": describe(best_path),
        "final": describe(final_path),
    }

    results = out / "results"
    model = load_checkpoint(bas.checkpoint, map_location=device)
    r = bas.report.result
    r.update(
        checkpoint=str(bas.checkpoint),
        checkpoint_choice=checkpoint,
        whole_image=whole,
        seed=args.seed,
        threads=threads,
    )
    write_evaluation(results, bas.report, model, cfg, save_vis=16, device=device)
    files = [results / "metrics.json", results / "qualitative.png"]
    if args.compare:
        cam = runs["CAM"]
        figure = compare.save_comparison_figure(
            results / "comparison.png",
            {
                name: (load_checkpoint(run.checkpoint, map_location=device), float(run.result["threshold"]))
                for name, run in runs.items()
            },
            bas.report.dataset,
            n=bench.figure_images,
            top_k=cfg["eval"]["top_k"],
            device=device,
        )
        write_json(
            results / "compare.json",
            {
                "seed": args.seed,
                "methods": {
                    name: {"checkpoint": str(run.checkpoint), **compare.run_metrics(run.result)}
                    for name, run in runs.items()
                },
                "BAS - CAM": {key: bas.result[key] - cam.result[key] for key, _ in compare.TABLE_METRICS},
                "whole_image": whole,
            },
        )
        files += [results / "compare.json", figure]
    wall, cpu = time.perf_counter() - start, compare.cpu_seconds() - cpu_start

    print()
    print(
        f"test split ({r['num_images']} images), seed {args.seed}; thresholds of GT-known / Top-1 Loc "
        "chosen on val (MaxBoxAccV2 needs none)"
    )
    table = compare.summarize(list(runs.values()))
    print(compare.format_table(table, whole_image=whole["MaxBoxAccV2"]))
    print(
        f"{compare.WHOLE_IMAGE}: one box covering the whole image, the score of a method that localizes nothing"
    )
    print()

    def said(entry: dict) -> str:
        val = (
            f", val {entry['select_metric']} {entry['val']:.2f}"
            if isinstance(entry["val"], (int, float))
            else ""
        )
        return f" (epoch {entry['epoch']}{val})" if entry["epoch"] is not None else ""

    print(f"evaluated checkpoint: {bas.checkpoint}{said(checkpoint)}: {checkpoint['why']}")
    entry = checkpoint["final" if other == final_path else "trainer_best"]
    if entry["path"]:
        name = "the final model" if other == final_path else "the trainer's best on val"
        print(f"not evaluated: {other}{said(entry)}, {name}")
    for path in files:
        print(f"wrote {path}")
    print(f"wall time {wall:.0f} s, CPU time {cpu:.0f} s ({threads} torch thread(s), device {device})")
    return 0
