"""Multi-label BAS and the multi-label CAM baseline (segmentation): losses, draws, gradients, shapes,
training, checkpoints, the released files, the poly schedule and the reference optimiser quirks."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import bas
from bas.checkpoints import load_checkpoint, read_checkpoint_metadata, save_model
from bas.config import load_config
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.engine import data as engine_data
from bas.engine import train as engine_train
from bas.engine.optim import build_optimizer, build_scheduler, poly_horizon
from bas.engine.train import FINAL, LAST, Trainer, validate_config
from bas.errors import ConfigError
from bas.methods import get_method
from bas.methods.multilabel_bas import MultiLabelOutput, draw_positive, positives_vs_negatives
from bas.wsss import read_label_png

ROOT = Path(__file__).resolve().parents[1]
WSSS_KEYS = json.loads(
    gzip.decompress((ROOT / "tests" / "fixtures" / "wsss_checkpoint_keys.json.gz").read_bytes())
)
ARCH = "resnet50_os16"


def _cfg(*overrides: str) -> dict:
    return load_config("voc/resnet50", ["model.pretrained=false", *overrides])


# ------------------------------------------------------------------------------------- loss


def _ce(row: list[float], target: int) -> float:
    """Softmax cross-entropy of one row, by hand."""
    return -math.log(math.exp(row[target]) / sum(math.exp(v) for v in row))


def test_loss_terms_on_a_hand_built_example():
    # image 0: one tag (class 0) against three negatives; image 1: two tags (1, 2) against 0 and 3
    logits = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.3, 1.5, 0.7, -0.4]])
    labels = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0]])
    fg_logits = torch.tensor([[1.0, 0.0, 0.0, -1.0], [0.2, 0.1, 0.9, 0.0]])
    positive = torch.tensor([0, 2])  # the drawn tag of each image
    fg_map = torch.tensor([0.25, 0.5]).view(2, 1, 1, 1).expand(2, 1, 2, 2).clone()
    fg_map[1, 0, 0, 0] = 1.0  # image 1: mean (1 + 0.5 * 3) / 4 = 0.625
    fg_score = torch.tensor([2.0, 0.7])  # S: the logit of the drawn tag on the full image
    bg_score = torch.tensor([0.5, 0.9])  # S_bg: image 1's exceeds S, so its bas term is 1
    out = MultiLabelOutput(
        logits=logits,
        fg_logits=fg_logits,
        fg_map=fg_map,
        fg_score=fg_score,
        bg_score=bg_score,
        positive=positive,
    )
    cfg = _cfg()
    total, terms = get_method("multilabel_bas").loss(out, labels, cfg)

    l0, l1 = logits.tolist()
    cls = (
        _ce([l0[0], l0[1], l0[2], l0[3]], 0)  # image 0, tag 0 vs 1, 2, 3
        + _ce([l1[1], l1[0], l1[3]], 0)  # image 1, tag 1 vs negatives 0, 3 (not tag 2)
        + _ce([l1[2], l1[0], l1[3]], 0)  # image 1, tag 2 vs 0, 3
    ) / 2
    fg_cls = (_ce(fg_logits[0].tolist(), 0) + _ce(fg_logits[1].tolist(), 2)) / 2
    bas_term = (0.5 / (2.0 + 1e-8) + 1.0) / 2
    area = (0.25 + 0.625) / 2
    assert terms["cls"].item() == pytest.approx(cls, rel=1e-6)
    assert terms["fg_cls"].item() == pytest.approx(fg_cls, rel=1e-6)
    assert terms["bas"].item() == pytest.approx(bas_term, rel=1e-6)
    assert terms["area"].item() == pytest.approx(area, rel=1e-6)
    # the weights of the paper: 1 / 0.2 / 1 / 1.2 (cls, fg_cls, bas, area)
    assert (cfg["loss"]["alpha"], cfg["loss"]["beta"]) == (0.2, 1.2)
    assert total.item() == pytest.approx(cls + 0.2 * fg_cls + bas_term + 1.2 * area, rel=1e-6)
    assert tuple(terms) == get_method("multilabel_bas").loss_terms


def test_bas_term_applies_relu_to_both_scores():
    out = MultiLabelOutput(
        logits=torch.zeros(2, 3),
        fg_logits=torch.zeros(2, 3),
        fg_map=torch.zeros(2, 1, 1, 1),
        fg_score=torch.tensor([-1.0, 2.0]),  # relu(S) = 0: S_bg > S after the relu? relu(S_bg) = 0 too
        bg_score=torch.tensor([-3.0, -0.5]),  # relu(S_bg) = 0
        positive=torch.tensor([0, 1]),
    )
    _, terms = get_method("multilabel_bas").loss(out, torch.tensor([[1.0, 0, 0], [0, 1, 0]]), _cfg())
    assert terms["bas"].item() == pytest.approx(0.0)


def test_an_image_tagged_with_every_class_has_no_cls_term():
    logits = torch.tensor([[0.3, -2.0, 1.0]])
    assert positives_vs_negatives(logits, torch.ones(1, 3)).item() == 0.0


# ------------------------------------------------------------------------------------ draws


def test_positive_draw_is_among_the_tags_uniform_and_seeded():
    labels = torch.tensor([[1.0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 1, 1, 0, 0]]).repeat(400, 1)
    a = draw_positive(labels, torch.Generator().manual_seed(3))
    assert bool(labels.gather(1, a[:, None]).eq(1).all())  # always one of the image's tags
    assert torch.equal(a, draw_positive(labels, torch.Generator().manual_seed(3)))  # same seed, same draws
    assert not torch.equal(a, draw_positive(labels, torch.Generator().manual_seed(4)))
    first = a[0::3]  # the rows tagged {0, 2, 4}: each about a third of the time
    for c in (0, 2, 4):
        assert abs(float((first == c).float().mean()) - 1 / 3) < 0.08
    with pytest.raises(ValueError, match="at least one tagged class"):
        draw_positive(torch.tensor([[0.0, 0.0]]), torch.Generator())


def test_model_draws_follow_the_run_seed():
    labels = torch.tensor([[1.0, 1, 1, 1], [0, 1, 0, 1]])
    x = torch.randn(2, 3, 32, 32)

    def draws(seed: int) -> list[list[int]]:
        torch.manual_seed(seed)
        model = bas.build_model(ARCH, 4, method="multilabel_bas").train()
        return [model(x, labels).positive.tolist() for _ in range(6)]

    assert draws(5) == draws(5)
    assert draws(5) != draws(6)


# -------------------------------------------------------------------------------- gradients


def _grads(model) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in model.named_parameters()}


def test_background_term_reaches_only_the_generator_and_what_feeds_it():
    torch.manual_seed(0)
    model = bas.build_model(ARCH, 4, method="multilabel_bas").train()
    with torch.no_grad():  # non-negative class weights: S > S_bg > 0, the ratio is not clipped
        model.classifier.weight.abs_()
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    out = model(torch.randn(2, 3, 64, 64), labels)
    _, terms = get_method("multilabel_bas").loss(out, labels, _cfg())
    assert 0 < terms["bas"].item() < 1
    terms["bas"].backward(retain_graph=True)
    grads = _grads(model)
    for name, grad in grads.items():
        if name.startswith(("head.", "classifier.")):  # the erase branch's frozen head: no gradient
            assert grad is None, name
    assert grads["generator.0.weight"].abs().sum() > 0
    assert grads["mid.layer3.5.conv3.weight"].abs().sum() > 0  # feeds the generator
    model.zero_grad(set_to_none=True)
    terms["fg_cls"].backward()  # the class map is detached there: the classifier gets nothing either
    grads = _grads(model)
    assert grads["classifier.weight"] is None and grads["head.layer4.2.conv3.weight"] is None
    assert grads["generator.0.weight"].abs().sum() > 0


def test_erase_branch_leaves_the_running_statistics_alone():
    """The training forward updates the BatchNorm statistics as one plain pass would (not twice)."""
    import copy

    model = bas.build_model(ARCH, 3, method="multilabel_bas").train()
    plain = copy.deepcopy(model)
    x = torch.randn(2, 3, 64, 64)
    model(x, torch.tensor([[1.0, 0, 0], [0, 0, 1]]))
    plain.head(plain.mid(x))
    for (name, a), b in zip(model.named_buffers(), plain.buffers()):
        assert torch.equal(a, b), name


# ------------------------------------------------------------------------------------ shapes


@pytest.mark.parametrize("method", ["multilabel_bas", "multilabel_cam"])
@pytest.mark.parametrize(("size", "side"), [(64, 4), (96, 6)])
def test_maps_are_at_output_stride_16(method, size, side):
    model = bas.build_model(ARCH, 5, method=method).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = model(x)
        maps = model.class_maps(x)
        logits, fused = model.localize(x, top_k=2)
    assert out.logits.shape == (2, 5) and out.fg_map.shape == (2, 1, side, side)
    assert maps.shape == (2, 5, side, side) and fused.shape == (2, 1, side, side)
    assert out.feature_map.shape == (2, 5, side, side)
    assert model.meta.method == method and get_method(method).label_type == "multi_hot"


def test_the_split_is_not_the_wsol_one():
    wsol = bas.build_model("resnet50", 5, method="bas")
    seg = bas.build_model(ARCH, 5, method="multilabel_bas")
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert wsol.mid(x).shape[-1] == 8 and seg.mid(x).shape[-1] == 4  # stride 8 vs 16
        assert seg.head(seg.mid(x)).shape[1:] == (2048, 4, 4)  # layer4 at stride 1
    assert seg.classifier.bias is None and seg.generator[0].bias is None
    assert seg.classifier.kernel_size == (1, 1) and seg.generator[0].kernel_size == (3, 3)


def test_eval_map_with_tags_is_the_mean_of_the_tag_maps():
    model = bas.build_model(ARCH, 4, method="multilabel_bas").eval()
    x, labels = torch.randn(2, 3, 64, 64), torch.tensor([[1.0, 0, 1, 0], [0, 0, 0, 1]])
    with torch.no_grad():
        maps = model.class_maps(x)
        fg = model(x, labels).fg_map
    assert torch.allclose(fg[0, 0], (maps[0, 0] + maps[0, 2]) / 2) and torch.allclose(fg[1, 0], maps[1, 3])


# --------------------------------------------------------------------------------------- CAM


def test_cam_network_is_irns():
    torch.manual_seed(0)
    model = bas.build_model(ARCH, 4, method="multilabel_cam").train()
    assert not any(m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    frozen = ("mid.conv1.", "mid.bn1.", "mid.layer1.", "mid.layer2.")
    assert all(not p.requires_grad for n, p in model.named_parameters() if n.startswith(frozen))
    labels = torch.tensor([[1.0, 0, 1, 0], [0, 1, 0, 0]])
    running = model.mid.layer3[0].bn1.running_mean.clone()
    out = model(torch.randn(2, 3, 64, 64), labels)
    total, terms = get_method("multilabel_cam").loss(out, labels, _cfg("method=multilabel_cam"))
    # the multilabel soft margin loss, by hand: mean over classes of the binary logistic losses
    s, y = out.logits.detach().double(), labels.double()
    by_hand = -(y * F.logsigmoid(s) + (1 - y) * F.logsigmoid(-s)).mean(1).mean()
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-6) and tuple(terms) == ("cls",)
    total.backward()
    assert torch.equal(running, model.mid.layer3[0].bn1.running_mean)  # frozen statistics
    assert model.mid.layer3[0].conv1.weight.grad is not None and model.classifier.weight.grad is not None
    assert torch.all(out.feature_map >= 0)  # relu(conv1x1(layer4))


# ------------------------------------------------------------------------------- optimiser


def test_poly_schedule_and_the_reference_quirks():
    model = bas.build_model(ARCH, 4, method="multilabel_bas")
    cfg = _cfg()["optim"]
    opt = build_optimizer(model, cfg)
    assert {g["name"] for g in opt.param_groups} == {"backbone_weight", "backbone_bias", "new_weight"}
    assert opt.defaults["momentum"] == 0.9 and not opt.defaults["nesterov"]
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"backbone_weight": 0.005, "backbone_bias": 0.005, "new_weight": 0.05}
    sched = build_scheduler(opt, cfg, total_steps=100)
    seen = []
    for _ in range(100):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == 0.005 and seen[50] == pytest.approx(0.005 * 0.5**0.9)
    assert seen[-1] == pytest.approx(0.005 * 0.01**0.9)  # ends near 0
    # the paper: 10,582 images, batch 16, 10 epochs -> 661 steps an epoch
    assert poly_horizon(cfg, 661, 10582, 16) == 6610

    quirks = {**cfg, "reference_quirks": True}
    opt = build_optimizer(model, quirks)
    names = {
        n for n, p in model.named_parameters() if any(p is q for g in opt.param_groups for q in g["params"])
    }
    assert names and not any(n.endswith(".bias") for n in names)  # BatchNorm shifts are not optimised
    assert opt.defaults["momentum"] == 1e-4  # the momentum argument receives the weight decay
    horizon = poly_horizon(quirks, 661, 10582, 16)
    assert horizon == 10582 // 4 * 10  # T of the per-GPU batch of 4 GPUs
    sched = build_scheduler(opt, quirks, total_steps=horizon)
    for _ in range(661 * 10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] / 0.005 == pytest.approx(0.77, abs=0.01)  # ends near 0.77 lr0


def test_schedule_keys_are_checked():
    with pytest.raises(ConfigError, match="optim.schedule must be one of step, cosine, poly"):
        validate_config(_cfg("optim.schedule=linear"))
    with pytest.raises(ConfigError, match="optim.reference_quirks"):
        validate_config(_cfg("optim.reference_quirks=maybe"))


# ---------------------------------------------------------------------------------- training


class TinyVOC(torch.utils.data.Dataset):
    """Test-only reader of the synthetic VOC layout: image, multi-hot tags from the mask, id."""

    def __init__(self, voc: Path, split: str, size: int):
        self.voc, self.size = voc, size
        self.ids = (voc / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()
        self.classes = (voc / "class_names.txt").read_text().split()[1:]
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        image = (
            Image.open(self.voc / "JPEGImages" / f"{self.ids[i]}.jpg").convert("RGB").resize((self.size,) * 2)
        )
        x = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255
        mask = read_label_png(self.voc / "SegmentationClass" / f"{self.ids[i]}.png")
        tags = torch.zeros(self.num_classes)
        present = [int(v) - 1 for v in np.unique(mask) if 0 < v < 255]
        tags[present] = 1.0
        return {"image": (x - 0.45) / 0.225, "label": tags, "image_id": self.ids[i]}


def _collate(samples: list[dict]) -> dict:
    return {
        "image": torch.stack([s["image"] for s in samples]),
        "label": torch.stack([s["label"] for s in samples]),
        "image_id": [s["image_id"] for s in samples],
    }


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory) -> Path:
    root = make_multilabel_dataset(
        tmp_path_factory.mktemp("voc"),
        num_classes=4,
        images_per_split={"train": 8, "val": 4, "test": 2},
        image_size=64,
        seed=0,
    )
    return root / VOC_SUBDIR


@pytest.mark.parametrize("method", ["multilabel_bas", "multilabel_cam"])
def test_training_steps_on_synthetic_multi_hot_data(tiny_voc, tmp_path, monkeypatch, method):
    monkeypatch.setattr(
        engine_train, "make_dataset_split", lambda cfg, split, train: TinyVOC(tiny_voc, split, 64)
    )
    monkeypatch.setattr(engine_data, "collate", _collate)
    recipe = "voc/resnet50" if method == "multilabel_bas" else "voc/cam_resnet50"
    cfg = load_config(
        recipe,
        [
            "model.pretrained=false",
            "model.num_classes=null",
            f"train.output_dir={tmp_path / 'run'}",
            "data.train_split=train",
            "data.batch_size=4",
            "data.eval_batch_size=4",
            "data.workers=0",
            "optim.epochs=1",
            "train.sync_bn=false",
            "train.log_every=1",
        ],
    )
    trainer = Trainer(cfg, progress=False, device="cpu")
    assert trainer.num_classes == 4 and trainer.steps_per_epoch == 2
    model = trainer.model
    new_before = model.classifier.weight.detach().clone()
    frozen_before = model.mid.layer1[0].conv1.weight.detach().clone()
    result = trainer.fit()
    assert not torch.equal(new_before, model.classifier.weight)
    # only the CAM network freezes its first stages
    assert torch.equal(frozen_before, model.mid.layer1[0].conv1.weight) == (method == "multilabel_cam")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in steps] == [1, 2]
    assert all(math.isfinite(r[t]) for r in steps for t in get_method(method).loss_terms)
    lr0 = cfg["optim"]["lr"]
    assert steps[0]["lr"] == pytest.approx(lr0 * 0.5**0.9)  # poly, stepped per optimiser step: T = 2
    assert 0 <= result["val"]["mAP"] <= 100 and result["val"]["images"] == 4
    loaded = load_checkpoint(tmp_path / "run" / FINAL)
    assert loaded.meta.method == method and loaded.arch == ARCH and loaded.meta.class_names is not None
    assert load_checkpoint(tmp_path / "run" / LAST).meta.method == method


def test_poly_schedule_resumes_where_it_stopped(tiny_voc, tmp_path, monkeypatch):
    monkeypatch.setattr(
        engine_train, "make_dataset_split", lambda cfg, split, train: TinyVOC(tiny_voc, split, 64)
    )
    monkeypatch.setattr(engine_data, "collate", _collate)
    overrides = [
        "model.pretrained=false",
        "model.num_classes=null",
        f"train.output_dir={tmp_path / 'run'}",
        "data.train_split=train",
        "data.batch_size=4",
        "data.workers=0",
        "optim.epochs=2",
        "eval.every=0",
        "train.sync_bn=false",
        "train.log_every=1",
    ]
    Trainer(
        load_config("voc/resnet50", [*overrides, "train.max_steps=3"]), progress=False, device="cpu"
    ).fit()
    resumed = Trainer(load_config("voc/resnet50", overrides), resume=True, progress=False, device="cpu")
    assert resumed.step == 3 and resumed.scheduler.last_epoch == 3
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.005 * (1 - 3 / 4) ** 0.9)
    resumed.fit()
    assert resumed.step == 4 and resumed.scheduler.last_epoch == 4


# -------------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("method", ["multilabel_bas", "multilabel_cam"])
def test_save_load_round_trip(tmp_path, method):
    model = bas.build_model(ARCH, 3, method=method).eval()
    model.meta = model.meta.replace(class_names=["a", "b", "c"], threshold=0.25)
    document = save_model(tmp_path / "m.safetensors", model)
    assert read_checkpoint_metadata(tmp_path / "m.safetensors") == document
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert type(loaded) is type(model) and loaded.meta == model.meta.completed()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded.class_maps(x), model.class_maps(x))
    assert loaded.state_dict().keys() == model.state_dict().keys()


IRN_STAGE1 = {"0": "conv1", "1": "bn1", "4": "layer1"}  # IRN's stage1 = (conv1, bn1, relu, maxpool, layer1)


def _irn_original(key: str) -> str:
    """The ``resnet50.`` / ``classifier.`` key a duplicate entry of IRN's file shares its tensor with."""
    head, _, rest = key.partition(".")
    if head == "newly_added":
        return "classifier." + rest.split(".", 1)[1]
    if head == "backbone":
        i, _, rest = rest.partition(".")
        head = f"stage{int(i) + 1}"
    if head == "stage1":
        i, _, rest = rest.partition(".")
        return f"resnet50.{IRN_STAGE1[i]}.{rest}"
    if head.startswith("stage"):
        return f"resnet50.layer{head[5:]}.{rest.split('.', 1)[1]}"
    return key


