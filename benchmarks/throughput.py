"""Training throughput of the real training step: fp32 vs bf16 autocast vs channels_last, and data wait.

For each mode a :class:`bas.engine.train.Trainer` is built (BAS ResNet50, 224 x 224 crops, batch 8 by
default, the paper's 1024-wide classifier) on the synthetic dataset, and its training step
(:meth:`Trainer.train_batch`: forward, loss, backward, SGD update) is timed over a few batches after
a warm-up. Data wait is the time blocked in ``next(loader_iterator)``; its share is that time over
the whole step time (wait + compute). The loader uses the training configuration (``--workers``
worker processes, persistent, prefetching).

    python benchmarks/throughput.py            # 2 warm-up + 10 timed steps per mode
    python benchmarks/throughput.py --quick    # smoke run: resnet18, 64x64, batch 2, 1 + 1 steps per mode

Prints one table row per mode. On a CPU, set ``--threads`` to the cores you want torch to use.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from bas.commands._common import add_alias
from bas.config import load_config
from bas.engine.train import Trainer

MODES = {"fp32": [], "bf16 autocast": ["train.amp=bf16"], "channels_last": ["train.channels_last=true"]}


SMOKE = "smoke run: not a measurement"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="resnet50")
    p.add_argument(
        "--size", type=int, default=224, help="crop size (images are resized to size * 8 / 7 first)"
    )
    p.add_argument("--batch-size", dest="batch", type=int, default=8, help="images per step (default: 8)")
    add_alias(p, "--batch", "--batch-size", "batch", type=int)
    p.add_argument("--workers", type=int, default=2, help="data-loader worker processes")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per mode")
    p.add_argument("--steps", type=int, default=10, help="timed steps per mode")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: resnet18, 64x64, batch 2, no loader workers, 1 warm-up and 1 timed step per mode",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument(
        "--data-root", metavar="DIR", help="folder for the synthetic dataset (default: a temporary folder)"
    )
    add_alias(p, "--data", "--data-root", "data_root")
    args = p.parse_args(argv)
    if args.quick:
        args.arch, args.size, args.batch, args.workers, args.warmup, args.steps = "resnet18", 64, 2, 0, 1, 1
    return args


def measure(overrides: list[str], args: argparse.Namespace, data_root: Path, out: Path) -> dict[str, float]:
    """Time ``args.steps`` training steps after ``args.warmup`` untimed ones."""
    images_needed = args.batch * (args.warmup + args.steps)
    per_class = max(16, math.ceil(images_needed / 4 / 0.7) + 2)  # 4 classes, 70 % of each in the train split
    cfg = load_config(
        None,
        [
            f"data.root={data_root}",
            f"train.output_dir={out}",
            f"model.arch={args.arch}",
            "data.synthetic.num_classes=4",
            f"data.synthetic.images_per_class={per_class}",
            f"data.synthetic.image_size={args.size * 10 // 7}",
            "data.options.val_per_class=0",
            f"data.input_size={args.size}",
            f"data.resize_size={args.size * 8 // 7}",
            f"data.batch_size={args.batch}",
            f"data.workers={args.workers}",
            "eval.every=0",
            *overrides,
        ],
    )
    trainer = Trainer(cfg, progress=False, device=args.device)
    trainer.loader.sampler.set_epoch(0)
    trainer.net.train()
    batches = iter(trainer.loader)
    cuda = trainer.env.device.type == "cuda"
    wait = compute = 0.0
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        trainer.train_batch(batch)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= args.warmup:
            wait += t1 - t0
            compute += t2 - t1
    total = wait + compute
    return {
        "images_per_s": args.batch * args.steps / total,
        "step_s": total / args.steps,
        "data_wait": wait / total,
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"bas training throughput: {args.arch}, {args.size}x{args.size}, batch {args.batch}, "
        f"{args.workers} loader workers, {args.warmup} warm-up + {args.steps} timed steps per mode"
    )
    print(
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data_root = Path(args.data_root) if args.data_root else Path(tmp) / "data"
        rows = {
            mode: measure(overrides, args, data_root, Path(tmp) / "run") for mode, overrides in MODES.items()
        }
    print(f"\n{'mode':<16}{'images/s':>10}{'step (s)':>10}{'data wait':>11}")
    for mode, r in rows.items():
        print(f"{mode:<16}{r['images_per_s']:>10.2f}{r['step_s']:>10.2f}{100 * r['data_wait']:>10.1f}%")
    if args.quick:
        print(SMOKE)


if __name__ == "__main__":
    main()
