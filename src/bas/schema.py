"""The typed schema of the configuration: every key's type, range and allowed values.

The schema is assembled from three places, each declaring its own keys:

* the core keys (those of ``configs/default.yaml``), in :data:`CORE` below;
* each method's ``config_defaults`` (:class:`bas.methods.base.Method`): a :class:`Key` (default,
  type and range) or a bare default, whose type is then taken from the default;
* each dataset format's options (:class:`bas.data.formats.registry.Option`), the keys of
  ``data.options`` for that ``data.dataset``.

:func:`check_config` checks a whole config against it and raises a one-line
:class:`~bas.errors.ConfigError` naming the key (and the file and line it came from, when the
caller knows them); an unknown key is answered with the closest known ones ("did you mean").
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bas.errors import ConfigError

TYPES = ("int", "number", "bool", "str", "list", "mapping", "any")


@dataclass(frozen=True)
class Key:
    """One config key.

    Attributes:
        type: ``int``, ``number`` (int or float, finite), ``bool``, ``str``, ``list``, ``mapping``
            or ``any``; a tuple of them accepts any one (``("bool", "str")``).
        default: the default (used for keys that ``default.yaml`` does not list).
        nullable: whether ``null`` is accepted.
        min, max: inclusive bounds of a number (or of every item of a list); ``above`` makes ``min``
            exclusive.
        choices: the allowed values, or a function returning them (registries known at run time).
        item: the key every item of a list must satisfy; ``length``: the list's required length.
        help: a few words, shown in messages where a type alone says too little.
    """

    type: str | tuple[str, ...] = "any"
    default: Any = None
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    above: bool = False
    choices: tuple | Callable[[], Any] | None = None
    item: Key | None = None
    length: int | None = None
    help: str = ""

    def problem(self, value: Any) -> str | None:
        """Why ``value`` does not fit this key (the end of a sentence starting with the key), or None."""
        if value is None:
            return None if self.nullable or self.type == "any" else f"must not be null{self._expected()}"
        choices = self.allowed()
        if choices is not None:
            if value in choices and not isinstance(value, bool):
                return None
            shown = ", ".join("null" if c is None else str(c) for c in choices)
            close = _did_you_mean(str(value), [str(c) for c in choices if c is not None])
            return f"must be one of {shown}, got {value!r}{close}"
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        matched = next((t for t in types if _is_type(value, t)), None)
        if matched is None:
            return f"must be {_type_words(types)}{' or null' if self.nullable else ''}, got {value!r}"
        if matched in ("int", "number"):
            return self._range_problem(value)
        if matched == "list":
            if self.length is not None and len(value) != self.length:
                return f"must be a list of {self.length} items{self._expected()}, got {value!r}"
            if self.item is not None:
                for index, item in enumerate(value):
                    why = self.item.problem(item)
                    if why is not None:
                        return f"item {index} {why}"
        return None

    def allowed(self) -> tuple | None:
        if self.choices is None:
            return None
        return tuple(self.choices() if callable(self.choices) else self.choices)

    def _range_problem(self, value: float) -> str | None:
        low_ok = self.min is None or (value > self.min if self.above else value >= self.min)
        high_ok = self.max is None or value <= self.max
        if low_ok and high_ok:
            return None
        if self.min is not None and self.max is not None:
            return f"must be in {'(' if self.above else '['}{self.min:g}, {self.max:g}], got {value!r}"
        if self.min is not None:
            return f"must be {'>' if self.above else '>='} {self.min:g}, got {value!r}"
        return f"must be <= {self.max:g}, got {value!r}"

    def _expected(self) -> str:
        return f" ({self.help})" if self.help else ""


def _is_type(value: Any, name: str) -> bool:
    if name == "any":
        return True
    if name == "bool":
        return isinstance(value, bool)
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if name == "str":
        return isinstance(value, str)
    if name == "list":
        return isinstance(value, list)
    if name == "mapping":
        return isinstance(value, dict)
    raise ValueError(f"unknown schema type {name!r}")


_WORDS = {
    "int": "an integer",
    "number": "a finite number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list",
    "mapping": "a mapping",
    "any": "a value",
}


def _type_words(types: tuple[str, ...]) -> str:
    return " or ".join(_WORDS[t] for t in types)


def _did_you_mean(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown_key(name: str, known: list[str]) -> str:
    """The message for an unknown dotted key, with the closest known keys."""
    return f"unknown config key {name!r}{_did_you_mean(name, known)}"


def key_from_default(default: Any) -> Key:
    """The schema entry of a key declared by its default only: its type is the default's."""
    if isinstance(default, Key):
        return default
    if default is None:
        return Key("any")
    if isinstance(default, bool):
        return Key("bool", default)
    if isinstance(default, int):
        return Key("int", default)
    if isinstance(default, float):
        return Key("number", default)
    if isinstance(default, str):
        return Key("str", default)
    if isinstance(default, list):
        return Key("list", default)
    if isinstance(default, dict):
        return Key("mapping", default)
    return Key("any", default)


