"""The built-in synthetic data (``synthetic``), reading side; :mod:`bas.data.synthetic` writes it.

The generator writes the CUB layout (see :mod:`bas.data.formats.cub`) plus ``synthetic.json``,
which names the generator and its parameters. This format reads such a folder like ``cub`` and
requires that marker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bas.data.datasets import SPLITS, WSOLDataset, check_dataset
from bas.data.formats.cub import CUB_OPTIONS, CUBDataset
from bas.data.formats.registry import DatasetFormat, register_format
from bas.errors import DataError

MARKER = "synthetic.json"
MARKER_FORMAT = "bas-synthetic-wsol"


def read_marker(root: Path) -> dict:
    """The generator's ``synthetic.json``; DataError if it is missing or not the generator's."""
    path = Path(root) / MARKER
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("not a synthetic dataset (no marker file; 'bas demo' writes one)", path) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"unreadable marker file ({exc})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != MARKER_FORMAT:
        raise DataError(f"not a synthetic dataset marker (format is not {MARKER_FORMAT!r})", path)
    return meta


def build(root: Path, split: str, transform: Callable | None, problems: list | None, **options) -> CUBDataset:
    read_marker(root)
    return CUBDataset(root, split, transform, problems=problems, **options)


def splits(root: Path, **options) -> list[str]:
    return list(SPLITS)


def check(dataset: WSOLDataset, progress: Callable[[int], None] | None = None) -> list[DataError]:
    """The shared checks plus the generator's marker."""
    problems = check_dataset(dataset, progress)
    try:
        read_marker(dataset.root)
    except DataError as exc:
        problems.append(exc)
    return problems


FORMAT = register_format(
    DatasetFormat(
        name="synthetic",
        summary="the built-in synthetic data (CUB layout + synthetic.json), as 'bas demo' writes it",
        build=build,
        splits=splits,
        options=CUB_OPTIONS,
        check=check,
    )
)
