"""Configuration: YAML recipes (data, not code) merged over the defaults, plus ``key=value`` overrides.

A config is a nested ``dict``. :func:`load_config` starts from ``configs/default.yaml`` (shipped in
the package), merges a recipe file over it (a recipe may name a ``base`` recipe of its own), then
applies ``--set`` overrides such as ``optim.lr=0.01`` or ``model.arch=resnet18`` (values are parsed
as YAML, so ``true``, ``0.5`` and ``[30, 50]`` work). Unknown keys are refused, so a typo in a
recipe or an override is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bas.errors import ConfigError

CONFIG_PACKAGE = "bas.configs"
FREE_FORM = frozenset({"data.options"})  # mappings whose keys are not checked (passed to a class as kwargs)


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
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(data).__name__}")
    return data


def merge(
    base: dict[str, Any], update: dict[str, Any], *, strict: bool = True, where: str = ""
) -> dict[str, Any]:
    """Recursively merge ``update`` into a copy of ``base``; with ``strict``, unknown keys are errors."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        name = f"{where}{key}"
        if strict and key not in out:
            raise ConfigError(f"unknown config key {name!r}")
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value, strict=strict and name not in FREE_FORM, where=f"{name}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_recipe(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A recipe with its ``base`` chain resolved (not yet merged over the defaults)."""
    path = resolve_recipe(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: circular 'base' chain")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = (path.parent / base) if not Path(base).is_absolute() else Path(base)
    if not base_path.is_file():
        base_path = resolve_recipe(base)
    return merge(load_recipe(base_path, (*_seen, path)), data, strict=False)


def parse_override(text: str) -> dict[str, Any]:
    """``"optim.lr=0.01"`` -> ``{"optim": {"lr": 0.01}}``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw != "" else None
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
    recipe: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """Defaults, then the recipe, then the overrides; unknown keys raise :class:`ConfigError`."""
    config = default_config()
    if recipe is not None:
        config = merge(config, load_recipe(recipe))
    for text in overrides:
        config = merge(config, parse_override(text))
    return config


def dump_config(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)
