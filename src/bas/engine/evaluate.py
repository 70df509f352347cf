"""Evaluation loop: batched inference, then the paper's metrics and the standard protocol's.

For every image the model's fused foreground map (``top_k`` classes, docs/method.md §5) is min-max
normalised and upsampled to the network input (the crop in ``crop`` mode, the whole resized image
in ``resize`` mode). From it:

* the paper metrics at a fixed threshold: box of the largest connected component, best inclusive
  IoU over the ground-truth boxes, GT-known / Top-1 / Top-5 Loc and Top-1 / Top-5 classification
  (per image and class-balanced);
* their accuracy-vs-threshold curve on the grid of ``eval.interval``, used to choose the threshold
  on a held-out split, computed by the MaxBoxAcc machinery (:meth:`bas.metrics.BoxEvaluator.hits`,
  largest contour, IoU >= 0.5; the threshold is relative to the quantised map's maximum);
* MaxBoxAcc at each IoU threshold and their mean, MaxBoxAccV2 when multi-contour at IoU 0.3/0.5/0.7
  (standard protocol, :class:`bas.metrics.BoxEvaluator`; in ``resize`` mode with the protocol's
  truncated box scaling, :func:`bas.evaluate_maps.boxes_to_map`, so that the numbers equal
  ``bas evaluate-maps`` on the saved maps);
* PxAP and PIoU where masks exist (:class:`bas.metrics.MaskEvaluator`).

Every convention above is the ``standard`` protocol's; an :class:`Evaluator` given another
:class:`bas.protocols.Protocol` follows that one (normalisation eps, component order, IoU
comparison, ground-truth arithmetic, ties in top-k, mean), and :func:`evaluate_split` also sets the
protocol's input path (crop, PIL resize), ten-crop and per-dataset threshold / top-k. Several
protocols evaluated together share the forward passes of their common input path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bas import metrics
from bas.evaluate_maps import (
    METADATA_FOLDER,
    box_summary_name,
    boxes_to_map,
    write_metadata,
    write_score_maps,
)
from bas.localization import NORM_EPS, localization_maps, maps_to_boxes
from bas.protocols import (
    STANDARD,
    Protocol,
    box_accuracy,
    box_correct,
    get_protocol,
    protocol_boxes,
    resolve_protocols,
)


@dataclass
class BatchPrediction:
    """What one evaluation batch yields."""

    logits: torch.Tensor  # (B, K) on CPU, float32
    maps: torch.Tensor  # (B, H, W) on CPU, in [0, 1]
    labels: torch.Tensor  # (B,)
    boxes: list[torch.Tensor]  # ground truth, (Mi, 4) each
    mask: torch.Tensor | None
    ignore: torch.Tensor | None
    image_ids: list[str]
    orig_sizes: torch.Tensor | None = None  # (B, 2) (W, H) of the original images
    raw_maps: torch.Tensor | None = None  # (B, h, w) the network's fused maps, before normalisation


def autocast_context(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in {None, 'bf16', 'fp16'} (a no-op context for None)."""
    if not amp:
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def predict_batches(
    model: nn.Module,
    loader,
    *,
    top_k: int,
    device: torch.device | str = "cpu",
    amp: str | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> Iterator[BatchPrediction]:
    """Run the model over ``loader`` (samples collated by :func:`bas.data.collate`)."""
    device = torch.device(device)
    model.eval()
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False, dynamic_ncols=True):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        with autocast_context(device, amp):
            out = model(images, labels, top_k=top_k)
        maps = localization_maps(out.fg_map.float(), images.shape[-2:])
        yield BatchPrediction(
            out.logits.float().cpu(),
            maps.cpu(),
            batch["label"],
            batch["boxes"],
            batch.get("mask"),
            batch.get("ignore"),
            list(batch["image_id"]),
            batch.get("orig_size"),
            out.fg_map.float()[:, 0].cpu(),
        )


