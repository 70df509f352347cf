"""Speed of ``bas evaluate-maps`` against wsolevaluation's BoxEvaluator, on saved score maps.

A CUB-sized test split is written to a temporary folder: 5,794 ids named like the standard
metadata (``001.Class_001/Class_001_0001.jpg``), one box per image in image pixels, image sizes of
300 to 500 pixels, and one float32 224x224 score map per id. Two kinds of maps:

* ``realistic``: a random smooth 28x28 map (blurred noise plus a bump over the object), min-max
  normalised and upsampled bilinearly to 224x224, as a CNN's maps are;
* ``noisy``: a 224x224 map made at full resolution, a bump over the object plus uniform pixel
  noise of 1% to 3% of its range (many small contours near the background levels).

Both are evaluated for MaxBoxAccV2 on CUB: interval 0.001, IoU 0.3 / 0.5 / 0.7, multi-contour.

* fast: the command ``bas evaluate-maps ... --multi-contour`` in a child process (wall time of the
  whole command: start-up, reading the metadata and the maps, evaluation, all cores);
* reference: :func:`wsol_box_hits`, a literal transcription of wsolevaluation's
  ``BoxEvaluator`` (``compute_bboxes_from_scoremaps`` + ``calculate_multiple_iou``: one
  ``cv2.threshold`` and one ``cv2.findContours`` per threshold), reading the same files, in this
  process, on the first ``--reference-maps`` maps (all by default); its time is extrapolated to
  all maps when it runs on fewer.

The two are timed side by side: the reference maps are split into ``--rounds`` parts, and the
command runs once before each part, so that a change in the load of a shared machine affects both
alike. The fast time is the median of the command's runs; the load average is printed.

Checks (exit status 1 if one fails): the hit counts of the reference equal those of
``bas.metrics.BoxEvaluator`` (one process) on the reference maps, and, when the reference runs on
every map, those of the command's curve.

    python benchmarks/evaluate_maps.py                          # 5,794 maps of each kind
    python benchmarks/evaluate_maps.py --reference-maps 1000    # reference on 1,000, extrapolated
    python benchmarks/evaluate_maps.py --quick                  # smoke run: not a measurement
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from bas.metrics import BoxEvaluator

SIZE = 224
KINDS = ("realistic", "noisy")
CLASSES = 200


# --- the data ---------------------------------------------------------------------------------


def make_split(root: Path, kind: str, n: int, seed: int) -> tuple[Path, Path]:
    """Write ``n`` maps of ``kind`` and their metadata under ``root``; return (maps dir, split dir)."""
    rng = np.random.default_rng(seed)
    split = root / "metadata" / "CUB" / "test"
    maps_dir = root / "maps"
    split.mkdir(parents=True)
    ids, sizes, boxes = [], [], []
    for i in range(n):
        c = i % CLASSES + 1
        image_id = f"{c:03d}.Class_{c:03d}/Class_{c:03d}_{i // CLASSES + 1:04d}.jpg"
        width, height = (int(v) for v in rng.integers(300, 501, 2))
        bw, bh = rng.uniform(0.2, 0.9) * width, rng.uniform(0.2, 0.9) * height
        x0, y0 = rng.uniform(0, width - bw), rng.uniform(0, height - bh)
        box = (int(x0), int(y0), int(x0 + bw), int(y0 + bh))  # integers, as in the standard metadata
        scoremap = (realistic_map if kind == "realistic" else noisy_map)(rng, box, width, height)
        path = maps_dir / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
        ids.append(image_id)
        sizes.append((width, height))
        boxes.append(box)
    (split / "image_ids.txt").write_text("".join(f"{i}\n" for i in ids))
    (split / "class_labels.txt").write_text("".join(f"{i},{int(i[:3]) - 1}\n" for i in ids))
    (split / "image_sizes.txt").write_text("".join(f"{i},{w},{h}\n" for i, (w, h) in zip(ids, sizes)))
    (split / "localization.txt").write_text(
        "".join(f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, b in zip(ids, boxes))
    )
    return maps_dir, split


def _bump(shape: tuple[int, int], box: Sequence[float], width: int, height: int) -> np.ndarray:
    """A Gaussian bump over ``box`` (image pixels) on a grid of ``shape`` covering the image."""
    rows, cols = shape
    x = (np.arange(cols) + 0.5) * width / cols
    y = (np.arange(rows) + 0.5) * height / rows
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    sx, sy = (box[2] - box[0]) / 3, (box[3] - box[1]) / 3
    return np.outer(np.exp(-((y - cy) ** 2) / (2 * sy**2)), np.exp(-((x - cx) ** 2) / (2 * sx**2)))


def _normalised(x: np.ndarray) -> np.ndarray:
    x = x - x.min()
    return (x / x.max()).astype(np.float32)


def realistic_map(rng: np.random.Generator, box: Sequence[float], width: int, height: int) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random((28, 28)), (0, 0), rng.uniform(1.0, 2.5))
    small = _normalised(rng.uniform(0.3, 1.5) * _bump((28, 28), box, width, height) + _normalised(noise))
    return np.clip(cv2.resize(small, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR), 0, 1)


def noisy_map(rng: np.random.Generator, box: Sequence[float], width: int, height: int) -> np.ndarray:
    return _normalised(
        _bump((SIZE, SIZE), box, width, height) + rng.uniform(0.01, 0.03) * rng.random((SIZE, SIZE))
    )


# --- wsolevaluation's BoxEvaluator, transcribed ---------------------------------------------------


def wsol_resized_box(box: Sequence[float], image_size: tuple[int, int]) -> tuple[int, ...]:
    """``resize_bbox``: each coordinate scaled to 224 in float, then ``int``."""
    width, height = (float(v) for v in image_size)
    x0, y0, x1, y1 = (float(v) for v in box)
    return int(x0 * SIZE / width), int(y0 * SIZE / height), int(x1 * SIZE / width), int(y1 * SIZE / height)


def wsol_boxes(scoremap: np.ndarray, thresholds: Sequence[float], multi_contour: bool):
    """``compute_bboxes_from_scoremaps``: the boxes at every threshold and their number."""
    height, width = scoremap.shape
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    all_boxes, counts = [], []
    for threshold in thresholds:
        _, binary = cv2.threshold(image, int(threshold * np.max(image)), 255, cv2.THRESH_BINARY)
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[0]
        if len(contours) == 0:
            all_boxes.append(np.asarray([[0, 0, 0, 0]]))
            counts.append(1)
            continue
        if not multi_contour:
            contours = [max(contours, key=cv2.contourArea)]
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append([x, y, min(x + w, width - 1), min(y + h, height - 1)])
        all_boxes.append(np.asarray(boxes))
        counts.append(len(contours))
    return all_boxes, counts


def wsol_multiple_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``calculate_multiple_iou``: (num_a, num_b) IoU, inclusive corners (+1), 0 when degenerate."""
    a, b = a[:, None, :], b[None, :, :]
    inter = np.maximum(
        0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ) * np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    denominator = area_a + area_b - inter
    degenerate = denominator <= 0
    denominator[degenerate] = 1
    ious = inter / denominator
    ious[degenerate] = 0
    return ious


