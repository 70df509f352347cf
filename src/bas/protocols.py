"""Evaluation protocols: every convention that moves a localisation number, as one preset.

Three presets (docs/protocols.md tabulates them):

* ``standard`` (the default): the protocol of Choe et al. (CVPR 2020, ``clovaai/wsolevaluation``)
  for MaxBoxAcc / MaxBoxAccV2 / PxAP, and this project's conventions for the fixed-threshold
  numbers (GT-known / Top-1 / Top-5 Loc at ``IoU >= 0.5``, per-image mean);
* ``cvpr2022-code``: what the inference script of the CVPR 2022 BAS code computes;
* ``ijcv2023-code``: what the evaluator of the IJCV 2023 BAS code computes.

A :class:`Protocol` only holds data; the evaluators (:mod:`bas.engine.evaluate`,
:mod:`bas.evaluate_maps`, :mod:`bas.metrics`, :mod:`bas.localization`) read its fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from bas.errors import ConfigError

__all__ = [
    "PROTOCOLS",
    "Protocol",
    "box_accuracy",
    "box_correct",
    "get_protocol",
    "protocol_boxes",
    "resolve_protocols",
]


@dataclass(frozen=True)
class Protocol:
    """The conventions of one evaluation protocol.

    Attributes:
        name: registry name. title: one line describing where it comes from.
        norm_eps: ``eps`` of the min-max normalisation ``(m - min) / (max - min + eps)`` of the
            network's map (before upsampling); with 0 a constant map becomes all zeros.
        component_order: which of two equal-area components is the largest: ``"opencv"`` (the
            lower label of ``cv2.connectedComponents``, which numbers 2x2 blocks in raster order)
            or ``"raster"`` (the one whose first pixel comes first in raster order: skimage's
            ``measure.label`` order, which the papers' code uses).
        iou_strict: a box is right when ``IoU > d`` (True) or ``IoU >= d`` (False).
        gt_boxes: ground truth of the fixed-threshold metrics in map pixels: ``"transform"`` (as the
            data transform moves them, float32, clipped to ``[0, C]``), ``"float"`` (float64
            ``x * R / W - offset``, x0 / y0 clipped below at 0, x1 / y1 above at ``C - gt_margin``)
            or ``"int"`` (the same, then truncated to integers).
        gt_margin: 0 (clip x1 / y1 to ``C``) or 1 (to ``C - 1``, 223 for 224 maps).
        class_balanced: the headline means are the mean of per-class accuracies (True) or over
            images (False).
        test_mode: ``"crop"`` (``Resize((R, R))`` then ``CenterCrop(C)``) or None (the config's
            ``data.test_mode``).
        image_resize: ``"tensor"`` (torchvision on the decoded uint8 tensor) or ``"pil"`` (PIL
            bilinear on the image, as ``transforms.Resize`` on a PIL image).
        topk_ties: order of equal class scores in Top-1 / Top-5: ``"stable"`` (lower class index
            first) or ``"torch"`` (``torch.topk``'s order, unspecified among equal values).
        ten_crop: classification by ten-crop softmax averaging.
        defaults: which papers' table of per-dataset ``(threshold, top_k)`` applies
            (:data:`bas.models.meta.INFERENCE_DEFAULTS`), or None: the checkpoint's own.
        box_ious: IoU thresholds of the fixed-threshold box accuracy (``box_acc``).
        max_box_acc: whether the MaxBoxAcc threshold sweep (and its curve) is part of it.
    """

    name: str
    title: str
    norm_eps: float
    component_order: str
    iou_strict: bool
    gt_boxes: str
    gt_margin: int
    class_balanced: bool
    test_mode: str | None
    image_resize: str
    topk_ties: str
    ten_crop: bool
    defaults: str | None
    box_ious: tuple[float, ...]
    max_box_acc: bool

    def replace(self, **changes: Any) -> Protocol:
        """A copy with some fields changed (e.g. for an experiment)."""
        return dataclasses.replace(self, **changes)

    def inference_settings(self, arch: str, num_classes: int) -> tuple[float, int] | None:
        """The ``(threshold, top_k)`` the protocol's code uses for this model, None when it has no
        entry for the dataset (guessed from the class count) or the architecture."""
        if self.defaults is None:
            return None
        from bas.models.meta import DATASET_BY_NUM_CLASSES, INFERENCE_DEFAULTS

        table = INFERENCE_DEFAULTS.get((self.defaults, DATASET_BY_NUM_CLASSES.get(num_classes, "")), {})
        family = arch if arch in table else "resnet50" if "resne" in arch else ""
        return table.get(family)


STANDARD = Protocol(
    name="standard",
    title="Choe et al., CVPR 2020 (clovaai/wsolevaluation) and this project's fixed-threshold metrics",
    norm_eps=1e-10,
    component_order="opencv",
    iou_strict=False,
    gt_boxes="transform",
    gt_margin=0,
    class_balanced=False,
    test_mode=None,
    image_resize="tensor",
    topk_ties="stable",
    ten_crop=False,
    defaults=None,
    box_ious=(0.5,),
    max_box_acc=True,
)

CVPR2022_CODE = Protocol(
    name="cvpr2022-code",
    title="the inference script of the CVPR 2022 BAS code (BAS_inference.py)",
    norm_eps=0.0,
    component_order="raster",
    iou_strict=True,
    gt_boxes="float",
    gt_margin=0,
    class_balanced=True,
    test_mode="crop",
    image_resize="pil",
    topk_ties="torch",
    ten_crop=True,
    defaults="cvpr2022",
    box_ious=(0.5,),
    max_box_acc=False,
)

IJCV2023_CODE = Protocol(
    name="ijcv2023-code",
    title="the evaluator of the IJCV 2023 BAS code (WSOL/evaluator.py)",
    norm_eps=1e-5,
    component_order="raster",
    iou_strict=False,
    gt_boxes="int",
    gt_margin=1,
    class_balanced=False,
    test_mode="crop",
    image_resize="pil",
    topk_ties="torch",
    ten_crop=True,
    defaults="ijcv2023",
    box_ious=(0.3, 0.5, 0.7),
    max_box_acc=False,
)

#: The registry, by name; ``standard`` first (the default).
PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (STANDARD, CVPR2022_CODE, IJCV2023_CODE)}


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by name (or the protocol itself); ConfigError naming the choices otherwise."""
    if isinstance(protocol, Protocol):
        return protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)} (or all)")
    return PROTOCOLS[protocol]