@dataclass
class Evaluator:
    """Accumulates predictions and computes every metric at the end.

    Args:
        num_classes: K.
        threshold: fixed threshold of the paper metrics (on the normalised map).
        iou_thresholds: IoU thresholds (fractions) of MaxBoxAcc.
        interval: threshold step of MaxBoxAcc and of the paper-metric curve.
        multi_contour: MaxBoxAccV2 convention for MaxBoxAcc.
        curve_interval: step of the paper-metric curve when it should differ from ``interval``.
        standard_boxes: ground-truth boxes in original-image pixels by image id; when given,
            MaxBoxAcc uses them scaled to the map the protocol's way (:func:`boxes_to_map`, the
            map covering the whole image) instead of the transformed boxes.
        protocol: the conventions (:mod:`bas.protocols`, a name or a preset; ``standard``).
        original_boxes: boxes in original-image pixels by image id, for a protocol that computes
            the ground truth itself (``gt_boxes`` ``"float"`` / ``"int"``).
        resize_size: ``R`` of the crop path (the maps are the centre crop of ``R x R``); None when
            the maps cover the whole image.
    """

    num_classes: int
    threshold: float = 0.1
    iou_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    interval: float = 0.01
    multi_contour: bool = True
    curve_interval: float | None = None
    standard_boxes: dict[str, np.ndarray] | None = None
    protocol: Protocol | str = STANDARD
    original_boxes: dict[str, np.ndarray] | None = None
    resize_size: int | None = None
    _ious: list[np.ndarray] = field(default_factory=list)
    _image_ids: list[str] = field(default_factory=list)
    _curve_hits: list[np.ndarray] = field(default_factory=list)
    _labels: list[np.ndarray] = field(default_factory=list)
    _top1: list[np.ndarray] = field(default_factory=list)
    _top5: list[np.ndarray] = field(default_factory=list)
    _has_boxes: bool = False

    def __post_init__(self) -> None:
        self.protocol = get_protocol(self.protocol)
        if self.protocol.gt_boxes != "transform" and self.original_boxes is None:
            raise ValueError(f"protocol {self.protocol.name} needs the original boxes (a bas.data dataset)")
        self.iou_thresholds = metrics.iou_fractions(self.iou_thresholds)
        self.box_evaluator = metrics.BoxEvaluator(
            iou_thresholds=self.iou_thresholds, interval=self.interval, multi_contour=self.multi_contour
        )
        # The curve of the paper metrics (IoU >= 0.5, one box per map), evaluated batch by batch here.
        self.curve_evaluator = metrics.BoxEvaluator(
            iou_thresholds=(0.5,),
            interval=self.curve_interval or self.interval,
            multi_contour=False,
            num_workers=1,
        )
        self.curve_thresholds = self.curve_evaluator.thresholds
        self.mask_evaluator: metrics.MaskEvaluator | None = None

    def update(self, pred: BatchPrediction) -> None:
        protocol = self.protocol
        labels = pred.labels.numpy()
        k5 = min(5, self.num_classes)
        correct = metrics.topk_correct(pred.logits, labels, ks=(1, k5), ties=protocol.topk_ties)
        self._labels.append(labels)
        self._top1.append(correct[1])
        self._top5.append(correct[k5])
        self._image_ids += list(pred.image_ids)
        maps = pred.maps.numpy()
        if protocol.norm_eps != NORM_EPS and pred.raw_maps is not None:
            maps = localization_maps(pred.raw_maps, maps.shape[-2:], protocol.norm_eps).numpy()
        gt = [b.numpy().reshape(-1, 4) for b in pred.boxes]
        if any(len(g) for g in gt):
            self._has_boxes = True
            fixed = gt if protocol.gt_boxes == "transform" else self._protocol_boxes(pred, maps.shape[-1])
            boxes = maps_to_boxes(maps, self.threshold, protocol.component_order)
            self._ious.append(metrics.best_iou(boxes, fixed))
            if protocol.max_box_acc:
                self._curve_hits.append(self.curve_evaluator.hits(maps, gt)[:, 0])
                standard = self._standard_boxes(pred, maps.shape[-1])
                self.box_evaluator.accumulate(maps, gt if standard is None else standard)
        if pred.mask is not None:
            if self.mask_evaluator is None:
                self.mask_evaluator = metrics.MaskEvaluator(interval=self.interval)
            ignore = None if pred.ignore is None else pred.ignore.numpy()
            self.mask_evaluator.accumulate(maps, pred.mask.numpy(), ignore)

    def _standard_boxes(self, pred: BatchPrediction, side: int) -> list[np.ndarray] | None:
        if self.standard_boxes is None:
            return None
        if pred.orig_sizes is None:
            raise ValueError("standard boxes need the original image sizes (orig_size) of the batch")
        return [
            boxes_to_map(self.standard_boxes[image_id], (int(w), int(h)), side)
            for image_id, (w, h) in zip(pred.image_ids, pred.orig_sizes.tolist())
        ]

    def _protocol_boxes(self, pred: BatchPrediction, side: int) -> list[np.ndarray]:
        if pred.orig_sizes is None:
            raise ValueError(f"protocol {self.protocol.name} needs the original image sizes (orig_size)")
        return [
            protocol_boxes(self.protocol, self.original_boxes[i], (int(w), int(h)), side, self.resize_size)
            for i, (w, h) in zip(pred.image_ids, pred.orig_sizes.tolist())
        ]

    def set_classification(self, top1: np.ndarray, top5: np.ndarray) -> None:
        """Replace the per-image classification results (e.g. by ten-crop ones), in loader order."""
        labels = np.concatenate(self._labels)
        if len(top1) != len(labels) or len(top5) != len(labels):
            raise ValueError(f"expected {len(labels)} classification results, got {len(top1)}")
        self._top1, self._top5 = [np.asarray(top1, bool)], [np.asarray(top5, bool)]

    # ------------------------------------------------------------------------------ results

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return np.concatenate(self._labels), np.concatenate(self._top1), np.concatenate(self._top5)

    def loc_metrics_at(self, ious: np.ndarray, class_balanced: bool = False) -> dict[str, float]:
        labels, top1, top5 = self._arrays()
        return metrics.localization_accuracy(
            ious,
            labels,
            top1,
            top5,
            iou_threshold=0.5,
            class_balanced=class_balanced,
            strict=self.protocol.iou_strict,
        )

    def decisions(self) -> dict[str, Any]:
        """Per image, in loader order: ``image_ids``, ``iou`` (best IoU of the fixed-threshold box)
        and ``correct`` (the box right at IoU 0.5 by the protocol's comparison)."""
        ious = np.concatenate(self._ious) if self._has_boxes else np.zeros(0)
        return {
            "image_ids": list(self._image_ids),
            "iou": ious,
            "correct": box_correct(self.protocol, ious, 0.5),
        }

    def paper_curve(self) -> dict[str, np.ndarray]:
        """GT-known / Top-1 Loc (per image) at every threshold of the curve grid."""
        if not self.protocol.max_box_acc:
            raise ValueError(f"protocol {self.protocol.name} has no threshold curve")
        hit = np.concatenate(self._curve_hits)
        _, top1, _ = self._arrays()
        return {
            "threshold": self.curve_thresholds,
            "gt_known_loc": 100.0 * hit.mean(axis=0),
            "top1_loc": 100.0 * (hit & top1[:, None]).mean(axis=0),
        }

    def best_threshold(self, metric: str = "gt_known_loc") -> float:
        """Threshold of the curve grid that maximises ``metric`` (use it on a held-out split)."""
        curve = self.paper_curve()
        return float(curve["threshold"][int(np.argmax(curve[metric]))])

    def compute(self) -> dict[str, Any]:
        labels, top1, top5 = self._arrays()
        result: dict[str, Any] = {"num_images": int(len(labels)), "threshold": self.threshold}
        if self.protocol is not STANDARD:
            result["protocol"] = self.protocol.name
        if self._has_boxes:
            ious = np.concatenate(self._ious)
            per_image, balanced = self.loc_metrics_at(ious), self.loc_metrics_at(ious, class_balanced=True)
            result.update(balanced if self.protocol.class_balanced else per_image)
            result["class_balanced"] = balanced
            if self.protocol.class_balanced:
                result["per_image"] = per_image
            if self.protocol.box_ious != (0.5,):
                result["box_acc"] = box_accuracy(self.protocol, ious, self._arrays()[0])
            if self.protocol.max_box_acc:
                box = self.box_evaluator.compute()
                result["MaxBoxAcc"] = box["MaxBoxAcc"]
                result[self.box_summary_name] = box["MaxBoxAccV2"]
                result["MaxBoxAcc_threshold"] = box["best_threshold"]
                result["best_threshold"] = self.best_threshold()
        else:
            result["top1_cls"] = 100.0 * float(top1.mean())
            result["top5_cls"] = 100.0 * float(top5.mean())
        if self.mask_evaluator is not None:
            result.update({k: v for k, v in self.mask_evaluator.compute().items() if k in ("PxAP", "PIoU")})
        return result

    @property
    def box_summary_name(self) -> str:
        """Key of the mean MaxBoxAcc: ``MaxBoxAccV2`` only for its definition (see
        :func:`bas.evaluate_maps.box_summary_name`)."""
        return box_summary_name(self.multi_contour, self.iou_thresholds)

    def per_class(self, class_names: list[str] | None = None) -> list[dict[str, Any]]:
        """Per-class rows: images, Top-1 classification, GT-known and Top-1 Loc."""
        labels, top1, _ = self._arrays()
        hit = (
            box_correct(self.protocol, np.concatenate(self._ious), 0.5)
            if self._has_boxes
            else np.zeros_like(top1)
        )
        rows = []
        for c in np.unique(labels):
            sel = labels == c
            rows.append(
                {
                    "class": int(c),
                    "name": class_names[c] if class_names and c < len(class_names) else str(c),
                    "images": int(sel.sum()),
                    "top1_cls": 100.0 * float(top1[sel].mean()),
                    "gt_known_loc": 100.0 * float(hit[sel].mean()),
                    "top1_loc": 100.0 * float((hit & top1)[sel].mean()),
                }
            )
        return rows


