"""Speed of WSSS seed generation on the CPU: the batched :class:`bas.wsss.seeds.SeedEngine` against
the released code's per-image loop (:func:`bas.wsss.seeds.reference_seed_maps`).

    python benchmarks/wsss_seeds.py           # 32 images, multi-label BAS resnet50_os16, 20 classes
    python benchmarks/wsss_seeds.py --quick   # smoke run: 4 small images, resnet18

Both compute the same seeds: scales 1.0, 0.5, 1.5, 2.0 with the horizontal flip, the same model
(random weights: the speed does not depend on them) and its ``class_maps``, the same PIL bicubic
rescaling and normalisation. The reference runs one image at a time: per scale one forward of the
image and its flip, every class resized to the stride-4 and to the full size, then the tagged ones
kept and normalised. The batched engine runs the images of one size together (with their flips
in the same forward) and resizes only the tagged classes. Images are decoded beforehand; half are
landscape, half portrait (VOC-like), each with 1 to 3 tags.

The two are timed in alternation, batch by batch, so that a change in the load of a shared machine
affects both alike; the load average is printed. The maps of every image are compared (maximum
absolute difference, the target is 1e-5); exit status 1 if they differ more.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

SMOKE = "smoke run: not a measurement"
TARGET = 1.3


def make_images(count: int, long_side: int, short_side: int, classes: int, seed: int = 0):
    """``count`` random-texture uint8 images (alternately landscape and portrait) with 1-3 tags."""
    rng = np.random.default_rng(seed)
    images, tags = [], []
    for i in range(count):
        h, w = (short_side, long_side) if i % 2 == 0 else (long_side, short_side)
        coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3)).astype(np.uint8)
        image = np.kron(coarse, np.ones((8, 8, 1), np.uint8))[:h, :w]
        noise = rng.integers(-20, 21, image.shape)
        images.append(np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8))
        t = np.zeros(classes, np.float32)
        t[rng.choice(classes, int(rng.integers(1, 4)), replace=False)] = 1
        tags.append(t)
    return images, tags


def main(argv: list[str] | None = None) -> int:
    import bas
    from bas.wsss.seeds import DEFAULT_SCALES, SeedEngine, batches_by_size, reference_seed_maps

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 images 64x48, resnet18, batch 2")
    parser.add_argument("--images", type=int, default=32, help="number of images (default: 32)")
    parser.add_argument("--arch", default="resnet50_os16", help="backbone (default: resnet50_os16)")
    parser.add_argument("--size", type=int, nargs=2, default=(128, 96), metavar=("LONG", "SHORT"))
    parser.add_argument("--classes", type=int, default=20, help="classes of the model (default: 20, VOC)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per batched forward (default: 8)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.size, args.arch, args.batch_size = 4, (64, 48), "resnet18", 2
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = bas.build_model(args.arch, args.classes, method="multilabel_bas").eval()
    images, tags = make_images(args.images, *args.size, args.classes)
    engine = SeedEngine(model, scales=DEFAULT_SCALES, flip=True)
    print(
        f"multilabel_bas {args.arch}, {args.classes} classes, {len(images)} images {args.size[0]}x{args.size[1]} "
        f"(half portrait), scales {', '.join(f'{s:g}' for s in DEFAULT_SCALES)} + flip, "
        f"{torch.get_num_threads()} CPU thread(s), torch {torch.__version__}"
    )
    items = list(zip(range(len(images)), images, tags))
    batches = list(batches_by_size(items, args.batch_size))
    engine([b[1] for b in batches[0]], [b[2] for b in batches[0]])  # warm-up of both paths
    reference_seed_maps(model, images[0], tags[0])

    load = os.getloadavg()[0]
    fast = slow = 0.0
    worst = 0.0
    for batch in batches:
        start = time.perf_counter()
        out = engine([b[1] for b in batch], [b[2] for b in batch])
        fast += time.perf_counter() - start
        start = time.perf_counter()
        ref = [reference_seed_maps(model, image, t) for _, image, t in batch]
        slow += time.perf_counter() - start
        for a, b in zip(out, ref):
            worst = max(
                worst, float((a.full - b.full).abs().max()), float((a.stride4 - b.stride4).abs().max())
            )
    n = len(images)
    print(f"reference loop (one image at a time): {n / slow:7.3f} images/s")
    print(f"batched (batch {args.batch_size}, tagged classes resized): {n / fast:7.3f} images/s")
    print(
        f"speed-up: {slow / fast:.2f}x   (1-min load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, {os.cpu_count()} CPUs)"
    )
    print(f"maps: largest absolute difference {worst:.2e} (within 1e-5: {'yes' if worst <= 1e-5 else 'no'})")
    if args.quick:
        print(SMOKE)
    else:
        verdict = "met" if slow / fast >= TARGET else "NOT met"
        print(f"target: >= {TARGET}x on the CPU -> {verdict}")
    return 0 if worst <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
