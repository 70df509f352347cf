"""The segmentation network: DeepLabV3 on pseudo-masks (`bas wsss train-seg`, bas.wsss.segnet)."""

import json
import shutil

import numpy as np
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from torchvision import tv_tensors

import bas
from bas.checkpoints import load_checkpoint, save_model
from bas.cli import main
from bas.config import load_config
from bas.data.synthetic_multi import make_multilabel_dataset
from bas.data.transforms import segmentation_train_transform
from bas.engine.train import Trainer
from bas.errors import CheckpointError, ConfigError
from bas.methods.deeplab import DeepLabV3Model, masked_cross_entropy
from bas.wsss.masks import read_label_png, write_label_png
from bas.wsss.segnet import evaluate_segmentation, segment

RECIPE = "voc/deeplabv3_resnet18_cpu"
TINY = ["data.input_size=64", "data.batch_size=4", "model.hidden=16", "optim.epochs=1"]


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    """A generated VOC-layout dataset (8 train, 4 val images of 64 px, 3 classes) and a copy of its
    ground-truth masks as the pseudo-masks."""
    root = tmp_path_factory.mktemp("segnet") / "data"
    make_multilabel_dataset(root, num_classes=3, images_per_split={"train": 8, "val": 4}, image_size=64)
    voc = root / "VOCdevkit" / "VOC2012"
    masks = root.parent / "pseudo"
    shutil.copytree(voc / "SegmentationClass", masks)
    return root, voc, masks


def _cfg(tiny_voc, out, *extra):
    root, _, masks = tiny_voc
    return load_config(
        RECIPE, [f"data.root={root}", f"seg.masks_dir={masks}", f"train.output_dir={out}", *TINY, *extra]
    )


def _train_seg(tiny_voc, out, *args):
    root, _, masks = tiny_voc
    argv = ["wsss", "train-seg", "--masks", str(masks), "--data-root", str(root), "--config", RECIPE]
    argv += ["--output", str(out), "--no-progress", "--device", "cpu"]
    for override in TINY:
        argv += ["--set", override]
    return main(argv + list(args))


# ------------------------------------------------------------------------------------- model


def test_the_model_is_torchvisions_deeplabv3():
    """With torchvision's weights, our model at output stride 8 computes what deeplabv3_resnet50 does."""
    ours = bas.build_model("resnet50_dilated", 4, method="deeplabv3", hidden=256)
    ours.set_output_stride(8)
    ref = torchvision.models.segmentation.deeplabv3_resnet50(
        weights=None, weights_backbone=None, num_classes=5, aux_loss=True
    )
    renamed = {}
    for key, value in ref.state_dict().items():
        if key.startswith("backbone."):
            key = key.removeprefix("backbone.")
            key = ("head." if key.startswith("layer4") else "mid.") + key
        renamed[key] = value
    ours.load_state_dict(renamed)
    x = torch.randn(1, 3, 70, 53)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x).logits, ref.eval()(x)["out"])
        ours.train(), ref.train()
        torch.manual_seed(0)
        out = ours(x.repeat(2, 1, 1, 1))
        torch.manual_seed(0)
        expected = ref(x.repeat(2, 1, 1, 1))
    torch.testing.assert_close(out.aux_logits, expected["aux"])
    assert out.logits.shape == (2, 5, 70, 53)


def test_output_stride_and_its_metadata_travel_with_the_checkpoint(tmp_path):
    model = bas.build_model("resnet50_dilated", 3, method="deeplabv3", hidden=8)
    assert model.output_stride == 16
    model.set_output_stride(8)
    assert model.head.layer4[1].conv2.dilation == (4, 4) and model.classifier[0].convs[1][0].dilation == (
        12,
        12,
    )
    bas.save_model(tmp_path / "m.safetensors", model)
    loaded = load_checkpoint(tmp_path / "m.safetensors")
    assert isinstance(loaded, DeepLabV3Model) and loaded.output_stride == 8
    assert loaded.mid.layer3[1].conv2.dilation == (2, 2)
    with pytest.raises(ValueError, match="dilated backbone"):
        bas.build_model("resnet18_os16", 3, method="deeplabv3", hidden=8).set_output_stride(8)
    with pytest.raises(ConfigError, match="seg.output_stride"):
        load_config(RECIPE, ["seg.output_stride=8"])