def evaluate(
    model: nn.Module,
    loader,
    *,
    num_classes: int,
    top_k: int,
    threshold: float,
    iou_thresholds=(0.3, 0.5, 0.7),
    interval: float = 0.01,
    multi_contour: bool = True,
    device: torch.device | str = "cpu",
    amp: str | None = None,
    progress: bool = True,
    save_maps: str | Path | None = None,
    standard_protocol: bool = False,
    desc: str = "eval",
    protocol: str | Protocol = STANDARD,
    resize_size: int | None = None,
) -> Evaluator:
    """Evaluate ``model`` on ``loader``; returns the filled :class:`Evaluator` (call ``compute()``).

    ``standard_protocol``: the loader's maps cover the whole image (``resize`` mode); MaxBoxAcc
    then uses the dataset's original boxes (its ``records``) scaled the protocol's way. ``save_maps``: write the
    maps in the standard layout (``<save_maps>/<image_id>.npy``) and their metadata in
    ``<save_maps>/metadata`` (needs maps of the whole image: ``resize`` mode). ``protocol``: the
    conventions of the metrics (:mod:`bas.protocols`; the loader fixes the input path);
    ``resize_size``: ``R`` when the loader's images are the centre crop of ``R x R`` (the
    protocols that compute the ground truth themselves need it).
    """
    evaluator = make_evaluator(
        loader.dataset,
        protocol,
        num_classes=num_classes,
        threshold=threshold,
        iou_thresholds=iou_thresholds,
        interval=interval,
        multi_contour=multi_contour,
        standard_protocol=standard_protocol,
        resize_size=resize_size,
    )
    fill_evaluators(
        model, loader, [evaluator], top_k=top_k, device=device, amp=amp, progress=progress,
        save_maps=save_maps, desc=desc,
    )  # fmt: skip
    return evaluator


