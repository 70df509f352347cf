"""The registry of dataset formats.

A format is a :class:`DatasetFormat`: its name (the ``data.dataset`` of a config and the ``KIND`` of
``bas data check``), the options it accepts (``data.options`` keys, with defaults), how it builds a
split, which splits it finds on disk and how it is checked. Each module of :mod:`bas.data.formats`
registers one with :func:`register_format`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bas.errors import ConfigError, DataError

if TYPE_CHECKING:
    from bas.data.datasets import WSOLDataset


@dataclass(frozen=True)
class Option:
    """One option of a format: its default, a one-line help and how ``bas data check`` parses it
    (``type``; None: not a command-line option)."""

    default: Any = None
    help: str = ""
    type: Callable[[str], Any] | None = str


def _default_check(dataset: WSOLDataset, progress: Callable[[int], None] | None = None) -> list[DataError]:
    from bas.data.datasets import check_dataset

    return check_dataset(dataset, progress)


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset kind.

    Attributes:
        name: registry key.
        summary: one line for ``bas data list``.
        options: accepted options with their defaults.
        build: ``build(root, split, transform, problems, **options)`` -> dataset, ``options``
            complete (defaults filled in); ``problems`` is None (raise) or a list to collect into.
        splits: ``splits(root, **options)`` -> the splits found on disk.
        check: ``check(dataset, progress=None)`` -> the problems of a built split (default: the
            shared :func:`~bas.data.datasets.check_dataset`; ``progress(n)`` counts the images).
    """

    name: str
    summary: str
    build: Callable[..., WSOLDataset]
    splits: Callable[..., list[str]]
    options: dict[str, Option] = field(default_factory=dict)
    check: Callable[..., list[DataError]] = _default_check

    def resolve_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """``options`` with the defaults of the missing ones; ConfigError naming an unknown one."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            accepted = ", ".join(self.options) or "none"
            raise ConfigError(
                f"unknown option(s) {', '.join(unknown)} for the '{self.name}' dataset; accepted: {accepted}"
            )
        return {name: options.get(name, opt.default) for name, opt in self.options.items()}


_FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> DatasetFormat:
    """Add a format to the registry (its name must be new); returns it."""
    if fmt.name in _FORMATS:
        raise ValueError(f"dataset format {fmt.name!r} is already registered")
    _FORMATS[fmt.name] = fmt
    return fmt


def get_format(name: str) -> DatasetFormat:
    """The registered format ``name``; ConfigError listing the known ones otherwise."""
    try:
        return _FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; expected one of {', '.join(_FORMATS)}") from None


def list_formats() -> list[str]:
    """Names of the registered formats, sorted."""
    return sorted(_FORMATS)


def build_dataset(
    name: str,
    root: str | Path,
    split: str = "train",
    transform: Callable | None = None,
    *,
    problems: list[DataError] | None = None,
    **options: Any,
) -> WSOLDataset:
    """Build split ``split`` of dataset kind ``name`` under ``root``.

    ``options`` are the format's options (``bas data list`` shows them, and the module of each
    format documents them); ``problems=[]`` collects annotation errors instead of raising the first.
    """
    fmt = get_format(name)
    return fmt.build(Path(root), split, transform, problems, **fmt.resolve_options(options))


def available_splits(name: str, root: str | Path, **options: Any) -> list[str]:
    """The splits :func:`build_dataset` can build for this dataset on disk."""
    fmt = get_format(name)
    return fmt.splits(Path(root), **fmt.resolve_options(options))


def first_existing(*paths: Path) -> Path | None:
    """The first of ``paths`` that exists, or None."""
    return next((p for p in paths if p.exists()), None)
