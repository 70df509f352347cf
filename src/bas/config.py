"""Configuration: YAML recipes (data, not code) merged over the defaults, plus ``key=value`` overrides.

A config is a nested ``dict``. :func:`load_config` starts from ``configs/default.yaml`` (shipped in
the package), merges a recipe file over it (a recipe may name a ``base`` recipe of its own), then
applies ``--set`` overrides such as ``optim.lr=0.01`` or ``model.arch=resnet18`` (values are parsed
as YAML, so ``true``, ``0.5``, ``1e-3`` and ``[30, 50]`` work). The result is checked against the
schema (:mod:`bas.schema`: types, ranges, allowed values, unknown keys with a "did you mean") when
it is loaded, so a typo in a recipe or an override is a one-line error naming the key, and the file
and line it came from, before any data or model is touched.

Numbers follow YAML 1.2: ``1e-3``, ``5E-4`` and ``.5`` are floats (PyYAML's safe loader, which
follows YAML 1.1, reads the first two as strings).
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bas.errors import ConfigError
from bas.schema import check_config, flatten, unknown_key

CONFIG_PACKAGE = "bas.configs"
FREE_FORM = frozenset({"data.options"})  # mappings whose keys are the dataset format's options

# YAML 1.2 floats (the 1.1 pattern of PyYAML needs a dot and a signed exponent: "1e-3" is a string).
_DIGITS = r"[0-9](?:_?[0-9])*"
FLOAT = re.compile(
    rf"""^[-+]?(?:{_DIGITS}\.(?:{_DIGITS})?(?:[eE][-+]?[0-9]+)?  # 1.  1.5  1.5e3
    |\.{_DIGITS}(?:[eE][-+]?[0-9]+)?  # .5  .5e-3
    |{_DIGITS}[eE][-+]?[0-9]+  # 1e-3  5E-4
    |\.(?:inf|Inf|INF))$
    |^\.(?:nan|NaN|NAN)$""",
    re.X,
)


class Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-3``, ``5E-4``, ``.5``)."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:float"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Loader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT, list("-+0123456789."))


def _construct_number(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int | float:
    """Floats of :data:`FLOAT`; a malformed number (``0b_``) is a YAML error, not a crash."""
    text = loader.construct_scalar(node)
    try:
        if node.tag.endswith(":int"):
            return yaml.SafeLoader.construct_yaml_int(loader, node)
        return yaml.SafeLoader.construct_yaml_float(loader, node)
    except (ValueError, IndexError):
        raise yaml.constructor.ConstructorError(
            None, None, f"malformed number {text!r}", node.start_mark
        ) from None


Loader.add_constructor("tag:yaml.org,2002:int", _construct_number)
Loader.add_constructor("tag:yaml.org,2002:float", _construct_number)


def parse_yaml(text: str) -> Any:
    """YAML text with :class:`Loader`; ``yaml.YAMLError`` for malformed text."""
    try:
        return yaml.load(text, Loader=Loader)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def config_dir() -> Path:
    """Folder of the recipes shipped with the package."""
    return Path(str(resources.files(CONFIG_PACKAGE)))


def default_config() -> dict[str, Any]:
    """``configs/default.yaml``, plus the keys a method declares (``Method.config_defaults``) that
    the file does not list, so that a new method's settings are known keys."""
    from bas.methods import config_defaults

    cfg = _read_yaml(config_dir() / "default.yaml")
    for key, value in config_defaults().items():
        *sections, leaf = key.split(".")
        node = cfg
        for section in sections:
            node = node.setdefault(section, {})
        node.setdefault(leaf, value)
    return cfg


