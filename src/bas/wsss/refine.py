"""Refined pseudo-masks (docs/segmentation.md, "Refinement with IRN").

From a seeds folder of one split (written by ``bas wsss seeds``):

1. confident labels (0 background, k class, 255 unsure) from the seeds, by
   :func:`bas.wsss.confident.write_confident_labels`, or a folder of them given by the user;
2. IRN's boundary branch trained on the split's images and those labels (:mod:`bas.wsss.irn`),
   saved as ``irn.pt``;
3. per image, the stride-4 seed maps raised to the power 1.5 are propagated by the random walk
   over its boundary map (:func:`bas.wsss.random_walk.random_walk`), upsampled x4 (bilinear),
   cropped to the image and divided by their global maximum (+1e-5).

The result is a seeds folder of the same layout (``maps/<id>.npz`` with the refined ``stride4``
and ``full`` maps and the classes, ``masks/<id>.png`` labelled at background threshold 0.22,
``seeds.json`` with a ``refined`` entry), so ``bas wsss evaluate`` scores it unchanged. Finished
images are skipped, a trained ``irn.pt`` is reused, a folder of other settings is refused.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bas.errors import ConfigError, DataError
from bas.wsss import seeds as S
from bas.wsss.irn import (
    AffinityDataset,
    IRNConfig,
    boundary_map,
    build_boundary_net,
    load_boundary_net,
    save_boundary_net,
    train_boundary_net,
    trunk_from_checkpoint,
)
from bas.wsss.masks import read_label_png
from bas.wsss.random_walk import BETA, RADIUS, STEPS, random_walk

DEFAULT_BG_THRESHOLD = 0.22
CONFIDENT_FG, CONFIDENT_BG = 0.30, 0.17
IRN_FILE, CONFIDENT_DIR = "irn.pt", "confident"


@dataclass
class WalkSettings:
    """The random walk of the stride-4 seeds (defaults: the reference recipe, docs/segmentation.md)."""

    power: float = 1.5
    beta: float = BETA
    steps: int = STEPS
    radius: int = RADIUS


def walk_settings(**given: float | None) -> WalkSettings:
    """:class:`WalkSettings` from the fields that are given (not ``None``); the rest keep their defaults."""
    return WalkSettings(**{name: value for name, value in given.items() if value is not None})


def refined_maps(
    stride4: torch.Tensor, boundary: torch.Tensor, size: tuple[int, int], walk: WalkSettings | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(stride4, full)`` refined maps of ``(C, h, w)`` seeds over a ``(h, w)`` boundary map: the
    random walk of ``seeds ** power``, upsampled x4 to ``size`` and both divided by the global
    maximum of the upsampled maps (+1e-5)."""
    walk = walk or WalkSettings()
    if not len(stride4):
        return stride4.float(), torch.zeros(0, *size)
    rw = random_walk(
        stride4.float() ** walk.power, boundary, radius=walk.radius, beta=walk.beta, steps=walk.steps
    )
    up = F.interpolate(rw[None], scale_factor=4, mode="bilinear", align_corners=False)[
        0, :, : size[0], : size[1]
    ]
    peak = up.max() + S.EPS
    return rw / peak, up / peak


def check_seeds(seeds_dir: Path, source: Any) -> None:
    """Every image of the split has its seeds (else one DataError naming the first missing)."""
    missing = [i for i in source.image_ids if not S.is_finished(seeds_dir, i)]
    if missing:
        raise DataError(
            f"seeds of {len(missing)} of {len(source.image_ids)} images are missing (first: {missing[0]}): "
            "finish bas wsss seeds first",
            seeds_dir,
        )


def confident_folder(
    seeds_dir: Path,
    output: Path,
    source: Any,
    *,
    confident: str | Path | None,
    fg_threshold: float,
    bg_threshold: float,
    crf_backend: str,
    progress: Callable[[int], None] | None,
) -> Path:
    """The folder of confident labels: ``confident`` as given, else written by
    :func:`bas.wsss.confident.write_confident_labels` under ``output/confident``."""
    if confident is not None:
        folder = Path(confident)
        if not folder.is_dir():
            raise DataError("no such folder of confident labels", folder)
        return folder
    try:
        from bas.wsss.confident import write_confident_labels
    except ImportError:
        raise ConfigError(
            "confident labels need bas.wsss.confident, which this install lacks: give --confident DIR"
        ) from None
    return Path(
        write_confident_labels(
            seeds_dir, output / CONFIDENT_DIR, source, fg_threshold, bg_threshold, crf_backend, progress
        )
    )


