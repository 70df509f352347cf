"""``bas benchmark``: train methods (CAM, HaS, ADL, BAS) under the same budget and compare their localization."""

from __future__ import annotations

import argparse
from pathlib import Path

from bas.commands._common import (
    add_config_args,
    add_device_args,
    add_output_arg,
    positive_int,
    resolve_device,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "benchmark",
        help="compare methods (CAM, HaS, ADL, BAS) under the same budget (e.g. on the synthetic data)",
        description="Trains the methods of a benchmark (by default CAM and BAS; --methods chooses) "
        "over several seeds with the "
        "same backbone, data, input size and epochs, evaluates each on the test split "
        "with the threshold chosen on val, and writes the table "
        "(mean ± std over seeds) as results.json and results.md plus comparison.png, "
        "the same test images under every method. Finished runs found in the output "
        "folder with the same config are reused.",
    )
    p.add_argument("benchmark", help="a shipped benchmark (synthetic) or a benchmark YAML file")
    p.add_argument(
        "--seeds", type=positive_int, help="number of training seeds, 0 .. N-1 (default: the benchmark's, 3)"
    )
    p.add_argument(
        "--methods",
        help="comma-separated methods to train, in this order, e.g. cam,has,adl,bas "
        "(default: the benchmark's default_methods; synthetic: cam,bas)",
    )
    p.add_argument("--arch", help="backbone of every method (default: the benchmark's, resnet18)")
    p.add_argument(
        "--epochs", type=positive_int, help="training epochs of every method (default: the benchmark's)"
    )
    add_output_arg(p, help="output folder (default: bas_benchmark/<benchmark>)")
    p.add_argument(
        "--quick", action="store_true", help="a tiny run for smoke tests (seconds, meaningless numbers)"
    )
    p.add_argument("--rerun", action="store_true", help="train again even where a finished run exists")
    p.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    add_config_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bas.engine.compare import (
        checkpoint_words,
        format_table,
        load_benchmark,
        run_benchmark,
        use_threads,
    )

    methods = None if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    bench = load_benchmark(args.benchmark, quick=args.quick, methods=methods)
    if args.seeds is not None:
        bench.seeds = args.seeds
    overrides = list(args.overrides)
    if args.arch:
        overrides.append(f"model.arch={args.arch}")
    if args.epochs:
        overrides.append(f"optim.epochs={args.epochs}")
    output = Path(args.output or Path("bas_benchmark") / bench.name)
    threads = use_threads(args.threads)
    print(
        f"bas benchmark {bench.name}: {', '.join(bench.methods)} x {bench.seeds} seed(s), "
        f"{threads} torch thread(s), output in {output}"
    )
    document = run_benchmark(
        bench,
        output,
        overrides=overrides,
        device=resolve_device(args.device),
        progress=not args.no_progress,
        reuse=not args.rerun,
    )
    print()
    print(
        f"test split, {checkpoint_words(bench)}, thresholds chosen on val; mean ± std over {bench.seeds} seed(s):"
    )
    print(format_table(document["methods"], whole_image=document["whole_image"]["MaxBoxAccV2"]))
    print()
    print(f"wall time {document['wall_seconds']:.0f} s, CPU time {document['cpu_seconds']:.0f} s")
    print(f"results: {output / 'results.json'}  {output / 'results.md'}")
    print(f"figure: {document['files']['figure']}")
    return 0