def resolve_recipe(name: str | Path) -> Path:
    """A recipe path: an existing file, or a name relative to the shipped configs (``cub/resnet50``)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = config_dir() / (str(name) if str(name).endswith(".yaml") else f"{name}.yaml")
    if shipped.is_file():
        return shipped
    raise ConfigError(f"config file not found: {name} (neither a file nor a recipe in {config_dir()})")


def list_recipes() -> list[str]:
    """Shipped training recipes (``configs/benchmark/`` holds benchmark definitions, not recipes;
    ``_base.yaml`` files are the partial recipes others build on)."""
    root = config_dir()
    return sorted(
        str(p.relative_to(root).with_suffix(""))
        for p in root.rglob("*.yaml")
        if p.name != "default.yaml"
        and not p.name.startswith("_")
        and p.relative_to(root).parts[0] != "benchmark"
    )


def _read_yaml(path: Path) -> dict[str, Any]:
    return _read_yaml_marked(path)[0]


def _read_yaml_marked(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """A YAML mapping and, for each dotted key it sets, ``"file:line"``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        data = parse_yaml(text)
        node = yaml.compose(text, Loader=Loader) if isinstance(data, dict) else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise ConfigError(f"{where}: invalid YAML ({problem})") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    marks: dict[str, str] = {}
    _collect_marks(node, "", f"{path}:", marks)
    return data, marks


def _collect_marks(node: Any, prefix: str, where: str, out: dict[str, str]) -> None:
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            name = f"{prefix}{key.value}"
            out[name] = f"{where}{key.start_mark.line + 1}"
            _collect_marks(value, f"{name}.", where, out)


def merge(
    base: dict[str, Any], update: dict[str, Any], *, strict: bool = True, where: str = ""
) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; with ``strict``, unknown keys are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{where}{key}"
        if strict and key not in out:
            raise ConfigError(unknown_key(name, [f"{where}{k}" for k in out]))
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, strict=strict and name not in FREE_FORM, where=f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def known_part(update: dict[str, Any], base: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The keys of ``update`` that ``base`` has (a stored config of another version may have others)."""
    out = {}
    for key, value in update.items():
        if key not in base:
            continue
        name = f"{where}{key}"
        nested = isinstance(value, dict) and isinstance(base[key], dict) and name not in FREE_FORM
        out[key] = known_part(value, base[key], f"{name}.") if nested else value
    return out


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe with its ``base`` chain resolved (not yet merged over the defaults)."""
    return _load_recipe(path)[0]


def _load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`load_recipe` and the ``file:line`` of every key it sets."""
    path = resolve_recipe(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'base' chain")
    data, marks = _read_yaml_marked(path)
    base = data.pop("base", None)
    if base is None:
        return data, marks
    if not isinstance(base, str):
        raise ConfigError(f"{marks.get('base', path)}: base must be a recipe name or file, got {base!r}")
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.is_file():
        base_path = resolve_recipe(base)
    base_data, base_marks = _load_recipe(base_path, (*_seen, path))
    return merge(base_data, data, strict=False), base_marks | marks


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=0.01"`` -> ``{"optim": {"lr": 0.01}}``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = parse_yaml(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    out: dict[str, Any] = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def load_config(
    recipe: str | Path | dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Defaults, then the recipe (a file, a shipped name, or a config mapping such as the one a
    checkpoint stores), then the overrides, checked against the schema
    (:func:`bas.schema.check_config`); a problem raises :class:`ConfigError` naming the key and,
    for a recipe file, its file and line."""
    config = default_config()
    origins: dict[str, str] = {}
    if isinstance(recipe, dict):
        config = merge(config, recipe, strict=False)
    elif recipe is not None:
        data, origins = _load_recipe(recipe)
        config = merge(config, data, strict=False)
    for text in overrides:
        update = parse_override(text)
        config = merge(config, update, strict=False)
        for key in flatten(update):  # set by an override: no file line (the key itself is named)
            origins = {k: v for k, v in origins.items() if not k.startswith(f"{key}.")}
            origins[key] = ""
    check_config(config, lambda key: _origin(key, origins))
    return config


def _origin(key: str, origins: dict[str, str]) -> str:
    """Where ``key`` (or the closest enclosing key) was set: ``file:line``, or "" (an override)."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in origins:
            return origins[prefix]
    return ""


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