def make_evaluator(
    dataset,
    protocol: str | Protocol,
    *,
    num_classes: int,
    threshold: float,
    iou_thresholds=(0.3, 0.5, 0.7),
    interval: float = 0.01,
    multi_contour: bool = True,
    standard_protocol: bool = False,
    resize_size: int | None = None,
) -> Evaluator:
    """An empty :class:`Evaluator` for ``dataset`` (its records give the original boxes)."""
    records = {r.image_id: r.boxes for r in getattr(dataset, "records", [])}
    return Evaluator(
        num_classes,
        threshold,
        tuple(iou_thresholds),
        interval,
        multi_contour,
        standard_boxes=records if standard_protocol and records else None,
        protocol=protocol,
        original_boxes=records or None,
        resize_size=resize_size,
    )


def fill_evaluators(
    model: nn.Module,
    loader,
    evaluators: list[Evaluator],
    *,
    top_k: int,
    device: torch.device | str = "cpu",
    amp: str | None = None,
    progress: bool = True,
    save_maps: str | Path | None = None,
    desc: str = "eval",
) -> None:
    """One pass of ``model`` over ``loader``; every evaluator gets every batch (the maps are shared)."""
    records = {r.image_id: r for r in getattr(loader.dataset, "records", [])}
    if save_maps is not None and not records:
        raise ValueError("saving maps with their metadata needs a dataset of records (a bas.data dataset)")
    entries = []
    for pred in predict_batches(
        model, loader, top_k=top_k, device=device, amp=amp, progress=progress, desc=desc
    ):
        for evaluator in evaluators:
            evaluator.update(pred)
        if save_maps is not None:
            write_score_maps(save_maps, pred.image_ids, pred.maps.numpy())
            sizes = pred.orig_sizes.tolist()
            labels = pred.labels.tolist()
            entries += [
                (i, label, tuple(size), records[i].boxes)
                for i, label, size in zip(pred.image_ids, labels, sizes)
            ]
    if save_maps is not None:
        write_metadata(Path(save_maps) / METADATA_FOLDER, entries)


@dataclass
class EvaluationReport:
    """Result of :func:`evaluate_split`: the metrics dict, the filled evaluator and the dataset.

    With several protocols, ``result`` and ``evaluator`` are the first one's, ``result["protocols"]``
    holds every protocol's result and ``evaluators`` every protocol's evaluator, by name.
    """

    result: dict[str, Any]
    evaluator: Evaluator | CorLocEvaluator
    dataset: Any
    class_names: list[str]
    evaluators: dict[str, Evaluator] = field(default_factory=dict)
    pseudo_boxes: dict[str, Any] | None = None  # COCO-format, when computed


@dataclass
class _Job:
    """One protocol of an evaluation with the settings it runs at."""

    protocol: Protocol
    threshold: float
    top_k: int
    test_mode: str

    @property
    def input_path(self) -> tuple[str, str, int]:
        return (self.test_mode, self.protocol.image_resize, self.top_k)


def _jobs(model, cfg, protocols, threshold, top_k) -> list[_Job]:
    """Each protocol's threshold, top-k and test mode: the explicit values, else the protocol's
    per-dataset table, else the config's."""
    ev, jobs = cfg["eval"], []
    for p in protocols:
        table = p.inference_settings(str(getattr(model, "arch", "")), int(model.num_classes))
        jobs.append(
            _Job(
                p,
                float(threshold if threshold is not None else table[0] if table else ev["threshold"]),
                int(top_k if top_k is not None else table[1] if table else ev["top_k"]),
                p.test_mode or cfg["data"]["test_mode"],
            )
        )
    return jobs


def _resize_side(cfg: dict[str, Any]) -> int:
    """``R`` of the crop path (the config's, else the transforms' default for the input size)."""
    from bas.data.transforms import default_resize_size

    data = cfg["data"]
    return int(data["resize_size"] or default_resize_size(data["input_size"]))


def _eval_dataset(cfg: dict[str, Any], split: str, test_mode: str, image_resize: str):
    from bas.data import build_dataset, test_transform
    from bas.engine.data import make_dataset_split, prepare_dataset

    if image_resize == "tensor":
        return make_dataset_split(cfg, split, train=False, test_mode=test_mode)
    data = cfg["data"]
    kind, root = prepare_dataset(cfg)
    transform = test_transform(
        data["input_size"], data["resize_size"], mode=test_mode, image_resize=image_resize
    )
    return build_dataset(kind, root, split, transform, **(data.get("options") or {}))


