"""IRN: affinity labels by hand, the loss and a training step, trunks (frozen, from a checkpoint),
the checkpoint file, the refined maps, and ``bas wsss refine`` end to end with ``bas wsss evaluate``."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.errors import CheckpointError
from bas.wsss import irn as I
from bas.wsss import refine as RF
from bas.wsss import seeds as S
from bas.wsss.masks import read_label_png, write_label_png
from bas.wsss.random_walk import path_index, random_walk


def test_affinity_labels_of_a_hand_built_map():
    # a b c      0   0   1
    # d e f    255   1   1
    labels = torch.tensor([[[0, 0, 1], [255, 1, 1]]])
    index = path_index((2, 3), 1.5)  # offsets (0, 1), (1, -1), (1, 0), (1, 1)
    bg, fg, neg = I.affinity_labels(labels, index)
    kind = {}
    for k, pair in enumerate(zip(index.src.tolist(), index.dst.tolist())):
        kind[pair] = "bg" if bg[0, k] else "fg" if fg[0, k] else "neg" if neg[0, k] else "ignored"
    a, b, c, d, e, f = range(6)
    assert kind == {
        (a, b): "bg",
        (b, c): "neg",
        (d, e): "ignored",
        (e, f): "fg",
        (b, d): "ignored",
        (c, e): "fg",
        (a, d): "ignored",
        (b, e): "neg",
        (c, f): "fg",
        (a, e): "neg",
        (b, f): "neg",
    }


def test_stride4_labels_take_the_top_left_pixel_of_each_cell():
    labels = torch.arange(10 * 7).reshape(10, 7)
    assert I.stride4_labels(labels).tolist() == [[0, 4], [28, 32], [56, 60]]


def test_affinity_loss_by_hand():
    labels = torch.tensor([[[0, 0, 1, 1]]])
    index = path_index((1, 4), 2)  # pairs (0,1) bg, (1,2) neg, (2,3) fg
    logits = torch.logit(torch.tensor([[[[0.1, 0.2, 0.6, 0.3]]]]))
    loss, parts = I.affinity_loss(logits, labels, index)
    bg, neg, fg = 1 - 0.2, 1 - 0.6, 1 - 0.6  # 1 - the max boundary of each pair
    expected = (-np.log(bg + 1e-5) / 2 - np.log(fg + 1e-5) / 2 - np.log(1 + 1e-5 - neg)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert parts["neg"] == pytest.approx(-np.log(1 + 1e-5 - neg), rel=1e-4)


def toy_batch(count: int = 2, size: int = 32):
    rng = np.random.default_rng(0)
    images, labels = [], []
    for _ in range(count):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        label = np.zeros((size, size), np.uint8)
        y, x = rng.integers(4, size // 2, 2)
        image[y : y + 12, x : x + 12] = (220, 40, 40)
        label[y : y + 12, x : x + 12] = 1
        label[y - 2 : y + 2, :] = 255
        images.append(image)
        labels.append(label)
    return images, labels


def test_one_training_step_reduces_the_loss_and_keeps_the_trunk():
    torch.manual_seed(0)
    net, note = I.build_boundary_net("resnet18", init="random")
    assert "random" in note
    images, labels = toy_batch()
    config = I.IRNConfig(
        backbone="resnet18", crop=32, batch_size=2, epochs=1, lr=0.1, scale_range=(1, 1), flip=False
    )
    data = I.AffinityDataset(lambda i: (images[i], labels[i]), 2, config)
    x = torch.stack([data[i][0] for i in range(2)])
    y = I.stride4_labels(torch.stack([data[i][1] for i in range(2)]))
    index = path_index((8, 8), config.radius)
    trunk = {k: v.clone() for k, v in net.trunk.state_dict().items()}
    edges = {k: v.clone() for k, v in net.edges.state_dict().items()}
    net.train()
    before = I.affinity_loss(net(x), y, index)[0].item()
    history = I.train_boundary_net(net, data, config)
    net.train()
    after = I.affinity_loss(net(x), y, index)[0].item()
    assert len(history) == 1 and history[0]["loss"] == pytest.approx(before, rel=1e-5)
    assert after < before
    assert all(torch.equal(v, net.trunk.state_dict()[k]) for k, v in trunk.items())  # frozen, stats too
    assert any(not torch.equal(v, net.edges.state_dict()[k]) for k, v in edges.items())


def test_output_stride_4_and_the_flip_averaged_boundary_map():
    torch.manual_seed(0)
    net = I.BoundaryNet("resnet18").eval()
    assert net(torch.zeros(1, 3, 37, 50)).shape == (1, 1, 10, 13)
    image = toy_batch(1, 37)[0][0]
    boundary = I.boundary_map(net, image)
    assert boundary.shape == (10, 10) and 0 < boundary.min() and boundary.max() < 1


def test_crops_pad_the_image_with_zero_and_the_labels_with_255():
    images, labels = toy_batch(1, 20)
    config = I.IRNConfig(crop=28, scale_range=(1, 1), flip=False)
    x, y = I.AffinityDataset(lambda i: (images[0], labels[0]), 1, config)[0]
    assert x.shape == (3, 28, 28) and y.shape == (28, 28)
    assert (y == 255).sum() == 28 * 28 - 20 * 20 + (labels[0] == 255).sum()
    assert (x.abs().sum(0) == 0).sum() >= 28 * 28 - 20 * 20


def test_trunk_from_a_bas_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = bas.build_model("resnet18_os16", 3, method="multilabel_bas")
    path = tmp_path / "bas.safetensors"
    save_model(path, model, class_names=["a", "b", "c"])
    net, note = I.build_boundary_net("resnet50", backbone_from=path)  # the checkpoint's depth wins
    assert net.backbone_name == "resnet18" and str(path) in note
    trunk = net.trunk_state()
    state = model.state_dict()
    assert torch.equal(trunk["conv1.weight"], state["mid.conv1.weight"])
    assert torch.equal(trunk["layer4.1.bn2.running_var"], state["head.layer4.1.bn2.running_var"])
    with pytest.raises(CheckpointError, match="no resnet34 trunk"):
        I.BoundaryNet("resnet34").load_trunk(trunk, "x")
    with pytest.raises(CheckpointError, match="shape"):
        I.BoundaryNet("resnet18").load_trunk({**trunk, "conv1.weight": torch.zeros(1)}, "x")
    with pytest.raises(CheckpointError, match="not a ResNet"):
        save_model(tmp_path / "vgg.safetensors", bas.build_model("mobilenet_v1", 3))
        I.build_boundary_net(backbone_from=tmp_path / "vgg.safetensors")


def test_checkpoint_round_trip_and_bad_files(tmp_path):
    torch.manual_seed(0)
    net = I.BoundaryNet("resnet18").eval()
    I.save_boundary_net(tmp_path / "irn.pt", net, I.IRNConfig(backbone="resnet18"), "note")
    again, info = I.load_boundary_net(tmp_path / "irn.pt")
    assert info["backbone"] == "resnet18" and info["config"]["radius"] == 10
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(again(x), net(x))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not an IRN checkpoint"):
        I.load_boundary_net(tmp_path / "junk.pt")


def test_refined_maps_are_the_upsampled_walk_over_its_global_max():
    torch.manual_seed(0)
    seeds = torch.rand(2, 5, 6)
    boundary = torch.rand(5, 6) ** 4
    low, full = RF.refined_maps(seeds, boundary, (19, 22))
    assert low.shape == (2, 5, 6) and full.shape == (2, 19, 22)
    assert 0.999 < full.max() < 1
    rw = random_walk(seeds**1.5, boundary)
    ratio = rw / low  # one factor for every class: the global maximum
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio.mean().item()), rtol=1e-4, atol=0)
    up = torch.nn.functional.interpolate(low[None], scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, up[0, :, :19, :22])
    empty_low, empty_full = RF.refined_maps(torch.zeros(0, 5, 6), boundary, (19, 22))
    assert empty_full.shape == (0, 19, 22)


# ---------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A tiny VOC-layout dataset, a random multi-label BAS checkpoint and its seeds of train."""
    base = tmp_path_factory.mktemp("refine")
    voc = make_multilabel_dataset(
        base / "data",
        num_classes=3,
        images_per_split={"train": 4, "val": 2, "test": 0},
        image_size=64,
        seed=0,
    )
    voc = voc / VOC_SUBDIR
    torch.manual_seed(0)
    ckpt = base / "bas.safetensors"
    save_model(
        ckpt, bas.build_model("resnet18_os16", 3, method="multilabel_bas"), class_names=["a", "b", "c"]
    )
    seeds = base / "seeds"
    args = ["wsss", "seeds", "--checkpoint", str(ckpt), "--data-root", str(voc), "--split", "train"]
    assert main(args + ["--output", str(seeds), "--scales", "1", "--no-progress", "--workers", "0"]) == 0
    return voc, ckpt, seeds


