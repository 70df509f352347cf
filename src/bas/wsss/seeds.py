"""Seeds for weakly supervised semantic segmentation: per-class maps of a multi-label model.

For every image, with its tags (docs/segmentation.md, "Seeds"):

1. the image is resized by each scale (PIL bicubic to ``round(H * s) x round(W * s)``, default
   scales 1.0, 0.5, 1.5, 2.0) and normalised; the model's ``class_maps`` run on it and, with
   ``flip``, on its horizontal flip in the same forward pass, whose maps are flipped back and added;
2. each scale's maps are resized bilinearly (``align_corners=False``) to the stride-4 size
   ``ceil(H / 4) x ceil(W / 4)`` and to the stride-16-padded size ``16 ceil(H / 16) x 16 ceil(W / 16)``
   (then cropped to ``H x W``), and summed over the scales;
3. only the tagged classes are kept, and each class map is divided by its maximum + 1e-5 (the maps
   of both multi-label methods are non-negative: a sigmoid, or a ReLU per forward pass);
4. with a CAM model (``fuse``), its maps, made the same way, are added and the sum divided by its
   maximum + 1e-5 again;
5. the pseudo-mask labels a pixel with the strongest tagged class, or with the background where
   no class map exceeds the background threshold (``argmax`` over ``[threshold, maps]``, the
   background winning ties).

The computation is batched over images of the same size and over the flip pair; it gives the maps
of the per-image loop (:func:`reference_seed_maps`) to float rounding. Only the tagged classes are
resized. :func:`generate_seeds` writes, per image, ``maps/<id>.npz`` (float16 ``stride4`` and
``full`` maps and the int64 ``classes``, 0-based, no pickled objects) and ``masks/<id>.png`` (VOC
palette pseudo-mask, label = class + 1), each atomically, the PNG last, so an image is finished
when its PNG exists; finished images are skipped, and under ``torchrun`` rank r takes the images
``i % world_size == r``. ``seeds.json`` records the settings.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from bas.errors import ConfigError
from bas.io import atomic_open, path_inside, to_json
from bas.wsss.masks import write_label_png

DEFAULT_SCALES = (1.0, 0.5, 1.5, 2.0)
DEFAULT_THRESHOLD = 0.3  # the reference code's default background score (choose it on held-out data)
EPS = 1e-5
STRIDE = 4  # the low-resolution maps (IRN's random walk input)
PAD_STRIDE = 16  # full-resolution maps are resized to the size padded to this stride, then cropped
MANIFEST = "seeds.json"
MAPS_DIR, MASKS_DIR = "maps", "masks"
FORMAT = "bas-wsss-seeds"
FORMAT_VERSION = 1


# ------------------------------------------------------------------------------------ inputs


class SeedSource(Protocol):
    """What seeds are made from: image ids, and per index the RGB image and its multi-hot tags."""

    image_ids: Sequence[str]

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, 3)`` uint8 image and ``(K,)`` multi-hot tags of image ``index``."""
        ...


