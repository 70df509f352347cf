"""Inference on arbitrary images: :class:`Localizer` turns images into classes, boxes, maps and masks.

Everything :class:`Prediction` holds is in the pixels of the *original* image. The network sees
either the paper's centre crop (``crop=True``: ``Resize((R, R))`` then ``CenterCrop(C)``, with
``R`` / ``C`` the checkpoint's ``resize_size`` / ``input_size``) or the whole image
(``crop=False``: ``Resize((C, C))``). The fused foreground map is min-max normalised and upsampled
to ``C x C`` exactly as in evaluation (:func:`bas.localization.localization_maps`), then carried
back to the original image by :func:`map_to_original`:

* crop: the ``C x C`` map is placed into an ``R x R`` frame at the offset the centre crop used
  (``round((R - C) / 2)``); the frame outside the crop, which the network never saw, is 0; the
  frame is resized bilinearly to ``H x W`` (a scale of ``W / R`` horizontally, ``H / R``
  vertically);
* no crop: the ``C x C`` map is resized bilinearly to ``H x W`` (``W / C``, ``H / C``).

The mask is the largest 8-connected component of ``map > threshold`` on that original-size map and
the box its bounding box (x1 / y1 exclusive), both from :mod:`bas.localization`; when no pixel
passes, the mask is empty and the box is the whole image. That is the default convention,
*threshold after resizing to the photo* (``photo_threshold="after"``). The papers' code thresholds
the ``C x C`` map of the network input instead (``photo_threshold="before"``): the largest
component of ``map > threshold`` at ``C x C`` (raster order on equal areas, as their code) gives
the mask and box, which are then carried to the photo (the mask placed like the map and resized
with nearest-neighbour, the box scaled and rounded outwards, :func:`box_to_original`). The two
differ where the bilinear resize to the photo joins or splits components near the threshold, and
by the rounding of the box. See ``docs/inference.md``.

With ``multi=True`` :meth:`Localizer.predict` also returns every object (:class:`Detection`): for
each class whose probability reaches ``class_threshold`` (the top-1 class always), that class's
own map (the model run with the class as label, ``top_k=1``) is carried back the same way, and each
8-connected component of ``map > threshold`` covering at least ``min_area`` of the image gives a box
scored ``mean map value inside the component x class probability``; boxes of one class that overlap
by more than ``nms_iou`` are reduced to the best one (``torchvision.ops.batched_nms``).
:func:`coco_detections` writes predictions in the COCO format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision import tv_tensors
from torchvision.transforms import v2

from bas.data.transforms import IMAGENET_MEAN, IMAGENET_STD, default_resize_size, test_transform
from bas.io import read_image
from bas.localization import (
    component_boxes,
    localization_maps,
    maps_to_boxes,
    maps_to_masks,
    upsample_maps,
)

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
#: When the predictor thresholds the map: after resizing it to the photo (default) or before.
PHOTO_THRESHOLDS = ("after", "before")


@dataclass
class Detection:
    """One object of a multi-object prediction (original-image pixels).

    Attributes:
        label, class_name: its class. score: mean map value inside the component x class probability.
        box: ``(x0, y0, x1, y1)``, x1 / y1 exclusive.
    """

    label: int
    class_name: str
    score: float
    box: tuple[int, int, int, int]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "class_name": self.class_name,
            "score": self.score,
            "box": list(self.box),
        }


@dataclass
class Prediction:
    """What :meth:`Localizer.predict` returns for one image (coordinates in original-image pixels).

    Attributes:
        label: predicted class index (top-1).
        class_name: its name (the index as text when the checkpoint names no classes).
        score: its softmax probability.
        top5: ``(label, class_name, probability)`` of the (up to) five best classes, best first.
        box: ``(x0, y0, x1, y1)`` of the largest foreground component, x1 / y1 exclusive; the whole
            image when nothing passes the threshold.
        map: float32 ``(H, W)`` fused foreground map in [0, 1].
        mask: bool ``(H, W)``, the largest 8-connected component of ``map > threshold``.
        threshold: the threshold used; top_k: the number of class maps fused; crop: the mode.
        photo_threshold: ``"after"`` (the map thresholded at the photo's size) or ``"before"`` (at
            the network input's, then carried to the photo).
        objects: with ``multi=True``, every object found, best score first; None otherwise.
    """

    label: int
    class_name: str
    score: float
    top5: list[tuple[int, str, float]]
    box: tuple[int, int, int, int]
    map: np.ndarray
    mask: np.ndarray
    threshold: float
    top_k: int
    crop: bool
    objects: list[Detection] | None = None
    photo_threshold: str = "after"

    @property
    def image_size(self) -> tuple[int, int]:
        """``(W, H)`` of the original image."""
        return int(self.map.shape[1]), int(self.map.shape[0])

    def detections(self) -> list[Detection]:
        """Every object with ``multi=True``, else the one box scored by the class probability."""
        if self.objects is not None:
            return list(self.objects)
        return [Detection(self.label, self.class_name, self.score, self.box)]

    def to_json(self) -> dict[str, Any]:
        """The JSON-serialisable part (no map or mask)."""
        return {
            "label": self.label,
            "class_name": self.class_name,
            "score": self.score,
            "top5": [list(t) for t in self.top5],
            "box": list(self.box),
            "image_size": list(self.image_size),
            "threshold": self.threshold,
            "top_k": self.top_k,
            "crop": self.crop,
            "photo_threshold": self.photo_threshold,
            **({} if self.objects is None else {"objects": [o.to_json() for o in self.objects]}),
        }


def crop_offset(resize_size: int, input_size: int) -> int:
    """Offset of the centre crop in the resized image, as torchvision's ``CenterCrop`` computes it."""
    return int(round((resize_size - input_size) / 2.0))


def map_to_original(
    maps: torch.Tensor, size: tuple[int, int], *, crop: bool, resize_size: int | None = None
) -> torch.Tensor:
    """Carry ``(C, C)`` maps (a ``(B, C, C)`` batch of one original size) back to an image of ``size = (W, H)``.

    ``crop=True``: the maps are the centre crop of an ``R x R`` resized image (``R = resize_size``):
    they are placed in an ``R x R`` zero frame at :func:`crop_offset` and the frame is resized to
    ``H x W``. ``crop=False``: the maps cover the whole image and are resized to ``H x W``.
    Returns float maps ``(B, H, W)`` in [0, 1].
    """
    squeeze = maps.dim() == 2
    maps = maps[None] if squeeze else maps
    width, height = size
    if crop:
        side = maps.shape[-1]
        resize_size = default_resize_size(side) if resize_size is None else int(resize_size)
        top = crop_offset(resize_size, maps.shape[-2])
        left = crop_offset(resize_size, side)
        frame = maps.new_zeros((maps.shape[0], resize_size, resize_size))
        frame[:, top : top + maps.shape[-2], left : left + side] = maps
        maps = frame
    out = upsample_maps(maps, (height, width)).clamp_(0.0, 1.0)
    return out[0] if squeeze else out


def box_to_original(
    box: Sequence[float], size: tuple[int, int], *, side: int, crop: bool, resize_size: int | None = None
) -> tuple[int, int, int, int]:
    """Carry a box ``[x0, y0, x1, y1]`` (x1 / y1 exclusive) in the pixels of the ``side x side`` map to an
    image of ``size = (W, H)``, the way :func:`map_to_original` carries the map: shifted by the crop
    offset in the ``R x R`` frame (``crop=True``), scaled by ``W / R`` and ``H / R`` (``R = side``
    without crop); x0 / y0 rounded down, x1 / y1 up, clipped to the image."""
    width, height = size
    frame = side
    offset = 0
    if crop:
        frame = default_resize_size(side) if resize_size is None else int(resize_size)
        offset = crop_offset(frame, side)
    x0, y0, x1, y1 = (float(v) + offset for v in box)
    sx, sy = width / frame, height / frame
    return (
        max(0, int(np.floor(x0 * sx))),
        max(0, int(np.floor(y0 * sy))),
        min(width, int(np.ceil(x1 * sx))),
        min(height, int(np.ceil(y1 * sy))),
    )


def load_image(image: ImageInput) -> torch.Tensor:
    """Any accepted input as a ``(3, H, W)`` tensor: uint8, or float in [0, 1].

    Accepts a path, a PIL image, a numpy array ``(H, W, 3)`` (uint8 RGB, or float in [0, 1]) or
    ``(H, W)`` grey, or a tensor ``(3, H, W)`` (uint8, or float in [0, 1]).

    Raises:
        DataError: an unreadable image file. ValueError / TypeError: an array of the wrong shape
        or type.
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, Image.Image):
        return v2.functional.pil_to_tensor(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        arr = image[..., None].repeat(3, axis=2) if image.ndim == 2 else image
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"a numpy image must be (H, W, 3) RGB or (H, W), got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"an image tensor must be (3, H, W), got shape {tuple(image.shape)}")
        tensor = image.detach().cpu()
    else:
        raise TypeError(f"cannot read an image from a {type(image).__name__}")
    if tensor.dtype != torch.uint8:
        tensor = tensor.float()
    return tensor


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class Localizer:
    """A model of any method with its preprocessing and inference defaults.

    Args:
        model: a model of :func:`bas.build_model` (or any module with the same ``forward`` contract).
        input_size: network input side ``C``; resize_size: side ``R`` resized to before the crop.
        mean, std: input normalisation. class_names: one name per class, or None.
        threshold, top_k: defaults of :meth:`predict`. device: where the model runs (the model is
            moved there and put in eval mode).
        photo_threshold: ``"after"`` (default): threshold the map resized to the photo;
            ``"before"``: threshold the network-input map, as the papers' code (module doc).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        input_size: int = 224,
        resize_size: int | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        class_names: Sequence[str] | None = None,
        threshold: float = 0.5,
        top_k: int = 1,
        device: str | torch.device | None = None,
        photo_threshold: str = "after",
    ):
        if photo_threshold not in PHOTO_THRESHOLDS:
            raise ValueError(
                f"photo_threshold must be one of {', '.join(PHOTO_THRESHOLDS)}, got {photo_threshold!r}"
            )
        self.photo_threshold = photo_threshold
        self.device = torch.device(device or _default_device())
        self.model = model.to(self.device).eval()
        self.input_size = int(input_size)
        self.resize_size = default_resize_size(self.input_size) if resize_size is None else int(resize_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.class_names = list(class_names) if class_names else None
        self.threshold = float(threshold)
        self.top_k = int(top_k)
        self._transforms = {
            crop: test_transform(
                self.input_size,
                self.resize_size,
                mode="crop" if crop else "resize",
                mean=self.mean,
                std=self.std,
            )
            for crop in (True, False)
        }

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str | torch.device | None = None, photo_threshold: str = "after"
    ) -> Localizer:
        """Load any checkpoint :func:`bas.checkpoints.load_checkpoint` reads, with its metadata."""
        from bas.checkpoints import load_checkpoint

        device = device or _default_device()
        model = load_checkpoint(path, map_location=device)
        meta = model.meta  # complete after loading: threshold and top_k are set
        return cls(
            model,
            input_size=meta.input_size,
            resize_size=meta.resize_size,
            mean=meta.mean,
            std=meta.std,
            class_names=meta.class_names,
            threshold=meta.threshold,
            top_k=meta.top_k,
            device=device,
            photo_threshold=photo_threshold,
        )

    def class_name(self, label: int) -> str:
        names = self.class_names
        return names[label] if names and 0 <= label < len(names) else str(label)

    def preprocess(self, image: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """A ``(3, H, W)`` image (see :func:`load_image`) as the normalised ``(3, C, C)`` network input."""
        return self._transforms[crop](tv_tensors.Image(image)).as_subclass(torch.Tensor)

    @torch.inference_mode()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        crop: bool = True,
        batch_size: int = 16,
        multi: bool = False,
        class_threshold: float = 0.1,
        min_area: float = 0.01,
        nms_iou: float = 0.5,
        classes: Sequence[Sequence[int]] | None = None,
    ) -> list[Prediction]:
        """Classify and localise images; one :class:`Prediction` per image, in input order.

        Args:
            images: one image or a list of them (path, PIL image, ``(H, W, 3)`` uint8 RGB array,
                ``(3, H, W)`` uint8 or float [0, 1] tensor); a ``(B, 3, H, W)`` tensor is a batch.
            top_k: classes whose maps are fused (default: the checkpoint's).
            threshold: on the normalised map (default: the checkpoint's).
            crop: the paper's Resize + CenterCrop (True) or a plain resize of the whole image.
            batch_size: images per forward pass.
            multi: also find every object (``Prediction.objects``, see the module doc) of the
                classes whose probability is at least ``class_threshold`` (the top-1 class always),
                one per component of at least ``min_area`` (a fraction of the image), after
                class-wise NMS at IoU ``nms_iou``.
            classes: with ``multi``, the classes to find objects of, one list per image (e.g. its
                known tags), instead of those chosen by ``class_threshold``.

        Always returns a list, also for a single image.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= min_area <= 1.0:
            raise ValueError(f"min_area is a fraction of the image in [0, 1], got {min_area}")
        multi_args = (float(class_threshold), float(min_area), float(nms_iou)) if multi else None
        top_k = self.top_k if top_k is None else int(top_k)
        threshold = self.threshold if threshold is None else float(threshold)
        if isinstance(images, (str, os.PathLike, Image.Image, np.ndarray)) or (
            isinstance(images, torch.Tensor) and images.dim() == 3
        ):
            images = [images]
        images = list(images)
        if classes is not None and len(classes) != len(images):
            raise ValueError(
                f"classes: one list per image expected, got {len(classes)} for {len(images)} images"
            )
        predictions: list[Prediction] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            chosen = (
                None
                if classes is None
                else [[int(k) for k in c] for c in classes[start : start + batch_size]]
            )
            predictions += self._predict_batch(
                [load_image(im) for im in chunk], top_k, threshold, crop, multi_args, chosen
            )
        return predictions

    def _predict_batch(
        self,
        images: list[torch.Tensor],
        top_k: int,
        threshold: float,
        crop: bool,
        multi: tuple[float, float, float] | None = None,
        chosen: list[list[int]] | None = None,
    ) -> list[Prediction]:
        batch = torch.stack([self.preprocess(im, crop) for im in images]).to(self.device)
        out = self.model(batch, top_k=top_k)
        probs = out.logits.float().softmax(dim=1).cpu()
        best = probs.topk(min(5, probs.shape[1]), dim=1)
        maps = localization_maps(out.fg_map.float(), batch.shape[-2:]).cpu()
        predictions = []
        for image, crop_map, values, labels in zip(images, maps, best.values.tolist(), best.indices.tolist()):
            height, width = image.shape[-2:]
            full = map_to_original(crop_map, (width, height), crop=crop, resize_size=self.resize_size)
            full = full.numpy().astype(np.float32, copy=False)
            if self.photo_threshold == "after":
                box, mask = maps_to_boxes(full[None], threshold)[0], maps_to_masks(full[None], threshold)[0]
            else:
                box, mask = self._threshold_before(crop_map.numpy(), (width, height), threshold, crop)
            predictions.append(
                Prediction(
                    label=labels[0],
                    class_name=self.class_name(labels[0]),
                    score=values[0],
                    top5=[(k, self.class_name(k), p) for k, p in zip(labels, values)],
                    box=tuple(int(v) for v in box),
                    map=full,
                    mask=mask,
                    threshold=threshold,
                    top_k=top_k,
                    crop=crop,
                    photo_threshold=self.photo_threshold,
                )
            )
        if multi is not None:
            for pred, objects in zip(
                predictions, self._objects(batch, probs, images, threshold, crop, *multi, chosen=chosen)
            ):
                pred.objects = objects
        return predictions

    def _threshold_before(
        self, crop_map: np.ndarray, size: tuple[int, int], threshold: float, crop: bool
    ) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """Box and mask of the photo from the network-input map thresholded at its own size."""
        side = crop_map.shape[-1]
        small = maps_to_masks(crop_map[None], threshold, order="raster")[0]
        if not small.any():
            return (0, 0, size[0], size[1]), np.zeros((size[1], size[0]), dtype=bool)
        box = maps_to_boxes(crop_map[None], threshold, order="raster")[0]
        frame = torch.from_numpy(small.astype(np.float32))[None]
        if crop:
            resize_size = self.resize_size
            top = left = crop_offset(resize_size, side)
            placed = frame.new_zeros((1, resize_size, resize_size))
            placed[:, top : top + side, left : left + side] = frame
            frame = placed
        mask = (
            torch.nn.functional.interpolate(frame[None], size=(size[1], size[0]), mode="nearest")[0, 0] > 0.5
        )
        return box_to_original(box, size, side=side, crop=crop, resize_size=self.resize_size), mask.numpy()

    def _objects(
        self,
        batch: torch.Tensor,
        probs: torch.Tensor,
        images: list[torch.Tensor],
        threshold: float,
        crop: bool,
        class_threshold: float,
        min_area: float,
        nms_iou: float,
        chosen: list[list[int]] | None = None,
    ) -> list[list[Detection]]:
        """Every object of each image of a batch (see :meth:`predict`, ``multi``); ``chosen``: the
        classes of each image (default: by ``class_threshold``)."""
        from torchvision.ops import batched_nms

        if chosen is None:
            ranked = probs.argsort(dim=1, descending=True)
            chosen = [
                [int(k) for k in row if probs[i, k] >= class_threshold] or [int(row[0])]
                for i, row in enumerate(ranked)
            ]
        slots = max((len(c) for c in chosen), default=0)
        # one forward pass per class slot: the j-th chosen class of every image as its label
        class_maps = []
        for j in range(slots):
            labels = torch.tensor([c[j] if j < len(c) else 0 for c in chosen], device=self.device)
            if getattr(self.model, "label_type", "single") == "multi_hot":  # a one-hot tag vector
                labels = torch.nn.functional.one_hot(labels, probs.shape[1]).float()
            out = self.model(batch, labels, top_k=1)
            class_maps.append(localization_maps(out.fg_map.float(), batch.shape[-2:]).cpu())
        results = []
        for i, (image, classes) in enumerate(zip(images, chosen)):
            if not classes:
                results.append([])
                continue
            height, width = image.shape[-2:]
            maps = torch.stack([class_maps[j][i] for j in range(len(classes))])
            full = map_to_original(maps, (width, height), crop=crop, resize_size=self.resize_size)
            boxes, scores, labels = [], [], []
            for label, (found, means) in zip(classes, component_boxes(full, threshold, min_area)):
                boxes.append(torch.from_numpy(found))
                scores.append(torch.from_numpy(means) * probs[i, label])
                labels.append(torch.full((len(found),), label))
            boxes, scores, labels = torch.cat(boxes), torch.cat(scores), torch.cat(labels)
            keep = batched_nms(boxes.float(), scores.float(), labels, nms_iou)  # best score first
            results.append(
                [
                    Detection(
                        int(labels[k]),
                        self.class_name(int(labels[k])),
                        float(scores[k]),
                        tuple(int(v) for v in boxes[k]),
                    )
                    for k in keep.tolist()
                ]
            )
        return results


def write_prediction_files(
    out_dir: str | Path,
    name: str,
    image: Any,
    pred: Prediction,
    *,
    maps: bool = False,
    masks: bool = False,
) -> dict[str, str]:
    """The per-image outputs of ``bas predict``, all at the image's resolution, named after ``name``
    (a relative path without extension, kept inside ``out_dir``):

    * ``overlays/<name>.png``: the heatmap blended over the image, the box in red, the class;
    * with ``maps``: ``heatmaps/<name>.png`` (the colour-mapped map) and ``maps/<name>.npy``
      (the raw map, float16 in [0, 1]);
    * with ``masks``: ``masks/<name>.png`` (the mask, 255 inside, 0 outside).

    Returns ``{"overlay": path, "heatmap": ..., "map": ..., "mask": ...}`` relative to ``out_dir``
    (the files written).
    """
    from bas.io import atomic_open, path_inside
    from bas.visualize import save_heatmap, save_mask, save_overlay

    out_dir = Path(out_dir)
    files = {"overlay": path_inside(out_dir / "overlays", name, ".png")}
    if maps:
        files["heatmap"] = path_inside(out_dir / "heatmaps", name, ".png")
        files["map"] = path_inside(out_dir / "maps", name, ".npy")
    if masks:
        files["mask"] = path_inside(out_dir / "masks", name, ".png")
    save_overlay(
        files["overlay"],
        image,
        pred.map,
        pred_boxes=[pred.box] if pred.objects is None else [o.box for o in pred.objects],
        title=f"{pred.class_name} ({pred.score:.2f})"[:40],
        pred_label=f"{pred.class_name} ({pred.score:.2f})"[:40],
    )
    if maps:
        save_heatmap(files["heatmap"], pred.map)
        with atomic_open(files["map"], "wb") as fh:
            np.save(fh, pred.map.astype(np.float16))
    if masks:
        save_mask(files["mask"], pred.mask)
    return {key: path.relative_to(out_dir).as_posix() for key, path in files.items()}


def coco_detections(
    entries: Sequence[tuple[str, tuple[int, int], Sequence[Detection]]],
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Detections as a COCO-format file: ``images`` (``id`` from 1 in input order, ``file_name``,
    ``width``, ``height``), ``categories`` (``id = class index + 1``, ``name``) and ``annotations``
    (``bbox = [x, y, w, h]`` in image pixels, ``score``, ``area``, ``iscrowd = 0``).

    ``entries`` are ``(file name, (W, H), detections)`` (:meth:`Prediction.detections`);
    ``class_names`` name the categories (default: the classes that occur, named as detected).
    ``annotations`` alone is a COCO results list (``COCO.loadRes``).
    """
    images, annotations, seen = [], [], {}
    for image_id, (name, (width, height), detections) in enumerate(entries, start=1):
        images.append({"id": image_id, "file_name": str(name), "width": int(width), "height": int(height)})
        for obj in detections:
            x0, y0, x1, y1 = (int(v) for v in obj.box)
            seen.setdefault(obj.label, obj.class_name)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": obj.label + 1,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                    "score": float(obj.score),
                    "iscrowd": 0,
                }
            )
    names = dict(enumerate(class_names)) if class_names else dict(sorted(seen.items()))
    categories = [{"id": label + 1, "name": name} for label, name in names.items()]
    return {"images": images, "annotations": annotations, "categories": categories}
