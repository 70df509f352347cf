"""Datasets and loaders from a config, with reproducible, resumable sampling.

Reproducibility does not depend on the number of workers, processes or where a run was resumed:

* :class:`EpochSampler` draws each epoch's order from ``(seed, epoch)``, shards it across ranks
  the way ``DistributedSampler`` does (rank r takes positions r, r + W, ...), keeps a whole
  number of optimiser steps, and can start part way through an epoch;
* it yields ``(index, sample_seed)`` pairs and :class:`SeededDataset` seeds torch's CPU
  generator with ``sample_seed`` before the random augmentation of that sample, so every sample
  of every epoch is augmented the same way wherever and whenever it is loaded.

Hence one optimiser step sees the same images, augmented alike, with 1 process and batch B, with
W processes and batch B / W each, or with gradient accumulation over micro-batches.

A :class:`~bas.errors.BASError` raised while a sample is loaded reaches the caller as itself (the
same one-line error with its file and line), also from worker processes, where DataLoader would
fold the worker's traceback into the message: the loaders here carry it back as data
(:class:`LoaderFailure`) and raise it in the main process.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from bas.data import build_dataset, collate
from bas.data.transforms import test_transform, training_transform
from bas.errors import BASError, ConfigError


class SeededDataset(Dataset):
    """Wraps a dataset; ``dataset[(index, seed)]`` loads sample ``index`` with torch's CPU generator
    seeded by ``seed`` (its previous state is restored afterwards; CUDA generators are not touched)."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, Any]:
        index, seed = item
        generator = torch.default_generator
        state = generator.get_state()
        generator.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            generator.set_state(state)


class LoaderFailure:
    """A :class:`BASError` raised while loading a sample, returned instead of the sample."""

    def __init__(self, error: BASError):
        self.error = error


