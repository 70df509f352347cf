"""What a model is, as one typed record: :class:`ModelMeta`.

Every model carries one as ``model.meta``. The builder fills the architecture, the method and its
options and the family's input conventions; the trainer adds the data preprocessing, the classes,
the recipe and the chosen threshold; checkpoints write it and read it back, and the predictor and
the exporter read it. No torch here: the record is plain data.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FORMAT_NAME = "bas-wsol"  # the document's format name and version (the checkpoint header carries it)
FORMAT_VERSION = 1

# Inference defaults of the papers (docs/method.md §4): (variant, dataset) -> arch -> (threshold, top_k).
# The dataset is guessed from the class count; ResNet-family networks use the ResNet50 entry.
INFERENCE_DEFAULTS: dict[tuple[str, str], dict[str, tuple[float, int]]] = {
    ("ijcv2023", "CUB"): {
        "vgg16": (0.10, 80),
        "resnet50": (0.10, 200),
        "inception_v3": (0.10, 200),
        "mobilenet_v1": (0.10, 80),
    },
    ("ijcv2023", "ILSVRC"): {
        "vgg16": (0.45, 1),
        "resnet50": (0.25, 1),
        "inception_v3": (0.25, 1),
        "mobilenet_v1": (0.50, 1),
    },
    ("cvpr2022", "CUB"): {
        "vgg16": (0.15, 80),
        "resnet50": (0.15, 200),
        "inception_v3": (0.10, 200),
        "mobilenet_v1": (0.15, 200),
    },
    ("cvpr2022", "ILSVRC"): {
        "vgg16": (0.50, 1),
        "resnet50": (0.45, 1),
        "inception_v3": (0.30, 1),
        "mobilenet_v1": (0.50, 1),
    },
}
DATASET_BY_NUM_CLASSES = {200: "CUB", 1000: "ILSVRC"}
FALLBACK_INFERENCE = (0.5, 1)  # any other dataset or architecture: mid-range threshold, top-1 map


def inference_defaults(arch: str, num_classes: int, variant: str) -> tuple[float, int]:
    """The paper's (threshold, top_k) for this architecture, the dataset guessed from ``num_classes``
    (200 -> CUB, 1000 -> ILSVRC) and the variant; :data:`FALLBACK_INFERENCE` otherwise."""
    table = INFERENCE_DEFAULTS.get((variant, DATASET_BY_NUM_CLASSES.get(num_classes, "")), {})
    family = (
        arch if arch in table else "resnet50" if "resne" in arch else ""
    )  # resnet*, resnext*, wide_resnet*
    return table.get(family, FALLBACK_INFERENCE)


@dataclass
class ModelMeta:
    """The metadata of a model (the ``bas`` document of a checkpoint, less the format fields).

    ``threshold`` and ``top_k`` are the inference defaults (None: not chosen yet, the paper's value
    is filled in when the model is saved); ``input_size`` is the side of the network input (the
    centre crop), ``resize_size`` the side images are resized to before cropping, ``mean`` / ``std``
    the input normalisation. ``source`` names the file family the model was read from.
    """

    arch: str
    num_classes: int
    method: str = "bas"
    variant: str = "ijcv2023"
    hidden: int = 1024
    input_size: int = 224
    resize_size: int = 256
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    class_names: list[str] | None = None
    threshold: float | None = None
    top_k: int | None = None
    source: str = "bas"
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.num_classes = int(self.num_classes)
        self.hidden = int(self.hidden or 0)
        self.input_size, self.resize_size = int(self.input_size), int(self.resize_size)
        self.mean = tuple(float(x) for x in self.mean)
        self.std = tuple(float(x) for x in self.std)
        if self.class_names is not None:
            self.class_names = [str(name) for name in self.class_names]
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"{len(self.class_names)} class names given for a model of {self.num_classes} classes"
                )
        if self.threshold is not None:
            self.threshold = float(self.threshold)
        if self.top_k is not None:
            self.top_k = int(self.top_k)

    @classmethod
    def keys(cls) -> frozenset[str]:
        """The field names (the keys of :meth:`to_dict`)."""
        return frozenset(f.name for f in dataclasses.fields(cls))

    def replace(self, **changes: Any) -> ModelMeta:
        """A copy with ``changes`` applied (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def completed(self) -> ModelMeta:
        """A copy whose unset ``threshold`` / ``top_k`` are the paper's (:func:`inference_defaults`)."""
        threshold, top_k = inference_defaults(self.arch, self.num_classes, self.variant)
        return self.replace(
            threshold=threshold if self.threshold is None else self.threshold,
            top_k=top_k if self.top_k is None else self.top_k,
        )

    def to_document(self) -> dict[str, Any]:
        """The JSON document of a checkpoint: format name and version, then :meth:`completed` fields."""
        return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **self.completed().to_dict()}

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: lists for the tuples, config / metrics / extra as JSON types."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        for key in ("config", "metrics", "extra"):
            out[key] = json_plain(out[key] or {})
        return out


def json_plain(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, number, bool, None); numpy values and paths
    are converted, anything else raises TypeError."""
    from bas.io import _json_default

    return json.loads(json.dumps(value, default=_json_default))
