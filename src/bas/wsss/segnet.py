"""The segmentation network of the WSSS pipeline: DeepLabV3 trained on pseudo-masks (docs/segmentation.md).

* :func:`segmentation_dataset`: the trainer's datasets of a ``deeplabv3`` run: the training split
  with its labels read from the pseudo-mask folder (``seg.masks_dir/<id>.png``, palette PNGs as
  ``bas wsss seeds`` writes them, 255 ignored) and DeepLab's augmentation; any other split with its
  ground-truth masks at the images' own size;
* :func:`segment`: multi-scale + flip inference, the softmax probabilities averaged over every
  scale and flip at the image's resolution;
* :func:`evaluate_model`: mIoU of a split (confusion matrix, 255 ignored, :mod:`bas.metrics`) and
  its predictions as palette PNGs;
* :func:`train_segmentation` / :func:`evaluate_segmentation`: the API behind ``bas wsss train-seg``.

The training itself is the project's trainer (:mod:`bas.engine.train`: AMP, DDP under torchrun,
resume, checkpoints) with the ``deeplabv3`` method (:mod:`bas.methods.deeplab`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm.auto import tqdm

from bas.errors import ConfigError, DataError
from bas.wsss.masks import write_label_png

METRICS = "metrics.json"
PREDICTIONS = "predictions"
DEFAULT_RECIPE = "voc/deeplabv3_resnet101"


# ------------------------------------------------------------------------------------- data


def with_pseudo_masks(dataset: Any, masks_dir: str | Path) -> Any:
    """``dataset`` (a multi-label dataset) with every image's mask replaced by ``masks_dir/<id>.png``.

    Raises:
        DataError: naming the folder when it does not exist, the first missing pseudo-mask, or the
        first pseudo-mask whose size is not its image's.
    """
    from bas.data.multilabel import MultiLabelDataset
    from bas.io import path_inside

    folder = Path(masks_dir)
    if not folder.is_dir():
        raise DataError("pseudo-mask folder not found", folder)
    records = []
    for r in dataset.records:
        path = path_inside(folder, r.image_id, ".png")
        if not path.is_file():
            raise DataError(
                f"no pseudo-mask for image {r.image_id} ({len(dataset)} images in the split)", path
            )
        records.append(dataclasses.replace(r, mask=path))
    for r in records:
        mask, image = _size(r.mask, "pseudo-mask"), _size(r.path, "image")
        if mask != image:
            raise DataError(
                f"pseudo-mask is {mask[0]}x{mask[1]} but its image {r.path} is {image[0]}x{image[1]}", r.mask
            )
    out = MultiLabelDataset(records, dataset.classes, dataset.transform)
    out.root = getattr(dataset, "root", None)
    return out


def _size(path: Path, what: str) -> tuple[int, int]:
    """``(W, H)`` from the file's header."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the {what}: {exc}", path) from None


def open_segmentation_split(
    dataset: str, root: str | Path, split: str, transform: Any = None, options: dict | None = None
) -> Any:
    """A split of a multi-label dataset with label masks (``voc``, ``coco``, ...)."""
    from bas.data.formats import build_dataset

    out = build_dataset(dataset, root, split, transform, **(options or {}))
    if not getattr(out, "multi_label", False):
        raise ConfigError(
            f"a segmentation network trains on a segmentation dataset (voc, coco), not {dataset}"
        )
    return out


def segmentation_dataset(cfg: dict[str, Any], split: str, *, train: bool) -> Any:
    """The dataset of one split of a ``deeplabv3`` run: for training, the pseudo-masks of
    ``seg.masks_dir`` (the ground truth when it is null) with
    :func:`~bas.data.transforms.segmentation_train_transform`; else the ground truth, unresized."""
    from bas.data.transforms import segmentation_train_transform
    from bas.engine.data import dataset_root

    data, seg = cfg["data"], cfg["seg"]
    transform = segmentation_train_transform(data["input_size"], tuple(seg["scale_range"])) if train else None
    dataset = open_segmentation_split(
        data["dataset"], dataset_root(cfg), split, transform, data.get("options")
    )
    if train and seg["masks_dir"] is not None:
        dataset = with_pseudo_masks(dataset, seg["masks_dir"])
    return dataset


# -------------------------------------------------------------------------------- inference