def resolve_protocols(protocol: str | Protocol | list | tuple) -> list[Protocol]:
    """``"all"`` -> every preset; a name, a :class:`Protocol` or a list of them -> those."""
    if isinstance(protocol, (list, tuple)):
        return [get_protocol(p) for p in protocol]
    if protocol == "all":
        return list(PROTOCOLS.values())
    return [get_protocol(protocol)]


def protocol_boxes(
    protocol: Protocol,
    boxes: Any,
    image_size: tuple[int, int],
    side: int,
    resize_size: int | None = None,
) -> np.ndarray:
    """Ground-truth boxes ``(M, 4)`` of one image in the pixels of a ``side x side`` map, the
    protocol's way (``gt_boxes`` ``"float"`` or ``"int"``).

    ``image_size = (W, H)`` of the original image; ``resize_size`` ``R``: the map is the centre
    ``side x side`` crop of the image resized to ``R x R`` (offset ``round((R - side) / 2)``);
    None: the map covers the whole image (``R = side``, no offset).
    """
    if protocol.gt_boxes not in ("float", "int"):
        raise ValueError(f"protocol {protocol.name} takes the data transform's boxes")
    width, height = (float(v) for v in image_size)
    resize = float(side if resize_size is None else resize_size)
    offset = float(int(round((resize - side) / 2.0)))
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if protocol.gt_boxes == "float":  # x * (R / W), the CVPR code's order of operations
        x, y = b[:, [0, 2]] * (resize / width) - offset, b[:, [1, 3]] * (resize / height) - offset
    else:  # x / W * R, the IJCV code's
        x, y = b[:, [0, 2]] / width * resize - offset, b[:, [1, 3]] / height * resize - offset
    top = float(side - protocol.gt_margin)
    out = np.stack(
        [np.maximum(x[:, 0], 0), np.maximum(y[:, 0], 0), np.minimum(x[:, 1], top), np.minimum(y[:, 1], top)],
        axis=1,
    )
    if protocol.gt_boxes == "int":
        return np.trunc(out)
    return out / side * side  # the CVPR code normalises the box to [0, 1] and scales it back