def test_cross_entropy_ignores_255_and_survives_an_all_ignored_batch():
    logits = torch.randn(2, 3, 4, 4)
    masks = torch.randint(0, 3, (2, 4, 4))
    masks[0, :2] = 255
    expected = F.cross_entropy(logits, masks, ignore_index=255)
    torch.testing.assert_close(masked_cross_entropy(logits, masks), expected)
    assert masked_cross_entropy(logits, torch.full_like(masks, 255)).item() == 0.0


def test_training_transform_pads_masks_with_255():
    image = tv_tensors.Image(torch.full((3, 20, 30), 128, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.ones(20, 30, dtype=torch.uint8))
    torch.manual_seed(0)
    out = segmentation_train_transform(64, (1.0, 1.0))({"image": image, "mask": mask})
    assert out["image"].shape == (3, 64, 64) and out["mask"].shape == (64, 64)
    assert set(out["mask"].unique().tolist()) == {1, 255} and int((out["mask"] == 1).sum()) == 20 * 30


# ---------------------------------------------------------------------------------- training


def test_a_training_step_lowers_the_loss(tiny_voc, tmp_path):
    trainer = Trainer(_cfg(tiny_voc, tmp_path), progress=False, device="cpu")
    batch = next(iter(trainer.loader))
    assert batch["mask"].shape == (4, 64, 64)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    first = trainer.train_batch(batch)
    assert set(first) == {"loss", "seg", "aux"}
    for _ in range(4):
        last = trainer.train_batch(batch)
    assert last["loss"] < first["loss"]
    after = trainer.model.state_dict()
    for prefix in ("mid.conv1.", "head.layer4.", "classifier.", "aux_classifier."):
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(prefix)), prefix


def test_the_backbone_can_start_from_a_bas_wsol_checkpoint(tiny_voc, tmp_path):
    torch.manual_seed(3)
    source = bas.build_model("resnet18_os16", 3, method="multilabel_bas")
    ckpt = tmp_path / "bas.safetensors"
    save_model(ckpt, source, class_names=["a", "b", "c"])
    trainer = Trainer(
        _cfg(tiny_voc, tmp_path / "run", f"seg.weights_backbone={ckpt}"), progress=False, device="cpu"
    )
    ours, theirs = trainer.model.state_dict(), source.state_dict()
    trunk = [k for k in theirs if k.startswith(("mid.", "head."))]
    assert trunk and all(torch.equal(ours[k], theirs[k]) for k in trunk)
    assert trainer.model.meta.extra["backbone_init"] == str(ckpt)
    # another architecture's checkpoint is refused, naming the file
    other = tmp_path / "r50.safetensors"
    save_model(other, bas.build_model("resnet50", 3, method="bas"), class_names=["a", "b", "c"])
    with pytest.raises(CheckpointError, match="r50.safetensors"):
        Trainer(
            _cfg(tiny_voc, tmp_path / "run2", f"seg.weights_backbone={other}"), progress=False, device="cpu"
        )


def test_without_the_auxiliary_loss_its_head_stays_frozen(tiny_voc, tmp_path):
    trainer = Trainer(_cfg(tiny_voc, tmp_path, "seg.aux_weight=0"), progress=False, device="cpu")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items() if k.startswith("aux_classifier.")}
    values = trainer.train_batch(next(iter(trainer.loader)))
    assert "aux" not in values
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())


# --------------------------------------------------------------------------------- inference


def test_multi_scale_flip_inference_equals_the_direct_computation():
    torch.manual_seed(0)
    model = bas.build_model("resnet18_os16", 3, method="deeplabv3", hidden=8).eval()
    images = torch.randn(2, 3, 48, 60)
    scales = (1.0, 0.75, 1.5)
    expected = []
    with torch.no_grad():
        for scale in scales:
            size = (round(48 * scale), round(60 * scale))
            for flipped in (False, True):
                x = F.interpolate(images, size, mode="bilinear", align_corners=False)
                logits = model(x.flip(-1) if flipped else x).logits
                logits = logits.flip(-1) if flipped else logits
                up = F.interpolate(logits, (48, 60), mode="bilinear", align_corners=False)
                expected.append(up.softmax(dim=1))
        probs = segment(model, images, scales, flip=True)
        single = segment(model, images)
        direct = model(images).logits.softmax(dim=1)
    torch.testing.assert_close(probs, torch.stack(expected).mean(0))
    torch.testing.assert_close(single, direct)
    assert probs.shape == (2, 4, 48, 60)


# ------------------------------------------------------------------------------- end to end


