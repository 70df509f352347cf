"""``bas evaluate``: every metric of the papers and of the standard protocol for a checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bas.commands._common import (
    DATASET_KINDS_HELP,
    TEST_MODE_HELP,
    add_checkpoint_arg,
    add_config_args,
    add_data_root_arg,
    add_dataset_arg,
    add_device_args,
    add_output_arg,
    add_test_mode_arg,
    add_threshold_arg,
    add_top_k_arg,
    count,
    format_metrics,
    fraction,
    positive_int,
    resolve_device,
    step_fraction,
    trained_dataset,
    trained_options,
)
from bas.commands.wsss import add_seed_options

# options of box localisation only, and of segmentation seeds only (dest: flag)
LOCALIZATION_ONLY = {
    "zoo": "--zoo",
    "ten_crop": "--ten-crop",
    "save_maps": "--save-maps",
    "coco_json": "--coco-json",
    "diff_csv": "--diff-csv",
    "save_vis": "--save-vis",
    "class_balanced": "--class-balanced",
    "interval": "--interval",
    "top_k": "--top-k",
    "test_mode": "--test-mode",
    "overrides": "--set",
}
SEGMENTATION_ONLY = {
    "scales": "--scales",
    "no_flip": "--no-flip",
    "fuse_cam": "--fuse-cam",
    "no_fuse_cam": "--no-fuse-cam",
}
# --protocol of a segmentation run -> bas wsss evaluate's
SEGMENTATION_PROTOCOLS = {"standard": "standard", "ijcv2023-code": "reference"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a checkpoint on a dataset split",
        description="Top-1/Top-5 classification, GT-known/Top-1/Top-5 Loc at a threshold, "
        "MaxBoxAcc and MaxBoxAccV2, PxAP/PIoU where masks exist; CorLoc on a multi-object "
        "dataset (voc07). A segmentation run (multilabel_bas, multilabel_cam) reports what bas wsss "
        "seeds + bas wsss evaluate report: the seed mIoU, per-class IoU and foreground precision / "
        "recall, at the background threshold --threshold or chosen on --select-on.",
    )
    add_checkpoint_arg(p)
    p.add_argument(
        "--zoo",
        metavar="NAME",
        help="a released checkpoint of the model zoo (bas zoo): evaluate --checkpoint with that entry's "
        "recipe, protocol, top-k, threshold and ten-crop classification, and print the measured "
        "figures next to the reported ones",
    )
    add_data_root_arg(p, dest="data", required=True)
    add_dataset_arg(p, help=f"{DATASET_KINDS_HELP} (default: the checkpoint's training dataset, else cub)")
    p.add_argument(
        "--split",
        help="split to report (default: test; a segmentation run: its recipe's data.test_split)",
    )
    p.add_argument(
        "--select-on",
        metavar="SPLIT",
        help="choose the threshold on this held-out split (e.g. val) and report --split at it",
    )
    add_threshold_arg(p)
    add_top_k_arg(p)
    add_test_mode_arg(p, default=None, help=f"{TEST_MODE_HELP} (default: the checkpoint's config)")
    p.add_argument("--ten-crop", action="store_true", help="classification by ten-crop averaging")
    p.add_argument(
        "--interval", type=step_fraction, help="threshold step of MaxBoxAcc (default: config eval.interval)"
    )
    p.add_argument("--class-balanced", action="store_true", help="also print class-balanced means")
    add_output_arg(
        p,
        help="folder for metrics.json, curve.csv, per_class.csv and figures "
        "(default: <checkpoint>_eval/<split>)",
    )
    p.add_argument(
        "--save-maps",
        metavar="DIR",
        help="write score maps in the standard layout (<DIR>/<image_id>.npy, whole image "
        "resized to the input size; implies --test-mode resize) and their metadata "
        "(<DIR>/metadata), ready for bas evaluate-maps --maps DIR",
    )
    p.add_argument(
        "--protocol",
        default=None,
        choices=["standard", "cvpr2022-code", "ijcv2023-code", "all"],
        help="evaluation conventions (docs/protocols.md): standard (Choe et al., the default), "
        "cvpr2022-code / ijcv2023-code (what the papers' scripts compute: their crop path, PIL "
        "resize, ten-crop and per-dataset threshold/top-k unless --threshold/--top-k are given), "
        "or all (the three side by side; forward passes shared where the input path is the same); "
        "with --zoo, the entry's",
    )
    p.add_argument(
        "--diff-csv",
        metavar="FILE",
        help="with --protocol all: per-image IoU and decision (IoU 0.5) of every protocol, for the "
        "images where the decisions differ",
    )
    p.add_argument("--save-vis", type=count, default=0, metavar="N", help="qualitative grid of N images")
    p.add_argument(
        "--coco-json",
        metavar="OUT",
        help="write the split's pseudo-boxes as a COCO-format annotation file (every component of "
        "each tagged class's map, scored, after class-wise NMS; bbox [x, y, w, h] in image pixels)",
    )
    p.add_argument(
        "--min-area",
        type=fraction,
        default=0.01,
        help="CorLoc and --coco-json: smallest component, a fraction of the image (default: 0.01)",
    )
    p.add_argument(
        "--nms-iou",
        type=fraction,
        default=0.5,
        help="CorLoc and --coco-json: NMS IoU threshold (default: 0.5)",
    )
    add_seed_options(p)
    p.add_argument("--batch-size", type=positive_int, help="evaluation batch size")
    p.add_argument("--workers", type=count, help="data loader workers")
    add_config_args(p)
    add_device_args(p)
    p.set_defaults(func=run)


def evaluation_config(
    meta: dict[str, Any], args: argparse.Namespace, recipe: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config of an evaluation: defaults, the checkpoint's training config (or ``recipe``, a
    zoo entry's), then the arguments."""
    from bas.config import default_config, known_part, merge, parse_override
    from bas.errors import ConfigError
    from bas.schema import check_config

    cfg = default_config()
    trained = recipe or meta.get("config") or {}
    cfg = merge(cfg, known_part({k: v for k, v in trained.items() if k in ("data", "eval")}, cfg))
    source = {"config": trained}
    dataset = args.dataset or trained_dataset(source)
    cfg["data"].update(dataset=dataset, root=args.data, options=trained_options(source, dataset))
    if meta.get("input_size"):
        cfg["data"]["input_size"] = int(meta["input_size"])
    if meta.get("resize_size"):
        cfg["data"]["resize_size"] = int(meta["resize_size"])
    cfg["eval"]["threshold"] = args.threshold if args.threshold is not None else meta.get("threshold") or 0.5
    cfg["eval"]["top_k"] = args.top_k if args.top_k is not None else meta.get("top_k") or 1
    if args.test_mode:
        cfg["data"]["test_mode"] = args.test_mode
    if args.save_maps and cfg["data"]["test_mode"] != "resize":
        if args.test_mode:
            raise ConfigError(
                f"--save-maps writes maps of the whole image (--test-mode resize), not --test-mode {args.test_mode}"
            )
        size, resize = cfg["data"]["input_size"], cfg["data"]["resize_size"]
        print(
            f"note: --save-maps: evaluating with the standard protocol (whole image resized to "
            f"{size}x{size}, no crop) instead of the evaluation's {cfg['data']['test_mode']} mode "
            f"(Resize {resize} + CenterCrop {size}); the numbers below and the saved maps use it"
        )
        cfg["data"]["test_mode"] = "resize"
    if args.interval:
        cfg["eval"]["interval"] = args.interval
    if args.batch_size:
        cfg["data"]["eval_batch_size"] = args.batch_size
    if args.workers is not None:
        cfg["data"]["workers"] = args.workers
    for text in args.overrides:
        cfg = merge(cfg, parse_override(text))
    check_config(cfg)
    return cfg