def segment(
    model: nn.Module, images: torch.Tensor, scales: Sequence[float] = (1.0,), flip: bool = False
) -> torch.Tensor:
    """Class probabilities ``(B, K + 1, H, W)``: the softmax of the model's scores on the images
    resized by each scale (bilinear) and, with ``flip``, on their mirror images (flipped back),
    each upsampled to ``(H, W)``, averaged."""
    b, (h, w) = images.shape[0], images.shape[-2:]
    total = torch.zeros((), device=images.device)
    for scale in scales:
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        x = images if size == (h, w) else F.interpolate(images, size, mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)])
        logits = F.interpolate(model(x).logits.float(), (h, w), mode="bilinear", align_corners=False)
        probs = logits.softmax(dim=1)
        total = total + (probs[:b] + probs[b:].flip(-1) if flip else probs)
    return total / (len(scales) * (2 if flip else 1))


def evaluate_model(
    model: nn.Module,
    dataset: Any,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    device: torch.device | str = "cpu",
    amp: str | None = None,
    workers: int = 0,
    predictions: str | Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Segment every image of ``dataset`` (one at a time, at its own size) with :func:`segment`.

    Returns the :class:`~bas.metrics.SegmentationEvaluator` numbers over the images that have a
    mask (``miou`` and the rest in percent, None where undefined; ``miou`` None when no image has
    a mask), plus ``num_images``, ``scales`` and ``flip``. ``predictions``: folder of the
    predicted label maps (palette PNGs ``<id>.png``). Under torchrun (``world_size > 1``, process
    group initialised) rank ``r`` segments images ``r, r + world_size, ...`` and the confusion
    matrices are summed.
    """
    from bas.engine.data import guarded_loader
    from bas.engine.evaluate import autocast_context
    from bas.io import path_inside
    from bas.metrics import SegmentationEvaluator

    device = torch.device(device)
    classes = list(dataset.classes)
    if model.num_classes != len(classes):
        raise ConfigError(f"the model has {model.num_classes} classes, the dataset {len(classes)}")
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
    loader = guarded_loader(shard, batch_size=1, shuffle=False, num_workers=workers)
    evaluator = SegmentationEvaluator(len(classes) + 1, class_names=["background", *classes])
    out_dir = Path(predictions) if predictions is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    was_training, benchmark = model.training, torch.backends.cudnn.benchmark
    model.eval()
    torch.backends.cudnn.benchmark = False  # every image size would be tuned anew
    masked = 0
    with torch.no_grad():
        for batch in tqdm(loader, desc="segment", unit="img", disable=not progress, leave=False):
            with autocast_context(device, amp):
                probs = segment(model, batch["image"].to(device), scales, flip)
            pred = probs.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
            if batch["mask"] is not None:
                evaluator.accumulate(pred, batch["mask"][0].numpy())
                masked += 1
            if out_dir is not None:
                write_label_png(path_inside(out_dir, batch["image_id"][0], ".png"), pred)
    model.train(was_training)
    torch.backends.cudnn.benchmark = benchmark
    counts = np.array([len(shard), masked], dtype=np.int64)
    if world_size > 1:
        evaluator.confusion, counts = (_sum_over_ranks(a) for a in (evaluator.confusion, counts))
    result = evaluator.compute() if counts[1] else {"miou": None}
    result = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in result.items()}
    return {**result, "num_images": int(counts[0]), "scales": list(scales), "flip": bool(flip)}


def _sum_over_ranks(values: np.ndarray) -> np.ndarray:
    import torch.distributed as dist

    t = torch.from_numpy(values).to(torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().round().to(torch.int64).numpy()


# ------------------------------------------------------------------------------------- API


def train_segmentation(
    config: dict[str, Any],
    masks_dir: str | Path | None,
    data_root: str | Path | None,
    output: str | Path | None,
    *,
    predict: Sequence[str] | None = None,
    resume: str | Path | bool | None = None,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Train DeepLabV3 on the pseudo-masks of ``masks_dir``, then evaluate and predict.

    Args:
        config: a recipe or resolved config (``method: deeplabv3``), merged over the defaults.
        masks_dir, data_root, output: ``seg.masks_dir``, ``data.root`` and ``train.output_dir``
            (None keeps the config's).
        predict: splits whose predictions are written (``OUTPUT/predictions/<split>/<id>.png``) and
            scored where they have masks, with ``seg.scales`` / ``seg.flip`` (default: the
            validation split).
        resume: True (the run folder's ``last.ckpt``) or a training-state file.

    Returns:
        The model evaluated: ``best.safetensors`` (best validation mIoU), else ``model.safetensors``.
        ``OUTPUT/metrics.json`` holds the evaluation of each predicted split.
    """
    from bas.config import load_config
    from bas.engine import distributed as D
    from bas.engine.train import BEST, FINAL, Trainer
    from bas.io import write_json

    cfg = copy.deepcopy(config)
    for section, key, value in (("seg", "masks_dir", masks_dir), ("data", "root", data_root)):
        if value is not None:
            cfg.setdefault(section, {})[key] = str(value)
    if output is not None:
        cfg.setdefault("train", {})["output_dir"] = str(output)
    cfg = load_config(cfg)
    if cfg["method"] != "deeplabv3":
        raise ConfigError(f"a segmentation network recipe has method: deeplabv3, not {cfg['method']}")
    out_dir = Path(cfg["train"]["output_dir"])
    splits = list(predict) if predict else [cfg["data"]["val_split"] or cfg["data"]["train_split"]]
    try:
        trainer = Trainer(cfg, resume=resume, progress=progress, device=device)
        # the predicted splits are opened before training, so that a bad one fails first
        datasets = {s: segmentation_dataset(cfg, s, train=False) for s in splits}
        trainer.fit()
        env = trainer.env
        checkpoint = out_dir / BEST if (out_dir / BEST).is_file() else out_dir / FINAL
        results = {
            split: evaluate_checkpoint(
                checkpoint,
                dataset,
                cfg,
                env=env,
                predictions=out_dir / PREDICTIONS / split,
                progress=progress and env.is_main,
            )
            for split, dataset in datasets.items()
        }
        if env.is_main:
            write_json(out_dir / METRICS, {"checkpoint": checkpoint.name, "results": results})
        D.barrier(env)
    finally:
        D.cleanup()
    return checkpoint


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: Any,
    cfg: dict[str, Any],
    *,
    env: Any,
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    predictions: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """:func:`evaluate_model` of a checkpoint on every rank of ``env`` (a :class:`DistEnv`),
    scales and flip from the config's ``seg`` section unless given."""
    from bas.checkpoints import load_checkpoint

    model = load_checkpoint(checkpoint, map_location=env.device)
    seg = cfg.get("seg") or {}
    return evaluate_model(
        model,
        dataset,
        scales=seg.get("scales", [1.0]) if scales is None else list(scales),
        flip=seg.get("flip", False) if flip is None else bool(flip),
        device=env.device,
        amp=(cfg.get("train") or {}).get("amp"),
        workers=int((cfg.get("data") or {}).get("workers", 0)),
        predictions=predictions,
        rank=env.rank,
        world_size=env.world_size,
        progress=progress,
    )


def evaluate_segmentation(
    checkpoint: str | Path,
    data_root: str | Path | None = None,
    split: str = "val",
    scales: Sequence[float] | None = None,
    flip: bool | None = None,
    *,
    predictions: str | Path | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """mIoU (and per-class IoU, precision, recall, pixel accuracy) of a DeepLabV3 checkpoint on
    ``split`` of its training data (``data_root`` overrides the root it names), with the
    checkpoint's ``seg.scales`` / ``seg.flip`` unless given; ``predictions``: where to write the
    palette PNGs."""
    from bas.checkpoints import read_checkpoint_metadata
    from bas.commands._common import resolve_device
    from bas.engine.distributed import DistEnv

    meta = read_checkpoint_metadata(checkpoint)
    if meta["method"] != "deeplabv3":
        raise ConfigError(f"{checkpoint} is a {meta['method']} model, not a segmentation network (deeplabv3)")
    cfg = meta.get("config") or {}
    data = cfg.get("data") or {}
    root = data_root if data_root is not None else data.get("root")
    if root is None:
        raise ConfigError(f"{checkpoint} names no data.root: give the dataset root")
    dataset = open_segmentation_split(data.get("dataset", "voc"), root, split, None, data.get("options"))
    env = DistEnv(device=torch.device(resolve_device(device)))
    return evaluate_checkpoint(
        checkpoint,
        dataset,
        cfg,
        env=env,
        scales=scales,
        flip=flip,
        predictions=predictions,
        progress=progress,
    )


def summary(run_dir: str | Path) -> str:
    """The closing lines of ``bas wsss train-seg``: each evaluated split's mIoU and where things are."""
    import json

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / METRICS).read_text(encoding="utf-8"))
    lines = []
    for split, result in metrics["results"].items():
        how = f"scales {', '.join(f'{s:g}' for s in result['scales'])}{', flip' if result['flip'] else ''}"
        miou = "no masks to score" if result["miou"] is None else f"mIoU {result['miou']:.2f}"
        lines.append(
            f"{split} ({result['num_images']} images, {how}): {miou}; predictions in "
            f"{run_dir / PREDICTIONS / split}"
        )
    lines.append(f"model: {run_dir / metrics['checkpoint']}  metrics: {run_dir / METRICS}")
    return "\n".join(lines)