# ----------------------------------------------------------------------------------- core keys


def _methods() -> list[str]:
    from bas.methods import list_methods

    return list_methods()


def _models() -> list[str]:
    from bas.models import list_models

    return list_models()


def _select_metrics() -> tuple[str, ...]:
    from bas.engine.train import SELECT_METRICS

    return SELECT_METRICS


def _schedules() -> tuple[str, ...]:
    from bas.engine.optim import SCHEDULES

    return SCHEDULES


def _train_transforms() -> tuple[str, ...]:
    from bas.data.transforms import TRAIN_TRANSFORMS

    return TRAIN_TRANSFORMS


def _optimizers() -> tuple[str, ...]:
    from bas.engine.optim import OPTIMIZERS

    return OPTIMIZERS


def _amp_modes() -> tuple:
    from bas.engine.train import AMP_MODES

    return AMP_MODES


COUNT = Key("int", min=1)
NON_NEGATIVE = Key("int", min=0)
FRACTION = Key("number", min=0, max=1)
SPLIT = Key("str", nullable=True)

#: The keys of ``configs/default.yaml`` (the defaults are in that file).
CORE: dict[str, Key] = {
    "method": Key("str", choices=_methods),
    "model.arch": Key("str", choices=_models),
    "model.num_classes": Key("int", nullable=True, min=1),
    "model.pretrained": Key(("bool", "str"), help="true, false or a weight file"),
    "data.dataset": Key("str"),  # a registered format: its options are checked (see check_config)
    "data.root": Key("str", nullable=True),
    "data.options": Key("mapping", nullable=True),
    "data.train_split": Key("str"),
    "data.val_split": SPLIT,
    "data.test_split": SPLIT,
    "data.input_size": COUNT,
    "data.resize_size": COUNT,
    "data.test_mode": Key("str", choices=("crop", "resize")),
    "data.train_transform": Key("str", choices=_train_transforms),
    "data.long_side": Key("list", length=2, item=COUNT, help="[low, high] of the longer side (scale_crop)"),
    "data.batch_size": COUNT,
    "data.eval_batch_size": COUNT,
    "data.workers": NON_NEGATIVE,
    "data.pin_memory": Key("bool"),
    "data.persistent_workers": Key("bool"),
    "data.synthetic.num_classes": Key("int", min=2),
    "data.synthetic.images_per_class": COUNT,
    "data.synthetic.image_size": Key("int", min=16),
    "data.synthetic.seed": NON_NEGATIVE,
    "data.synthetic.body_reliability": FRACTION,
    "data.synthetic.striped_background": Key("bool", help="distractors and background fields may be striped"),
    "optim.lr": Key("number", min=0, above=True),
    "optim.momentum": Key("number", min=0, max=1),
    "optim.nesterov": Key("bool"),
    "optim.weight_decay": Key("number", min=0),
    "optim.lr_mult": Key(
        "list",
        length=4,
        item=Key("number", min=0, above=True),
        help="backbone weights, backbone biases, new-layer weights, new-layer biases",
    ),
    "optim.epochs": COUNT,
    "optim.schedule": Key("str", choices=_schedules),
    "optim.decay_every": COUNT,
    "optim.gamma": Key("number", min=0, above=True),
    "optim.power": Key("number", min=0, above=True),
    "optim.reference_quirks": Key("bool"),
    "optim.reference_gpus": COUNT,
    "optim.optimizer": Key("str", choices=_optimizers),
    "optim.warmup_epochs": NON_NEGATIVE,
    "optim.min_lr": Key("number", min=0),
    "eval.top_k": COUNT,
    "eval.threshold": FRACTION,
    "eval.iou_thresholds": Key("list", item=Key("number", min=0, max=100, above=True)),
    "eval.interval": Key("number", min=0, max=1, above=True),
    "eval.multi_contour": Key("bool"),
    "eval.every": NON_NEGATIVE,
    "eval.select_metric": Key("str", choices=_select_metrics),
    "eval.ten_crop": Key("bool"),
    "train.seed": NON_NEGATIVE,
    "train.output_dir": Key("str"),
    "train.amp": Key("str", nullable=True, choices=_amp_modes),
    "train.channels_last": Key("bool"),
    "train.compile": Key("bool"),
    "train.accum_steps": COUNT,
    "train.checkpoint_every_steps": NON_NEGATIVE,
    "train.sync_bn": Key("bool"),
    "train.log_every": COUNT,
    "train.max_steps": Key("int", nullable=True, min=1),
}