def run(args: argparse.Namespace) -> int:
    from bas.checkpoints import load_checkpoint
    from bas.config import load_config
    from bas.engine.evaluate import add_pseudo_boxes, evaluate_split, write_evaluation
    from bas.errors import ConfigError
    from bas.io import write_json

    # the --set values, checked before the model is read (data.options against --dataset's kind)
    load_config(None, [f"data.dataset={args.dataset}"] * bool(args.dataset) + list(args.overrides))
    entry, recipe = None, None
    if args.zoo:
        from bas.zoo import apply_entry

        entry, recipe = apply_entry(args)
        print(entry.settings())
    args.protocol = args.protocol or "standard"
    if args.diff_csv and args.protocol != "all":
        raise ConfigError("--diff-csv compares protocols: use it with --protocol all")
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint, map_location=device)
    if hasattr(model, "class_maps"):  # a multi-label (segmentation) model: its seeds
        return evaluate_segmentation(args, model.meta)
    given = [flag for dest, flag in SEGMENTATION_ONLY.items() if getattr(args, dest)]
    if given:
        raise ConfigError(f"{', '.join(given)}: seed options, for a segmentation run only")
    args.split = args.split or "test"
    cfg = evaluation_config(model.bas_meta, args, recipe=recipe)
    out_dir = (
        Path(args.output)
        if args.output
        else Path(f"{Path(args.checkpoint).with_suffix('')}_eval") / args.split
    )
    report = evaluate_split(
        model,
        cfg,
        args.split,
        select_on=args.select_on,
        ten_crop=args.ten_crop,
        save_maps=args.save_maps,
        device=device,
        progress=not args.no_progress,
        min_area=args.min_area,
        nms_iou=args.nms_iou,
        protocol=args.protocol,
        threshold=args.threshold,
        top_k=args.top_k,
    )
    if args.coco_json:
        objects = {"min_area": args.min_area, "nms_iou": args.nms_iou}
        coco = add_pseudo_boxes(report, model, cfg, **objects, device=device, progress=not args.no_progress)
    report.result["checkpoint"] = str(args.checkpoint)
    if entry is not None:
        from bas.zoo import comparison, format_comparison

        rows = comparison(entry, report.result.get("protocols", {}).get(entry.protocol, report.result))
        report.result["zoo"] = {"entry": entry.name, "protocol": entry.protocol, "comparison": rows}
    write_evaluation(out_dir, report, model, cfg, save_vis=args.save_vis, device=device)
    if args.protocol == "all":
        from bas.protocols import format_side_by_side, write_diff_csv

        print(format_side_by_side(report.result["protocols"]))
        if args.diff_csv:
            n = write_diff_csv(args.diff_csv, report.evaluators)
            print(f"wrote {args.diff_csv} ({n} images whose decisions differ)")
    named = "" if args.protocol in ("standard", "all") else f" ({args.protocol})"
    print(f"{args.split}{named}: {format_metrics(report.result)}")
    if args.class_balanced and "class_balanced" in report.result:
        print(f"class-balanced: {format_metrics(report.result['class_balanced'])}")
    if entry is not None:
        print(f"{entry.name} ({entry.average} mean, as reported):\n{format_comparison(rows)}")
    print(f"wrote {out_dir}")
    if args.coco_json:
        write_json(args.coco_json, coco)
        print(f"wrote {len(coco['annotations'])} pseudo-boxes (COCO format) to {args.coco_json}")
    if args.save_maps:
        print(f"wrote maps and metadata to {args.save_maps} (bas evaluate-maps --maps {args.save_maps})")
    return 0


