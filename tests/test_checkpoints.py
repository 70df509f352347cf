"""Tests of bas.checkpoints and ``bas convert``.

Every released checkpoint family of ``fixtures/checkpoint_keys.json.gz`` is rebuilt with random
values of the exact keys and shapes, saved as the authors did, and loaded without hints. The
expected placement of each tensor comes from docs/method.md §2 / §8 (``expected_name``), not from
the code under test.
Small models (MobileNetV1 with a 16-channel classifier) serve the format, error and CLI tests.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import os
import pickle
import random
import subprocess
import sys
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import safetensors
import torch
import torchvision
from torch import nn

from bas import checkpoints
from bas.checkpoints import (
    load_checkpoint,
    load_imagenet_weights,
    load_training_state,
    read_checkpoint_metadata,
    save_model,
    save_training_state,
)
from bas.cli import main
from bas.errors import CheckpointError
from bas.models.registry import build_model

ROOT = Path(__file__).resolve().parents[1]
KEYS = json.loads(gzip.decompress((ROOT / "tests" / "fixtures" / "checkpoint_keys.json.gz").read_bytes()))
FAMILIES = [(release, name) for release in ("cvpr2022", "ijcv2023") for name in KEYS[release]]
ARCH = {"vgg": "vgg16", "resnet": "resnet50", "mobilenet": "mobilenet_v1", "inception": "inception_v3"}
HEAD = {
    "vgg": ("conv5_",),
    "resnet": ("layer4.",),
    "mobilenet": ("model.12.", "model.13."),
    "inception": ("Mixed_7",),
}  # docs/method.md §2: the layers after the 28x28 map
IJCV_THRESHOLD = 0.37
# docs/method.md §4 inference defaults (threshold, top_k) of files that carry none.
PAPER_DEFAULTS = {
    ("cvpr2022", "CUB/vgg"): (0.15, 80),
    ("cvpr2022", "CUB/resnet"): (0.15, 200),
    ("cvpr2022", "CUB/mobilenet"): (0.15, 200),
    ("cvpr2022", "CUB/inception"): (0.10, 200),
    ("cvpr2022", "ILSVRC/vgg"): (0.50, 1),
    ("cvpr2022", "ILSVRC/resnet"): (0.45, 1),
    ("cvpr2022", "ILSVRC/mobilenet"): (0.50, 1),
    ("cvpr2022", "ILSVRC/inception"): (0.30, 1),
    ("ijcv2023", "vgg"): (IJCV_THRESHOLD, 80),
    ("ijcv2023", "resnet"): (IJCV_THRESHOLD, 200),
    ("ijcv2023", "mobilenet"): (IJCV_THRESHOLD, 80),
    ("ijcv2023", "inception"): (IJCV_THRESHOLD, 200),
}
SMALL = {"arch": "mobilenet_v1", "num_classes": 5, "hidden": 16}
POOL = 24_000_000  # more than the largest released tensor (classifier_cls.0.weight, 18.9M values)


@pytest.fixture(scope="module")
def random_pool() -> torch.Tensor:
    """Uniform [-1, 1) values that the family tests slice at random offsets (drawing ~1e9 fresh
    random numbers would dominate the run time)."""
    return torch.rand(POOL, generator=torch.Generator().manual_seed(0)) * 2 - 1


def random_tensor(shape: list[int], pool: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random values that keep a forward pass finite: scaled weights, positive 1-d entries."""
    if not shape:  # num_batches_tracked
        return torch.randint(0, 1000, (), generator=gen)
    numel = math.prod(shape)
    start = int(torch.randint(0, POOL - numel, (), generator=gen))
    values = pool[start : start + numel].view(shape)
    if len(shape) == 1:  # BatchNorm weight / bias / running stats, conv biases
        return values.abs() * 0.5 + 0.5
    return values * (1 / math.sqrt(numel // shape[0]))


def expected_name(family: str, key: str) -> str | None:
    """Our parameter for an authors' key (docs/method.md §2, §8); None for the ILSVRC duplicates."""
    first, rest = key.split(".", 1)
    if "_copy" in first or first == "erase_branch":
        return None
    if first in ("classifier_cls", "classifier"):
        return f"classifier.{rest}"
    if first == "classifier_loc":
        return f"generator.{rest}"
    return ("head." if key.startswith(HEAD[family]) else "mid.") + key


def authors_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A model's weights under the authors' names (IJCV / CVPR CUB layout)."""
    renames = {"classifier": "classifier_cls", "generator": "classifier_loc"}
    out = {}
    for key, value in model.state_dict().items():
        first, rest = key.split(".", 1)
        out[rest if first in ("mid", "head") else f"{renames[first]}.{rest}"] = value.clone()
    return out


def small_model(variant: str = "ijcv2023", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = build_model(SMALL["arch"], SMALL["num_classes"], variant=variant, hidden=SMALL["hidden"])
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that a mix-up is visible
        for name, buffer in model.named_buffers():
            if not name.endswith("num_batches_tracked"):
                buffer.copy_(torch.rand_like(buffer) + 0.5)
    return model


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


# ---------------------------------------------------------------------------- released families


@pytest.mark.parametrize("release,name", FAMILIES, ids=[f"{r}/{n}" for r, n in FAMILIES])
def test_released_family_loads_without_hints(tmp_path, random_pool, release, name):
    keys = KEYS[release][name]
    family = name.split("/")[-1]
    gen = torch.Generator().manual_seed(FAMILIES.index((release, name)))
    state = {key: random_tensor(shape, random_pool, gen) for key, shape in keys.items()}
    on_disk: dict = state
    if name.startswith("ILSVRC"):
        on_disk = {f"module.{key}": value for key, value in state.items()}
    if release == "ijcv2023":
        on_disk = {"model": state, "best_thr": IJCV_THRESHOLD, "epoch": 42}
    path = tmp_path / "release.pth.tar"
    torch.save(on_disk, path, _use_new_zipfile_serialization=False)

    model = load_checkpoint(path)

    num_classes = keys["classifier_loc.0.weight"][0]
    assert (model.arch, model.num_classes, model.variant) == (ARCH[family], num_classes, release)
    assert isinstance(model.classifier[-1], nn.ReLU) == (release == "cvpr2022")
    assert not model.training
    ours = model.state_dict()
    placed = set()
    for key, value in state.items():
        target = expected_name(family, key)
        if target is not None:
            assert torch.equal(ours[target], value), f"{key} -> {target}"
            placed.add(target)
    assert placed == set(ours), "every model entry comes from its original, never from a *_copy duplicate"
    threshold, top_k = PAPER_DEFAULTS[(release, name)]
    assert model.default_threshold == pytest.approx(threshold)
    assert model.default_top_k == top_k
    assert model.class_names is None
    if release == "ijcv2023":
        assert model.bas_meta["extra"] == {"epoch": 42}

    images = torch.randn(1, 3, 64, 64, generator=gen)
    with torch.no_grad():
        first, second = model(images), model(images)
    for out in (first.logits, first.fg_map):
        assert torch.isfinite(out).all()
    assert torch.equal(first.logits, second.logits) and torch.equal(first.fg_map, second.fg_map)


@pytest.mark.parametrize("zipfile", [False, True], ids=["legacy", "zip"])
def test_authors_layout_with_wrapper_prefix_and_duplicates(tmp_path, zipfile):
    model = small_model(variant="cvpr2022")
    state = authors_state(model)
    state["classifier_cls_copy.0.weight"] = torch.zeros_like(state["classifier_cls.0.weight"])
    state["erase_branch.12.0.weight"] = torch.zeros_like(state["model.12.0.weight"])
    path = tmp_path / "ilsvrc.pth.tar"
    torch.save({f"module.{k}": v for k, v in state.items()}, path, _use_new_zipfile_serialization=zipfile)

    loaded = load_checkpoint(path)

    assert (loaded.arch, loaded.num_classes, loaded.variant) == ("mobilenet_v1", 5, "cvpr2022")
    assert loaded.bas_meta["hidden"] == SMALL["hidden"]
    assert_same_weights(loaded, model)


def test_plain_state_dict_in_our_naming_and_overrides(tmp_path):
    model = small_model()
    path = tmp_path / "plain.pt"
    torch.save(model.state_dict(), path)

    loaded = load_checkpoint(path)
    assert loaded.variant == "ijcv2023" and loaded.bas_meta["source"] == "state_dict"
    assert_same_weights(loaded, model)

    overridden = load_checkpoint(path, arch="mobilenet_v1", num_classes=5, variant="cvpr2022")
    assert overridden.variant == "cvpr2022" and isinstance(overridden.classifier[-1], nn.ReLU)


def test_convert_state_dict_is_pure_and_generic():
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = authors_state(model)
    state["layer4_copy.0.conv1.weight"] = torch.zeros(1)
    state["not_a_layer.weight"] = torch.zeros(1)
    converted = checkpoints.convert_state_dict({f"_orig_mod.module.{k}": v for k, v in state.items()}, model)
    assert set(converted) == set(before) | {"not_a_layer.weight"}
    assert converted["head.model.12.0.weight"] is state["model.12.0.weight"]
    assert converted["generator.0.bias"] is state["classifier_loc.0.bias"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# ---------------------------------------------------------------------------------- our format


def test_our_format_round_trip(tmp_path):
    model = small_model(variant="cvpr2022")
    path = tmp_path / "model.safetensors"
    names = [f"class {i}" for i in range(5)]
    config = {
        "model": {"arch": "mobilenet_v1"},
        "optim": {"lr": 0.001, "lr_mult": [1, 2, 10, 20]},
        "data": {"root": Path("/data/cub")},
    }
    metrics = {"MaxBoxAccV2": np.float32(0.5), "top1_loc": 0.25}
    written = save_model(
        path,
        model,
        class_names=names,
        threshold=0.23,
        top_k=3,
        config=config,
        metrics=metrics,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        extra={"epoch": 7},
    )

    meta = read_checkpoint_metadata(path)
    assert meta == written
    assert meta["config"]["data"]["root"] == "/data/cub" and meta["metrics"]["MaxBoxAccV2"] == 0.5
    assert (meta["arch"], meta["num_classes"], meta["variant"], meta["hidden"]) == (
        "mobilenet_v1",
        5,
        "cvpr2022",
        16,
    )
    assert (meta["input_size"], meta["resize_size"], meta["std"]) == (224, 256, [0.25, 0.25, 0.25])
    with safetensors.safe_open(str(path), framework="pt") as fh:  # one JSON document under "bas"
        assert json.loads(fh.metadata()["bas"])["format_version"] == checkpoints.FORMAT_VERSION

    loaded = load_checkpoint(path)
    assert_same_weights(loaded, model)
    assert loaded.bas_meta == meta
    assert (loaded.default_threshold, loaded.default_top_k, loaded.class_names) == (0.23, 3, names)
    assert isinstance(loaded.classifier[-1], nn.ReLU)
    assert not list(tmp_path.glob(".*.tmp*")), "no temporary file left behind"


def test_save_model_defaults_and_class_name_count(tmp_path):
    model = small_model()
    meta = save_model(tmp_path / "m.safetensors", model)
    assert (meta["threshold"], meta["top_k"]) == checkpoints.FALLBACK_INFERENCE  # 5 classes: no paper entry
    assert meta["mean"] == pytest.approx([0.485, 0.456, 0.406])
    with pytest.raises(CheckpointError, match="2 class names given for a model of 5 classes"):
        save_model(tmp_path / "bad.safetensors", model, class_names=["a", "b"])
    assert not (tmp_path / "bad.safetensors").exists()


def test_save_model_interrupted_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    model = small_model()
    save_model(path, model, threshold=0.3)

    def broken_save(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_model(path, small_model(seed=1), threshold=0.9)
    assert read_checkpoint_metadata(path)["threshold"] == 0.3
    assert_same_weights(load_checkpoint(path), model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


# ------------------------------------------------------------------------------ bad checkpoints


def test_keys_of_another_arch_are_reported(tmp_path):
    path = tmp_path / "mobilenet.pth"
    torch.save(authors_state(small_model()), path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path, arch="resnet18")
    message = str(info.value)
    assert "does not fit resnet18 with 5 classes" in message
    assert "missing keys (mid.conv1.weight" in message and "unexpected keys (model.0.0.weight" in message
    assert "more" in message and len(message) < 1000, "compact: first few keys and counts"


def test_missing_keys_are_reported(tmp_path):
    state = authors_state(small_model())
    path = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if k != "classifier_cls.4.bias"}, path)
    with pytest.raises(CheckpointError, match=r"1 missing keys \(classifier\.4\.bias\)"):
        load_checkpoint(path)

    torch.save({k: v for k, v in state.items() if not k.startswith("model.13.")}, path)
    with pytest.raises(
        CheckpointError,
        match=r"matches no known architecture; closest is mobilenet_v1: "
        r"\d+ missing keys \(model\.13\.0\.weight",
    ):
        load_checkpoint(path)


def test_class_count_mismatch_is_reported(tmp_path):
    path = tmp_path / "m.pth"
    torch.save(authors_state(small_model()), path)
    with pytest.raises(
        CheckpointError, match=r"shape mismatches \(.*generator\.0\.weight \[5, 512, 3, 3\] != \[7"
    ):
        load_checkpoint(path, num_classes=7)


class Exploit:
    """Pickles as a call to os.system: unpickling it without weights_only would create the marker."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["zip", "legacy", "raw-pickle", "ijcv-wrapper"])
def test_code_executing_pickle_is_refused(tmp_path, kind):
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(Exploit(control)))
    assert control.exists(), "the payload does run when unpickled without restrictions"
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"conv1.weight": torch.zeros(1), "evil": Exploit(marker)}
    if kind == "raw-pickle":
        path.write_bytes(pickle.dumps(payload))
    elif kind == "ijcv-wrapper":
        torch.save(
            {"model": payload, "best_thr": 0.1, "epoch": 1}, path, _use_new_zipfile_serialization=False
        )
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=kind == "zip")
    for load in (
        load_checkpoint,
        read_checkpoint_metadata,
        lambda p: build_model("resnet18", 3, pretrained=p),
        lambda p: load_training_state(p, model=small_model()),
    ):
        with pytest.raises(CheckpointError, match=r"refusing to unpickle .*not a plain tensor checkpoint"):
            load(path)
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    unsafe = []
    for source in sorted((ROOT / "src" / "bas").rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and (
                    node.func.attr in ("load_state_dict_from_url", "get_state_dict")
                    or (node.func.attr == "load" and ast.unparse(node.func.value) == "torch")
                )
            ):
                flag = next((kw.value for kw in node.keywords if kw.arg == "weights_only"), None)
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    unsafe.append(f"{source.relative_to(ROOT)}:{node.lineno}")
    assert not unsafe, f"torch.load without weights_only=True: {unsafe}"