def scale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` (uint8 ``(H, W, 3)``) resized by ``scale`` with PIL's bicubic filter."""
    height, width = image.shape[:2]
    size = (int(np.round(height * scale)), int(np.round(width * scale)))
    if size == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize(size[::-1], Image.BICUBIC))


def normalise_image(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(3, H, W)`` float32 of a uint8 ``(H, W, 3)`` image: ``(x / 255 - mean) / std``."""
    x = image.astype(np.float64) / 255.0
    x = (x - np.asarray(mean)) / np.asarray(std)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """``(ceil(H / stride), ceil(W / stride))``."""
    return (size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1


def padded_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """``size`` rounded up to a multiple of ``stride``."""
    h, w = strided_size(size, stride)
    return h * stride, w * stride


def tagged_classes(tags: Any) -> np.ndarray:
    """The 0-based class indices of a multi-hot ``(K,)`` vector, ascending, int64."""
    return np.flatnonzero(np.asarray(tags, dtype=np.float64) > 0.5).astype(np.int64)


# ------------------------------------------------------------------------------------ maps


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map of ``(..., h, w)`` divided by its maximum + 1e-5."""
    return maps / (maps.amax(dim=(-2, -1), keepdim=True) + EPS)


def flip_summed_maps(
    class_maps: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, flip: bool
) -> torch.Tensor:
    """``class_maps(x)``, plus with ``flip`` the flipped-back maps of the flipped images, computed in
    the same forward pass: (B, K, h, w)."""
    if not flip:
        return class_maps(x)
    out = class_maps(torch.cat([x, x.flip(-1)]))
    return out[: len(x)] + out[len(x) :].flip(-1)


@dataclass
class SeedMaps:
    """The seeds of one image: ``classes`` (C,) int64 (0-based), ``stride4`` (C, ceil(H/4),
    ceil(W/4)) and ``full`` (C, H, W) float32 maps, each class peaking just below 1."""

    classes: np.ndarray
    stride4: torch.Tensor
    full: torch.Tensor


@dataclass(frozen=True)
class MapModel:
    """A model's ``class_maps`` with the input normalisation it was trained with."""

    class_maps: Callable[[torch.Tensor], torch.Tensor]
    mean: Sequence[float]
    std: Sequence[float]

    @classmethod
    def of(cls, model: Any) -> MapModel:
        meta = getattr(model, "meta", None)
        if not hasattr(model, "class_maps"):
            raise ConfigError(
                f"a {type(model).__name__} gives no per-class maps (a multi-label model is needed)"
            )
        return cls(model.class_maps, tuple(meta.mean), tuple(meta.std))


class SeedEngine:
    """Multi-scale + flip seed maps of a model (and optionally a CAM model to fuse), batched.

    ``engine(images, tags)`` takes images of one size (uint8 ``(H, W, 3)``) and their multi-hot
    tags, and returns one :class:`SeedMaps` per image.
    """

    def __init__(
        self,
        model: Any,
        *,
        fuse: Any | None = None,
        scales: Sequence[float] = DEFAULT_SCALES,
        flip: bool = True,
        device: str | torch.device = "cpu",
    ):
        if not scales or any(not (s > 0 and math.isfinite(s)) for s in scales):
            raise ConfigError(f"seed scales must be positive numbers, got {list(scales)}")
        self.models = [MapModel.of(model)] + ([MapModel.of(fuse)] if fuse is not None else [])
        self.scales = tuple(float(s) for s in scales)
        self.flip = bool(flip)
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, images: Sequence[np.ndarray], tags: Sequence[Any]) -> list[SeedMaps]:
        size = images[0].shape[:2]
        if any(im.shape[:2] != size for im in images):
            raise ValueError("a SeedEngine batch needs images of one size")
        classes = [tagged_classes(t) for t in tags]
        rows = torch.from_numpy(np.repeat(np.arange(len(images)), [len(c) for c in classes]))
        cols = torch.from_numpy(np.concatenate(classes) if classes else np.zeros(0, np.int64))
        low, up = strided_size(size, STRIDE), padded_size(size, PAD_STRIDE)
        sums = [[0.0, 0.0] for _ in self.models]
        for scale in self.scales:
            scaled = [scale_image(im, scale) for im in images]
            for total, net in zip(sums, self.models):
                x = torch.stack([normalise_image(im, net.mean, net.std) for im in scaled]).to(self.device)
                maps = flip_summed_maps(net.class_maps, x, self.flip).float()
                picked = maps[rows.to(maps.device), cols.to(maps.device)].unsqueeze(1)  # tagged only
                if len(picked):
                    total[0] = total[0] + F.interpolate(picked, low, mode="bilinear", align_corners=False)
                    total[1] = total[1] + F.interpolate(picked, up, mode="bilinear", align_corners=False)
        if not len(rows):
            empty = [torch.zeros(0, *low), torch.zeros(0, *size)]
            return [SeedMaps(c, *empty) for c in classes]
        stride4 = fused([normalise_maps(low_sum[:, 0]) for low_sum, _ in sums])
        full = fused([normalise_maps(up_sum[:, 0, : size[0], : size[1]]) for _, up_sum in sums])
        counts = [len(c) for c in classes]
        return [
            SeedMaps(c, a.cpu(), b.cpu())
            for c, a, b in zip(classes, stride4.split(counts), full.split(counts))
        ]


def fused(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """One normalised map set: the sum of several, divided by its maximum + 1e-5 again (the
    released code's CAM fusion); a single one unchanged."""
    return maps[0] if len(maps) == 1 else normalise_maps(sum(maps[1:], maps[0]))


def reference_seed_maps(
    model: Any,
    image: np.ndarray,
    tags: Any,
    *,
    fuse: Any | None = None,
    scales: Sequence[float] = DEFAULT_SCALES,
    flip: bool = True,
) -> SeedMaps:
    """The seeds of one image computed the released code's way: per scale one forward of the flip
    pair, every class resized, then the tagged ones kept and normalised. For tests and benchmarks."""
    size = image.shape[:2]
    low, up = strided_size(size, STRIDE), padded_size(size, PAD_STRIDE)
    classes = tagged_classes(tags)
    results = []
    with torch.no_grad():
        for m in [model] + ([fuse] if fuse is not None else []):
            net = MapModel.of(m)
            per_scale = []
            for s in scales:
                x = normalise_image(scale_image(image, s), net.mean, net.std)
                pair = torch.stack([x, x.flip(-1)]) if flip else x[None]
                out = net.class_maps(pair)
                per_scale.append(out[0] + out[1].flip(-1) if flip else out[0])
            low_sum = torch.stack(
                [F.interpolate(o[None], low, mode="bilinear", align_corners=False)[0] for o in per_scale]
            ).sum(0)
            full_sum = torch.stack(
                [F.interpolate(o[:, None], up, mode="bilinear", align_corners=False) for o in per_scale]
            ).sum(0)[:, 0, : size[0], : size[1]]
            index = torch.from_numpy(classes)
            results.append((normalise_maps(low_sum[index]), normalise_maps(full_sum[index])))
    return SeedMaps(classes, fused([r[0] for r in results]), fused([r[1] for r in results]))


# ------------------------------------------------------------------------------------ labels


def seed_labels(full: Any, classes: Any, threshold: float) -> np.ndarray:
    """The pseudo-mask ``(H, W)`` uint8: ``argmax`` over ``[threshold, maps]`` mapped to the labels
    ``[0, classes + 1]`` (the background wins ties; maps compared in float32)."""
    maps = np.asarray(full, dtype=np.float32)
    classes = np.asarray(classes, dtype=np.int64)
    if maps.ndim != 3 or len(maps) != len(classes):
        raise ValueError(f"maps {maps.shape} do not fit {len(classes)} classes")
    padded = np.concatenate([np.full((1, *maps.shape[1:]), threshold, np.float32), maps])
    keys = np.concatenate([[0], classes + 1]).astype(np.uint8)
    return keys[padded.argmax(axis=0)]


# ------------------------------------------------------------------------------------ files


def seed_files(output: Path, image_id: str) -> tuple[Path, Path]:
    """``(maps/<id>.npz, masks/<id>.png)`` under ``output`` (an id cannot lead outside it)."""
    return path_inside(output / MAPS_DIR, image_id, ".npz"), path_inside(output / MASKS_DIR, image_id, ".png")


def is_finished(output: Path, image_id: str) -> bool:
    """Both files of an image exist (the PNG is written last, each file atomically)."""
    maps, mask = seed_files(output, image_id)
    return mask.is_file() and maps.is_file()


def write_seeds(output: Path, image_id: str, seeds: SeedMaps, threshold: float) -> None:
    """Write an image's ``.npz`` (float16 maps, int64 classes), then its palette pseudo-mask."""
    maps_path, mask_path = seed_files(output, image_id)
    stride4 = seeds.stride4.numpy().astype(np.float16)
    full = seeds.full.numpy().astype(np.float16)
    buf = io.BytesIO()
    np.savez_compressed(buf, classes=seeds.classes.astype(np.int64), stride4=stride4, full=full)
    with atomic_open(maps_path, "wb") as fh:
        fh.write(buf.getvalue())
    write_label_png(mask_path, seed_labels(full, seeds.classes, threshold))


def read_seeds(path: str | Path, maps: str = "full") -> tuple[np.ndarray, np.ndarray]:
    """``(classes, full)`` of a seeds ``.npz``: int64 (C,) and float16 (C, H, W) (with
    ``maps="stride4"`` the stride-4 maps instead)."""
    from bas.errors import DataError

    try:
        with np.load(path, allow_pickle=False) as data:
            classes, full = data["classes"], data[maps]
    except FileNotFoundError:
        raise DataError("no seeds for this image (run bas wsss seeds on its split)", path) from None
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"not a seeds file: {exc}", path) from None
    if full.ndim != 3 or classes.shape != (len(full),):
        raise DataError(f"seed maps of shape {full.shape} do not fit {classes.shape} classes", path)
    return classes.astype(np.int64), full


def batches_by_size(
    items: Iterable[tuple[int, np.ndarray, np.ndarray]], batch_size: int, pending_limit: int = 0
) -> Iterator[list[tuple[int, np.ndarray, np.ndarray]]]:
    """Group ``(index, image, tags)`` items into lists of at most ``batch_size`` images of one size.

    A group is given out when full; when more than ``pending_limit`` (default ``8 * batch_size``)
    images wait, the largest group goes out as it is; the rest at the end.
    """
    limit = pending_limit or 8 * batch_size
    groups: dict[tuple[int, ...], list] = {}
    waiting = 0
    for item in items:
        group = groups.setdefault(item[1].shape, [])
        group.append(item)
        waiting += 1
        if len(group) == batch_size:
            waiting -= len(group)
            yield groups.pop(item[1].shape)
        elif waiting > limit:
            key = max(groups, key=lambda k: len(groups[k]))
            waiting -= len(groups[key])
            yield groups.pop(key)
    yield from groups.values()


@dataclass(frozen=True)
class Shard:
    """This process's share of the images: index ``i`` belongs to rank ``i % world_size``."""

    rank: int = 0
    world_size: int = 1

    def indices(self, count: int) -> range:
        return range(self.rank, count, self.world_size)


def pending_indices(source: SeedSource, output: Path, shard: Shard = Shard()) -> list[int]:
    """The indices of this shard whose seeds are not written yet."""
    ids = source.image_ids
    return [i for i in shard.indices(len(ids)) if not is_finished(output, ids[i])]


def generate_seeds(
    engine: SeedEngine,
    source: SeedSource,
    output: str | Path,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    batch_size: int = 8,
    shard: Shard = Shard(),
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the seeds of this shard's unfinished images under ``output``; returns how many.

    Images are read by ``workers`` DataLoader processes (0: in this process) and batched by size.
    """
    output = Path(output)
    todo = pending_indices(source, output, shard)
    done = 0
    for batch in batches_by_size(_read_all(source, todo, workers), batch_size):
        results = engine([b[1] for b in batch], [b[2] for b in batch])
        for (index, _, _), seeds in zip(batch, results):
            write_seeds(output, source.image_ids[index], seeds, threshold)
        done += len(batch)
        if progress is not None:
            progress(len(batch))
    return done


class _Reader(torch.utils.data.Dataset):
    def __init__(self, source: SeedSource, indices: Sequence[int]):
        self.source, self.indices = source, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, np.ndarray]:
        index = self.indices[i]
        image, tags = self.source.read(index)
        return index, image, np.asarray(tags)


def _read_all(
    source: SeedSource, indices: Sequence[int], workers: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    if workers <= 0:
        reader = _Reader(source, indices)
        return (reader[i] for i in range(len(reader)))
    loader = torch.utils.data.DataLoader(
        _Reader(source, indices), batch_size=None, num_workers=workers, collate_fn=_as_is
    )
    return iter(loader)


def _as_is(item: Any) -> Any:
    return item


# ------------------------------------------------------------------------------------ data


class DatasetSplit:
    """A split of a multi-label dataset (:func:`bas.data.formats.build_dataset` of ``voc``, ``coco``
    or ``multilabel_folder``) as seeds and their evaluation read it: the original images, the
    multi-hot tags and the label masks."""

    def __init__(self, dataset: Any):
        from bas.errors import ConfigError

        if not getattr(dataset, "multi_label", False):
            raise ConfigError(
                f"{type(dataset).__name__} is not a multi-label dataset (voc, coco, multilabel_folder)"
            )
        self.dataset = dataset
        self.image_ids = dataset.image_ids
        self.classes = list(dataset.classes)

    def __len__(self) -> int:
        return len(self.image_ids)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from bas.data.multilabel import multi_hot

        image, tags, _ = self.dataset.load(index)
        return np.asarray(image), multi_hot(tags, len(self.classes)).numpy()

    def read_mask(self, index: int) -> np.ndarray:
        """The uint8 ``(H, W)`` label mask of image ``index`` (DataError without one)."""
        from bas.errors import DataError

        record = self.dataset.records[index]
        if record.mask is None:
            raise DataError(f"{record.image_id}: no label mask to evaluate against", record.path)
        with Image.open(record.path) as image:
            size = image.size
        return self.dataset.label_mask(index, size)


# ------------------------------------------------------------------------------------ manifest

#: The manifest keys that must match for a folder to be resumed.
SETTINGS = ("checkpoint", "method", "fuse_cam", "scales", "flip", "bg_threshold", "dataset", "split")


def check_manifest(output: Path, manifest: dict[str, Any]) -> None:
    """Refuse a folder that already holds seeds made with other :data:`SETTINGS`."""
    if not (output / MANIFEST).is_file():
        return
    existing = read_manifest(output)
    changed = [k for k in SETTINGS if existing.get(k) != manifest.get(k)]
    if changed:
        raise ConfigError(
            f"{output} holds seeds made with other settings ("
            + "; ".join(f"{k} {existing.get(k)!r}, now {manifest.get(k)!r}" for k in changed)
            + "): use another --output"
        )


def write_manifest(output: Path, manifest: dict[str, Any]) -> None:
    """Write ``seeds.json`` (after :func:`check_manifest`)."""
    check_manifest(output, manifest)
    with atomic_open(output / MANIFEST, "w") as fh:
        fh.write(to_json({"format": FORMAT, "format_version": FORMAT_VERSION, **manifest}, indent=2) + "\n")


def read_manifest(output: str | Path) -> dict[str, Any]:
    """The ``seeds.json`` of a seeds folder."""
    import json

    from bas.errors import DataError

    path = Path(output) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"no {MANIFEST} here: not a folder written by bas wsss seeds", output) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {exc}", path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"not a seeds manifest (format is not {FORMAT!r})", path)
    return data