def evaluate_split(
    model: nn.Module,
    cfg: dict[str, Any],
    split: str,
    *,
    select_on: str | None = None,
    ten_crop: bool = False,
    save_maps: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    min_area: float = 0.01,
    nms_iou: float = 0.5,
    protocol: str | Protocol | list = STANDARD,
    threshold: float | None = None,
    top_k: int | None = None,
) -> EvaluationReport:
    """Evaluate ``model`` on one split of the dataset described by ``cfg``.

    With ``select_on`` (a held-out split such as ``val``), the paper-metric threshold is the one
    that maximises GT-known Loc on that split, and MaxBoxAcc is also reported at the thresholds
    that were best there (``MaxBoxAcc_at_selected``); the reported split never chooses anything.
    A multi-object dataset is evaluated by CorLoc instead (:func:`evaluate_multi_object`, with
    ``min_area`` and ``nms_iou``).

    ``protocol``: a name of :data:`bas.protocols.PROTOCOLS`, a preset, a list of them or
    ``"all"``. Each protocol runs at ``threshold`` / ``top_k`` when given, else at its own
    per-dataset values (the papers' code), else at the config's ``eval.threshold`` / ``eval.top_k``;
    protocols on the same input path (test mode, image resize, top-k) share one forward pass.
    """
    from bas.data.datasets import check_num_classes
    from bas.engine.data import eval_loader, make_dataset_split
    from bas.errors import ConfigError

    ev = cfg["eval"]
    reported = make_dataset_split(cfg, split, train=False)
    if getattr(reported, "multi_label", False):  # segmentation data: no boxes, tags for a multi-label model
        raise ConfigError(
            f"the '{cfg['data']['dataset']}' dataset is segmentation data (tags and label masks): a "
            f"{model.meta.method} model is evaluated on box datasets; bas evaluate scores the seeds of a "
            "multi-label run (multilabel_bas, multilabel_cam)"
        )
    if is_multi_object(reported):
        unsupported = [
            o
            for o, v in (
                ("--select-on", select_on),
                ("--ten-crop", ten_crop),
                ("--save-maps", save_maps),
                ("--protocol", resolve_protocols(protocol) != resolve_protocols(STANDARD)),
            )
            if v
        ]
        if unsupported:
            raise ConfigError(f"{', '.join(unsupported)}: not available for a multi-object dataset (CorLoc)")
        return evaluate_multi_object(
            model, cfg, reported, split, min_area=min_area, nms_iou=nms_iou, device=device, progress=progress
        )

    jobs = _jobs(model, cfg, resolve_protocols(protocol), threshold, top_k)
    if save_maps is not None and not any(j.protocol.max_box_acc for j in jobs):
        raise ConfigError(
            "saved maps follow the standard protocol: use --protocol standard (or all) with --save-maps"
        )
    if save_maps is not None and not any(j.protocol.max_box_acc and j.test_mode == "resize" for j in jobs):
        raise ConfigError("saved maps follow the standard protocol: evaluate with data.test_mode=resize")
    if select_on and not all(j.protocol.max_box_acc for j in jobs):
        raise ConfigError(
            "--select-on chooses the threshold on the standard protocol's curve; use --threshold"
        )

    def run(name: str, jobs: list[_Job], maps_dir=None) -> tuple[Any, list[Evaluator]]:
        evaluators: dict[int, Evaluator] = {}
        first = None
        paths = list(dict.fromkeys(j.input_path for j in jobs))
        for test_mode, image_resize, k in paths:
            same = name == split and image_resize == "tensor" and test_mode == cfg["data"]["test_mode"]
            dataset = reported if same else _eval_dataset(cfg, name, test_mode, image_resize)
            check_num_classes(dataset, model.num_classes, "the checkpoint")
            first = dataset if first is None else first
            group = [i for i, j in enumerate(jobs) if j.input_path == (test_mode, image_resize, k)]
            for i in group:
                evaluators[i] = make_evaluator(
                    dataset,
                    jobs[i].protocol,
                    num_classes=model.num_classes,
                    threshold=jobs[i].threshold,
                    iou_thresholds=ev["iou_thresholds"],
                    interval=ev["interval"],
                    multi_contour=ev["multi_contour"],
                    standard_protocol=test_mode == "resize",
                    resize_size=_resize_side(cfg) if test_mode == "crop" else None,
                )
            saves = (
                maps_dir is not None
                and any(jobs[i].protocol.max_box_acc for i in group)
                and test_mode == "resize"
            )
            fill_evaluators(
                model, eval_loader(dataset, cfg), [evaluators[i] for i in group], top_k=k, device=device,
                progress=progress, save_maps=maps_dir if saves else None, desc=name,
            )  # fmt: skip
            if saves:
                maps_dir = None
        crops: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, job in enumerate(jobs):
            if ten_crop or job.protocol.ten_crop:
                ties = job.protocol.topk_ties
                if ties not in crops:
                    crops[ties] = ten_crop_classification(model, cfg, name, device, progress, ties=ties)
                evaluators[i].set_classification(*crops[ties])
        return first, [evaluators[i] for i in range(len(jobs))]

    selection: dict[str, Any] = {}
    if select_on:
        if select_on == split:
            raise ConfigError(f"--select-on {select_on} is the split being reported; choose a held-out split")
        _, held_out = run(select_on, jobs)
        for job, evaluator in zip(jobs, held_out):
            job.threshold = evaluator.best_threshold("gt_known_loc")
        selection = {"split": select_on, "threshold": jobs[0].threshold, "metrics": held_out[0].compute()}
    dataset, evaluators = run(split, jobs, save_maps)
    results = {}
    for job, evaluator in zip(jobs, evaluators):
        result = evaluator.compute()
        result.update(
            split=split,
            top_k=job.top_k,
            test_mode=job.test_mode,
            ten_crop=bool(ten_crop or job.protocol.ten_crop),
        )
        results[job.protocol.name] = result
    evaluator, result = evaluators[0], results[jobs[0].protocol.name]
    if selection:
        result["selected_on"] = selection
        chosen = selection["metrics"].get("MaxBoxAcc_threshold")
        if chosen and evaluator._has_boxes:
            result["MaxBoxAcc_at_selected"] = {
                d: evaluator.box_evaluator.accuracy_at(t)[d] for d, t in chosen.items()
            }
    if len(jobs) > 1:
        result["protocols"] = {name: dict(r) for name, r in results.items()}  # copies: no cycle
        result["forward_passes"] = len({j.input_path for j in jobs})
    class_names = list(getattr(model, "class_names", None) or getattr(dataset, "classes", []) or [])
    by_name = {j.protocol.name: e for j, e in zip(jobs, evaluators)}
    return EvaluationReport(result, evaluator, dataset, class_names, by_name)