def box_correct(protocol: Protocol, ious: Any, iou_threshold: float) -> np.ndarray:
    """Whether each IoU passes ``iou_threshold`` by the protocol's comparison (``>`` or ``>=``)."""
    ious = np.asarray(ious, dtype=np.float64)
    return ious > iou_threshold if protocol.iou_strict else ious >= iou_threshold


def box_accuracy(protocol: Protocol, ious: Any, labels: Any) -> dict[float, float]:
    """Fixed-threshold box accuracy in percent at each of the protocol's ``box_ious``, averaged its
    way (over images, or the mean of the per-class accuracies)."""
    from bas.metrics import per_class_accuracy

    out = {}
    for d in protocol.box_ious:
        ok = box_correct(protocol, ious, d)
        if protocol.class_balanced:
            out[d] = float(np.mean(list(per_class_accuracy(ok, labels).values())))
        else:
            out[d] = float(100.0 * ok.mean())
    return out


# Rows of the side-by-side table: (label, key in a result, IoU key for dict-valued entries).
_TABLE_ROWS = (
    ("Top-1 cls", "top1_cls", None),
    ("Top-5 cls", "top5_cls", None),
    ("GT-known Loc", "gt_known_loc", None),
    ("Top-1 Loc", "top1_loc", None),
    ("Top-5 Loc", "top5_loc", None),
    ("box acc IoU 0.3", "box_acc", 0.3),
    ("box acc IoU 0.7", "box_acc", 0.7),
    ("MaxBoxAccV2", "MaxBoxAccV2", None),
)


def format_side_by_side(results: dict[str, dict[str, Any]]) -> str:
    """The results of several protocols (``{name: result}``) as one text table, with the spread
    (largest minus smallest value) of every metric more than one protocol reports."""
    names = list(results)
    width = max(14, *(len(n) + 2 for n in names))
    lines = ["metric".ljust(16) + "".join(n.rjust(width) for n in names) + "spread".rjust(10)]
    settings = [
        ("threshold", "threshold", "{:.3f}"),
        ("top-k", "top_k", "{}"),
        ("test mode", "test_mode", "{}"),
    ]
    for label, key, fmt in settings:
        lines.append(
            label.ljust(16) + "".join(fmt.format(results[n].get(key, "-")).rjust(width) for n in names)
        )
    for label, key, iou in _TABLE_ROWS:
        values = []
        for n in names:
            v = results[n].get(key)
            values.append(v.get(iou) if isinstance(v, dict) else v)
        if all(v is None for v in values):
            continue
        cells = "".join(("-" if v is None else f"{v:.2f}").rjust(width) for v in values)
        present = [v for v in values if v is not None]
        spread = f"{max(present) - min(present):.2f}" if len(present) > 1 else "-"
        lines.append(label.ljust(16) + cells + spread.rjust(10))
    return "\n".join(lines)


def write_diff_csv(path: Any, evaluators: dict[str, Any]) -> int:
    """Write, for every image whose box decision (IoU 0.5, each protocol's comparison) differs
    between the protocols, ``image_id`` then ``<protocol>_iou`` and ``<protocol>_correct`` (0/1)
    of each; returns the number of such images. ``evaluators``: filled
    :class:`bas.engine.evaluate.Evaluator` objects by protocol name."""
    import csv
    import io

    from bas.io import write_text

    decisions = {name: e.decisions() for name, e in evaluators.items()}
    names = list(decisions)
    first = decisions[names[0]]["image_ids"]
    by_id = {
        name: {i: (iou, ok) for i, iou, ok in zip(d["image_ids"], d["iou"], d["correct"])}
        for name, d in decisions.items()
    }
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["image_id", *(f"{n}_{col}" for n in names for col in ("iou", "correct"))])
    count = 0
    for image_id in first:
        row = [by_id[n].get(image_id) for n in names]
        if any(r is None for r in row) or len({bool(ok) for _, ok in row}) < 2:
            continue
        writer.writerow([image_id, *(v for iou, ok in row for v in (f"{iou:.6f}", int(bool(ok))))])
        count += 1
    write_text(path, buf.getvalue())
    return count