def training_set(source: Any, labels_dir: Path, config: IRNConfig) -> AffinityDataset:
    """The split's images with their confident labels ``labels_dir/<id>.png`` (all must exist)."""
    from bas.io import path_inside

    missing = [i for i in source.image_ids if not path_inside(labels_dir, i, ".png").is_file()]
    if missing:
        raise DataError(
            f"confident labels of {len(missing)} of {len(source.image_ids)} images are missing "
            f"(first: {missing[0]}.png)",
            labels_dir,
        )

    def read(i: int) -> tuple[np.ndarray, np.ndarray]:
        image = source.read(i)[0]
        path = path_inside(labels_dir, source.image_ids[i], ".png")
        labels = read_label_png(path)
        if labels.shape != image.shape[:2]:
            raise DataError(
                f"confident labels of size {labels.shape} for an image of size {image.shape[:2]}", path
            )
        return image, labels

    return AffinityDataset(read, len(source.image_ids), config)


def refined_manifest(seeds_manifest: dict[str, Any], refined: dict[str, Any], bg_threshold: float) -> dict:
    """The manifest of a refined folder: the seeds' own, its method marked ``+irn``, the new
    background threshold, and the ``refined`` settings."""
    manifest = {k: v for k, v in seeds_manifest.items() if k not in ("format", "format_version")}
    manifest.update(method=f"{seeds_manifest.get('method')}+irn", bg_threshold=bg_threshold, refined=refined)
    return manifest


def check_refined(output: Path, manifest: dict[str, Any]) -> None:
    """Refuse a folder of refined masks made with other settings (then the seeds' own checks)."""
    if (output / S.MANIFEST).is_file():
        existing = S.read_manifest(output).get("refined")
        if existing != manifest["refined"]:
            changed = [k for k in manifest["refined"] if (existing or {}).get(k) != manifest["refined"][k]]
            raise ConfigError(
                f"{output} holds masks refined with other settings ({', '.join(changed) or 'not refined'}): "
                "use another --output"
            )
    S.check_manifest(output, manifest)


