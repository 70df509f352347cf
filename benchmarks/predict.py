"""Throughput of :meth:`bas.Localizer.predict` on the CPU: batched inference against one image at a time.

    python benchmarks/predict.py            # 200 synthetic images, resnet18 at 224, batch 16 vs 1
    python benchmarks/predict.py --quick    # smoke run: 8 images, 96x96 input, batch 4 vs 1

The timed call is the whole public path: preprocessing (Resize + CenterCrop + normalise), the
forward pass, and mapping maps, masks and boxes back to the original images. The images are decoded
beforehand (PIL images in memory), so file reading is not timed. The model has random weights: the
speed does not depend on them.

The two settings are timed in alternation, chunk by chunk (one chunk = one batch of the batched
run), so that a change in the load of a shared machine affects both alike; the load average is
printed with the results.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

SMOKE = "smoke run: not a measurement"


def load_images(root: Path, count: int, image_size: int) -> list[Image.Image]:
    from bas.data.synthetic import make_dataset

    per_class = -(-count // 4)
    data = make_dataset(
        root / "data", num_classes=4, images_per_class=per_class, image_size=image_size, seed=0
    )
    paths = sorted((data / "images").rglob("*.jpg"))[:count]
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return images


def timed(localizer, images: list[Image.Image], batch_size: int) -> float:
    """Seconds ``localizer.predict(images, batch_size=batch_size)`` takes."""
    start = time.perf_counter()
    predictions = localizer.predict(images, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    assert len(predictions) == len(images)
    return elapsed


def compare(localizer, images: list[Image.Image], batch_size: int) -> tuple[float, float]:
    """Images per second with batch 1 and with ``batch_size``, timed alternately chunk by chunk."""
    for size in (1, batch_size):  # warm-up: the backend prepares its kernels per input shape
        timed(localizer, images[:size], size)
    single = batched = 0.0
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        single += timed(localizer, chunk, 1)
        batched += timed(localizer, chunk, batch_size)
    return len(images) / single, len(images) / batched


def main(argv: list[str] | None = None) -> None:
    import bas
    from bas.checkpoints import save_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 8 images 64x64, input 96, batch 4 vs 1"
    )
    parser.add_argument("--images", type=int, default=200, help="number of images (default: 200)")
    parser.add_argument("--arch", default="resnet18", help="backbone (default: resnet18)")
    parser.add_argument("--input-size", type=int, default=224, help="network input side (default: 224)")
    parser.add_argument(
        "--image-size", type=int, default=160, help="side of the synthetic images (default: 160)"
    )
    parser.add_argument("--batch-size", type=int, default=16, help="batched run (default: 16)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.image_size, args.input_size, args.batch_size = 8, 64, 96, 4
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = load_images(root, args.images, args.image_size)
        checkpoint = root / "model.safetensors"
        torch.manual_seed(0)
        save_model(
            checkpoint,
            bas.build_model(args.arch, 4),
            input_size=args.input_size,
            resize_size=round(args.input_size * 256 / 224),
        )
        localizer = bas.Localizer.from_checkpoint(checkpoint, device="cpu")
        print(
            f"{args.arch} (classifier width 1024) at {args.input_size}, {len(images)} images "
            f"{args.image_size}x{args.image_size}, {torch.get_num_threads()} CPU thread(s), torch {torch.__version__}"
        )
        load = os.getloadavg()[0]
        single, batched = compare(localizer, images, args.batch_size)
        print(f"batch  1: {single:7.2f} images/s")
        print(f"batch {args.batch_size:2d}: {batched:7.2f} images/s")
        print(
            f"speed-up batch {args.batch_size} / batch 1: {batched / single:.2f}x   "
            f"(1-min load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)"
        )
        if args.quick:
            print(SMOKE)


if __name__ == "__main__":
    main()
