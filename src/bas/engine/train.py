"""The training loop: one code path from a laptop CPU to many GPUs under ``torchrun``.

* the papers' optimiser and schedules, step (per epoch) or poly (per step) (:mod:`bas.engine.optim`);
* single-class or multi-hot labels, as the method's model takes them (``batch["label"]``);
* mixed precision (``train.amp``: ``bf16``, or ``fp16`` with gradient scaling), channels_last,
  optional ``torch.compile``, gradient accumulation (``train.accum_steps`` micro-batches per step;
  ``data.batch_size`` is the global batch of one optimiser step, whatever the number of processes);
* DistributedDataParallel when launched by torchrun (optional SyncBatchNorm); the training metrics
  are averaged over the ranks, only rank 0 logs and writes files;
* a training-state checkpoint (``last.ckpt``) at every epoch end and every
  ``train.checkpoint_every_steps`` steps, from which ``resume`` continues exactly where it stopped
  (the sampler and the per-sample augmentation seeds make the data order and the augmentation a
  function of the position in the run, see :mod:`bas.engine.data`);
* validation on the held-out split (``data.val_split``, never the test split) every ``eval.every``
  epochs and after the last one; the best model by ``eval.select_metric`` is kept as
  ``best.safetensors`` with the threshold chosen on that split;
* a non-finite loss stops the run naming the step and the term, before any update, so the last
  checkpoint stays the last good one.

Run folder: ``config.yaml`` (resolved config), ``environment.json`` (versions, device), ``metrics.jsonl`` (one JSON object per log line),
``last.ckpt``, ``best.safetensors``, ``model.safetensors`` (the final model), and TensorBoard
events under ``tb/`` when ``tensorboard`` is installed. A new (not resumed) run in a used folder
starts a new ``metrics.jsonl`` and removes the previous run's ``best.safetensors``.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from bas import checkpoints
from bas._optional import optional
from bas.config import dump_config
from bas.data.datasets import check_num_classes
from bas.engine import distributed as D
from bas.engine.data import eval_loader, make_dataset_split, per_rank_batch_size, train_loader
from bas.engine.evaluate import autocast_context
from bas.engine.optim import (
    build_optimizer,
    build_scheduler,
    poly_horizon,
    rebuild_schedule,
    steps_per_update,
)
from bas.errors import ConfigError, TrainingError
from bas.io import to_json, write_json, write_text
from bas.methods import get_method
from bas.report import environment as run_environment
from bas.schema import check_config, flatten

LAST = "last.ckpt"
BEST = "best.safetensors"
FINAL = "model.safetensors"
LOG = "metrics.jsonl"
AMP_MODES = (None, "bf16", "fp16")
# Validation metrics that can select the best checkpoint (all: higher is better).
SELECT_METRICS = (
    "MaxBoxAccV2",
    "top1_loc",
    "gt_known_loc",
    "top1_cls",
    "PxAP",
    "PIoU",
    "mAP",
    "seed_miou",
    "miou",
)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def create_model(cfg: dict[str, Any], num_classes: int) -> nn.Module:
    """The model of ``cfg['method']`` for ``num_classes`` classes, its options from ``model.*``."""
    from bas.models import build_model

    method = get_method(cfg["method"])
    m = cfg["model"]
    model = build_model(
        m["arch"],
        num_classes,
        method=method.name,
        pretrained=m["pretrained"],
        **method.options_from_config(cfg),
    )
    method.configure(model, cfg)  # the method's training-only settings (has.*, adl.* ...)
    return model


# ------------------------------------------------------------------------------ config checks


def validate_config(cfg: dict[str, Any], world_size: int = 1) -> None:
    """Check a config before training; raises :class:`ConfigError` with a one-line message.

    Every key against the schema (:func:`bas.schema.check_config`), then what depends on the
    launch: ``world_size`` is the number of processes, over which (and over the
    ``train.accum_steps`` micro-batches) the global batch must split evenly.
    """
    check_config(cfg)
    optim = cfg["optim"]
    sgd = optim["optimizer"] == "sgd" and not optim["reference_quirks"]
    if sgd and optim["nesterov"] and optim["momentum"] <= 0:
        raise ConfigError(
            f"optim.nesterov needs optim.momentum > 0, got {cfg['optim']['momentum']!r} "
            "(give --set optim.nesterov=false)"
        )
    per_rank_batch_size(cfg, world_size)


# ------------------------------------------------------------------------------------ trainer


class Trainer:
    """Builds everything from a resolved config; :meth:`fit` trains and returns the last validation.

    State: ``epoch`` (completed epochs), ``step`` (optimiser steps) and ``batch_in_epoch``
    (micro-batches of the current epoch done on this rank) say where the run stands.
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        *,
        resume: str | Path | bool | None = None,
        progress: bool = True,
        device: str | None = None,
    ):
        self.cfg = cfg
        validate_config(cfg, D.world_size_from_env())
        self.env = env = D.setup(device)
        tcfg = cfg["train"]
        if tcfg["sync_bn"] and env.distributed and env.device.type != "cuda":
            raise ConfigError("train.sync_bn needs CUDA devices (SyncBatchNorm does not run on the CPU)")
        self.progress = progress and env.is_main
        self.out_dir = Path(tcfg["output_dir"])
        self.accum = int(tcfg["accum_steps"])
        seed_everything(int(tcfg["seed"]))
        if env.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels

        # Node-local files (the synthetic data) are prepared by the first process of each node.
        self.method = get_method(cfg["method"])
        if env.is_local_main:
            self.train_set = self._dataset(cfg["data"]["train_split"], train=True)
        D.barrier(env)
        if not env.is_local_main:
            self.train_set = self._dataset(cfg["data"]["train_split"], train=True)
        self.num_classes = int(cfg["model"]["num_classes"] or self.train_set.num_classes)
        check_num_classes(self.train_set, self.num_classes, "model.num_classes")
        self.class_names = list(getattr(self.train_set, "classes", []) or [])
        self.val_set = None
        if cfg["eval"]["every"] and cfg["data"]["val_split"]:
            self.val_set = self._dataset(cfg["data"]["val_split"], train=False)
            check_num_classes(self.val_set, self.num_classes, "model.num_classes")

        model = create_model(cfg, self.num_classes).to(env.device)
        data, ev = cfg["data"], cfg["eval"]
        model.meta = model.meta.replace(  # what every checkpoint of this run says about the model
            input_size=data["input_size"],
            resize_size=data["resize_size"],
            class_names=self.class_names or None,
            threshold=ev["threshold"],
            top_k=ev["top_k"],
            config=cfg,
        )
        if tcfg["sync_bn"] and env.distributed:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        if tcfg["channels_last"]:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, cfg["optim"])
        self.scaler = torch.amp.GradScaler(env.device.type, enabled=tcfg["amp"] == "fp16")
        self.loader = train_loader(
            self.train_set, cfg, rank=env.rank, world_size=env.world_size, device=env.device
        )
        self.steps_per_epoch = self.loader.sampler.shard_size // (self.loader.batch_size * self.accum)
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the training split has {len(self.train_set)} images, fewer than one step "
                f"(data.batch_size={cfg['data']['batch_size']})"
            )
        self.schedule_per_step = steps_per_update(cfg["optim"])
        self.horizon = poly_horizon(
            cfg["optim"], self.steps_per_epoch, len(self.train_set), int(cfg["data"]["batch_size"])
        )
        self.scheduler = build_scheduler(self.optimizer, cfg["optim"], self.horizon)
        self.epoch, self.step, self.batch_in_epoch = 0, 0, 0
        self.best: float | None = None
        self.last_metrics: dict[str, Any] = {}
        self.resumed = bool(resume)
        if resume:
            self._resume(self.out_dir / LAST if resume is True else Path(resume))

        self.ddp: nn.parallel.DistributedDataParallel | None = None
        self.net: nn.Module = model
        if env.distributed:
            self.ddp = nn.parallel.DistributedDataParallel(
                model, device_ids=[env.device.index] if env.device.type == "cuda" else None
            )
            self.net = self.ddp
        if tcfg["compile"]:
            self.net = torch.compile(self.net)
        self._tb: Any = None

    def _dataset(self, split: str, *, train: bool) -> Any:
        """The method's dataset of ``split`` (:meth:`Method.dataset`), else the config's."""
        dataset = self.method.dataset(self.cfg, split, train=train)
        return make_dataset_split(self.cfg, split, train=train) if dataset is None else dataset

    # ------------------------------------------------------------------------------- state

    def _resume(self, path: Path) -> None:
        """Restore ``path``, then obey the config: its changes from the checkpoint's config are
        printed, and the optimiser's hyper-parameters and schedule are rebuilt from it."""
        if not path.is_file():
            raise TrainingError(f"cannot resume: no checkpoint at {path}")
        state = checkpoints.load_training_state(
            path,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            generators=self._generators(),
        )
        extra = state.get("extra") or {}
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.batch_in_epoch = int(extra.get("batch_in_epoch", 0))
        self.best = extra.get("best")
        self.last_metrics = state.get("metrics") or {}
        self.scheduler = rebuild_schedule(
            self.optimizer, self.cfg["optim"], epoch=self.epoch, step=self.step, total_steps=self.horizon
        )
        if self.env.is_main:
            self._truncate_log()
            print(
                f"resumed from {path}: epoch {self.epoch}, step {self.step}, "
                f"batch {self.batch_in_epoch} of the epoch"
            )
            for key, old, new in config_changes(state.get("config") or {}, self.cfg):
                print(f"changed on resume: {key} {_show(old)} -> {_show(new)}")

    def _truncate_log(self) -> None:
        """Drop log records the resumed run will write again (those after the checkpoint)."""
        path = self.out_dir / LOG
        if not path.is_file():
            return
        kept = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short when the run was killed
                continue
            if record.get("kind") == "epoch" and record["epoch"] > self.epoch:
                continue
            if record.get("kind") == "train" and record["step"] > self.step:
                continue
            kept.append(line + "\n")
        write_text(path, "".join(kept))

    def _current_threshold(self) -> float:
        """The threshold chosen by a validation of the current step, else ``eval.threshold``."""
        validated_now = self.last_metrics.get("step") == self.step and "threshold" in self.last_metrics
        return float(self.last_metrics["threshold"] if validated_now else self.cfg["eval"]["threshold"])

    def save_state(self) -> None:
        """Write ``last.ckpt`` (rank 0): everything an exact resume needs, and the same model
        metadata as the model files (preprocessing, classes, threshold, method, recipe)."""
        if not self.env.is_main:
            return
        if not _all_finite(p.detach() for p in self.model.parameters()):
            raise TrainingError(
                f"non-finite weights after step {self.step} (epoch {self.epoch + 1}): the update is "
                f"not saved; {self._kept()}"
            )
        self.model.meta = self.model.meta.replace(
            threshold=self._current_threshold(), metrics=self.last_metrics
        )
        checkpoints.save_training_state(
            self.out_dir / LAST,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            scaler=self.scaler,
            epoch=self.epoch,
            step=self.step,
            config=self.cfg,
            metrics=self.last_metrics,
            extra={"batch_in_epoch": self.batch_in_epoch, "best": self.best},
            generators=self._generators(),
        )

    def _generators(self) -> dict[str, torch.Generator]:
        """The model's own random generators (``training_generators()``, e.g. the positive-class
        draws of multi-label BAS), saved and restored with the training state."""
        own = getattr(self.model, "training_generators", None)
        return own() if own is not None else {}

    def save_model(
        self, path: Path, metrics: dict[str, Any] | None = None, threshold: float | None = None
    ) -> None:
        """Write a model file with the model's metadata; ``threshold`` defaults to the current one
        (chosen by a validation of this step, else ``eval.threshold``)."""
        checkpoints.save_model(
            path,
            self.model,
            threshold=self._current_threshold() if threshold is None else threshold,
            metrics=metrics or {},
        )

    # ---------------------------------------------------------------------------- logging

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to ``metrics.jsonl`` and TensorBoard (rank 0)."""
        if not self.env.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / LOG, "a", encoding="utf-8") as fh:
            fh.write(to_json(record) + "\n")
        if self._tb is None:  # TensorBoard events only with the 'tensorboard' extra
            tensorboard = optional("torch.utils.tensorboard")
            self._tb = tensorboard.SummaryWriter(str(self.out_dir / "tb")) if tensorboard else False
        if self._tb:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self._tb.add_scalar(f"{record['kind']}/{key}", value, record["step"])

    def _close_log(self) -> None:
        if self._tb:
            self._tb.close()
        self._tb = None

    # ------------------------------------------------------------------------------ train

    def _forward_loss(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The model under autocast; the method's loss (computed in float32)."""
        with autocast_context(self.env.device, self.cfg["train"]["amp"]):
            out = self.net(images, labels)
        return self.method.loss(out, labels, self.cfg)

    def _loss_values(self, total: torch.Tensor, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """The loss and its terms as floats (one device sync); stops the run if the loss is not finite."""
        names = ["loss", *terms]
        stacked = torch.stack([total.detach().float(), *(t.detach().float() for t in terms.values())])
        values = dict(zip(names, stacked.tolist()))
        if D.all_ranks_true(math.isfinite(values["loss"]), self.env):
            return values
        bad = [f"{k}={v}" for k, v in values.items() if k != "loss" and not math.isfinite(v)]
        if bad:
            what = f"term {', '.join(bad)}"
        elif not math.isfinite(values["loss"]):
            what = f"weighted sum of the terms = {values['loss']}"
        else:
            what = "on another rank"
        raise TrainingError(
            f"non-finite loss at step {self.step + 1} (epoch {self.epoch + 1}): {what}; "
            f"stopped before the update, {self._kept()}"
        )

    def _kept(self) -> str:
        """The end of a non-finite stop's message: the checkpoint left untouched, from which to resume."""
        last = self.out_dir / LAST
        return f"last good checkpoint: {last}" if last.is_file() else "no checkpoint had been written"

    def _check_gradients(self) -> None:
        """Stop before the optimiser step when a gradient is not finite (with fp16, the grad scaler
        skips such steps itself and lowers its scale)."""
        if self.scaler.is_enabled():
            return
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        if D.all_ranks_true(_all_finite(grads), self.env):
            return
        bad = [
            n for n, p in self.model.named_parameters() if p.grad is not None and not _all_finite([p.grad])
        ]
        what = f"{bad[0]}{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}" if bad else "on another rank"
        raise TrainingError(
            f"non-finite gradient at step {self.step + 1} (epoch {self.epoch + 1}): {what}; "
            f"stopped before the update, {self._kept()}"
        )

    def train_batch(self, batch: dict[str, Any]) -> dict[str, float]:
        """Forward and backward one micro-batch; the optimiser steps after every ``accum_steps`` of them.

        Returns the loss and its terms (floats) of this micro-batch.
        """
        env = self.env
        images = batch["image"].to(env.device, non_blocking=True)
        labels = self.method.targets(batch).to(env.device, non_blocking=True)
        if self.cfg["train"]["channels_last"]:
            images = images.contiguous(memory_format=torch.channels_last)
        update = (self.batch_in_epoch + 1) % self.accum == 0
        # DDP all-reduces gradients on the micro-batch that completes a step, not on the others.
        sync = self.ddp.no_sync() if self.ddp is not None and not update else contextlib.nullcontext()
        with sync:
            total, terms = self._forward_loss(images, labels)
            values = self._loss_values(total, terms)
            self.scaler.scale(total / self.accum).backward()
        if update:
            self._check_gradients()
        self.batch_in_epoch += 1
        if update:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            if self.schedule_per_step:
                self.scheduler.step()
        return values

    def train_epoch(self) -> tuple[dict[str, float], bool]:
        """One epoch (or the rest of it after a resume); returns the mean stats and whether it completed.

        Stats: the loss and its terms averaged over micro-batches and ranks, ``images_per_s``
        (all ranks together) and ``data_wait``, the share of rank 0's time spent waiting for the
        loader.
        """
        cfg, env = self.cfg, self.env
        every = int(cfg["train"]["checkpoint_every_steps"])
        log_every = int(cfg["train"]["log_every"])
        max_steps = cfg["train"]["max_steps"]
        self.loader.sampler.set_epoch(self.epoch, start=self.batch_in_epoch * self.loader.batch_size)
        self.method.start_epoch(self.model, self.epoch, cfg)
        self.net.train()
        sums: dict[str, float] = {}
        count, images, wait, start = 0, 0, 0.0, time.perf_counter()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=self.batch_in_epoch // self.accum,
            disable=not self.progress,
            desc=f"epoch {self.epoch + 1}/{cfg['optim']['epochs']}",
            dynamic_ncols=True,
            leave=False,
        )
        batches = iter(self.loader)
        while True:
            t0 = time.perf_counter()
            batch = next(batches, None)
            if batch is None:
                break
            wait += time.perf_counter() - t0
            for key, value in self.train_batch(batch).items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            images += len(batch["label"]) * env.world_size
            if self.batch_in_epoch % self.accum:
                continue
            elapsed = max(time.perf_counter() - start, 1e-9)
            lr = self.optimizer.param_groups[0]["lr"]
            bar.set_postfix(
                {k: f"{v / count:.3f}" for k, v in sums.items()}
                | {"lr": f"{lr:.2g}", "img/s": f"{images / elapsed:.1f}"}
            )
            bar.update(1)
            if self.step % log_every == 0:
                avg = D.all_reduce_mean({k: v / count for k, v in sums.items()}, env)
                self.log(
                    {
                        "kind": "train",
                        "epoch": self.epoch + 1,
                        "step": self.step,
                        **avg,
                        "lr": lr,
                        "images_per_s": images / elapsed,
                        "data_wait": wait / elapsed,
                    }
                )
            if every and self.step % every == 0:
                self.save_state()
            if max_steps is not None and self.step >= max_steps:
                break
        bar.close()
        elapsed = max(time.perf_counter() - start, 1e-9)
        stats = D.all_reduce_mean({k: v / max(count, 1) for k, v in sums.items()}, env)
        completed = self.batch_in_epoch == self.steps_per_epoch * self.accum
        return stats | {"images_per_s": images / elapsed, "data_wait": wait / elapsed}, completed

    # ------------------------------------------------------------------------- validation

    def validate(self) -> tuple[dict[str, Any], float]:
        """Metrics on the held-out split and the threshold chosen there, by the method's validation
        hook (rank 0 evaluates, the others wait and receive the result)."""
        result: Any = None
        if self.env.is_main:
            loader = eval_loader(self.val_set, self.cfg, device=self.env.device)
            result = self.method.validate(
                checkpoints.unwrap_model(self.net),
                loader,
                self.cfg,
                device=self.env.device,
                progress=self.progress,
            )
        return D.broadcast_object(result, self.env)

    def _validation_due(self) -> bool:
        every = int(self.cfg["eval"]["every"])
        return (
            self.val_set is not None
            and every > 0
            and (self.epoch % every == 0 or self.epoch == int(self.cfg["optim"]["epochs"]))
        )

    def _validate_and_keep_best(self) -> dict[str, Any]:
        """Validate; save ``best.safetensors`` when the selection metric improves; returns the log fields."""
        val, threshold = self.validate()
        metric = self.cfg["eval"]["select_metric"]
        if metric not in val:
            available = ", ".join(k for k in SELECT_METRICS if k in val)
            raise ConfigError(
                f"eval.select_metric {metric!r} is not computed on the split "
                f"{self.cfg['data']['val_split']!r} (available: {available or 'none'})"
            )
        self.last_metrics = {
            "split": self.cfg["data"]["val_split"],
            "epoch": self.epoch,
            "step": self.step,
            "select_metric": metric,
            "threshold": threshold,
            "val": val,
        }
        if self.best is None or float(val[metric]) > self.best:
            self.best = float(val[metric])
            if self.env.is_main:
                self.save_model(self.out_dir / BEST, metrics=self.last_metrics, threshold=threshold)
        return {f"val_{k}": v for k, v in val.items() if isinstance(v, (int, float))}

    # -------------------------------------------------------------------------------- fit

    def fit(self) -> dict[str, Any]:
        """Train to ``optim.epochs`` (or ``train.max_steps``); returns the last validation record."""
        cfg, env = self.cfg, self.env
        if env.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.out_dir / "config.yaml", dump_config(cfg))
            write_json(self.out_dir / "environment.json", run_environment(env.device))  # for bas report
            if not self.resumed:  # a new run in a used folder: the old log and best model are not its own
                (self.out_dir / LOG).unlink(missing_ok=True)
                (self.out_dir / BEST).unlink(missing_ok=True)
        epochs, max_steps = int(cfg["optim"]["epochs"]), cfg["train"]["max_steps"]
        try:
            while self.epoch < epochs and (max_steps is None or self.step < max_steps):
                stats, completed = self.train_epoch()
                if not completed:  # stopped by train.max_steps part way through the epoch
                    self.save_state()
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                if not self.schedule_per_step:
                    self.scheduler.step()
                record: dict[str, Any] = {"kind": "epoch", "epoch": self.epoch, "step": self.step, **stats}
                if self._validation_due():
                    record.update(self._validate_and_keep_best())
                self.log(record)
                if self.env.is_main:  # one summary line per epoch, with or without progress bars
                    tqdm.write(
                        f"epoch {self.epoch}: "
                        + "  ".join(f"{k}={v:.4g}" for k, v in record.items() if isinstance(v, float))
                    )
                self.save_state()
            if env.is_main:
                self.save_model(self.out_dir / FINAL, metrics=self.last_metrics)
        finally:
            self._close_log()
        D.barrier(env)
        return self.last_metrics


def _all_finite(tensors) -> bool:
    """Whether every value of ``tensors`` is finite (one device sync)."""
    tensors = list(tensors)
    if not tensors:
        return True
    return bool(torch.stack([t.detach().abs().amax().float() for t in tensors]).isfinite().all())


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """``(key, old value, new value)`` for every dotted key whose value differs (missing: None)."""
    before, after = (flatten(c, stop=frozenset({"data.options"})) for c in (old, new))
    return [
        (k, before.get(k), after.get(k))
        for k in sorted(before.keys() | after.keys())
        if before.get(k) != after.get(k)
    ]


def _show(value: Any) -> str:
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def train(
    cfg: dict[str, Any],
    *,
    resume: str | Path | bool | None = None,
    progress: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Train from a resolved config (see :func:`bas.config.load_config`); returns the last validation
    record (``{"split", "epoch", "step", "select_metric", "threshold", "val"}``, empty without one)."""
    try:
        return Trainer(cfg, resume=resume, progress=progress, device=device).fit()
    finally:
        D.cleanup()