def schema(method: str | None = None) -> dict[str, Key]:
    """Every known dotted key: the core's, then each method's (those of ``method`` win where
    several methods declare the same key)."""
    from bas.methods import get_method, list_methods

    out = dict(CORE)
    names = [m for m in list_methods() if m != method] + ([method] if method in list_methods() else [])
    for name in names:
        for key, value in get_method(name).config_defaults.items():
            out[key] = key_from_default(value)
    return out


# ----------------------------------------------------------------------------------- checking


def flatten(cfg: Mapping[str, Any], prefix: str = "", stop: frozenset[str] = frozenset()) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; mappings named in ``stop`` are kept whole."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value and name not in stop:
            out.update(flatten(value, f"{name}.", stop))
        else:
            out[name] = value
    return out


def check_config(cfg: Mapping[str, Any], where: Callable[[str], str] | None = None) -> None:
    """Check every key of ``cfg`` (types, ranges, allowed values, unknown keys, the dataset's
    options, the method's own checks); raises :class:`ConfigError` for the first problem.

    ``where(key)`` names the place a key was set (``"recipe.yaml:12"``), or "" when unknown.
    """
    locate = where or (lambda key: "")

    def fail(key: str, message: str) -> None:
        place = locate(key)
        raise ConfigError(" ".join((f"{place}: {message}" if place else message).split()))

    method = cfg.get("method")
    why = CORE["method"].problem(method)
    if why is not None:
        fail("method", f"method {why}")
    keys = schema(method)
    sections = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    values = flatten(cfg, stop=frozenset({"data.options"}))
    for name, value in values.items():
        if name not in keys:
            if name in sections or any(k.startswith(f"{name}.") for k in keys):
                fail(name, f"{name} must be a mapping, got {value!r}")
            fail(name, unknown_key(name, list(keys)))
    for name, key in keys.items():
        if name not in values:
            if any(v.startswith(f"{name}.") for v in values):
                fail(name, f"{name} must be {_type_words(_as_tuple(key.type))}, got a mapping")
            fail(name, f"missing config key {name!r}")
        why = key.problem(values[name])
        if why is not None:
            fail(name, f"{name} {why}")
    low, high = cfg["data"]["long_side"]
    if low > high:
        fail("data.long_side", f"data.long_side must be [low, high] with low <= high, got [{low}, {high}]")
    _check_options(cfg["data"]["dataset"], cfg["data"].get("options") or {}, fail)
    from bas.methods import get_method

    get_method(method).check_config(dict(cfg))


def _as_tuple(types: str | tuple[str, ...]) -> tuple[str, ...]:
    return types if isinstance(types, tuple) else (types,)


def _check_options(dataset: str, options: Mapping[str, Any], fail: Callable[[str, str], None]) -> None:
    """``data.options`` against the options the format declares. A dataset kind that no module
    registers (a recipe whose format comes with another package) is refused when it is built."""
    from bas.data.formats import list_formats
    from bas.data.formats.registry import get_format

    if dataset not in list_formats():
        return
    fmt = get_format(dataset)
    for name, value in options.items():
        dotted = f"data.options.{name}"
        if name not in fmt.options:
            accepted = ", ".join(fmt.options) or "none"
            close = _did_you_mean(str(name), list(fmt.options))
            fail(dotted, f"unknown option {dotted} for the '{dataset}' dataset (accepted: {accepted}){close}")
        why = fmt.options[name].key.problem(value)
        if why is not None:
            fail(dotted, f"{dotted} {why}")