@pytest.mark.parametrize(
    "damage",
    [
        "truncated-zip",
        "truncated-legacy",
        "garbage",
        "empty",
        "missing",
        "not-a-state-dict",
        "bad-safetensors-metadata",
    ],
)
def test_unreadable_files_raise_checkpoint_error(tmp_path, damage):
    path = tmp_path / "broken.pth"
    state = {"w": torch.randn(64, 64)}
    if damage.startswith("truncated"):
        torch.save(state, path, _use_new_zipfile_serialization=damage == "truncated-zip")
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(bytes(range(256)) * 8)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not-a-state-dict":
        torch.save([1, 2, 3], path)
    elif damage == "bad-safetensors-metadata":
        safetensors.torch.save_file(state, str(path), metadata={"bas": json.dumps({"format": "other"})})
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


# ------------------------------------------------------------------------------ training state


class CompiledLike(nn.Module):
    """What torch.compile returns, structurally (importing dynamo would cost seconds)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self._orig_mod = module


def test_training_state_round_trip_restores_everything(tmp_path):
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu", init_scale=128.0)
    model(torch.randn(2, 3, 64, 64)).logits.sum().backward()
    optimizer.step()
    scheduler.step()
    path = tmp_path / "last.pt"
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    save_training_state(
        path,
        model=CompiledLike(model),
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        epoch=4,
        step=123,
        config={"root": Path("/x"), "lr": np.float64(0.1)},
        metrics={"loss": 1.5},
        extra={"best": 0.7},
    )
    draws = (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist())

    raw = torch.load(path, weights_only=True)  # plain tensors and Python values only
    assert next(iter(raw["model"])).startswith("mid."), "torch.compile's _orig_mod. prefix removed"

    fresh = small_model(seed=9)
    fresh_optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    fresh_scheduler = torch.optim.lr_scheduler.StepLR(fresh_optimizer, step_size=1, gamma=0.5)
    fresh_scaler = torch.amp.GradScaler("cpu")
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    info = load_training_state(
        path, model=fresh, optimizer=fresh_optimizer, scheduler=fresh_scheduler, scaler=fresh_scaler
    )

    assert info == {
        "epoch": 4,
        "step": 123,
        "config": {"root": "/x", "lr": 0.1},
        "metrics": {"loss": 1.5},
        "extra": {"best": 0.7},
    }
    assert (random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()) == draws
    assert_same_weights(fresh, model)
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert fresh_scaler.get_scale() == 128.0
    momentum = [(p, q) for p, q in zip(model.parameters(), fresh.parameters()) if p in optimizer.state]
    assert momentum
    for p, q in momentum:
        assert torch.equal(optimizer.state[p]["momentum_buffer"], fresh_optimizer.state[q]["momentum_buffer"])

    as_model = load_checkpoint(path)  # a training state is also a model checkpoint
    assert as_model.bas_meta["source"] == "training_state" and as_model.bas_meta["hidden"] == 16
    assert_same_weights(as_model, model)
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="not a training-state checkpoint"):
        load_training_state(tmp_path / "weights.pt", model=fresh)


def test_training_state_interrupted_write_keeps_previous(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    model = small_model()
    save_training_state(path, model=model, epoch=1, step=10)

    def broken_save(obj, fh, *args, **kwargs):
        fh.write(b"half a checkpoint")
        raise RuntimeError("killed mid-write")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="killed mid-write"):
        save_training_state(path, model=small_model(seed=1), epoch=2, step=20)
    monkeypatch.undo()
    fresh = small_model(seed=2)
    assert load_training_state(path, model=fresh)["epoch"] == 1
    assert_same_weights(fresh, model)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


WRITER = """
import sys, torch
from bas.checkpoints import save_training_state
model = torch.nn.Linear(1024, 2048)
for i in range(1, 100000):
    with torch.no_grad():
        model.weight.fill_(i)
        model.bias.fill_(i)
    save_training_state(sys.argv[1], model=model, epoch=i, step=i)
    print(i, flush=True)