def _released(family: str, seed: int) -> dict[str, torch.Tensor]:
    """A released file rebuilt from its keys and shapes with random values (IRN's duplicate entries
    share their tensor, as in the real file)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for k, shape in WSSS_KEYS["wsss"][family].items():
        if family == "irn_cam" and _irn_original(k) != k:
            state[k] = state[_irn_original(k)]
        elif k.endswith("num_batches_tracked"):
            state[k] = torch.randint(0, 50, shape, generator=gen)
        else:
            state[k] = torch.rand(shape, generator=gen)
    return state


@pytest.mark.parametrize(
    ("family", "method", "source"),
    [("bas", "multilabel_bas", "wsss2023"), ("irn_cam", "multilabel_cam", "irn")],
)
def test_convert_reads_the_released_wsss_files(tmp_path, family, method, source):
    from bas.cli import main

    state = _released(family, seed=1)
    src = tmp_path / "released.pth"
    torch.save(state, src, _use_new_zipfile_serialization=False)  # the authors' legacy serialisation
    dst = tmp_path / "converted.safetensors"
    assert main(["convert", str(src), str(dst)]) == 0
    model = load_checkpoint(dst)
    assert (model.meta.method, model.arch, model.num_classes) == (method, ARCH, 20)
    assert model.meta.extra["converted_from"]["source"] == source
    ours = model.state_dict()
    if family == "bas":
        pairs = {
            "module.classifier_cls.weight": "classifier.weight",
            "module.classifier_loc.0.weight": "generator.0.weight",
            "module.layer3.5.conv3.weight": "mid.layer3.5.conv3.weight",
            "module.layer4.0.downsample.0.weight": "head.layer4.0.downsample.0.weight",
            "module.bn1.running_var": "mid.bn1.running_var",
        }
    else:
        pairs = {
            "classifier.weight": "classifier.weight",
            "resnet50.layer3.5.conv3.weight": "mid.layer3.5.conv3.weight",
            "resnet50.layer4.2.bn3.bias": "head.layer4.2.bn3.bias",
            "stage1.0.weight": "mid.conv1.weight",  # the same tensor under IRN's other names
            "backbone.3.0.0.conv1.weight": "head.layer4.0.conv1.weight",
        }
    for theirs, mine in pairs.items():
        assert torch.equal(ours[mine], state[theirs]), theirs
    # every tensor of ours comes from the file
    originals = {k: v for k, v in state.items() if not k.startswith(("stage", "backbone.", "newly_added."))}
    assert len(ours) == len(originals)


def test_a_wsol_file_is_not_taken_for_a_wsss_one(tmp_path):
    model = bas.build_model("resnet50", 3, method="bas")
    state = {
        k.split(".", 1)[1] if k.startswith(("mid.", "head.")) else k: v for k, v in model.state_dict().items()
    }
    state = {
        k.replace("classifier.", "classifier_cls.").replace("generator.", "classifier_loc."): v
        for k, v in state.items()
    }
    torch.save(state, tmp_path / "wsol.pth")
    loaded = load_checkpoint(tmp_path / "wsol.pth")
    assert (loaded.meta.method, loaded.arch, loaded.meta.source) == ("bas", "resnet50", "cvpr2022")


# ------------------------------------------------------------------------ bas evaluate of a run


# ``bas train --config voc/resnet50`` on the tiny VOC layout: ResNet18, 64 px, 1 epoch, no CAM fusion
TINY_RUN = [
    "model.pretrained=false",
    "model.arch=resnet18",
    "model.num_classes=4",
    "data.train_split=train",
    "data.input_size=64",
    "data.resize_size=72",
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.workers=0",
    "optim.epochs=1",
    "train.sync_bn=false",
    "seeds.fuse_cam=null",
]


def tiny_run_args(voc: Path, output: Path, *settings: str) -> list[str]:
    """The command line of a :data:`TINY_RUN` training with ``settings`` on top."""
    args = ["train", "--config", "voc/resnet50", "--data-root", str(voc), "--output", str(output)]
    for setting in (*TINY_RUN, *settings):
        args += ["--set", setting]
    return args + ["--no-progress", "--device", "cpu"]


@pytest.mark.slow
def test_bas_evaluate_of_a_segmentation_run_reports_the_wsss_numbers(tiny_voc, tmp_path, capsys):
    from bas.cli import main

    assert main(tiny_run_args(tiny_voc, tmp_path / "run")) == 0
    ckpt = str(tmp_path / "run" / FINAL)
    common = ["--data-root", str(tiny_voc), "--scales", "1", "0.5", "--workers", "0", "--no-progress"]
    for split in ("test", "val"):
        seeds = ["wsss", "seeds", "--checkpoint", ckpt, "--split", split, "--output", str(tmp_path / "s")]
        assert main([*seeds, *common]) == 0
    capsys.readouterr()
    wsss = ["wsss", "evaluate", "--seeds", str(tmp_path / "s"), "--split", "test", "--select-on", "val"]
    assert main([*wsss, "--output", str(tmp_path / "by_wsss")]) == 0
    printed = capsys.readouterr().out
    expected = json.loads((tmp_path / "by_wsss" / "evaluation.json").read_text())

    evaluate = ["evaluate", "--checkpoint", ckpt, "--split", "test", *common]
    assert main([*evaluate, "--select-on", "val", "--output", str(tmp_path / "by_evaluate")]) == 0
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "by_evaluate" / "evaluation.json").read_text()) == expected
    assert printed in out and "scales 1, 0.5, flip, no CAM fusion" in out and "chosen on val" in out
    assert (tmp_path / "by_evaluate" / "miou_vs_threshold.png").is_file()
    assert sorted(p.name for p in (tmp_path / "by_evaluate" / "seeds").iterdir()) == ["test", "val"]

    # without --output: the seeds in a temporary folder, the evaluation next to the checkpoint
    assert main([*evaluate, "--protocol", "ijcv2023-code"]) == 0
    written = Path(f"{Path(ckpt).with_suffix('')}_eval") / "test"
    assert json.loads((written / "evaluation-reference.json").read_text())["protocol"] == "reference"
    assert not (written / "seeds").exists()
    assert (
        main(
            [
                "wsss",
                "evaluate",
                "--seeds",
                str(tmp_path / "s"),
                "--split",
                "test",
                "--protocol",
                "reference",
                "--output",
                str(tmp_path / "ref"),
            ]
        )
        == 0
    )
    reference = json.loads((tmp_path / "ref" / "evaluation-reference.json").read_text())
    assert json.loads((written / "evaluation-reference.json").read_text())["miou"] == reference["miou"]

    capsys.readouterr()
    assert main([*evaluate, "--ten-crop"]) == 2
    assert "--ten-crop" in capsys.readouterr().err
    assert main([*evaluate, "--protocol", "cvpr2022-code"]) == 2
    assert "ijcv2023-code" in capsys.readouterr().err


def test_seed_options_are_refused_for_a_wsol_model(tmp_path, capsys):
    from bas.cli import main

    save_model(tmp_path / "wsol.safetensors", bas.build_model("resnet18", 3))
    args = ["evaluate", "--checkpoint", str(tmp_path / "wsol.safetensors"), "--data-root", str(tmp_path)]
    assert main([*args, "--scales", "1", "--no-flip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--scales, --no-flip" in err and "segmentation run only" in err


def test_warmup_epochs_train_the_classification_term_only(tiny_voc, tmp_path, monkeypatch):
    monkeypatch.setattr(
        engine_train, "make_dataset_split", lambda cfg, split, train: TinyVOC(tiny_voc, split, 64)
    )
    monkeypatch.setattr(engine_data, "collate", _collate)

    def run(warmup: int, name: str) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
        cfg = load_config(
            "voc/resnet50",
            [
                "model.pretrained=false",
                "model.num_classes=null",
                f"train.output_dir={tmp_path / name}",
                "data.train_split=train",
                "data.batch_size=4",
                "data.eval_batch_size=4",
                "data.workers=0",
                "optim.epochs=2",
                "optim.weight_decay=0",
                "train.sync_bn=false",
                "train.log_every=1",
                f"loss.warmup_epochs={warmup}",
            ],
        )
        trainer = Trainer(cfg, progress=False, device="cpu")
        before = trainer.model.generator[0].weight.detach().clone()
        trainer.fit()
        records = [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return (
            before,
            trainer.model.generator[0].weight.detach(),
            [r for r in records if r["kind"] == "train"],
        )

    before, after, steps = run(2, "warm")  # both epochs are warm-up: the generator never moves
    assert torch.equal(before, after)
    assert all(r["loss"] == pytest.approx(r["cls"]) for r in steps)  # the total is the cls term
    assert all(r["area"] > 0 for r in steps)  # the other terms are still computed and logged
    before, after, steps = run(1, "half")  # epoch 2 adds the erase terms: the generator learns
    assert not torch.equal(before, after)
    assert steps[0]["loss"] == pytest.approx(steps[0]["cls"]) and steps[-1]["loss"] > steps[-1]["cls"]


@pytest.mark.slow
def test_validation_by_seed_miou_scores_the_seeds_at_scale_one(tiny_voc, tmp_path):
    """``eval.select_metric: seed_miou`` logs the val seeds' best-threshold mIoU, the number
    ``bas wsss seeds --scales 1`` (with flip) and the evaluation's confusions give on val."""
    from bas.cli import main
    from bas.wsss.evaluate import STANDARD_GRID, best_threshold, curve, split_confusions

    run = tmp_path / "run"
    assert main(tiny_run_args(tiny_voc, run, "eval.select_metric=seed_miou", "eval.every=1")) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    logged = [r for r in records if r["kind"] == "epoch"][-1]
    best = read_checkpoint_metadata(run / engine_train.BEST)
    assert best["metrics"]["select_metric"] == "seed_miou"
    seeds = tmp_path / "seeds"
    args = ["wsss", "seeds", "--checkpoint", str(run / FINAL), "--split", "val", "--output", str(seeds)]
    assert main([*args, "--scales", "1", "--workers", "0", "--no-progress"]) == 0
    ids = (tiny_voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    masks = [read_label_png(tiny_voc / "SegmentationClass" / f"{i}.png") for i in ids]
    confusions = split_confusions(seeds / "val", ids, masks.__getitem__, 5, STANDARD_GRID)
    threshold, miou = best_threshold(STANDARD_GRID, curve(confusions))
    # the seeds files hold float16 maps: a pixel on a grid threshold may fall either side
    assert logged["val_seed_miou"] == pytest.approx(miou, abs=0.2)
    assert logged["val_seed_threshold"] == pytest.approx(threshold, abs=0.011)
    assert 0 < logged["val_mAP"] <= 100


def test_validation_by_seed_miou_needs_masks():
    from bas.methods.multilabel_bas import seed_pairs

    model = bas.build_model("resnet18_os16", 3, method="multilabel_cam").eval()
    batch = {"image": torch.zeros(1, 3, 32, 32), "label": torch.ones(1, 3), "mask": None}
    with pytest.raises(ConfigError, match="seed_miou needs masks"):
        seed_pairs(model, batch["image"], batch)