def wsol_box_hits(
    maps_dir: Path,
    image_ids: Sequence[str],
    gt_boxes: dict[str, list[tuple[int, ...]]],
    thresholds: Sequence[float],
    iou_percents: Sequence[int],
    multi_contour: bool = True,
) -> np.ndarray:
    """``BoxEvaluator.accumulate`` over the maps of ``image_ids``: hits (n_iou, n_thr)."""
    hits = np.zeros((len(iou_percents), len(thresholds)))
    for image_id in image_ids:
        scoremap = np.load(maps_dir / f"{image_id}.npy").astype(np.float64)  # t2n
        if np.isnan(scoremap).any() or (scoremap > 1).any() or (scoremap < 0).any():
            raise ValueError(f"invalid score map {image_id}")
        boxes, counts = wsol_boxes(scoremap, thresholds, multi_contour)
        ious = wsol_multiple_iou(np.concatenate(boxes, axis=0), np.array(gt_boxes[image_id]))
        best_per_box = ious.max(1)
        best, start = [], 0
        for count in counts:
            best.append(max(best_per_box[start : start + count]))
            start += count
        for i, percent in enumerate(iou_percents):
            hits[i][np.where(np.asarray(best) >= percent / 100)[0]] += 1
    return hits


def read_metadata(split: Path) -> tuple[list[str], dict[str, list[tuple[int, ...]]]]:
    """Image ids and their boxes resized to 224 the wsolevaluation way."""
    ids = split.joinpath("image_ids.txt").read_text().split()
    sizes = {}
    for line in split.joinpath("image_sizes.txt").read_text().split():
        image_id, w, h = line.split(",")
        sizes[image_id] = (int(w), int(h))
    boxes: dict[str, list[tuple[int, ...]]] = {i: [] for i in ids}
    for line in split.joinpath("localization.txt").read_text().split():
        image_id, *box = line.split(",")
        boxes[image_id].append(wsol_resized_box([int(v) for v in box], sizes[image_id]))
    return ids, boxes


# --- the measurement --------------------------------------------------------------------------------