@torch.no_grad()
def ten_crop_classification(
    model: nn.Module,
    cfg: dict[str, Any],
    split: str,
    device: str = "cpu",
    progress: bool = True,
    ties: str = "stable",
) -> tuple[np.ndarray, np.ndarray]:
    """Top-1 / Top-5 correctness with softmax averaged over ten crops (docs/method.md §5), in
    dataset order (``ties``: see :func:`bas.metrics.topk_correct`)."""
    from bas.data import build_dataset, ten_crop_transform
    from bas.engine.data import guarded_loader, prepare_dataset

    data = cfg["data"]
    kind, root = prepare_dataset(cfg)
    dataset = build_dataset(
        kind,
        root,
        split,
        ten_crop_transform(data["input_size"], data["resize_size"]),
        **(data.get("options") or {}),
    )
    loader = guarded_loader(
        dataset, batch_size=max(1, data["eval_batch_size"] // 10), num_workers=int(data["workers"])
    )
    top1, top5 = [], []
    k5 = min(5, model.num_classes)
    model.eval()
    for batch in tqdm(loader, desc=f"{split} ten-crop", disable=not progress, leave=False):
        crops = batch["image"].to(device)  # (B, 10, 3, H, W)
        b, n = crops.shape[:2]
        probs = model(crops.flatten(0, 1)).logits.float().softmax(1).view(b, n, -1).mean(1).cpu()
        correct = metrics.topk_correct(probs, batch["label"].numpy(), ks=(1, k5), ties=ties)
        top1.append(correct[1])
        top5.append(correct[k5])
    return np.concatenate(top1), np.concatenate(top5)


def write_evaluation(
    out_dir: str | Path,
    report: EvaluationReport,
    model: nn.Module,
    cfg: dict[str, Any],
    *,
    save_vis: int = 0,
    device: str = "cpu",
) -> Path:
    """metrics.json, per_class.csv/png, curve.csv/png, maxboxacc_curve.csv/png and, with ``save_vis``,
    a qualitative grid (qualitative.png) and those images' overlays at their own resolution
    (``vis/<image_id>.png``)."""
    from bas.engine.figures import save_threshold_curves
    from bas.io import write_json
    from bas.visualize import save_bars

    if isinstance(report.evaluator, CorLocEvaluator):
        return write_multi_object_evaluation(out_dir, report)
    out_dir = Path(out_dir)
    evaluator = report.evaluator
    write_json(out_dir / "metrics.json", report.result)
    per_class = evaluator.per_class(report.class_names)
    _write_csv(out_dir / "per_class.csv", per_class)
    if per_class:
        save_bars(
            out_dir / "per_class.png",
            [r["name"] for r in per_class],
            {
                "Top-1 cls": [r["top1_cls"] for r in per_class],
                "GT-known Loc": [r["gt_known_loc"] for r in per_class],
                "Top-1 Loc": [r["top1_loc"] for r in per_class],
            },
            title="per-class accuracy",
        )
    if evaluator._has_boxes and evaluator.protocol.max_box_acc:
        paper = evaluator.paper_curve()
        _write_csv(
            out_dir / "curve.csv",
            [
                {"threshold": round(float(t), 6), "gt_known_loc": float(g), "top1_loc": float(l1)}
                for t, g, l1 in zip(paper["threshold"], paper["gt_known_loc"], paper["top1_loc"])
            ],
        )
        box = evaluator.box_evaluator.compute()["curve"]
        _write_csv(
            out_dir / "maxboxacc_curve.csv",
            [
                {
                    "threshold": round(float(t), 6),
                    **{
                        f"box_acc_{metrics.iou_percent(d)}": float(acc[i])
                        for d, acc in box["accuracy"].items()
                    },
                }
                for i, t in enumerate(box["thresholds"])
            ],
        )
        save_threshold_curves(out_dir, paper, box, report.result["threshold"])
    if save_vis:
        from bas.engine.figures import save_qualitative_grid

        save_qualitative_grid(
            out_dir / "qualitative.png",
            model,
            report.dataset,
            n=save_vis,
            top_k=cfg["eval"]["top_k"],
            threshold=report.result["threshold"],
            device=device,
            class_names=report.class_names,
            overlays=out_dir / "vis" if hasattr(report.dataset, "records") else None,
            crop=cfg["data"]["test_mode"] == "crop",
            resize_size=cfg["data"]["resize_size"],
        )
    return out_dir


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    import csv
    import io

    from bas.io import write_text

    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- multi-object datasets
# A multi-object dataset (``voc07``, which also reads the synthetic multi-object data) is evaluated
# by CorLoc: for every image and every class it is tagged with, the model runs with that class as
# its label (``top_k=1``, the class's own map), every component of the map above the threshold
# with at least ``min_area`` of the image gives a box scored ``mean map x class probability``
# (:meth:`bas.predict.Localizer.predict` with ``multi=True`` and the tags as ``classes``, boxes in
# original-image pixels), and the top-scoring box of the class is the one CorLoc judges
# (:func:`bas.metrics.corloc_hits`). The same boxes, after class-wise NMS, are the pseudo-boxes of
# ``bas evaluate --coco-json`` (every dataset: a single-label image is tagged with its class).


def is_multi_object(dataset: Any) -> bool:
    """Whether ``dataset`` holds several objects of several classes per image (CorLoc applies)."""
    return bool(getattr(dataset, "multi_object", False))


def image_objects(dataset: Any, index: int) -> tuple[list[int], np.ndarray, np.ndarray]:
    """The tags of image ``index`` and the ground-truth boxes ``(M, 4)`` and classes ``(M,)`` that
    CorLoc counts (a multi-object dataset's choice of difficult objects; one class otherwise)."""
    record = dataset.records[index]
    if is_multi_object(dataset):
        boxes, labels = dataset.objects(index)
        return list(record.tags), boxes, labels
    boxes = np.asarray(record.boxes, dtype=np.float64).reshape(-1, 4)
    return [int(record.label)], boxes, np.full(len(boxes), int(record.label))


@dataclass
class CorLocEvaluator:
    """Accumulates the (image, class) pairs of CorLoc (:func:`bas.metrics.corloc`)."""

    num_classes: int
    iou_threshold: float = 0.5
    num_images: int = 0
    _hits: list[np.ndarray] = field(default_factory=list)
    _labels: list[np.ndarray] = field(default_factory=list)

    def update(self, detections: list, gt_boxes: np.ndarray, gt_labels: np.ndarray) -> None:
        """One image: its detections (:class:`bas.predict.Detection`) and counted ground truth."""
        self.num_images += 1
        classes = sorted({int(c) for c in gt_labels})
        if not classes:
            return
        top = metrics.top_box_per_class(
            [d.box for d in detections], [d.score for d in detections], [d.label for d in detections], classes
        )
        gts = [gt_boxes[gt_labels == c] for c in classes]
        self._hits.append(metrics.corloc_hits(top, gts, self.iou_threshold))
        self._labels.append(np.asarray(classes, dtype=np.int64))

    def compute(self) -> dict[str, Any]:
        hits = np.concatenate(self._hits) if self._hits else np.zeros(0, bool)
        labels = np.concatenate(self._labels) if self._labels else np.zeros(0, np.int64)
        return metrics.corloc(hits, labels, self.num_classes)

    def per_class(self, class_names: list[str] | None = None) -> list[dict[str, Any]]:
        """Per-class rows: images containing the class and its CorLoc."""
        result = self.compute()
        return [
            {
                "class": c,
                "name": class_names[c] if class_names and c < len(class_names) else str(c),
                "images": result["images"][c],
                "corloc": value,
            }
            for c, value in result["per_class"].items()
        ]


def localizer_for(model: nn.Module, cfg: dict[str, Any], threshold: float, device: str = "cpu"):
    """A :class:`bas.predict.Localizer` of ``model`` with the evaluation's sizes and threshold."""
    from bas.predict import Localizer

    meta = getattr(model, "meta", None)
    kwargs = {} if meta is None else {"mean": meta.mean, "std": meta.std}
    return Localizer(
        model,
        input_size=cfg["data"]["input_size"],
        resize_size=cfg["data"]["resize_size"],
        class_names=getattr(model, "class_names", None),
        threshold=threshold,
        top_k=cfg["eval"]["top_k"],
        device=device,
        **kwargs,
    )


def pseudo_box_pass(
    model: nn.Module,
    cfg: dict[str, Any],
    dataset: Any,
    *,
    threshold: float,
    min_area: float = 0.01,
    nms_iou: float = 0.5,
    device: str = "cpu",
    progress: bool = True,
) -> tuple[CorLocEvaluator, dict[str, Any]]:
    """CorLoc of ``dataset`` and its pseudo-boxes as a COCO-format dict (:func:`bas.predict.coco_detections`;
    images named and numbered as :func:`bas.data.coco_export.coco_images` does with the data root).

    The objects of each image's tagged classes (see the section's comment) come from
    :meth:`bas.predict.Localizer.predict`, on the images read in their stored frame.
    """
    from bas.data.coco_export import coco_file_name
    from bas.data.datasets import open_rgb
    from bas.predict import coco_detections

    localizer = localizer_for(model, cfg, threshold, device)
    crop = cfg["data"]["test_mode"] == "crop"
    batch = max(1, int(cfg["data"]["eval_batch_size"]))
    evaluator = CorLocEvaluator(model.num_classes)
    entries = []
    n = len(dataset.records)
    for start in tqdm(
        range(0, n, batch), desc="objects", disable=not progress, leave=False, dynamic_ncols=True
    ):
        indices = range(start, min(n, start + batch))
        objects = [image_objects(dataset, i) for i in indices]
        preds = localizer.predict(
            [open_rgb(dataset.records[i].path) for i in indices],
            crop=crop,
            batch_size=batch,
            multi=True,
            min_area=min_area,
            nms_iou=nms_iou,
            classes=[tags for tags, _, _ in objects],
        )
        for index, pred, (_, gt_boxes, gt_labels) in zip(indices, preds, objects):
            evaluator.update(pred.objects, gt_boxes, gt_labels)
            name = coco_file_name(dataset.records[index].path, cfg["data"]["root"])
            entries.append((name, pred.image_size, pred.objects))
    names = getattr(model, "class_names", None) or list(dataset.classes)
    return evaluator, coco_detections(entries, names)


def evaluate_multi_object(
    model: nn.Module,
    cfg: dict[str, Any],
    dataset: Any,
    split: str,
    *,
    min_area: float = 0.01,
    nms_iou: float = 0.5,
    device: str = "cpu",
    progress: bool = True,
) -> EvaluationReport:
    """CorLoc (per class and mean, percent) of ``model`` on a multi-object dataset split; the
    report's ``pseudo_boxes`` holds the COCO-format pseudo-boxes."""
    from bas.errors import DataError

    for r in dataset.records:
        if len(r.box_labels) and int(r.box_labels.max()) >= model.num_classes:
            raise DataError(
                f"{r.image_id}: class {int(r.box_labels.max())} but the checkpoint has {model.num_classes} classes "
                f"(the dataset has {dataset.num_classes})",
                *(r.where or (r.path, None)),
            )
    threshold = float(cfg["eval"]["threshold"])
    evaluator, coco = pseudo_box_pass(
        model,
        cfg,
        dataset,
        threshold=threshold,
        min_area=min_area,
        nms_iou=nms_iou,
        device=device,
        progress=progress,
    )
    class_names = list(getattr(model, "class_names", None) or dataset.classes)
    corloc = evaluator.compute()
    result = {
        "num_images": evaluator.num_images,
        "threshold": threshold,
        "CorLoc": corloc["CorLoc"],
        "CorLoc_per_class": {class_names[c]: v for c, v in corloc["per_class"].items()},
        "CorLoc_images": {class_names[c]: v for c, v in corloc["images"].items()},
        "iou_threshold": evaluator.iou_threshold,
        "difficult_included": bool(getattr(dataset, "include_difficult", False)),
        "min_area": min_area,
        "nms_iou": nms_iou,
        "num_pseudo_boxes": len(coco["annotations"]),
        "split": split,
        "top_k": cfg["eval"]["top_k"],
        "test_mode": cfg["data"]["test_mode"],
    }
    return EvaluationReport(result, evaluator, dataset, class_names, pseudo_boxes=coco)


def write_multi_object_evaluation(out_dir: str | Path, report: EvaluationReport) -> Path:
    """metrics.json and per_class.csv (class, name, images, corloc) of a multi-object evaluation."""
    from bas.io import write_json

    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", report.result)
    _write_csv(out_dir / "per_class.csv", report.evaluator.per_class(report.class_names))
    return out_dir


def add_pseudo_boxes(
    report: EvaluationReport,
    model: nn.Module,
    cfg: dict[str, Any],
    *,
    min_area: float = 0.01,
    nms_iou: float = 0.5,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """The COCO-format pseudo-boxes of the report's dataset (computed for a single-label dataset,
    whose images are tagged with their class; a multi-object evaluation has them already), with
    ``pseudo_boxes`` (their count and the CorLoc of their top boxes) added to ``report.result``."""
    if report.pseudo_boxes is None:
        evaluator, report.pseudo_boxes = pseudo_box_pass(
            model,
            cfg,
            report.dataset,
            threshold=float(report.result["threshold"]),
            min_area=min_area,
            nms_iou=nms_iou,
            device=device,
            progress=progress,
        )
        report.result["pseudo_boxes"] = {
            "num_boxes": len(report.pseudo_boxes["annotations"]),
            "CorLoc": evaluator.compute()["CorLoc"],
            "min_area": min_area,
            "nms_iou": nms_iou,
        }
    return report.pseudo_boxes