def test_train_seg_end_to_end(tiny_voc, tmp_path, capsys):
    root, voc, _ = tiny_voc
    out = tmp_path / "run"
    assert _train_seg(tiny_voc, out, "--set", "seg.scales=[1.0,0.5]", "--set", "seg.flip=true") == 0
    printed = capsys.readouterr().out
    assert "val (4 images, scales 1, 0.5, flip): mIoU" in printed
    for name in ("best.safetensors", "model.safetensors", "last.ckpt", "metrics.jsonl", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    val = metrics["results"]["val"]
    assert metrics["checkpoint"] == "best.safetensors" and val["num_images"] == 4
    assert 0 <= val["miou"] <= 100 and val["class_names"][0] == "background" and len(val["iou"]) == 4
    ids = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    for image_id in ids:
        png = out / "predictions" / "val" / f"{image_id}.png"
        with Image.open(png) as image:
            assert image.mode == "P" and image.size == (64, 64)
        assert read_label_png(png).max() <= 3
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_miou" in r for r in epochs if r["kind"] == "epoch")
    model = load_checkpoint(out / "best.safetensors")
    assert model.meta.method == "deeplabv3" and model.meta.config["seg"]["masks_dir"] == str(tiny_voc[2])
    assert model.meta.extra["backbone_init"] == "random"
    again = evaluate_segmentation(out / "best.safetensors", root, "val")
    assert again["miou"] == pytest.approx(val["miou"]) and again["scales"] == [1.0, 0.5] and again["flip"]


def test_resume_continues_the_run_exactly(tiny_voc, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert _train_seg(tiny_voc, straight, "--set", "optim.epochs=2") == 0
    assert _train_seg(tiny_voc, split, "--set", "optim.epochs=2", "--set", "train.max_steps=2") == 0
    assert (split / "last.ckpt").is_file()
    assert _train_seg(tiny_voc, split, "--resume", "--set", "optim.epochs=2") == 0
    a = safetensors.torch.load_file(straight / "model.safetensors")
    b = safetensors.torch.load_file(split / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    records = [json.loads(line) for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == [1, 2]


def test_bad_pseudo_masks_are_one_line_errors(tiny_voc, tmp_path, capsys):
    root, voc, masks = tiny_voc
    train_ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()

    def fails(mask_dir, expected):
        out = tmp_path / f"run_{mask_dir.name}"
        argv = ["wsss", "train-seg", "--masks", str(mask_dir), "--data-root", str(root), "--config", RECIPE]
        assert main([*argv, "--output", str(out), "--no-progress"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and expected in err, err
        assert not out.exists()  # nothing written

    fails(tmp_path / "nowhere", "pseudo-mask folder not found")
    partial = tmp_path / "partial"
    shutil.copytree(masks, partial)
    (partial / f"{train_ids[3]}.png").unlink()
    fails(partial, f"{partial / train_ids[3]}.png: no pseudo-mask for image {train_ids[3]}")
    resized = tmp_path / "resized"
    shutil.copytree(masks, resized)
    write_label_png(resized / f"{train_ids[1]}.png", np.zeros((32, 64), np.uint8))
    fails(resized, f"{resized / train_ids[1]}.png: pseudo-mask is 64x32 but its image")


def test_voc_recipe_has_the_usual_deeplab_settings():
    cfg = load_config("voc/deeplabv3_resnet101")
    assert (cfg["method"], cfg["model"]["arch"], cfg["seg"]["output_stride"]) == (
        "deeplabv3",
        "resnet101_dilated",
        8,
    )
    assert cfg["data"]["input_size"] == 512 and cfg["seg"]["scale_range"] == [0.5, 2.0]
    optim = cfg["optim"]
    assert (optim["lr"], optim["momentum"], optim["weight_decay"], optim["schedule"]) == (
        0.01,
        0.9,
        1e-4,
        "poly",
    )
    assert 29_000 <= 10_582 // cfg["data"]["batch_size"] * optim["epochs"] <= 31_000  # about 30k steps
    assert cfg["seg"]["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and cfg["seg"]["flip"] is True
    assert cfg["eval"]["select_metric"] == "miou" and cfg["seg"]["weights_backbone"] == "IMAGENET1K_V1"


def test_cpu_recipe_evaluates_with_the_usual_scales_and_flip():
    cfg = load_config(RECIPE)
    assert cfg["seg"]["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and cfg["seg"]["flip"] is True
    assert cfg["seg"]["val_scales"] == [1.0] and cfg["seg"]["val_flip"] is False