def evaluate_segmentation(args: argparse.Namespace, meta: Any) -> int:
    """A segmentation run: ``bas wsss seeds`` of ``--split`` (and ``--select-on``), then ``bas wsss
    evaluate`` of them. The seeds go to ``OUTPUT/seeds`` (a temporary folder without ``--output``),
    ``evaluation.json`` and the mIoU curve to the output folder."""
    import tempfile
    from contextlib import nullcontext

    from bas.commands import wsss
    from bas.errors import ConfigError

    given = [flag for dest, flag in LOCALIZATION_ONLY.items() if getattr(args, dest)]
    if given:
        raise ConfigError(
            f"{', '.join(given)}: box localisation options; a {meta.method} run is evaluated by its seeds' mIoU"
        )
    protocol = SEGMENTATION_PROTOCOLS.get(args.protocol or "standard")
    if protocol is None:
        raise ConfigError(
            f"--protocol {args.protocol}: a {meta.method} run has the standard protocol and ijcv2023-code "
            "(the released code's: the best background threshold on the evaluated split itself)"
        )
    if protocol == "reference" and args.select_on:
        raise ConfigError(
            "--protocol ijcv2023-code chooses the threshold on the evaluated split: drop --select-on"
        )
    if args.dataset and args.dataset not in wsss.DATASETS:
        raise ConfigError(
            f"--dataset {args.dataset}: a {meta.method} run needs a multi-label dataset ({wsss.METAVAR})"
        )
    split = args.split or ((meta.config or {}).get("data") or {}).get("test_split") or "test"
    out_dir = (
        Path(args.output) if args.output else Path(f"{Path(args.checkpoint).with_suffix('')}_eval") / split
    )
    folder = nullcontext(str(out_dir / "seeds")) if args.output else tempfile.TemporaryDirectory()
    with folder as seeds:
        for name in [split] + [args.select_on] * bool(args.select_on):
            seeds_args = argparse.Namespace(
                checkpoint=args.checkpoint,
                data_root=args.data,
                dataset=args.dataset,
                split=name,
                output=seeds,
                scales=args.scales,
                no_flip=args.no_flip,
                fuse_cam=args.fuse_cam,
                no_fuse_cam=args.no_fuse_cam,
                bg_threshold=args.threshold,
                batch_size=args.batch_size or 8,
                workers=2 if args.workers is None else args.workers,
                device=args.device,
                no_progress=args.no_progress,
            )
            wsss.run_seeds(seeds_args)
        evaluate_args = argparse.Namespace(
            seeds=seeds,
            split=split,
            select_on=args.select_on,
            select_seeds=None,
            data_root=None,  # those the seeds were made from
            dataset=None,
            protocol=protocol,
            output=str(out_dir),
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        wsss.run_evaluate(evaluate_args)
    print(f"wrote {out_dir}" + (f" (seeds in {out_dir / 'seeds'})" if args.output else ""))
    return 0
