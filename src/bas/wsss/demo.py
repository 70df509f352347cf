"""``bas wsss demo``: the segmentation pipeline end to end on the synthetic VOC-layout data.

Synthetic data (:func:`bas.data.synthetic_multi.make_multilabel_dataset`) -> multi-label CAM and
multi-label BAS trained from scratch under the same budget -> seeds of the val and test splits
(``bas wsss seeds``: BAS alone, CAM alone, and BAS fused with CAM) -> background threshold chosen on
val, mIoU on test (``bas wsss evaluate``) -> ``results.json``, ``seeds.png`` and a table.

With ``--full`` the chain goes on for BAS and for CAM (:data:`FULL_SOURCES`): seeds of the training
split -> ``bas wsss refine`` (IRN trained on the training split's confident labels, its trunk the
method's own ResNet18; the same IRN walks the val and test seeds) -> the refined masks' background
threshold chosen on val, their test mIoU -> DeepLabV3 (``bas wsss train-seg``,
``voc/deeplabv3_resnet18_cpu``) trained on the training split's refined masks at that threshold
-> its test mIoU. ``results.json`` then holds ``seed_miou``, ``refined_miou`` and
``segmentation_miou`` per method.

Everything comes from one file, ``configs/benchmark/wsss_synthetic.yaml`` (read with
:func:`bas.engine.compare.load_benchmark`); finished runs and finished seeds are reused.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bas.engine import compare

RECIPE = "wsss_synthetic"  # configs/benchmark/wsss_synthetic.yaml
EXTRA_KEYS = ("synthetic", "seed_maps", "refine", "segmentation")
#: results.json key -> (display name, BAS checkpoint used, CAM fused with it)
SOURCES = {"bas": ("BAS", "BAS", None), "cam": ("CAM", "CAM", None), "fused": ("BAS + CAM", "BAS", "CAM")}
QUICK_NOTE = "--quick: a smoke run of a few images and one epoch; its numbers mean nothing"
#: The issue's targets on the full recipe: BAS seed mIoU >= 50 and >= CAM's + 5.
TARGET_MIOU, TARGET_MARGIN = 50.0, 5.0
#: ``--full``: the seed sources taken on to refinement and a segmentation network.
FULL_SOURCES = ("bas", "cam")
#: ``--full`` targets per method: refined >= seeds + 3 mIoU, segmentation network >= refined - 3.
TARGET_REFINED_GAIN, TARGET_SEGMENTATION_LOSS = 3.0, 3.0


def make_data(spec: dict[str, Any], output: Path) -> Path:
    """Generate (or reuse) the synthetic data under ``output/data``; returns its VOC2012 folder."""
    from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset

    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return make_multilabel_dataset(output / "data" / f"synthetic-{digest}", **spec) / VOC_SUBDIR


def split_overrides(bench: compare.Benchmark, overrides: list[str]) -> list[str]:
    """Apply the ``--set synthetic.*`` / ``--set seed_maps.*`` overrides to ``bench.extra``; returns
    the others (training config keys, for every method)."""
    from bas.config import merge, parse_override

    rest = []
    for text in overrides:
        update = parse_override(text)
        if next(iter(update)) in EXTRA_KEYS:
            bench.extra = merge(bench.extra, update)
        else:
            rest.append(text)
    return rest


def seeds_args(checkpoint: Path, fuse: Path | None, split: str, output: Path, seed_maps: dict, device: str):
    """The arguments of ``bas wsss seeds`` for one split."""
    return argparse.Namespace(
        checkpoint=str(checkpoint),
        data_root=None,
        dataset=None,
        split=split,
        output=str(output),
        scales=list(seed_maps.get("scales") or []) or None,
        no_flip=not seed_maps.get("flip", True),
        fuse_cam=str(fuse) if fuse else None,
        no_fuse_cam=fuse is None,
        bg_threshold=None,
        batch_size=8,
        workers=0,
        device=device,
        no_progress=True,
    )


def evaluate_args(seeds: Path, split: str, select_on: str) -> argparse.Namespace:
    """The arguments of ``bas wsss evaluate --split SPLIT --select-on SELECT_ON``."""
    return argparse.Namespace(
        seeds=str(seeds),
        split=split,
        select_on=select_on,
        select_seeds=None,
        data_root=None,
        dataset=None,
        protocol="standard",
        output=None,
    )


def run_demo(args: argparse.Namespace) -> int:
    """The command (see the module docstring)."""
    from bas.commands._common import resolve_device
    from bas.commands.wsss import run_evaluate, run_seeds
    from bas.io import write_json

    out = Path(args.output)
    bench = compare.load_benchmark(RECIPE, quick=args.quick, extra_keys=EXTRA_KEYS)
    train_overrides = split_overrides(bench, args.overrides)
    threads = compare.use_threads(args.threads)
    device = resolve_device(args.device)
    start, cpu_start = time.perf_counter(), compare.cpu_seconds()
    if args.quick:
        print(f"bas wsss demo: {QUICK_NOTE}")
    voc = make_data(dict(bench.extra["synthetic"]), out)
    print(
        f"bas wsss demo: {' and '.join(bench.methods)}, seed {args.seed}, {threads} torch thread(s); "
        f"synthetic data in {voc}"
    )
    overrides = [f"data.root={voc}", *train_overrides]
    configs, runs = {}, {}
    for method in bench.methods:
        cfg = configs[method] = compare.method_config(
            bench, method, seed=args.seed, output=out, overrides=overrides
        )
        reuse = compare.run_is_finished(cfg)
        print(
            f"[{method}] {'reusing the finished run' if reuse else 'training'} in {cfg['train']['output_dir']}"
        )
        reused, wall, cpu = compare.train_or_reuse(cfg, device=device, progress=not args.no_progress)
        runs[method] = {"run_dir": cfg["train"]["output_dir"], "reused": reused, "train_seconds": wall}
        runs[method]["train_cpu_seconds"] = cpu
    retrained = not all(run["reused"] for run in runs.values())

    seed_root = out / "seeds" / f"seed{args.seed}"
    data_cfg = next(iter(configs.values()))["data"]
    val, test = data_cfg["val_split"], data_cfg["test_split"]
    results: dict[str, Any] = {}
    for key, (name, model, fuse) in SOURCES.items():
        folder = seed_root / key
        if retrained and folder.exists():  # seeds of an earlier model
            shutil.rmtree(folder)
        checkpoint = compare.evaluated_checkpoint(runs[model]["run_dir"], bench.checkpoint)
        fuse_path = compare.evaluated_checkpoint(runs[fuse]["run_dir"], bench.checkpoint) if fuse else None
        for split in (val, test):
            run_seeds(seeds_args(checkpoint, fuse_path, split, folder, bench.extra["seed_maps"], device))
        print(f"[{name}] ", end="")
        run_evaluate(evaluate_args(folder, test, val))
        ev = json.loads((folder / test / "evaluation.json").read_text(encoding="utf-8"))
        results[key] = {
            "seed_miou": ev["miou"],
            "threshold": ev["threshold"],
            "val_miou": ev["select_miou"],
            "fg_precision": ev["fg_precision"],
            "fg_recall": ev["fg_recall"],
            "iou": dict(zip(ev["class_names"], ev["iou"])),
            "checkpoint": str(checkpoint),
            "fused_with": str(fuse_path) if fuse_path else None,
            "seeds": str(folder),
        }
    if getattr(args, "full", False):
        for key in FULL_SOURCES:
            checkpoint = compare.evaluated_checkpoint(runs[SOURCES[key][1]]["run_dir"], bench.checkpoint)
            results[key].update(
                full_chain(
                    bench,
                    key,
                    checkpoint,
                    seed_root / key,
                    out,
                    voc,
                    seed=args.seed,
                    splits=(data_cfg["train_split"], val, test),
                    stale=retrained,
                    device=device,
                    progress=not args.no_progress,
                )
            )
    figure = save_seed_figure(out / "seeds.png", voc, seed_root, test, results, bench.figure_images)
    wall, cpu = time.perf_counter() - start, compare.cpu_seconds() - cpu_start
    splits = {
        s: len((voc / "ImageSets" / "Segmentation" / f"{s}.txt").read_text().split())
        for s in ("train", val, test)
    }
    document = {
        **results,
        "quick": bool(args.quick),
        "note": QUICK_NOTE if args.quick else None,
        "seed": args.seed,
        "splits": splits,
        "threshold_rule": f"background threshold of the best mIoU on {val} (0.01..0.99), reported on {test}",
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "threads": threads,
        "device": device,
        "targets": targets(results),
        "full": bool(getattr(args, "full", False)),
        "full_targets": full_targets(results) if getattr(args, "full", False) else None,
        "runs": runs,
        "synthetic": bench.extra["synthetic"],
        "seed_maps": bench.extra["seed_maps"],
        "refine": bench.extra["refine"],
        "segmentation": bench.extra["segmentation"],
        "configs": configs,
        "figure": str(figure),
    }
    write_json(out / "results.json", document)
    print()
    print(f"{test} split ({splits[test]} images), seed {args.seed}; background threshold chosen on {val}")
    print(format_table(results))
    if args.quick:
        print(QUICK_NOTE)
    else:
        t = document["targets"]
        print(
            f"targets (BAS >= {TARGET_MIOU:g} and >= CAM + {TARGET_MARGIN:g}): "
            f"{'met' if t['met'] else 'not met'} on this seed"
        )
        if document["full_targets"]:
            for key, ft in document["full_targets"].items():
                print(
                    f"{SOURCES[key][0]}: refined - seeds {ft['refined_minus_seeds']:+.2f} (target >= "
                    f"+{TARGET_REFINED_GAIN:g}), segmentation - refined {ft['segmentation_minus_refined']:+.2f} "
                    f"(target >= -{TARGET_SEGMENTATION_LOSS:g}): {'met' if ft['met'] else 'not met'}"
                )
    print(f"wrote {out / 'results.json'}")
    print(f"wrote {figure}")
    print(f"wall time {wall:.0f} s, CPU time {cpu:.0f} s ({threads} torch thread(s), device {device})")
    return 0


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """Whether this seed meets the issue's targets."""
    bas, cam = results["bas"]["seed_miou"], results["cam"]["seed_miou"]
    return {
        "bas_min_miou": TARGET_MIOU,
        "margin_over_cam": TARGET_MARGIN,
        "bas_minus_cam": bas - cam,
        "met": bool(bas >= TARGET_MIOU and bas >= cam + TARGET_MARGIN),
    }


