"""``bas wsss``: weakly supervised semantic segmentation (docs/segmentation.md).

``bas wsss seeds`` writes, for every image of a split, the multi-scale + flip class maps of a
multi-label model (optionally fused with a CAM model) and a pseudo-mask, into ``OUTPUT/<split>/``;
``bas wsss refine`` turns them into IRN-refined maps and masks of the same layout; ``bas wsss evaluate``
scores either against the split's masks (mIoU, per-class IoU, foreground precision / recall),
choosing the background threshold on a held-out split.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bas.commands._common import (
    add_checkpoint_arg,
    add_config_args,
    add_data_root_arg,
    add_dataset_arg,
    add_device_args,
    add_output_arg,
    add_resume_arg,
    count,
    existing_file,
    fraction,
    match_choice,
    positive_int,
)

DATASETS = ("voc", "coco", "multilabel_folder")  # the multi-label formats
METAVAR = "{" + ",".join(DATASETS) + "}"


def multilabel_kind(value: str) -> str:
    """``--dataset``: a multi-label dataset format, any case."""
    return match_choice(value, DATASETS, "multi-label dataset")


def positive_number(text: str) -> float:
    """A finite number > 0 (an image scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_seed_options(parser: argparse.ArgumentParser) -> None:
    """``--scales``, ``--no-flip``, ``--fuse-cam FILE`` / ``--no-fuse-cam``: how seeds are computed
    (``bas wsss seeds``, and ``bas evaluate`` of a segmentation run)."""
    parser.add_argument(
        "--scales",
        type=positive_number,
        nargs="+",
        metavar="S",
        help="seeds: image scales (default: 1.0 0.5 1.5 2.0)",
    )
    parser.add_argument("--no-flip", action="store_true", help="seeds: no horizontal-flip pass")
    fuse = parser.add_mutually_exclusive_group()
    fuse.add_argument(
        "--fuse-cam",
        type=existing_file,
        metavar="FILE",
        help="seeds: add a CAM model's maps (default: the checkpoint's seeds.fuse_cam, set by voc/resnet50)",
    )
    fuse.add_argument(
        "--no-fuse-cam", action="store_true", help="seeds: BAS maps only, whatever the recipe says"
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser("wsss", help="segmentation seeds from a multi-label model, and their mIoU")
    sub = parser.add_subparsers(dest="wsss_command", metavar="ACTION")
    sub.required = True

    seeds = sub.add_parser(
        "seeds",
        help="write multi-scale + flip seed maps and pseudo-masks of a split",
        description="Write OUTPUT/<split>/maps/<id>.npz (float16 maps at stride 4 and full resolution, "
        "class ids), OUTPUT/<split>/masks/<id>.png (palette pseudo-mask) and seeds.json. Images "
        "already written are skipped; under torchrun each rank writes its share.",
    )
    add_checkpoint_arg(seeds)
    add_data_root_arg(seeds, help="dataset root (default: the checkpoint's data.root)")
    add_dataset_arg(
        seeds, kind=multilabel_kind, metavar=METAVAR, help="dataset kind, any case (default: voc)"
    )
    seeds.add_argument("--split", default="train", help="split to seed (default: train)")
    add_output_arg(seeds, required=True, help="seeds folder; the split's seeds go to DIR/<split>/")
    add_seed_options(seeds)
    seeds.add_argument(
        "--bg-threshold",
        type=fraction,
        metavar="T",
        help="background score of the pseudo-masks (default: the checkpoint's eval.threshold, else 0.3)",
    )
    seeds.add_argument(
        "--batch-size", type=positive_int, default=8, help="images of one size per forward (default 8)"
    )
    seeds.add_argument("--workers", type=count, default=2, help="image-reading processes (default 2)")
    add_device_args(seeds)
    seeds.set_defaults(func=run_seeds)

    evaluate = sub.add_parser(
        "evaluate",
        help="mIoU of seeds, with the background threshold chosen on a held-out split",
        description="Score the seeds of a split against its masks. The standard protocol chooses the "
        "background threshold on --select-on's seeds and reports --split at it (without --select-on: "
        "at the threshold the seeds were written with); --protocol reference reports the best "
        "threshold of 0.20..0.44 on the evaluated split itself, as the released code does.",
    )
    evaluate.add_argument("--seeds", required=True, metavar="DIR", help="the --output of bas wsss seeds")
    evaluate.add_argument("--split", help="split to score (default: the only one in DIR)")
    evaluate.add_argument(
        "--select-on", metavar="SPLIT", help="held-out split whose seeds choose the threshold"
    )
    evaluate.add_argument(
        "--select-seeds", metavar="DIR", help="seeds folder holding the --select-on split (default: --seeds)"
    )
    add_data_root_arg(evaluate, help="dataset root (default: the one the seeds were made from)")
    evaluate.add_argument(
        "--dataset", type=str.lower, choices=DATASETS, help="dataset kind (default: the seeds')"
    )
    evaluate.add_argument("--protocol", choices=("standard", "reference"), default="standard")
    add_output_arg(
        evaluate, help="where evaluation.json and the curve go (default: the split's seeds folder)"
    )
    evaluate.set_defaults(func=run_evaluate)

    segnet = sub.add_parser(
        "train-seg",
        help="train DeepLabV3 on pseudo-masks; val mIoU and palette predictions",
        description="Train torchvision's DeepLabV3 on the training split's pseudo-masks (MASKS/<id>.png, "
        "palette PNGs as bas wsss seeds writes them, 255 ignored) with the project's trainer (AMP, "
        "torchrun, resume, checkpoints), validate by mIoU against the ground truth, then write "
        "OUTPUT/metrics.json (multi-scale + flip mIoU of the best model) and its predictions as "
        "palette PNGs in OUTPUT/predictions/<split>/. Recipe default: voc/deeplabv3_resnet101.",
    )
    segnet.add_argument("--masks", required=True, metavar="DIR", help="pseudo-masks of the training split")
    add_data_root_arg(segnet, help="VOC-layout dataset root (default: the recipe's data.root)")
    segnet.add_argument(
        "--config",
        help="recipe file or shipped name (default: voc/deeplabv3_resnet101; with --resume, the run's)",
    )
    add_config_args(segnet)
    add_output_arg(segnet, help="run folder (default: the recipe's train.output_dir)")
    add_resume_arg(segnet, help="continue from the run folder's last.ckpt, or from CKPT")
    segnet.add_argument(
        "--predict",
        nargs="+",
        metavar="SPLIT",
        help="splits to predict and score at the end (default: the validation split)",
    )
    add_device_args(segnet)
    segnet.set_defaults(func=run_train_seg)

    add_refine_parser(sub)

    demo = sub.add_parser(
        "demo",
        help="multi-label BAS against CAM on synthetic data: seeds and their mIoU (CPU, minutes)",
        description="Generate the synthetic VOC-layout data, train multi-label CAM and BAS under the same "
        "budget (configs/benchmark/wsss_synthetic.yaml), write the seeds of val and test (BAS, CAM, fused), "
        "choose the background threshold on val, and report the test mIoU in results.json and seeds.png. "
        "Finished runs and seeds are reused. --set changes the training config of both methods, or with "
        "the prefixes synthetic. and seed_maps. the data and the seeds.",
    )
    add_output_arg(
        demo, default="bas_wsss_demo", help="folder of everything written (default: bas_wsss_demo)"
    )
    demo.add_argument("--seed", type=int, default=0, help="training seed (the data is fixed; default 0)")
    demo.add_argument("--threads", type=positive_int, help="torch CPU threads (default: torch's choice)")
    demo.add_argument(
        "--quick", action="store_true", help="a smoke run of seconds (its numbers mean nothing)"
    )
    demo.add_argument(
        "--full",
        action="store_true",
        help="go on for BAS and CAM: training-split seeds -> IRN-refined masks -> DeepLabV3, the test "
        "mIoU of each stage",
    )
    add_config_args(demo)
    add_device_args(demo)
    demo.set_defaults(func=run_demo)


def add_refine_parser(sub: Any) -> None:
    """``bas wsss refine``: confident labels -> IRN -> random walk (docs/segmentation.md)."""
    refine = sub.add_parser(
        "refine",
        help="refine seeds with IRN (boundaries learnt from confident labels + random walk)",
        description="Make confident labels from the seeds of a split (or take --confident DIR), train IRN's "
        "boundary branch on a frozen ResNet, random-walk every image's stride-4 seeds over its boundaries, "
        "and write OUTPUT/<split>/ in the layout of bas wsss seeds (maps, palette masks at --bg-threshold, "
        "seeds.json), which bas wsss evaluate scores. Finished images and a trained irn.pt are reused.",
    )
    refine.add_argument("--seeds", required=True, metavar="DIR", help="the --output of bas wsss seeds")
    refine.add_argument("--split", help="split to refine (default: the only one in DIR)")
    add_data_root_arg(refine, help="dataset root (default: the one the seeds were made from)")
    add_output_arg(refine, required=True, help="refined folder; the split goes to DIR/<split>/")
    refine.add_argument(
        "--confident",
        metavar="DIR",
        help="folder of confident-label PNGs <id>.png (default: made from the seeds)",
    )
    refine.add_argument(
        "--irn",
        type=existing_file,
        metavar="FILE",
        help="walk with this trained irn.pt (e.g. the training split's): no confident labels, no training",
    )
    refine.add_argument(
        "--fg-threshold", type=fraction, default=0.30, help="confident foreground threshold (default 0.30)"
    )
    refine.add_argument(
        "--confident-bg-threshold",
        type=fraction,
        default=0.17,
        metavar="T",
        help="confident background threshold (default 0.17)",
    )
    refine.add_argument("--crf", default="auto", help="CRF backend of the confident labels (default: auto)")
    refine.add_argument(
        "--bg-threshold",
        type=fraction,
        default=0.22,
        help="background score of the refined masks (default 0.22)",
    )
    walk = refine.add_argument_group("random walk (defaults: the reference's, for VOC-size images)")
    walk.add_argument(
        "--walk-steps",
        type=positive_int,
        metavar="N",
        help="steps (default 256 = 2^8; fewer for small images, whose stride-4 grid a long walk over-smooths)",
    )
    walk.add_argument("--walk-radius", type=positive_int, metavar="R", help="pair radius (default 5)")
    walk.add_argument("--walk-beta", type=positive_number, metavar="B", help="affinity exponent (default 10)")
    walk.add_argument(
        "--walk-power", type=positive_number, metavar="P", help="power of the seeds (default 1.5)"
    )
    refine.add_argument(
        "--backbone", default="resnet50", help="IRN trunk: a torchvision ResNet (default resnet50)"
    )
    trunk = refine.add_mutually_exclusive_group()
    trunk.add_argument(
        "--backbone-from",
        type=existing_file,
        metavar="CKPT",
        help="initialise the frozen trunk from a bas-wsol checkpoint's ResNet backbone (its depth wins)",
    )
    trunk.add_argument(
        "--no-pretrained", action="store_true", help="random trunk instead of torchvision's ImageNet weights"
    )
    refine.add_argument("--epochs", type=positive_int, default=3, help="IRN epochs (default 3)")
    refine.add_argument("--crop-size", type=positive_int, default=512, help="IRN training crop (default 512)")
    refine.add_argument("--batch-size", type=positive_int, default=32, help="IRN batch size (default 32)")
    refine.add_argument("--lr", type=positive_number, default=0.1, help="IRN learning rate (default 0.1)")
    refine.add_argument("--seed", type=int, default=0, help="IRN training seed (default 0)")
    refine.add_argument("--workers", type=count, default=0, help="image-reading processes (default 0)")
    add_device_args(refine)
    refine.set_defaults(func=run_refine)


def run_refine(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from bas.commands._common import resolve_device
    from bas.wsss.irn import IRNConfig
    from bas.wsss.refine import refine_split, walk_settings
    from bas.wsss.seeds import read_manifest

    seeds_dir = _split_dir(Path(args.seeds), args.split)
    manifest = read_manifest(seeds_dir)
    split = manifest["split"]
    dataset = manifest.get("dataset", "voc")
    root = args.data_root or manifest["data_root"]
    source = open_split(dataset, root, split, int(manifest["num_classes"]), manifest.get("data_options"))
    config = IRNConfig(
        backbone=args.backbone,
        crop=args.crop_size,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        workers=args.workers,
    )
    bars: list[Any] = []

    def progress(stage: str, total: int) -> Any:
        unit = "step" if stage == "irn" else "img"
        bar = tqdm(total=total, desc=f"{stage} {split}", unit=unit, leave=False, disable=args.no_progress)
        bars.append(bar)
        return bar.update

    output = Path(args.output) / split
    try:
        summary = refine_split(
            seeds_dir,
            output,
            source,
            data_root=root,
            confident=args.confident,
            irn=args.irn,
            config=config,
            init="random" if args.no_pretrained else "imagenet",
            backbone_from=args.backbone_from,
            walk=walk_settings(
                power=args.walk_power, beta=args.walk_beta, steps=args.walk_steps, radius=args.walk_radius
            ),
            bg_threshold=args.bg_threshold,
            fg_threshold=args.fg_threshold,
            confident_bg_threshold=args.confident_bg_threshold,
            crf_backend=args.crf,
            device=resolve_device(args.device),
            progress=progress,
        )
    finally:
        for bar in bars:
            bar.close()
    print(
        f"refined {dataset} {split}: {summary['num_images']} images in {output} "
        f"({summary['refined_images']} written now; IRN {summary['irn']}; masks at threshold {args.bg_threshold:g})"
    )
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from bas.wsss.demo import run_demo as demo

    return demo(args)


def run_train_seg(args: argparse.Namespace) -> int:
    import os

    from bas.commands.train import _saved_config
    from bas.config import load_config
    from bas.wsss import segnet

    cfg = load_config(args.config or _saved_config(args) or segnet.DEFAULT_RECIPE, args.overrides)
    checkpoint = segnet.train_segmentation(
        cfg,
        args.masks,
        args.data_root,
        args.output,
        predict=args.predict,
        resume=args.resume,
        device=None if args.device == "auto" else args.device,
        progress=not args.no_progress,
    )
    if os.environ.get("RANK", "0") == "0":
        print(segnet.summary(checkpoint.parent))
    return 0


# ----------------------------------------------------------------------------------- data


def open_split(
    dataset: str, root: str | Path, split: str, num_classes: int, options: dict | None = None
) -> Any:
    """The split's images, tags and masks (:class:`bas.wsss.seeds.DatasetSplit`)."""
    from bas.data.formats import build_dataset
    from bas.errors import ConfigError
    from bas.wsss.seeds import DatasetSplit

    source = DatasetSplit(build_dataset(dataset, root, split, **(options or {})))
    if len(source.classes) != num_classes:
        raise ConfigError(
            f"the {dataset} data at {root} has {len(source.classes)} classes, the model {num_classes}"
        )
    return source


# ----------------------------------------------------------------------------------- seeds


def _fuse_path(args: argparse.Namespace, config: dict[str, Any]) -> str | None:
    from bas.errors import ConfigError

    if args.no_fuse_cam:
        return None
    if args.fuse_cam:
        return args.fuse_cam
    configured = (config.get("seeds") or {}).get("fuse_cam")
    if configured and not Path(configured).is_file():
        raise ConfigError(
            f"the checkpoint's recipe fuses its seeds with the CAM model seeds.fuse_cam = {configured}, "
            "which does not exist: train it (bas train --config voc/cam_resnet50), give --fuse-cam FILE, "
            "or --no-fuse-cam"
        )
    return configured or None


def _load_map_model(path: str, device: str, what: str) -> Any:
    from bas.checkpoints import load_checkpoint
    from bas.errors import CheckpointError

    model = load_checkpoint(path, map_location=device)
    if not hasattr(model, "class_maps"):
        raise CheckpointError(
            f"{path}: a {model.meta.method} model has no per-class maps; {what} must be multi-label"
        )
    return model


def run_seeds(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from bas.commands._common import resolve_device
    from bas.engine import distributed
    from bas.errors import CheckpointError, ConfigError
    from bas.wsss import seeds as S

    env = distributed.setup(resolve_device(args.device))
    try:
        model = _load_map_model(args.checkpoint, env.device, "--checkpoint")
        meta = model.meta
        config = meta.config or {}
        fuse_path = _fuse_path(args, config)
        cam = _load_map_model(fuse_path, env.device, "--fuse-cam") if fuse_path else None
        if cam is not None and cam.meta.num_classes != meta.num_classes:
            raise CheckpointError(
                f"{fuse_path}: a {cam.meta.num_classes}-class CAM model for a {meta.num_classes}-class model"
            )
        data = config.get("data") or {}
        root = args.data_root or data.get("root")
        if root is None:
            raise ConfigError("the checkpoint names no data.root: give --data-root")
        dataset = args.dataset or (data.get("dataset") if data.get("dataset") in DATASETS else "voc")
        threshold = args.bg_threshold
        if threshold is None:
            threshold = float((config.get("eval") or {}).get("threshold", S.DEFAULT_THRESHOLD))
        scales = tuple(args.scales or S.DEFAULT_SCALES)
        options = (data.get("options") or {}) if data.get("dataset") == dataset else {}
        source = open_split(dataset, root, args.split, meta.num_classes, options)
        output = Path(args.output) / args.split
        engine = S.SeedEngine(model, fuse=cam, scales=scales, flip=not args.no_flip, device=env.device)
        manifest = {
            "checkpoint": str(Path(args.checkpoint).resolve()),
            "method": meta.method,
            "fuse_cam": str(Path(fuse_path).resolve()) if fuse_path else None,
            "scales": list(scales),
            "flip": not args.no_flip,
            "bg_threshold": threshold,
            "dataset": dataset,
            "data_root": str(Path(root).resolve()),
            "data_options": options,
            "split": args.split,
            "num_images": len(source.image_ids),
            "num_classes": meta.num_classes,
            "class_names": meta.class_names or source.classes,
        }
        S.check_manifest(output, manifest)  # every rank refuses a folder of other settings alike
        if env.is_main:
            S.write_manifest(output, manifest)
        shard = S.Shard(env.rank, env.world_size)
        todo = len(S.pending_indices(source, output, shard))
        bar = tqdm(
            total=todo, desc=f"seeds {args.split}", unit="img", disable=args.no_progress or not env.is_main
        )
        with bar:
            S.generate_seeds(
                engine,
                source,
                output,
                threshold=threshold,
                batch_size=args.batch_size,
                shard=shard,
                workers=args.workers,
                progress=bar.update,
            )
        distributed.barrier(env)
        if env.is_main:
            missing = len(S.pending_indices(source, output))
            fused = f", fused with {fuse_path}" if fuse_path else ""
            print(
                f"seeds of {dataset} {args.split}: {len(source.image_ids) - missing}/{len(source.image_ids)} "
                f"images in {output} (scales {', '.join(f'{s:g}' for s in scales)}"
                f"{', flip' if not args.no_flip else ''}{fused}; pseudo-masks at threshold {threshold:g})"
            )
    finally:
        distributed.cleanup()
    return 0


# ----------------------------------------------------------------------------------- evaluate


def _split_dir(seeds: Path, split: str | None) -> Path:
    """The folder of a split's seeds: ``seeds/<split>``, or ``seeds`` itself when it is one."""
    from bas.errors import DataError
    from bas.wsss.seeds import MANIFEST, read_manifest

    if (seeds / MANIFEST).is_file():
        found = read_manifest(seeds).get("split")
        if split is not None and found != split:
            raise DataError(f"holds the seeds of split {found!r}, not {split!r}", seeds)
        return seeds
    if split is None:
        splits = sorted(p.name for p in seeds.iterdir() if (p / MANIFEST).is_file()) if seeds.is_dir() else []
        if len(splits) != 1:
            found = ", ".join(splits) or "none"
            raise DataError(f"give --split (seeds of the splits found: {found})", seeds)
        split = splits[0]
    if not (seeds / split / MANIFEST).is_file():
        raise DataError(f"no seeds of split {split!r} here (run bas wsss seeds --split {split})", seeds)
    return seeds / split


def _settings(manifest: dict[str, Any]) -> str:
    fused = (
        f"fused with the CAM model {manifest['fuse_cam']}" if manifest.get("fuse_cam") else "no CAM fusion"
    )
    flip = "flip" if manifest.get("flip") else "no flip"
    scales = ", ".join(f"{s:g}" for s in manifest.get("scales", []))
    return f"{manifest.get('method')} seeds, scales {scales}, {flip}, {fused}"


def run_evaluate(args: argparse.Namespace) -> int:
    from bas.errors import ConfigError
    from bas.io import write_json
    from bas.wsss import evaluate as E
    from bas.wsss.seeds import SETTINGS, read_manifest

    target_dir = _split_dir(Path(args.seeds), args.split)
    manifest = read_manifest(target_dir)
    split = manifest["split"]
    num_classes = int(manifest["num_classes"])
    dataset = args.dataset or manifest.get("dataset", "voc")
    root = args.data_root or manifest["data_root"]

    def split_inputs(folder: Path, name: str) -> tuple[Path, list[str], Any]:
        source = open_split(dataset, root, name, num_classes, manifest.get("data_options"))
        return folder, list(source.image_ids), source.read_mask

    select = None
    if args.select_on is not None:
        if args.protocol == "reference":
            raise ConfigError(
                "--protocol reference chooses the threshold on the evaluated split: drop --select-on"
            )
        select_dir = _split_dir(Path(args.select_seeds or args.seeds), args.select_on)
        if select_dir.resolve() == target_dir.resolve():
            raise ConfigError(
                f"--select-on {args.select_on} is the evaluated split: choose on a held-out split"
            )
        other = read_manifest(select_dir)
        changed = [
            k for k in SETTINGS if k not in ("split", "bg_threshold") and other.get(k) != manifest.get(k)
        ]
        if changed:
            raise ConfigError(
                f"the seeds of {args.select_on} ({select_dir}) were made with other settings ({', '.join(changed)})"
            )
        select = split_inputs(select_dir, other["split"])
    names = [
        "background",
        *(manifest.get("class_names") or [f"class {k}" for k in range(1, num_classes + 1)]),
    ]
    result = E.evaluate_seeds(
        split_inputs(target_dir, split),
        num_classes + 1,
        protocol=args.protocol,
        select=select,
        fixed_threshold=float(manifest["bg_threshold"]),
        class_names=names,
    )
    chosen = {
        "select": f"chosen on {args.select_on}",
        "fixed": "fixed (the seeds' pseudo-mask threshold; give --select-on to choose it on a held-out split)",
        "evaluated split": "the best on the evaluated split itself (reference protocol: optimistic)",
    }[result["chosen_on"]]
    result.update(
        dataset=dataset,
        split=split,
        num_images=manifest["num_images"],
        select_on=args.select_on,
        seeds={
            k: manifest.get(k) for k in ("checkpoint", "method", "fuse_cam", "scales", "flip", "bg_threshold")
        },
        threshold_rule=chosen,
    )
    suffix = "-reference" if args.protocol == "reference" else ""
    out_dir = Path(args.output) if args.output else target_dir
    curves = {f"{split} (evaluated)": result["curve"]}
    if select is not None:
        curves[f"{args.select_on} (threshold chosen here)"] = result["select_curve"]
    label = "reference protocol" if args.protocol == "reference" else "standard protocol"
    E.plot_curve(
        out_dir / f"miou_vs_threshold{suffix}.png",
        result["thresholds"],
        curves,
        result["threshold"],
        f"{dataset} {split} seeds, {label}",
    )
    write_json(out_dir / f"evaluation{suffix}.json", result)
    print(format_result(result, manifest))
    return 0


def format_result(result: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The lines ``bas wsss evaluate`` prints."""
    label = "REFERENCE PROTOCOL" if result["protocol"] == "reference" else "standard protocol"
    lines = [
        f"{result['dataset']} {result['split']} ({result['num_images']} images), {label}: {_settings(manifest)}",
        f"background threshold {result['threshold']:.2f}: {result['threshold_rule']}",
    ]
    if result.get("select_miou") is not None:
        lines[-1] += f" (mIoU {result['select_miou']:.2f} there)"
    lines.append(
        f"mIoU {result['miou']:.2f}  foreground precision {result['fg_precision']:.2f}  "
        f"recall {result['fg_recall']:.2f}  pixel accuracy {result['pixel_accuracy']:.2f}"
    )
    per_class = [
        f"{name} {iou:.1f}" if iou is not None else f"{name} -"
        for name, iou in zip(result["class_names"], result["iou"])
    ]
    lines.append("IoU: " + ", ".join(per_class))
    return "\n".join(lines)