def refine_split(
    seeds_dir: str | Path,
    output: str | Path,
    source: Any,
    *,
    data_root: str | Path | None = None,
    confident: str | Path | None = None,
    irn: str | Path | None = None,
    config: IRNConfig | None = None,
    init: str = "imagenet",
    backbone_from: str | Path | None = None,
    walk: WalkSettings | None = None,
    bg_threshold: float = DEFAULT_BG_THRESHOLD,
    fg_threshold: float = CONFIDENT_FG,
    confident_bg_threshold: float = CONFIDENT_BG,
    crf_backend: str = "auto",
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> dict[str, Any]:
    """Refine the seeds of one split (``seeds_dir``, the folder holding ``seeds.json``) into
    ``output``; ``source`` is that split (:class:`bas.wsss.seeds.DatasetSplit`). Returns a summary.

    ``irn``: a trained ``irn.pt`` (e.g. the training split's) to walk with; then no confident labels
    are made and nothing is trained. ``progress(stage, total)`` may give a per-stage update callback (``"confident"``, ``"irn"``,
    ``"walk"``).
    """
    seeds_dir, output = Path(seeds_dir), Path(output)
    config = config or IRNConfig()
    walk = walk or WalkSettings()
    if output.resolve() == seeds_dir.resolve():
        raise ConfigError(f"--output {output} is the seeds folder: refined masks need a folder of their own")
    if backbone_from is not None:  # the checkpoint's depth wins: record the trunk actually used
        config = replace(config, backbone=trunk_from_checkpoint(backbone_from)[0])
    config.check()
    seeds_manifest = S.read_manifest(seeds_dir)
    if list(source.image_ids) and seeds_manifest.get("num_images") != len(source.image_ids):
        raise DataError(
            f"seeds of {seeds_manifest.get('num_images')} images for a split of {len(source.image_ids)}: "
            "not the seeds of this data",
            seeds_dir / S.MANIFEST,
        )
    check_seeds(seeds_dir, source)
    irn_settings = asdict(config)
    irn_settings["scale_range"] = list(config.scale_range)
    refined = {
        "seeds": str(seeds_dir.resolve()),
        "confident": str(Path(confident).resolve()) if confident is not None else None,
        "fg_threshold": fg_threshold,
        "confident_bg_threshold": confident_bg_threshold,
        "crf": crf_backend,
        "irn": irn_settings,
        "trunk_init": str(Path(backbone_from).resolve()) if backbone_from is not None else init,
        "trained_irn": str(Path(irn).resolve()) if irn is not None else None,
        "walk": asdict(walk),
    }
    manifest = refined_manifest(seeds_manifest, refined, bg_threshold)
    if data_root is not None:
        manifest["data_root"] = str(Path(data_root).resolve())
    check_refined(output, manifest)
    S.write_manifest(output, manifest)
    none = lambda stage, total: None  # noqa: E731
    progress = progress or none

    if irn is not None:
        net, info = load_boundary_net(irn, device)
        log(f"IRN: walking with {irn} ({info.get('trunk')})")
        return walk_split(seeds_dir, output, source, net, walk, bg_threshold, device, progress) | {
            "irn": str(irn),
            "confident": None,
            "irn_steps": 0,
            "irn_loss": [],
        }
    labels_dir = confident_folder(
        seeds_dir,
        output,
        source,
        confident=confident,
        fg_threshold=fg_threshold,
        bg_threshold=confident_bg_threshold,
        crf_backend=crf_backend,
        progress=progress("confident", len(source.image_ids)) if confident is None else None,
    )

    irn_path = output / IRN_FILE
    if irn_path.is_file():
        net, info = load_boundary_net(irn_path, device)
        log(f"IRN: reusing {irn_path} ({info.get('trunk')})")
        history = []
    else:
        torch.manual_seed(config.seed)
        net, note = build_boundary_net(config.backbone, init=init, backbone_from=backbone_from)
        log(f"IRN: {note}")
        dataset = training_set(source, labels_dir, config)
        steps = (len(dataset) // min(config.batch_size, max(len(dataset), 1))) * config.epochs
        update = progress("irn", steps)
        history = train_boundary_net(
            net, dataset, config, device=device, progress=(lambda s, t, p: update(1)) if update else None
        )
        save_boundary_net(irn_path, net, config, note)
        if history:
            log(f"IRN: {len(history)} steps, loss {history[0]['loss']:.4f} -> {history[-1]['loss']:.4f}")

    return walk_split(seeds_dir, output, source, net, walk, bg_threshold, device, progress) | {
        "irn": str(irn_path),
        "confident": str(labels_dir),
        "irn_steps": len(history),
        "irn_loss": [h["loss"] for h in history],
    }


def walk_split(
    seeds_dir: Path,
    output: Path,
    source: Any,
    net: Any,
    walk: WalkSettings,
    bg_threshold: float,
    device: str | torch.device,
    progress: Callable[[str, int], Callable[[int], None] | None],
) -> dict[str, Any]:
    """Random-walk every unfinished image of the split over ``net``'s boundaries into ``output``."""
    todo = [i for i, image_id in enumerate(source.image_ids) if not S.is_finished(output, image_id)]
    update = progress("walk", len(todo))
    for i in todo:
        image_id = source.image_ids[i]
        image = source.read(i)[0]
        classes, low = S.read_seeds(S.seed_files(seeds_dir, image_id)[0], "stride4")
        boundary = boundary_map(net, image, device)
        expected = (math.ceil(image.shape[0] / 4), math.ceil(image.shape[1] / 4))
        if low.shape[1:] != expected:
            raise DataError(
                f"stride-4 seeds of size {low.shape[1:]} for an image of size {image.shape[:2]}",
                S.seed_files(seeds_dir, image_id)[0],
            )
        stride4, full = refined_maps(
            torch.from_numpy(low.astype(np.float32)), boundary, image.shape[:2], walk
        )
        S.write_seeds(output, image_id, S.SeedMaps(classes, stride4, full), bg_threshold)
        if update:
            update(1)
    return {"output": str(output), "refined_images": len(todo), "num_images": len(source.image_ids)}