def full_targets(results: dict[str, Any]) -> dict[str, Any]:
    """``--full``: per method, whether refinement gains and the segmentation network keeps the masks."""
    out = {}
    for key in FULL_SOURCES:
        r = results[key]
        gain = r["refined_miou"] - r["seed_miou"]
        loss = r["segmentation_miou"] - r["refined_miou"]
        out[key] = {
            "refined_minus_seeds": gain,
            "segmentation_minus_refined": loss,
            "met": bool(gain >= TARGET_REFINED_GAIN and loss >= -TARGET_SEGMENTATION_LOSS),
        }
    return out


def full_chain(
    bench: compare.Benchmark,
    key: str,
    checkpoint: Path,
    seeds: Path,
    out: Path,
    voc: Path,
    *,
    seed: int,
    splits: tuple[str, str, str],
    stale: bool,
    device: str,
    progress: bool,
) -> dict[str, Any]:
    """Seeds of ``key`` -> IRN-refined masks -> DeepLabV3; the test mIoU of each stage."""
    from bas.commands.wsss import run_evaluate, run_refine, run_seeds
    from bas.config import load_config
    from bas.wsss.segnet import train_segmentation

    train, val, test = splits
    refined = out / "refined" / f"seed{seed}" / key
    masks = out / "pseudo_masks" / f"seed{seed}" / key
    segnet = out / "segnet" / f"seed{seed}" / key
    # refined maps of an earlier model are stale; the masks and the network are always made anew
    for folder in (refined, masks, segnet) if stale else (masks, segnet):
        shutil.rmtree(folder, ignore_errors=True)
    run_seeds(seeds_args(checkpoint, None, train, seeds, bench.extra["seed_maps"], device))
    irn = refined / train / "irn.pt"
    for split in (train, val, test):
        run_refine(refine_args(seeds, refined, split, checkpoint, bench.extra["refine"], irn, device))
    print(f"[{SOURCES[key][0]} + IRN] ", end="")
    run_evaluate(evaluate_args(refined, test, val))
    ev = json.loads((refined / test / "evaluation.json").read_text(encoding="utf-8"))
    write_masks(refined / train, masks, ev["threshold"])
    seg = bench.extra["segmentation"]
    cfg = load_config(
        seg["recipe"], [f"data.root={voc}", f"train.seed={seed}", *(seg.get("overrides") or [])]
    )
    print(f"[{SOURCES[key][0]} + IRN -> DeepLabV3] training in {segnet}")
    best = train_segmentation(cfg, masks, voc, segnet, predict=[test], device=device, progress=progress)
    metrics = json.loads((segnet / "metrics.json").read_text(encoding="utf-8"))
    seg_test = metrics["results"][test]
    print(f"[{SOURCES[key][0]} + IRN -> DeepLabV3] {test} mIoU {seg_test['miou']:.2f} ({best.name})")
    return {
        "refined_miou": ev["miou"],
        "refined_threshold": ev["threshold"],
        "refined_val_miou": ev["select_miou"],
        "refined": str(refined),
        "pseudo_masks": str(masks),
        "segmentation_miou": seg_test["miou"],
        "segmentation_checkpoint": str(best),
    }


