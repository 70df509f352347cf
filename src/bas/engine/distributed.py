"""Distributed plumbing: the same code runs as one process or under ``torchrun`` (DDP).

``torchrun`` sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the rendezvous variables;
:func:`setup` reads them, picks the device (``cuda:<local_rank>`` when CUDA is available, else the
CPU with the gloo backend) and initialises the process group. Only rank 0 logs and writes files;
every helper below is the identity on a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

# Rank 0 validates alone while the other ranks wait in a collective: allow a long validation.
PROCESS_GROUP_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its global and local rank, the world size and its device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def is_local_main(self) -> bool:
        """Local rank 0: the first process of its node (prepares node-local files)."""
        return self.local_rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_size_from_env() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: str | None = None) -> DistEnv:
    """Read the torchrun environment and initialise the process group when ``WORLD_SIZE > 1``.

    ``device``: None or ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    Under torchrun a device without an index becomes ``cuda:<local_rank>``.
    """
    world_size = world_size_from_env()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if dev.type == "cuda" else "gloo", timeout=PROCESS_GROUP_TIMEOUT
        )
    return DistEnv(rank, local_rank, world_size, dev)


def cleanup() -> None:
    """Destroy the process group, if one was initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    """Wait for every rank."""
    if env.distributed:
        dist.barrier(device_ids=[env.device.index] if env.device.type == "cuda" else None)


def _collective_device(env: DistEnv) -> torch.device:
    return env.device if env.device.type == "cuda" else torch.device("cpu")


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Mean of scalar values over ranks (every rank must pass the same keys)."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=_collective_device(env))
    dist.all_reduce(t)
    t /= env.world_size
    return dict(zip(keys, t.tolist()))


def all_ranks_true(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` holds on every rank, so that all ranks take the same branch."""
    if not env.distributed:
        return flag
    t = torch.tensor([0 if flag else 1], device=_collective_device(env))
    dist.all_reduce(t)
    return int(t.item()) == 0


def broadcast_object(obj: Any, env: DistEnv, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (picklable objects)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_collective_device(env))
    return box[0]
