"""Tests of the training engine: optimiser and schedule, AMP / channels_last / compile / accumulation
on the CPU, validation and the best checkpoint, the JSONL log, TensorBoard, non-finite losses and
config errors.

Every run is tiny: the synthetic dataset with 3 classes of 48-pixel images, 32-pixel crops,
MobileNetV1 (or VGG16 where BatchNorm would get in the way) with an 8-channel classifier.
:func:`tiny_config` is shared with ``test_resume.py`` and ``test_distributed.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import safetensors.torch
import torch

from bas.checkpoints import load_checkpoint, load_training_state, read_checkpoint_metadata
from bas.cli import main
from bas.config import dump_config, load_config
from bas.engine.data import EpochSampler, eval_loader, make_dataset_split, per_rank_batch_size
from bas.engine.evaluate import evaluate
from bas.engine.optim import build_optimizer, build_scheduler
from bas.engine.train import BEST, FINAL, LAST, LOG, train, validate_config
from bas.errors import ConfigError
from bas.methods import get_method
from bas.models import build_model

# 3 classes x 12 images; CUB-style splits: 6 train, 2 val (held out of train), 4 test images per class.
TINY = [
    "data.synthetic.num_classes=3",
    "data.synthetic.images_per_class=12",
    "data.synthetic.image_size=48",
    "data.options.val_per_class=2",
    "data.input_size=32",
    "data.resize_size=36",
    "data.batch_size=4",
    "data.eval_batch_size=8",
    "data.workers=0",
    "model.arch=mobilenet_v1",
    "model.hidden=8",
    "optim.epochs=1",
    "optim.decay_every=1",
    "eval.every=1",
    "eval.top_k=1",
    "eval.interval=0.05",
    "train.log_every=1",
]
STEPS_PER_EPOCH = 4  # 18 training images, batch 4


def tiny_config(data_root: Path, out: Path, *overrides: str) -> dict:
    """The tiny run's config: data in ``data_root``, run folder ``out``, then ``overrides``."""
    return load_config(None, [f"data.root={data_root}", f"train.output_dir={out}", *TINY, *overrides])


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data") / "synthetic"


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / LOG).read_text().splitlines()]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


# ------------------------------------------------------------------------------ optimiser


def test_parameter_groups_of_resnet50():
    """docs/method.md §4: backbone weights 1x, backbone biases 2x, classifier+generator weights 10x, biases 20x."""
    model = build_model("resnet50", 5, hidden=8)
    cfg = load_config("cub/resnet50")
    optimizer = build_optimizer(model, cfg["optim"])
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    expected = {
        "mid.conv1.weight": ("backbone_weight", 0.001),
        "mid.bn1.weight": ("backbone_weight", 0.001),
        "mid.bn1.bias": ("backbone_bias", 0.002),
        "mid.layer3.5.conv3.weight": ("backbone_weight", 0.001),
        "head.layer4.0.downsample.1.bias": ("backbone_bias", 0.002),
        "classifier.0.weight": ("new_weight", 0.01),
        "classifier.4.bias": ("new_bias", 0.02),
        "generator.0.weight": ("new_weight", 0.01),
        "generator.0.bias": ("new_bias", 0.02),
    }
    for name, (group, lr) in expected.items():
        assert group_of[id(names[name])]["name"] == group, name
        assert group_of[id(names[name])]["lr"] == pytest.approx(lr), name
    assert len(group_of) == len(names)  # every parameter exactly once
    for name, param in names.items():
        group = group_of[id(param)]["name"]
        assert group.startswith("new") == name.startswith(("classifier.", "generator.")), name
        assert group.endswith("bias") == name.endswith(".bias"), name
    assert all(
        g["momentum"] == 0.9 and g["nesterov"] and g["weight_decay"] == 0.0005 for g in optimizer.param_groups
    )