def refine_args(
    seeds: Path, output: Path, split: str, checkpoint: Path, settings: dict, irn: Path, device: str
) -> argparse.Namespace:
    """The arguments of ``bas wsss refine`` for one split, parsed by the command's own parser (its
    defaults and checks): the recipe's ``refine`` keys are its options (``walk_steps`` is
    ``--walk-steps``). The training split trains IRN (trunk from ``checkpoint``), the others walk
    with its ``irn``."""
    from bas.cli import parse_command
    from bas.errors import ConfigError, UsageError

    argv = ["wsss", "refine", "--seeds", str(seeds), "--split", split, "--output", str(output)]
    argv += ["--backbone-from", str(checkpoint), "--device", device, "--no-progress"]
    if split != irn.parent.name:
        argv += ["--irn", str(irn)]
    for key, value in settings.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    try:
        return parse_command(argv)
    except UsageError as exc:
        raise ConfigError(f"the demo's refine step (recipe section refine: {settings}): {exc}") from None


def write_masks(refined: Path, masks: Path, threshold: float) -> None:
    """The refined masks of one split labelled at ``threshold``, as ``masks/<id>.png``."""
    from bas.io import path_inside
    from bas.wsss.masks import write_label_png
    from bas.wsss.seeds import MAPS_DIR, read_seeds, seed_labels

    masks.mkdir(parents=True, exist_ok=True)
    for path in sorted((refined / MAPS_DIR).glob("*.npz")):
        classes, full = read_seeds(path)
        write_label_png(path_inside(masks, path.stem, ".png"), seed_labels(full, classes, threshold))


