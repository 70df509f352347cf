"""Confident labels from seeds: the training targets of IRN (docs/segmentation.md).

For an image with tagged classes ``c_1..c_C`` and their full-resolution seed maps:

1. the foreground label map labels a pixel with its strongest class where that class's map
   exceeds ``fg_threshold`` (0.30), else background; the background label map does the same at
   ``bg_threshold`` (0.17), so it marks less background (:func:`bas.wsss.seeds.seed_labels`);
2. each map is refined with the dense CRF (:class:`bas.wsss.crf.DenseCRF`, labels
   ``0..C`` with confidence ``gt_prob``), both in one batched call;
3. a pixel is the class of the refined foreground map where that map says a class; background
   where both refined maps say background; unsure (255) where only the foreground map says
   background.

:func:`write_confident_labels` does this for every image of a seeds folder (``bas wsss seeds``),
writing ``<id>.png`` palette masks (0 background, k class k, 255 unsure), each atomically; images
whose PNG exists are skipped, so an interrupted run resumes. ``confident.json`` records the
settings and the folder refuses to be resumed with others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bas.errors import ConfigError, DataError
from bas.io import atomic_open, path_inside, to_json
from bas.wsss.crf import DEFAULT_CRF, DenseCRF, resolve_backend
from bas.wsss.masks import IGNORE_INDEX, write_label_png
from bas.wsss.seeds import MAPS_DIR, Shard, read_manifest, read_seeds, seed_labels

__all__ = ["BG_THRESHOLD", "FG_THRESHOLD", "MANIFEST", "confident_labels", "write_confident_labels"]

FG_THRESHOLD = 0.30
BG_THRESHOLD = 0.17
MANIFEST = "confident.json"
FORMAT = "bas-wsss-confident"
#: The settings a folder must have been written with to be resumed (the CRF backend may change).
CHECKED = ("split", "fg_threshold", "bg_threshold", "crf")


def confident_labels(
    image: Any,
    maps: Any,
    classes: Any,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    crf: DenseCRF | None = DEFAULT_CRF,
) -> np.ndarray:
    """The confident label map ``(H, W)`` uint8 of one image: 0 background, ``class + 1`` for the
    0-based ``classes`` (C,) whose maps ``(C, H, W)`` are given, 255 unsure.

    ``image`` is the uint8 ``(H, W, 3)`` image the CRF looks at; ``crf=None`` leaves the two
    thresholded maps unrefined.
    """
    if not 0 <= bg_threshold <= fg_threshold:
        raise ConfigError(f"need 0 <= bg_threshold <= fg_threshold, got {bg_threshold} and {fg_threshold}")
    maps = np.asarray(maps, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if maps.ndim != 3 or len(maps) != len(classes):
        raise ValueError(f"maps {maps.shape} do not fit {len(classes)} classes")
    compact = np.arange(len(classes))  # labels 0..C for the CRF, mapped to the classes at the end
    pair = np.stack([seed_labels(maps, compact, t) for t in (fg_threshold, bg_threshold)])
    if crf is not None and len(classes):
        pair = crf.labels(image, pair, len(classes) + 1)
    keys = np.concatenate([[0], classes + 1]).astype(np.uint8)
    fg, bg = keys[pair[0]], keys[pair[1]]
    return np.where(fg > 0, fg, np.where(bg == 0, 0, IGNORE_INDEX)).astype(np.uint8)


def _open_source(manifest: dict[str, Any], data_root: str | Path | None) -> Any:
    from bas.commands.wsss import open_split

    return open_split(
        manifest.get("dataset", "voc"),
        data_root or manifest["data_root"],
        manifest["split"],
        int(manifest["num_classes"]),
        manifest.get("data_options"),
    )


def _check_settings(output: Path, settings: dict[str, Any]) -> None:
    path = output / MANIFEST
    if not path.is_file():
        return
    import json

    try:
        existing = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {exc}", path) from None
    changed = [k for k in CHECKED if existing.get(k) != settings[k]]
    if changed:
        raise ConfigError(
            f"{output} holds confident labels made with other settings ("
            + "; ".join(f"{k} {existing.get(k)!r}, now {settings[k]!r}" for k in changed)
            + "): use another output folder"
        )


def write_confident_labels(
    seeds_dir: str | Path,
    output_dir: str | Path,
    source: Any | None = None,
    fg_threshold: float = FG_THRESHOLD,
    bg_threshold: float = BG_THRESHOLD,
    crf_backend: str = "auto",
    progress: Callable[[int], None] | None = None,
    *,
    crf: DenseCRF | None = None,
    refine: bool = True,
    data_root: str | Path | None = None,
    shard: Shard | None = None,
) -> Path:
    """Write the confident labels of every image of a split's seeds folder (the one holding
    ``seeds.json``) into ``output_dir``; returns ``output_dir``.

    ``source`` gives the images (``image_ids`` and ``read(index) -> (image, tags)``, such as
    :class:`bas.wsss.seeds.DatasetSplit`); by default the split named by the seeds' manifest is
    opened (at ``data_root`` if given). ``crf`` overrides the default CRF settings (its backend
    wins over ``crf_backend``); ``refine=False`` skips the CRF. ``progress(n)`` is called after
    each image.
    """
    seeds_dir, output = Path(seeds_dir), Path(output_dir)
    shard = shard or Shard()
    manifest = read_manifest(seeds_dir)
    crf = crf if crf is not None else DenseCRF(backend=crf_backend)
    backend = resolve_backend(crf.backend) if refine else None
    if source is None:
        source = _open_source(manifest, data_root)
    settings = {
        "format": FORMAT,
        "seeds": str(seeds_dir.resolve()),
        "split": manifest.get("split"),
        "fg_threshold": float(fg_threshold),
        "bg_threshold": float(bg_threshold),
        "crf": crf.settings() if refine else None,
        "crf_backend": backend,
    }
    if not 0 <= bg_threshold <= fg_threshold:
        raise ConfigError(f"need 0 <= bg_threshold <= fg_threshold, got {bg_threshold} and {fg_threshold}")
    output.mkdir(parents=True, exist_ok=True)
    _check_settings(output, settings)
    if shard.rank == 0:
        with atomic_open(output / MANIFEST, "w") as fh:
            fh.write(to_json(settings, indent=2) + "\n")
    ids = source.image_ids
    for index in shard.indices(len(ids)):
        target = path_inside(output, ids[index], ".png")
        if not target.is_file():
            maps_path = path_inside(seeds_dir / MAPS_DIR, ids[index], ".npz")
            classes, full = read_seeds(maps_path)
            image, _ = source.read(index)
            if np.asarray(image).shape[:2] != full.shape[1:]:
                raise DataError(
                    f"seed maps of size {full.shape[1:]} for an image of size {np.asarray(image).shape[:2]}",
                    maps_path,
                )
            labels = confident_labels(
                image, full, classes, fg_threshold, bg_threshold, crf if refine else None
            )
            write_label_png(target, labels)
        if progress is not None:
            progress(1)
    return output