def test_step_decay_every_n_epochs():
    """ILSVRC schedule: lr x0.1 after epochs 3 and 6, in every group."""
    optim_cfg = load_config("ilsvrc/resnet50")["optim"]
    optimizer = build_optimizer(build_model("mobilenet_v1", 3, hidden=8), optim_cfg)
    scheduler = build_scheduler(optimizer, optim_cfg)
    for epoch in range(optim_cfg["epochs"]):
        factor = 0.1 ** (epoch // 3)
        assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(
            [0.001 * factor, 0.002 * factor, 0.01 * factor, 0.02 * factor]
        ), epoch
        optimizer.step()  # the epoch's steps (no gradients here), then the per-epoch decay
        scheduler.step()


def test_sampler_shards_cover_the_single_process_batches():
    """Per step, the W shards together hold the 1-process batch; any resume point continues the order."""
    single = list(EpochSampler(50, seed=3, multiple_of=8))
    shards = [list(EpochSampler(50, seed=3, rank=r, world_size=2, multiple_of=4)) for r in range(2)]
    assert len(single) == 48 and all(len(s) == 24 for s in shards)
    for step in range(6):
        together = shards[0][4 * step : 4 * step + 4] + shards[1][4 * step : 4 * step + 4]
        assert sorted(together) == sorted(single[8 * step : 8 * step + 8])
    resumed = EpochSampler(50, seed=3, multiple_of=8)
    resumed.set_epoch(0, start=16)
    assert list(resumed) == single[16:]
    resumed.set_epoch(1)
    assert [i for i, _ in resumed] != [i for i, _ in single]  # a new order each epoch


# --------------------------------------------------------------------------- precision etc.


@pytest.mark.parametrize(
    "override, dtype",
    [
        ("train.amp=bf16", torch.bfloat16),
        ("train.amp=fp16", torch.float16),
        ("train.channels_last=true", torch.float32),
    ],
)
def test_precision_and_memory_format_on_cpu(data_root, tmp_path, monkeypatch, override, dtype):
    """Two steps run; the model really runs in the asked dtype / memory format, the loss in float32."""
    produced, lost = [], []
    method = get_method("bas")
    real_loss = method.loss

    def spy_loss(out, labels, cfg):
        produced.append(
            (out.feature_map.dtype, out.feature_map.is_contiguous(memory_format=torch.channels_last))
        )
        total, terms = real_loss(out, labels, cfg)
        lost.append({t.dtype for t in (total, *terms.values())})
        return total, terms

    monkeypatch.setattr(method, "loss", spy_loss)
    train(
        tiny_config(data_root, tmp_path, override, "train.max_steps=2", "eval.every=0"),
        progress=False,
        device="cpu",
    )
    channels_last = "channels_last" in override
    assert produced == [(dtype, channels_last)] * 2
    assert lost == [{torch.float32}] * 2
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert state["step"] == 2 and state["extra"]["batch_in_epoch"] == 2
    assert ("scale" in state["scaler"]) == (dtype == torch.float16)  # gradient scaling for fp16 only


@pytest.mark.slow
def test_gradient_accumulation_matches_the_full_batch(data_root, tmp_path):
    """accum_steps=2 (two micro-batches of 2) ends with the weights of batch 4 in one go (no BatchNorm: VGG16)."""
    runs = {}
    for accum, steps in ((1, 2), (2, 2), (1, 1)):
        out = tmp_path / f"accum{accum}_steps{steps}"
        train(
            tiny_config(
                data_root,
                out,
                "model.arch=vgg16",
                f"train.accum_steps={accum}",
                f"train.max_steps={steps}",
                "eval.every=0",
            ),
            progress=False,
            device="cpu",
        )
        runs[accum, steps] = weights(out / FINAL)
        assert [r["step"] for r in read_log(out)] == list(range(1, steps + 1))
    for key, value in runs[1, 2].items():
        torch.testing.assert_close(runs[2, 2][key], value, atol=1e-6, rtol=1e-5)
    # The second step moved the weights (same seed, so runs[1, 1] holds the weights after step 1):
    # the equality above compares two runs that really trained.
    assert not torch.equal(runs[1, 2]["generator.0.weight"], runs[1, 1]["generator.0.weight"])


@pytest.mark.slow  # torch.compile of the forward and backward takes minutes on a 2-core CPU
def test_torch_compile_on_cpu(data_root, tmp_path):
    train(
        tiny_config(data_root, tmp_path, "train.compile=true", "train.max_steps=2", "eval.every=0"),
        progress=False,
        device="cpu",
    )
    log = read_log(tmp_path)
    assert [r["step"] for r in log] == [1, 2] and all(math.isfinite(r["loss"]) for r in log)
    assert "mid.model.0.0.weight" in weights(tmp_path / FINAL)  # saved without the _orig_mod prefix


# ---------------------------------------------------------------- validation, best, logging


def test_two_epochs_validate_keep_best_and_log(data_root, tmp_path):
    cfg = tiny_config(data_root, tmp_path, "optim.epochs=2", "eval.select_metric=top1_loc")
    result = train(cfg, progress=False, device="cpu")
    log = read_log(tmp_path)

    # The run folder: resolved config, log, checkpoints.
    assert load_config(tmp_path / "config.yaml") == cfg
    assert {p.name for p in tmp_path.iterdir()} >= {"config.yaml", LOG, LAST, BEST, FINAL}

    # JSONL: a train record per step, an epoch record per epoch with the val metrics.
    train_records = [r for r in log if r["kind"] == "train"]
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert [r["step"] for r in train_records] == list(range(1, 2 * STEPS_PER_EPOCH + 1))
    assert [(r["epoch"], r["step"]) for r in epochs] == [(1, 4), (2, 8)]
    for r in train_records:
        assert r["loss"] == pytest.approx(r["cls"] + 0.5 * r["fg_cls"] + r["bas"] + 1.5 * r["area"], rel=1e-5)
        assert r["lr"] == pytest.approx(0.001 if r["epoch"] == 1 else 0.0001)  # decayed after epoch 1
        assert r["images_per_s"] > 0 and 0 <= r["data_wait"] <= 1
    for r in epochs:
        assert {"val_top1_loc", "val_MaxBoxAccV2", "val_gt_known_loc", "images_per_s", "data_wait"} <= set(r)

    # best.safetensors: the epoch with the highest val Top-1 Loc, with the threshold chosen on val.
    meta = read_checkpoint_metadata(tmp_path / BEST)
    best_value = max(r["val_top1_loc"] for r in epochs)
    assert meta["metrics"]["select_metric"] == "top1_loc" and meta["metrics"]["split"] == "val"
    assert meta["metrics"]["val"]["top1_loc"] == pytest.approx(best_value)
    assert meta["metrics"]["val"]["num_images"] == 6  # the val split (test has 12 images)
    assert meta["threshold"] == meta["metrics"]["threshold"]
    best_epoch = next(r["epoch"] for r in epochs if r["val_top1_loc"] == best_value)
    assert meta["metrics"]["epoch"] == best_epoch
    model = load_checkpoint(tmp_path / BEST)
    evaluator = evaluate(
        model,
        eval_loader(make_dataset_split(cfg, "val", train=False), cfg),
        num_classes=3,
        top_k=1,
        threshold=0.1,
        interval=0.05,
        progress=False,
    )
    assert meta["threshold"] == pytest.approx(evaluator.best_threshold("top1_loc"))
    assert evaluator.compute()["top1_loc"] == pytest.approx(best_value)
    assert result["epoch"] == 2 and result["val"]["top1_loc"] == pytest.approx(epochs[-1]["val_top1_loc"])


def test_every_checkpoint_carries_the_same_metadata_and_evaluates_alike(data_root, tmp_path, capsys):
    """best, last and the final model of a one-epoch run hold the same weights: ``bas evaluate``
    reports the same numbers on each, because last.ckpt carries the same preprocessing (input 32,
    resize 36 here, not the 224 / 256 defaults), classes, threshold, method and recipe."""
    run = tmp_path / "run"
    cfg = tiny_config(data_root, run, "train.checkpoint_every_steps=2")
    train(cfg, progress=False, device="cpu")
    documents = {name: read_checkpoint_metadata(run / name) for name in (BEST, LAST, FINAL)}
    assert documents[LAST]["source"] == "training_state"
    for doc in documents.values():
        doc.pop("source")
    assert documents[BEST] == documents[LAST] == documents[FINAL]
    doc = documents[FINAL]
    assert (doc["input_size"], doc["resize_size"], doc["method"], doc["top_k"]) == (32, 36, "bas", 1)
    assert doc["threshold"] == doc["metrics"]["threshold"]  # chosen on val
    assert doc["config"] == load_config(run / "config.yaml")
    assert doc["class_names"] is not None and len(doc["class_names"]) == 3

    printed = {}
    for name in (BEST, LAST, FINAL):
        args = ["evaluate", "--checkpoint", str(run / name), "--data", str(data_root)]
        args += ["--output", str(tmp_path / f"eval_{name}"), "--no-progress", "--device", "cpu"]
        assert main(args) == 0
        printed[name] = next(
            line for line in capsys.readouterr().out.splitlines() if line.startswith("test:")
        )
    assert printed[BEST] == printed[LAST] == printed[FINAL]


def test_tensorboard_events(data_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(tiny_config(data_root, tmp_path, "train.max_steps=2", "eval.every=0"), progress=False, device="cpu")
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    logged, log = events.Scalars("train/loss"), read_log(tmp_path)
    assert [e.step for e in logged] == [r["step"] for r in log] == [1, 2]
    assert [e.value for e in logged] == pytest.approx([r["loss"] for r in log], rel=1e-6)
    assert {"train/bas", "train/lr", "train/data_wait"} <= set(events.Tags()["scalars"])


# ----------------------------------------------------------------------------- failures


def test_nan_loss_stops_with_step_and_term(data_root, tmp_path, monkeypatch, capsys):
    """The 3rd step's ``bas`` term is NaN: exit 2, a message naming step 3 and the term, last.ckpt of step 2."""
    method = get_method("bas")
    real_loss = method.loss
    calls = []

    def poisoned(out, labels, cfg):
        total, terms = real_loss(out, labels, cfg)
        calls.append(1)
        if len(calls) == 3:
            terms["bas"] = terms["bas"] * float("nan")
            total = total + terms["bas"]
        return total, terms

    monkeypatch.setattr(method, "loss", poisoned)
    run = tmp_path / "run"
    cfg_file = tmp_path / "run.yaml"
    cfg_file.write_text(dump_config(tiny_config(data_root, run, "train.checkpoint_every_steps=1")))
    args = ["train", "--config", str(cfg_file), "--no-progress", "--device", "cpu"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("error: non-finite loss at step 3 (epoch 1): term bas=nan;")
    assert err[0].endswith(f"last good checkpoint: {run / LAST}")
    state = load_training_state(run / LAST, model=build_model("mobilenet_v1", 3, hidden=8))
    assert state["step"] == 2 and state["extra"]["batch_in_epoch"] == 2
    assert [r["step"] for r in read_log(run)] == [1, 2]
    assert not (run / FINAL).exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.bogus=1", "error: unknown config key 'train.bogus'"),
        ("train.amp=fp32", "error: train.amp must be one of null, bf16, fp16, got 'fp32'"),
        (
            "train.accum_steps=3",
            "error: data.batch_size=4 (the global batch of one step) must be divisible by "
            "world size x train.accum_steps = 1 x 3",
        ),
        ("loss.beta=.nan", "error: loss.beta must be a finite number, got nan"),
        ("eval.select_metric=loss", "error: eval.select_metric must be one of MaxBoxAccV2, top1_loc"),
    ],
)
def test_bad_config_is_a_one_line_error(tmp_path, capsys, override, message):
    args = [
        "train",
        "--output",
        str(tmp_path),
        "--set",
        "data.root=nowhere",
        "--set",
        "data.batch_size=4",
        "--set",
        override,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message)
    assert not (tmp_path / "config.yaml").exists()


def test_batch_must_split_over_processes():
    cfg = load_config(None, ["data.batch_size=6", "train.accum_steps=2"])
    assert per_rank_batch_size(cfg, 3) == 1
    with pytest.raises(ConfigError, match="world size x train.accum_steps = 4 x 2"):
        validate_config(cfg, world_size=4)