def format_table(results: dict[str, Any]) -> str:
    """The terminal table: per seed source, test mIoU, threshold, val mIoU, foreground P / R (and
    with ``--full`` the refined masks' and the segmentation network's test mIoU)."""
    full = any("refined_miou" in r for r in results.values())
    header = ["seeds", "test mIoU", "threshold", "val mIoU", "fg precision", "fg recall"]
    if full:
        header += ["refined mIoU", "segmentation mIoU"]

    def extra(r: dict[str, Any]) -> list[str]:
        if not full:
            return []
        if "refined_miou" not in r:
            return ["", ""]
        return [f"{r['refined_miou']:.2f}", f"{r['segmentation_miou']:.2f}"]

    rows = [
        [
            SOURCES[key][0],
            f"{r['seed_miou']:.2f}",
            f"{r['threshold']:.2f}",
            f"{r['val_miou']:.2f}",
            f"{r['fg_precision']:.2f}",
            f"{r['fg_recall']:.2f}",
            *extra(r),
        ]
        for key, r in results.items()
    ]
    rows.append(
        ["BAS - CAM", f"{results['bas']['seed_miou'] - results['cam']['seed_miou']:+.2f}", "", "", "", ""]
        + ([""] * 2 if full else [])
    )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )


def save_seed_figure(
    path: Path, voc: Path, seed_root: Path, split: str, results: dict[str, Any], n: int
) -> Path:
    """``n`` test images (spread over the split): image, ground truth, CAM, BAS and fused seeds,
    each labelled at its threshold chosen on val."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from bas.io import path_inside
    from bas.visualize import save_figure
    from bas.wsss.masks import read_label_png, voc_palette
    from bas.wsss.seeds import MAPS_DIR, read_seeds, seed_labels

    ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
    chosen = [ids[int(i)] for i in np.linspace(0, len(ids) - 1, max(1, min(n, len(ids)))).round()]
    palette = voc_palette().reshape(-1, 3)
    order = ["cam", "bas", "fused"]
    columns = ["image", "ground truth", *(f"{SOURCES[k][0]} seeds" for k in order)]
    fig, axes = plt.subplots(
        len(chosen), len(columns), figsize=(1.8 * len(columns), 1.9 * len(chosen)), squeeze=False
    )
    for row, image_id in enumerate(chosen):
        with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as im:
            panels = [np.asarray(im.convert("RGB"))]
        panels.append(palette[read_label_png(voc / "SegmentationClass" / f"{image_id}.png")])
        for key in order:
            classes, full = read_seeds(path_inside(seed_root / key / split / MAPS_DIR, image_id, ".npz"))
            panels.append(palette[seed_labels(full, classes, results[key]["threshold"])])
        for col, (ax, panel) in enumerate(zip(axes[row], panels)):
            ax.imshow(panel)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                title = columns[col]
                if col >= 2:
                    title += f"\nt={results[order[col - 2]]['threshold']:.2f}"
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    path = save_figure(fig, path)
    plt.close(fig)
    return path