class GuardedDataset(Dataset):
    """Wraps a dataset; a :class:`BASError` of ``dataset[item]`` is returned as a :class:`LoaderFailure`."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getattr__(self, name: str) -> Any:
        # the wrapped dataset's attributes (records, class_names, ...); "dataset" itself is looked up
        # before it is set while unpickling in a worker, and must not recurse
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, item: Any) -> Any:
        try:
            return self.dataset[item]
        except BASError as exc:
            return LoaderFailure(exc)


def _collate(samples: list[Any]) -> Any:
    """:func:`bas.data.collate`, or the first :class:`LoaderFailure` of the batch."""
    return next((s for s in samples if isinstance(s, LoaderFailure)), None) or collate(samples)


class Loader(DataLoader):
    """A DataLoader over a :class:`GuardedDataset` that raises the errors its samples carry."""

    def __iter__(self) -> Iterator[Any]:
        for batch in super().__iter__():
            if isinstance(batch, LoaderFailure):
                raise batch.error
            yield batch


def guarded_loader(dataset: Dataset, **kwargs: Any) -> Loader:
    """A :class:`Loader` of ``dataset`` (DataLoader keyword arguments; ``collate_fn`` is
    :func:`bas.data.collate`)."""
    return Loader(GuardedDataset(dataset), collate_fn=_collate, **kwargs)


class EpochSampler(Sampler):
    """Shuffled, rank-sharded, resumable order of one epoch; yields ``(index, sample_seed)``.

    Args:
        size: dataset length.
        seed: the run's seed; epoch ``e`` is shuffled with ``(seed, e)``.
        rank, world_size: this process's shard: positions ``rank, rank + world_size, ...`` of the
            epoch's order, after dropping the tail that does not divide evenly.
        multiple_of: each shard is cut to a multiple of this (the per-rank samples of one
            optimiser step), so an epoch is a whole number of steps on every rank.
    """

    def __init__(self, size: int, *, seed: int, rank: int = 0, world_size: int = 1, multiple_of: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.multiple_of = max(1, multiple_of)
        self.epoch = 0
        self.start = 0  # position (in this rank's shard) to start from

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch, and skip the first ``start`` samples of this rank's shard (resume)."""
        self.epoch, self.start = epoch, start

    @property
    def shard_size(self) -> int:
        """Samples of one whole epoch on this rank."""
        per_rank = self.size // self.world_size
        return per_rank - per_rank % self.multiple_of

    def _shard(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=g).tolist()
        return order[self.rank :: self.world_size][: self.shard_size]

    def __len__(self) -> int:
        return max(0, self.shard_size - self.start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        base = (self.seed * 1_000_003 + self.epoch) * 10_000_019
        for index in self._shard()[self.start :]:
            yield index, (base + index) % (2**63 - 1)


def dataset_root(cfg: dict[str, Any]) -> Path:
    """``data.root`` as a path; ConfigError when unset."""
    data = cfg["data"]
    if data["root"] is None:
        raise ConfigError("data.root is not set (give --data-root or --set data.root=DIR)")
    return Path(data["root"]).expanduser()


def prepare_dataset(cfg: dict[str, Any]) -> tuple[str, Path]:
    """Generate the synthetic dataset when asked for; returns the dataset kind and root for build_dataset."""
    data = cfg["data"]
    root = dataset_root(cfg)
    if data["dataset"] == "synthetic":
        from bas.data.synthetic import make_dataset

        make_dataset(root, **data["synthetic"])
    return data["dataset"], root


def make_dataset_split(
    cfg: dict[str, Any], split: str, *, train: bool, test_mode: str | None = None
) -> Dataset:
    """The dataset of one split with the train or test transform of the config."""
    data = cfg["data"]
    kind, root = prepare_dataset(cfg)
    if train:
        transform = training_transform(data)
    else:
        transform = test_transform(
            data["input_size"], data["resize_size"], mode=test_mode or data["test_mode"]
        )
    dataset = build_dataset(kind, root, split, transform, **(data.get("options") or {}))
    if train and hasattr(dataset, "require_tags"):  # multi-label data: every image needs a tag
        dataset.require_tags()
    return dataset


def per_rank_batch_size(cfg: dict[str, Any], world_size: int) -> int:
    """Images per rank and micro-batch: the global batch ``data.batch_size`` split over the ranks
    and the ``train.accum_steps`` micro-batches of one optimiser step."""
    batch, accum = cfg["data"]["batch_size"], cfg["train"]["accum_steps"]
    if batch % (world_size * accum):
        raise ConfigError(
            f"data.batch_size={batch} (the global batch of one step) must be divisible by "
            f"world size x train.accum_steps = {world_size} x {accum}"
        )
    return batch // (world_size * accum)


def train_loader(
    dataset: Dataset,
    cfg: dict[str, Any],
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | None = None,
) -> DataLoader:
    """:class:`Loader` of the training split; its sampler is an :class:`EpochSampler` (call ``set_epoch``).

    Batches are ``data.batch_size / (world_size * train.accum_steps)`` images; an epoch is a whole
    number of optimiser steps. The loader has a generator of its own, so creating an iterator
    does not draw from the global RNG.
    """
    per_rank = per_rank_batch_size(cfg, world_size)
    sampler = EpochSampler(
        len(dataset),
        seed=int(cfg["train"]["seed"]),
        rank=rank,
        world_size=world_size,
        multiple_of=per_rank * cfg["train"]["accum_steps"],
    )
    return guarded_loader(
        SeededDataset(dataset),
        batch_size=per_rank,
        sampler=sampler,
        generator=torch.Generator().manual_seed(int(cfg["train"]["seed"])),
        **_worker_options(cfg["data"], device),
    )


def eval_loader(dataset: Dataset, cfg: dict[str, Any], *, device: torch.device | None = None) -> DataLoader:
    """Loader of an evaluation split, in dataset order (``data.eval_batch_size`` images a batch)."""
    data = cfg["data"]
    options = _worker_options(data, device)
    options["persistent_workers"] = False
    return guarded_loader(dataset, batch_size=data["eval_batch_size"], shuffle=False, **options)


def _worker_options(data: dict[str, Any], device: torch.device | None) -> dict[str, Any]:
    """``num_workers``, ``pin_memory`` (CUDA only), ``persistent_workers`` and ``prefetch_factor``."""
    workers = int(data["workers"])
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": bool(data["pin_memory"]) and device is not None and device.type == "cuda",
    }
    if workers > 0:
        options["persistent_workers"] = bool(data["persistent_workers"])
        options["prefetch_factor"] = 2
    return options