"""


def test_training_state_survives_sigkill_mid_save(tmp_path):
    path = tmp_path / "last.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert writer.stdout.readline().strip() == "1", "the writer completed one checkpoint"
        for _ in range(random.randint(1, 4)):  # let it get somewhere into a later save
            writer.stdout.readline()
        time.sleep(random.uniform(0, 0.05))
    finally:
        writer.kill()
        writer.wait()
    model = nn.Linear(1024, 2048)
    epoch = load_training_state(path, model=model)["epoch"]
    assert epoch >= 1
    assert bool((model.weight == epoch).all()) and bool((model.bias == epoch).all())


# -------------------------------------------------------------------------------- ImageNet init

VGG_CONVS = ["1_1", "1_2", "2_1", "2_2", "3_1", "3_2", "3_3", "4_1", "4_2", "4_3", "5_1", "5_2", "5_3"]
VGG_FEATURES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def imagenet_file(arch: str, path: Path) -> dict[str, str]:
    """Write a random ImageNet weight file in the public layout; return {file key: our key}."""
    torch.manual_seed(0)
    if arch == "vgg16":
        net = torchvision.models.vgg16(weights=None)
        state = {k: v for k, v in net.state_dict().items() if k.startswith("features.")}
        state["classifier.6.weight"] = torch.zeros(10, 4)  # the ImageNet classifier (shrunk), never loaded
        mapping = {}
        for index, conv in zip(VGG_FEATURES, VGG_CONVS):
            for kind in ("weight", "bias"):
                mapping[f"features.{index}.{kind}"] = (
                    f"{'head' if conv.startswith('5') else 'mid'}.conv{conv}.{kind}"
                )
        torch.save(state, path)
    elif arch == "mobilenet_v1":  # mobilenet_v1_with_relu_69_5.pth: the layer list alone, keys N.M.*
        source = build_model("mobilenet_v1", 3)
        state, mapping = {}, {}
        for key, value in source.state_dict().items():
            part, name = key.split(".", 1)
            if part in ("mid", "head") and not key.endswith("num_batches_tracked"):
                state[name.removeprefix("model.")] = torch.rand_like(value)
                mapping[name.removeprefix("model.")] = key
        torch.save(state, path, _use_new_zipfile_serialization=False)
    else:
        if arch == "inception_v3":
            net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
        else:
            net = torchvision.models.resnet50(weights=None)
        state = net.state_dict()
        if arch == "resnet50":  # like resnet50-19c8e357.pth: legacy format, no num_batches_tracked
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        with torch.no_grad():
            for value in state.values():
                if value.is_floating_point():
                    value.copy_(torch.rand_like(value))
        family = "inception" if arch == "inception_v3" else "resnet"
        mapping = {
            k: ("head." if k.startswith(HEAD[family]) else "mid.") + k
            for k in state
            if not k.startswith(("fc.", "AuxLogits."))
        }
        torch.save(state, path, _use_new_zipfile_serialization=arch != "resnet50")
    return mapping


@pytest.mark.parametrize("arch", ["vgg16", "resnet50", "inception_v3", "mobilenet_v1"])
def test_imagenet_weights_from_a_local_file(tmp_path, arch):
    path = tmp_path / f"{arch}.pth"
    mapping = imagenet_file(arch, path)
    source = torch.load(path, weights_only=True)
    model = build_model(arch, 3)
    new_layers = {
        k: v.clone() for k, v in model.state_dict().items() if k.startswith(("classifier.", "generator."))
    }

    load_imagenet_weights(model, path)

    ours = model.state_dict()
    counted = {k for k in ours if k.startswith(("mid.", "head.")) and not k.endswith("num_batches_tracked")}
    assert {k for k in mapping.values() if not k.endswith("num_batches_tracked")} == counted
    for file_key, our_key in mapping.items():
        assert torch.equal(ours[our_key], source[file_key]), f"{file_key} -> {our_key}"
    for key, value in new_layers.items():
        assert torch.equal(ours[key], value), f"{key} kept its initialisation"


def test_build_model_pretrained_path_and_layer_count_check(tmp_path):
    path = tmp_path / "mobilenet_v1_with_relu_69_5.pth"
    mapping = imagenet_file("mobilenet_v1", path)
    model = build_model("mobilenet_v1", 3, pretrained=path)
    assert torch.equal(
        model.state_dict()["head.model.13.4.running_var"],
        torch.load(path, weights_only=True)["13.4.running_var"],
    )
    assert len(mapping) == 135

    truncated = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("13.")}
    torch.save(truncated, path)
    with pytest.raises(CheckpointError, match="has 125 backbone tensors, the model expects 135"):
        build_model("mobilenet_v1", 3, pretrained=path)


def _no_download(url, dst, *args, **kwargs):
    raise urllib.error.URLError("network unreachable")


def test_torchvision_weights_from_the_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1]
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    source = torchvision.models.resnet18(weights=None).state_dict()
    torch.save(source, cached)

    model = build_model("resnet18", 3, pretrained=True)

    ours = model.state_dict()
    for key, value in source.items():
        if not key.startswith("fc."):
            assert torch.equal(ours[("head." if key.startswith("layer4.") else "mid.") + key], value), key


def test_torchvision_weights_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_download)
    expected = tmp_path / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    with pytest.raises(CheckpointError, match="network unreachable") as info:
        build_model("resnet50", 3, pretrained=True)
    assert f"put that file at {expected}" in str(info.value)


def test_mobilenet_has_no_torchvision_weights():
    with pytest.raises(CheckpointError, match="download mobilenet_v1_with_relu_69_5.pth"):
        build_model("mobilenet_v1", 3, pretrained=True)


# ------------------------------------------------------------------------------------ bas convert


def test_convert_command_end_to_end(tmp_path, capsys):
    model = small_model()
    source = tmp_path / "best_mobilenet.pth.tar"
    torch.save(
        {"model": authors_state(model), "best_thr": 0.42, "epoch": 80},
        source,
        _use_new_zipfile_serialization=False,
    )
    names = tmp_path / "classes.txt"
    names.write_text("".join(f"bird {i}\n" for i in range(5)) + "\n", encoding="utf-8")
    target = tmp_path / "out" / "mobilenet.safetensors"

    assert main(["convert", str(source), str(target), "--class-names", str(names)]) == 0

    assert "mobilenet_v1, 5 classes, variant ijcv2023" in capsys.readouterr().out
    meta = read_checkpoint_metadata(target)
    assert meta["class_names"] == [f"bird {i}" for i in range(5)]
    assert (meta["threshold"], meta["top_k"], meta["source"]) == (0.42, 1, "bas")
    assert meta["extra"] == {"epoch": 80, "converted_from": {"file": source.name, "source": "ijcv2023"}}
    assert_same_weights(load_checkpoint(target), model)

    assert main(["convert", str(target), str(tmp_path / "again.safetensors"), "--variant", "cvpr2022"]) == 0
    assert read_checkpoint_metadata(tmp_path / "again.safetensors")["class_names"] == meta["class_names"]

    assert main(["convert", str(source), str(tmp_path / "x.safetensors"), "--num-classes", "7"]) == 2
    assert "error: " in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()


# ---------------------------------------------------------------------- wrappers users bring


def _ours(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


WRAPPERS = {
    "plain": lambda m: _ours(m),
    "state_dict": lambda m: {"state_dict": _ours(m)},
    "model": lambda m: {"model": _ours(m)},
    "module_prefix": lambda m: {f"module.{k}": v for k, v in _ours(m).items()},
    "model_prefix": lambda m: {f"model.{k}": v for k, v in _ours(m).items()},
    "state_dict_module_prefix": lambda m: {"state_dict": {f"module.{k}": v for k, v in _ours(m).items()}},
    "authors_model_prefix": lambda m: {f"model.{k}": v for k, v in authors_state(m).items()},
    "lightning": lambda m: {
        "state_dict": {f"model.{k}": v for k, v in _ours(m).items()},
        "pytorch-lightning_version": "2.4.0",
        "epoch": 3,
        "global_step": 120,
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "callbacks": {},
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 0.01},
        "loops": {},
    },
}


@pytest.mark.parametrize("wrapper", sorted(WRAPPERS))
def test_convert_reads_every_wrapper(tmp_path, capsys, wrapper):
    model = small_model()
    source = tmp_path / "weights.pt"
    torch.save(WRAPPERS[wrapper](model), source)
    torch.load(source, weights_only=True)  # a file the safe loader can read
    target = tmp_path / "model.safetensors"
    assert main(["convert", str(source), str(target)]) == 0
    assert "mobilenet_v1, 5 classes" in capsys.readouterr().out
    loaded = load_checkpoint(target)
    assert_same_weights(loaded, model)
    if wrapper == "lightning":
        meta = read_checkpoint_metadata(source)
        assert meta["source"] == "lightning"
        assert meta["extra"] == {"epoch": 3, "global_step": 120}


def test_mobilenet_layer_names_are_not_taken_for_a_prefix(tmp_path):
    """The authors' MobileNetV1 keys start with ``model.`` but not all of them: nothing is stripped."""
    model = small_model()
    torch.save(authors_state(model), tmp_path / "cvpr.pth")
    assert_same_weights(load_checkpoint(tmp_path / "cvpr.pth"), model)


@pytest.mark.parametrize(
    "content,found",
    [
        (
            {"weights": {"a": torch.zeros(1)}, "epoch": 3, "note": "x"},
            "top-level keys [weights, epoch, note]",
        ),
        (
            {"state_dict": {"a": 1.0}, "pytorch-lightning_version": "2.4.0"},
            "[state_dict, pytorch-lightning_version]",
        ),
        ({}, "an empty dict"),
        ([torch.zeros(2)], "a list"),
    ],
)
def test_convert_error_lists_the_top_level_keys(tmp_path, capsys, content, found):
    source = tmp_path / "odd.pt"
    torch.save(content, source)
    target = tmp_path / "model.safetensors"
    assert main(["convert", str(source), str(target)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert found in err[0] and "'state_dict'" in err[0] and "'model'" in err[0]
    assert not target.exists()
