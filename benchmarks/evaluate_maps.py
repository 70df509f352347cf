"""Benchmark of MaxBoxAcc: bas.metrics.BoxEvaluator against a per-threshold implementation.

Random smooth 224x224 maps (sums of 1-4 Gaussians, min-max normalised, float32) with synthetic
ground-truth boxes (1 or 2 per map) are evaluated at IoU 30/50/70 with multi-contour boxes, as
for MaxBoxAccV2 on CUB (5,794 test images) with the paper's interval 0.001.

* fast: ``BoxEvaluator`` on every map, with all cores (``--workers``), the maps made beforehand
  (5,794 float32 maps take 1.2 GB);
* reference: the protocol done literally, one ``cv2.threshold`` + ``cv2.findContours`` per
  threshold and per map, in one process, on the first ``--reference-maps`` maps; its time per map
  is extrapolated to all maps.

The two must give the same hit counts on the reference subset (checked, exit status 1 if not).

    python benchmarks/evaluate_maps.py            # 5,794 maps, reference on 100
    python benchmarks/evaluate_maps.py --quick    # smoke run: 200 maps, reference on 5
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Iterator, Sequence

import numpy as np

from bas.metrics import BoxEvaluator, iou_percent, reference_box_hits

SIZE = 224
SMOKE = "smoke run: not a measurement"
BATCH = 256


def smooth_maps(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """``n`` maps (float32, [0, 1]) and their ground-truth boxes around the strongest blobs."""
    axis = np.arange(SIZE, dtype=np.float64)
    maps = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    boxes = []
    for scoremap in maps:
        total = np.zeros((SIZE, SIZE))
        blobs = []
        for _ in range(rng.integers(1, 5)):
            cx, cy = rng.uniform(20, SIZE - 20, 2)
            sx, sy = rng.uniform(8, 60, 2)
            weight = rng.uniform(0.3, 1.0)
            total += weight * np.outer(
                np.exp(-((axis - cy) ** 2) / (2 * sy**2)), np.exp(-((axis - cx) ** 2) / (2 * sx**2))
            )
            blobs.append((weight, cx, cy, sx, sy))
        total -= total.min()
        scoremap[:] = total / total.max()
        blobs.sort(reverse=True)
        gt = []
        for _, cx, cy, sx, sy in blobs[: rng.integers(1, 3)]:
            k = rng.uniform(1.0, 2.5)
            box = np.array([cx - k * sx, cy - k * sy, cx + k * sx, cy + k * sy]) + rng.normal(0, 5, 4)
            box = np.clip(np.round(box), 0, SIZE - 1)
            gt.append([box[0], box[1], max(box[0], box[2]), max(box[1], box[3])])
        boxes.append(np.array(gt))
    return maps, boxes


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the worker processes)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def map_batches(seed: int, n: int) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """The maps in batches of ``BATCH``."""
    rng = np.random.default_rng(seed)
    for start in range(0, n, BATCH):
        yield smooth_maps(rng, min(BATCH, n - start))


def run_fast(
    batches: Sequence[tuple[np.ndarray, list[np.ndarray]]], args: argparse.Namespace, workers: int | None
) -> tuple[dict, float, float]:
    """Result, wall seconds and CPU seconds (all processes) of BoxEvaluator on maps made beforehand.

    The maps exist before the clock starts (the evaluator's workers run in the background, so
    making maps between batches would hide their work).
    """
    evaluator = BoxEvaluator(args.iou, args.interval, not args.single_contour, workers)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    for maps, gts in batches:
        evaluator.accumulate(maps, gts)
    result = evaluator.compute()
    return result, time.perf_counter() - start, cpu_seconds() - start_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--maps", type=int, default=5794, help="number of maps (CUB test: 5794)")
    parser.add_argument(
        "--reference-maps", type=int, default=100, help="maps for the per-threshold reference"
    )
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--iou", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--single-contour", action="store_true", help="largest contour only")
    parser.add_argument("--workers", type=int, help="processes for the fast evaluator (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 200 maps, reference on 5")
    args = parser.parse_args(argv)
    if args.quick:
        args.maps, args.reference_maps = 200, 5
    args.iou = tuple(args.iou)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    subset = min(args.reference_maps, args.maps)
    mode = "single contour" if args.single_contour else "multi-contour"
    print(f"{args.maps} maps {SIZE}x{SIZE}, interval {args.interval}, IoU {args.iou}, {mode}, {cores} cores")

    batches = list(map_batches(args.seed, args.maps))
    result, fast_time, fast_cpu = run_fast(batches, args, args.workers)
    print(
        f"fast, all maps, {args.workers or cores} workers: {fast_time:.2f} s wall "
        f"({1000 * fast_time / args.maps:.2f} ms/map), {1000 * fast_cpu / args.maps:.2f} ms CPU/map"
    )
    scores = "  ".join(f"IoU{iou_percent(d)} {v:.2f}" for d, v in result["MaxBoxAcc"].items())
    print(f"  MaxBoxAcc {scores}  MaxBoxAccV2 {result['MaxBoxAccV2']:.2f}")

    sub_maps, sub_gts = smooth_maps(np.random.default_rng(args.seed), subset)  # the first maps again
    sub_result, one_time, one_cpu = run_fast([(sub_maps, sub_gts)], args, 1)
    start, cpu = time.perf_counter(), cpu_seconds()
    hits = reference_box_hits(sub_maps, sub_gts, args.interval, args.iou, not args.single_contour)
    ref_time, ref_cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(
        f"fast, {subset} maps, 1 process: {one_time:.2f} s wall ({1000 * one_time / subset:.2f} ms/map), "
        f"{1000 * one_cpu / subset:.2f} ms CPU/map"
    )
    print(
        f"reference, {subset} maps, 1 process: {ref_time:.2f} s wall ({1000 * ref_time / subset:.2f} ms/map), "
        f"{1000 * ref_cpu / subset:.2f} ms CPU/map"
    )
    print(f"reference extrapolated to {args.maps} maps: {ref_time / subset * args.maps:.1f} s wall")
    print(f"speed-up per process (CPU time per map): {(ref_cpu / subset) / (one_cpu / subset):.1f}x")
    print(
        f"speed-up, fast on all cores vs reference on one (wall): {ref_time / subset * args.maps / fast_time:.1f}x"
    )
    print(
        f"speed-up in total CPU time, all-core run vs reference: {(ref_cpu / subset) / (fast_cpu / args.maps):.1f}x"
    )

    agree = all(
        np.array_equal(sub_result["curve"]["accuracy"][d], hits[i] * 100.0 / subset)
        for i, d in enumerate(args.iou)
    )
    print(f"fast and reference agree on the {subset} maps: {'yes' if agree else 'NO'}")
    if args.quick:
        print(SMOKE)
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