def confident_by_hand(seeds: Path, out: Path, ids: list[str]) -> Path:
    """Confident labels without a CRF: class where its map > 0.3, background where all < 0.17."""
    for image_id in ids:
        classes, full = S.read_seeds(S.seed_files(seeds, image_id)[0])
        full = full.astype(np.float32)
        labels = np.full(full.shape[1:], 255, np.uint8)
        labels[full.max(0) < 0.17] = 0
        strong = full.max(0) > 0.3
        labels[strong] = (classes[full.argmax(0)] + 1)[strong]
        write_label_png(out / f"{image_id}.png", labels)
    return out


def refine_args(seeds: Path, out: Path, ckpt: Path, *extra: str) -> list[str]:
    return [
        "wsss",
        "refine",
        "--seeds",
        str(seeds),
        "--output",
        str(out),
        "--epochs",
        "1",
        "--crop-size",
        "32",
    ] + ["--batch-size", "2", "--backbone-from", str(ckpt), "--no-progress", *extra]


def test_refine_end_to_end_then_evaluate(seeded, tmp_path, capsys):
    voc, ckpt, seeds = seeded
    ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    confident = confident_by_hand(seeds / "train", tmp_path / "confident", ids)
    out = tmp_path / "refined"
    args = refine_args(seeds, out, ckpt, "--confident", str(confident))
    assert main(args) == 0
    assert "4 written now" in capsys.readouterr().out
    split = out / "train"
    manifest = json.loads((split / "seeds.json").read_text())
    assert manifest["split"] == "train" and manifest["bg_threshold"] == 0.22
    assert manifest["method"] == "multilabel_bas+irn" and manifest["refined"]["walk"]["steps"] == 256
    assert (split / "irn.pt").is_file() and manifest["refined"]["irn"]["backbone"] == "resnet18"
    for image_id in ids:
        classes, full = S.read_seeds(S.seed_files(split, image_id)[0])
        seed_classes, _ = S.read_seeds(S.seed_files(seeds / "train", image_id)[0])
        assert classes.tolist() == seed_classes.tolist() and full.shape[1:] == (64, 64)
        mask = read_label_png(S.seed_files(split, image_id)[1])
        np.testing.assert_array_equal(mask, S.seed_labels(full, classes, 0.22))
    assert main(["wsss", "evaluate", "--seeds", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "multilabel_bas+irn seeds" in printed and "mIoU" in printed
    result = json.loads((split / "evaluation.json").read_text())
    assert result["split"] == "train" and 0 <= result["miou"] <= 100
    # resuming writes nothing and reuses irn.pt; other settings are refused
    before = {p: p.stat().st_mtime_ns for p in split.rglob("*") if p.is_file() and p.suffix != ".json"}
    assert main(args) == 0
    assert "0 written now" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert main(args + ["--bg-threshold", "0.3"]) == 2
    assert main(refine_args(seeds, out, ckpt, "--confident", str(confident), "--epochs", "2")) == 2
    assert "other settings" in capsys.readouterr().err
    # --irn walks with a trained network: no confident labels, no training, the same maps
    walked = tmp_path / "walked"
    assert main(refine_args(seeds, walked, ckpt, "--irn", str(split / "irn.pt"))) == 0
    assert not (walked / "train" / "irn.pt").exists() and not (walked / "train" / "confident").exists()
    for image_id in ids:
        np.testing.assert_array_equal(
            S.read_seeds(S.seed_files(walked / "train", image_id)[0])[1],
            S.read_seeds(S.seed_files(split, image_id)[0])[1],
        )
    # the walk's settings: recorded, used, and a change on the same folder refused
    short = tmp_path / "short"
    walk_opts = ["--walk-steps", "2", "--walk-radius", "3", "--walk-beta", "4", "--walk-power", "2"]
    assert main(refine_args(seeds, short, ckpt, "--irn", str(split / "irn.pt"), *walk_opts)) == 0
    walk = json.loads((short / "train" / "seeds.json").read_text())["refined"]["walk"]
    assert walk == {"power": 2.0, "beta": 4.0, "steps": 2, "radius": 3}
    changed = 0
    for image_id in ids:
        short_maps = S.read_seeds(S.seed_files(short / "train", image_id)[0])[1]
        changed += not np.array_equal(short_maps, S.read_seeds(S.seed_files(split, image_id)[0])[1])
    assert changed == len(ids)
    assert main(refine_args(seeds, short, ckpt, "--irn", str(split / "irn.pt"), "--walk-steps", "3")) == 2
    assert "other settings" in capsys.readouterr().err


def test_walk_settings_keep_the_defaults_of_what_is_not_given():
    assert RF.walk_settings(steps=None, radius=None, beta=None, power=None) == RF.WalkSettings()
    assert RF.walk_settings(steps=8, radius=None) == RF.WalkSettings(steps=8)
    assert RF.WalkSettings().steps == 256 and RF.WalkSettings().radius == 5


def test_refine_makes_confident_labels_through_the_confident_module(seeded, tmp_path, monkeypatch, capsys):
    voc, ckpt, seeds = seeded
    calls = []

    def write_confident_labels(
        seeds_dir, output_dir, source, fg_threshold, bg_threshold, crf_backend, progress
    ):
        calls.append((Path(seeds_dir), fg_threshold, bg_threshold, crf_backend))
        return confident_by_hand(Path(seeds_dir), Path(output_dir), list(source.image_ids))

    fake = types.ModuleType("bas.wsss.confident")
    fake.write_confident_labels = write_confident_labels
    monkeypatch.setitem(sys.modules, "bas.wsss.confident", fake)
    out = tmp_path / "refined"
    assert main(refine_args(seeds, out, ckpt, "--fg-threshold", "0.4", "--crf", "torch")) == 0
    assert calls == [(seeds / "train", 0.4, 0.17, "torch")]
    assert len(list((out / "train" / "confident").glob("*.png"))) == 4
    assert len(list((out / "train" / "masks").glob("*.png"))) == 4


def test_bad_input_gives_one_line_errors(seeded, tmp_path, capsys):
    voc, ckpt, seeds = seeded
    assert main(refine_args(tmp_path / "nothing", tmp_path / "out", ckpt)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
    # seeds of an image missing: named, nothing trained
    broken = tmp_path / "broken" / "train"
    broken.mkdir(parents=True)
    (broken / "seeds.json").write_text((seeds / "train" / "seeds.json").read_text())
    assert main(refine_args(broken.parent, tmp_path / "out2", ckpt, "--confident", str(tmp_path))) == 2
    err = capsys.readouterr().err.strip()
    assert "missing" in err and "\n" not in err and not (tmp_path / "out2" / "train" / "irn.pt").exists()
    # the seeds folder itself as the output
    assert main(refine_args(seeds, seeds, ckpt, "--confident", str(tmp_path))) == 2
    assert "folder of their own" in capsys.readouterr().err
    # confident labels missing for the images
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(refine_args(seeds, tmp_path / "out3", ckpt, "--confident", str(empty))) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and ".png" in err and "\n" not in err