def run_command(maps_dir: Path, split: Path, curve: Path, workers: int | None) -> float:
    """Wall seconds of ``bas evaluate-maps`` in a child process."""
    command = [sys.executable, "-m", "bas.cli", "evaluate-maps", "--maps", str(maps_dir)]
    command += ["--metadata", str(split), "--dataset", "CUB", "--multi-contour", "--interval", "0.001"]
    command += ["--iou", "0.3", "0.5", "0.7", "--curve", str(curve)]
    if workers:
        command += ["--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def curve_hits(curve: Path, n: int) -> np.ndarray:
    """Hit counts (n_iou, n_thr) from the command's accuracy curve (percent with 6 decimals)."""
    with open(curve, newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    return np.rint(np.array([[float(v) for v in row[1:]] for row in rows]).T * n / 100)


def cpu_seconds() -> float:
    return time.process_time()


def measure(kind: str, args: argparse.Namespace, root: Path) -> bool:
    maps_dir, split = make_split(root, kind, args.maps, args.seed)
    ids, gt = read_metadata(split)
    subset = ids[: min(args.reference_maps, args.maps)]
    thresholds = list(np.arange(0, 1, 0.001))
    percents = [30, 50, 70]
    parts = np.array_split(np.arange(len(subset)), max(1, min(args.rounds, len(subset))))
    curve = root / "curve.csv"
    fast, reference, ref_hits = [], 0.0, np.zeros((3, len(thresholds)))
    ref_cpu = 0.0
    for part in parts:
        fast.append(run_command(maps_dir, split, curve, args.workers))
        start, cpu = time.perf_counter(), cpu_seconds()
        ref_hits += wsol_box_hits(maps_dir, [subset[i] for i in part], gt, thresholds, percents)
        reference += time.perf_counter() - start
        ref_cpu += cpu_seconds() - cpu
    fast_time = float(np.median(fast))
    ref_total = reference * args.maps / len(subset)

    # The project's evaluator in this process on the same maps (the per-process comparison).
    maps = np.stack([np.load(maps_dir / f"{i}.npy") for i in subset])
    evaluator = BoxEvaluator((0.3, 0.5, 0.7), 0.001, multi_contour=True, num_workers=1)
    start_cpu = cpu_seconds()
    evaluator.accumulate(maps, [np.array(gt[i], dtype=np.float64) for i in subset])
    result = evaluator.compute()
    one_cpu = cpu_seconds() - start_cpu
    one_hits = np.rint(np.stack(list(result["curve"]["accuracy"].values())) * len(subset) / 100)
    agree = np.array_equal(one_hits, ref_hits)
    full = len(subset) == args.maps
    if full:
        agree = agree and np.array_equal(curve_hits(curve, args.maps), ref_hits)

    acc = ref_hits.max(axis=1) * 100 / len(subset)
    print(f"{kind} maps:")
    print(
        f"  fast: bas evaluate-maps, {args.maps} maps: {fast_time:.1f} s wall (median of {', '.join(f'{t:.1f}' for t in fast)})"
    )
    extrapolated = "" if full else f", extrapolated from {len(subset)} maps ({reference:.1f} s)"
    print(
        f"  reference: wsolevaluation BoxEvaluator transcribed, 1 process: {ref_total:.1f} s wall{extrapolated}"
    )
    print(
        f"  reference MaxBoxAcc on {len(subset)} maps: "
        + "  ".join(f"IoU{p} {a:.2f}" for p, a in zip(percents, acc))
        + f"  MaxBoxAccV2 {acc.mean():.2f}"
    )
    print(f"  speed-up per process (CPU time per map): {ref_cpu / one_cpu:.1f}x")
    print(f"  speed-up, bas evaluate-maps vs reference (wall): {ref_total / fast_time:.1f}x")
    what = "all" if full else "the"
    print(f"  fast and reference agree on {what} {len(subset)} maps: {'yes' if agree else 'NO'}")
    return agree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--maps", type=int, default=5794, help="maps of each kind (CUB test: 5794)")
    parser.add_argument(
        "--reference-maps", type=int, default=5794, help="maps for the reference (default: all)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="command runs, alternated with reference parts")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--workers", type=int, help="processes of the command (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="smoke run (40 maps, reference on 4): not a measurement"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.maps, args.reference_maps, args.rounds = 40, 4, 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{args.maps} maps {SIZE}x{SIZE} of each kind, interval 0.001, IoU 0.3/0.5/0.7, multi-contour, "
        f"{cores} cores, load average {os.getloadavg()[0]:.1f} at the start"
    )
    ok = True
    for seed_offset, kind in enumerate(args.kinds):
        with tempfile.TemporaryDirectory() as tmp:
            ok &= measure(
                kind, argparse.Namespace(**{**vars(args), "seed": args.seed + seed_offset}), Path(tmp)
            )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.quick:
        print("smoke run: not a measurement")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
