"""``bas predict``: classes, boxes and heatmap overlays for image files, folders or globs."""

from __future__ import annotations

import argparse
import glob
import sys
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from bas.commands._common import (
    add_alias,
    add_checkpoint_arg,
    add_device_args,
    add_output_arg,
    add_test_mode_arg,
    add_threshold_arg,
    add_top_k_arg,
    positive_int,
    resolve_device,
)
from bas.errors import BASError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="localise objects in images with a checkpoint",
        description="Writes predictions.jsonl (one JSON line per image: path, label, class_name, "
        "score, top5, box in original-image pixels) and one heatmap/box overlay PNG "
        "per image under overlays/, at the image's own resolution; with --save-maps also "
        "the colour-mapped heatmap (heatmaps/<name>.png) and the raw map (maps/<name>.npy, "
        "float16), with --save-masks the binary mask (masks/<name>.png). Unreadable files "
        "are reported and skipped; the command then exits with status 1 and lists them.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively for image files) or glob patterns",
    )
    add_checkpoint_arg(p)
    add_output_arg(p, default="bas_predictions", help="output folder (default: bas_predictions)")
    add_top_k_arg(p)
    add_threshold_arg(p)
    add_test_mode_arg(p, default="crop")
    add_alias(p, "--no-crop", "--test-mode resize", "test_mode", nargs=0, const="resize")
    p.add_argument(
        "--photo-threshold",
        choices=["after", "before"],
        default="after",
        help="threshold the map after resizing it to the photo (default) or before, at the network "
        "input size, as the papers' code does (docs/inference.md)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=16, help="images per forward pass (default: 16)"
    )
    p.add_argument(
        "--save-maps",
        action="store_true",
        help="also write heatmaps/<name>.png (colour-mapped) and maps/<name>.npy (float16, [0, 1])",
    )
    p.add_argument("--save-masks", action="store_true", help="also write masks/<name>.png (0 / 255)")
    p.add_argument(
        "--multi",
        action="store_true",
        help="every object: one box per connected component of each class whose probability reaches "
        "--class-threshold (the top-1 class always), scored mean map x class probability, after "
        "class-wise NMS; listed as 'objects' in predictions.jsonl and drawn on the overlays",
    )
    p.add_argument(
        "--class-threshold", type=float, default=0.1, help="with --multi: class probability (default: 0.1)"
    )
    p.add_argument(
        "--min-area",
        type=float,
        default=0.01,
        help="with --multi: smallest component, as a fraction of the image (default: 0.01)",
    )
    p.add_argument(
        "--nms-iou", type=float, default=0.5, help="with --multi: NMS IoU threshold (default: 0.5)"
    )
    p.add_argument(
        "--coco-json",
        metavar="OUT",
        help="also write the detections as a COCO-format file (images, categories with the class "
        "names, annotations with bbox [x, y, w, h] in image pixels and score)",
    )
    add_device_args(p)
    p.set_defaults(func=run)


def collect_inputs(inputs: Iterable[str]) -> tuple[list[tuple[Path, str]], list[str]]:
    """Expand the command's inputs into ``(file, overlay name)`` pairs, in order, without duplicates.

    A folder contributes its image files (recursively, sorted), named by their path relative to the
    folder; a file or a glob match is named by its file name. The second list says, for each input
    that matches nothing, ``"<input>: <reason>"``.
    """
    from bas.data.datasets import IMAGE_EXTENSIONS

    files: list[tuple[Path, str]] = []
    missing: list[str] = []
    seen: set[Path] = set()

    def add(path: Path, name: str) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append((path, name))

    def add_folder(folder: Path) -> None:
        for path in sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        ):
            add(path, path.relative_to(folder).as_posix())

    for text in inputs:
        path = Path(text)
        if path.is_dir():
            add_folder(path)
        elif path.is_file():
            add(path, path.name)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(text, recursive=True))
            for match in map(Path, matches):
                if match.is_dir():
                    add_folder(match)
                elif match.is_file():
                    add(match, match.name)
            if not matches:
                missing.append(f"{text}: no file matches this pattern")
        else:
            missing.append(f"{text}: no such file or folder")
    return files, missing


def overlay_names(names: list[str]) -> list[str]:
    """Overlay file names: the name with its extension replaced by ``.png``; ``-1``, ``-2``... are added to
    names already taken (``a.jpg`` and ``a.png`` give ``a.png`` and ``a-1.png``)."""
    taken: set[str] = set()
    out = []
    for name in names:
        name = PurePosixPath(name).with_suffix("").as_posix()
        candidate, n = f"{name}.png", 0
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}.png"
        taken.add(candidate)
        out.append(candidate)
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from bas.io import atomic_open, read_image, to_json, write_json
    from bas.predict import Localizer, coco_detections, write_prediction_files

    if args.batch_size < 1:
        raise BASError(f"--batch-size must be >= 1, got {args.batch_size}")
    if not 0.0 <= args.min_area <= 1.0:
        raise BASError(f"--min-area is a fraction of the image in [0, 1], got {args.min_area}")
    files, skipped = collect_inputs(args.inputs)
    for message in skipped:
        print(f"skipped {message}", file=sys.stderr)
    if not files:
        raise BASError("no image found in the inputs")
    localizer = Localizer.from_checkpoint(
        args.checkpoint, device=resolve_device(args.device), photo_threshold=args.photo_threshold
    )
    out_dir = Path(args.output)
    overlays = overlay_names([name for _, name in files])
    written = 0
    coco_entries = []
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=args.no_progress, dynamic_ncols=True)
    with atomic_open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as jsonl:
        for start in range(0, len(files), args.batch_size):
            chunk = list(
                zip(files[start : start + args.batch_size], overlays[start : start + args.batch_size])
            )
            loaded = []
            for (path, _), overlay_name in chunk:
                try:
                    loaded.append((path, overlay_name, read_image(path)))
                except BASError as exc:
                    skipped.append(str(exc))
                    tqdm.write(f"skipped {exc}", file=sys.stderr)
            predictions = (
                localizer.predict(
                    [image for _, _, image in loaded],
                    top_k=args.top_k,
                    threshold=args.threshold,
                    crop=args.test_mode == "crop",
                    batch_size=args.batch_size,
                    multi=args.multi,
                    class_threshold=args.class_threshold,
                    min_area=args.min_area,
                    nms_iou=args.nms_iou,
                )
                if loaded
                else []
            )
            for (path, overlay_name, image), pred in zip(loaded, predictions):
                outputs = write_prediction_files(
                    out_dir,
                    PurePosixPath(overlay_name).with_suffix("").as_posix(),
                    image,
                    pred,
                    maps=args.save_maps,
                    masks=args.save_masks,
                )
                record = {"path": str(path), **pred.to_json(), **outputs}
                jsonl.write(to_json(record) + "\n")
                written += 1
                if args.coco_json:
                    coco_entries.append((str(path), pred.image_size, pred.detections()))
            bar.update(len(chunk))
        if args.coco_json:
            write_json(args.coco_json, coco_detections(coco_entries, localizer.class_names))
    bar.close()
    if args.coco_json:
        print(f"wrote COCO-format detections to {args.coco_json}")
    print(
        f"wrote {written} prediction(s) to {out_dir / 'predictions.jsonl'} and overlays to {out_dir / 'overlays'}"
    )
    if skipped:
        print(f"skipped {len(skipped)} input(s):", file=sys.stderr)
        for message in skipped:
            print(f"  {message}", file=sys.stderr)
        return 1
    return 0
