"""WSSS seeds: multi-scale + flip maps against a direct computation, tags, normalisation, CAM
fusion, the files (npz without pickle, palette PNG), resuming, shards, and ``bas wsss seeds``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.data.synthetic_multi import VOC_SUBDIR, make_multilabel_dataset
from bas.models.meta import ModelMeta
from bas.wsss import read_label_png
from bas.wsss import seeds as S

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


class ToyMaps(nn.Module):
    """A tiny map model: stride-4 average pooling and a 3x3 convolution, sigmoid (or ReLU) maps.
    Not symmetric left-right, so the flip pass changes the result."""

    def __init__(self, num_classes: int = 4, seed: int = 0, relu: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, num_classes, 3, padding=1)
        self.relu = relu
        self.meta = ModelMeta(arch="toy", num_classes=num_classes, mean=MEAN, std=STD)

    def class_maps(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(F.avg_pool2d(x, 4, ceil_mode=True))
        return F.relu(y) if self.relu else torch.sigmoid(y)


def direct_maps(model, image: np.ndarray, tags, scales, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The seeds of one image written out step by step, one scale and one flip at a time."""
    h, w = image.shape[:2]
    low_total = torch.zeros(model.meta.num_classes, (h + 3) // 4, (w + 3) // 4)
    full_total = torch.zeros(model.meta.num_classes, (h + 15) // 16 * 16, (w + 15) // 16 * 16)
    for s in scales:
        size = (round(w * s), round(h * s))
        scaled = image if size == (w, h) else np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
        x = torch.tensor(((scaled / 255.0 - MEAN) / STD).transpose(2, 0, 1), dtype=torch.float32)
        with torch.no_grad():
            maps = model.class_maps(x[None])[0]
            if flip:
                maps = maps + model.class_maps(x.flip(-1)[None])[0].flip(-1)
        for total in (low_total, full_total):
            total += F.interpolate(maps[None], total.shape[-2:], mode="bilinear", align_corners=False)[0]
    keep = torch.tensor(np.flatnonzero(np.asarray(tags) > 0.5))
    low, full = low_total[keep], full_total[keep, :h, :w]
    low = low / (low.amax(dim=(1, 2), keepdim=True) + 1e-5)
    full = full / (full.amax(dim=(1, 2), keepdim=True) + 1e-5)
    return low, full


def images(count: int, size=(37, 50), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(count)]


TAGS = [np.array([1, 0, 1, 0]), np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1])]


@pytest.mark.parametrize("flip", [True, False])
@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.5, 1.5, 2.0), (0.7, 1.3)])
def test_batched_maps_equal_the_direct_computation(scales, flip):
    model = ToyMaps()
    batch = images(3)
    out = S.SeedEngine(model, scales=scales, flip=flip)(batch, TAGS)
    for image, tags, seeds in zip(batch, TAGS, out):
        low, full = direct_maps(model, image, tags, scales, flip)
        assert seeds.classes.tolist() == np.flatnonzero(tags).tolist()
        assert seeds.stride4.shape == (len(seeds.classes), 10, 13)
        assert seeds.full.shape == (len(seeds.classes), 37, 50)
        torch.testing.assert_close(seeds.stride4, low, atol=1e-6, rtol=0)
        torch.testing.assert_close(seeds.full, full, atol=1e-6, rtol=0)


def test_flip_changes_the_maps():
    model = ToyMaps()
    with_flip = S.SeedEngine(model, scales=(1.0,))(images(1), TAGS[:1])[0].full
    without = S.SeedEngine(model, scales=(1.0,), flip=False)(images(1), TAGS[:1])[0].full
    assert (with_flip - without).abs().max() > 1e-3


def test_one_forward_per_scale_for_the_batch_and_its_flips():
    model = ToyMaps()
    calls = []
    original = model.class_maps
    model.class_maps = lambda x: (calls.append(tuple(x.shape)), original(x))[1]
    S.SeedEngine(model, scales=(1.0, 0.5))(images(3), TAGS)
    assert calls == [(6, 3, 37, 50), (6, 3, 18, 25)]


def test_released_model_matches_the_reference_loop_and_fusion():
    torch.manual_seed(0)
    net = bas.build_model("resnet18", 4, method="multilabel_bas").eval()
    cam = bas.build_model("resnet18", 4, method="multilabel_cam").eval()
    batch = images(3, size=(40, 56))
    out = S.SeedEngine(net, fuse=cam, scales=(1.0, 0.5))(batch, TAGS)
    for image, tags, seeds in zip(batch, TAGS, out):
        ref = S.reference_seed_maps(net, image, tags, fuse=cam, scales=(1.0, 0.5))
        torch.testing.assert_close(seeds.full, ref.full, atol=1e-5, rtol=0)
        torch.testing.assert_close(seeds.stride4, ref.stride4, atol=1e-5, rtol=0)
        # fusion = the two normalised map sets added and normalised again
        own = S.reference_seed_maps(net, image, tags, scales=(1.0, 0.5)).full
        other = S.reference_seed_maps(cam, image, tags, scales=(1.0, 0.5)).full
        torch.testing.assert_close(seeds.full, S.normalise_maps(own + other), atol=1e-5, rtol=0)


def test_normalisation_divides_by_max_plus_eps():
    maps = torch.tensor([[[0.0, 2.0], [1.0, 0.5]], [[0.0, 0.0], [0.0, 0.0]]])
    out = S.normalise_maps(maps)
    expected = torch.tensor([[0.0, 2.0], [1.0, 0.5]]) / (2 + 1e-5)
    torch.testing.assert_close(out[0], expected, atol=1e-7, rtol=0)
    assert out[1].abs().max() == 0  # an all-zero map stays zero
    seeds = S.SeedEngine(ToyMaps(relu=True))(images(3), TAGS)
    for s in seeds:
        assert s.full.amin() >= 0
        peaks = s.full.amax(dim=(1, 2))
        assert torch.all((peaks > 0.999) | (peaks == 0)) and torch.all(peaks < 1)


def test_an_image_without_tags_gives_no_maps_and_a_background_mask():
    out = S.SeedEngine(ToyMaps())(images(2), [np.zeros(4), np.array([0, 1, 0, 0])])
    assert out[0].classes.tolist() == [] and out[0].full.shape == (0, 37, 50)
    assert out[1].classes.tolist() == [1]
    assert (S.seed_labels(out[0].full, out[0].classes, 0.3) == 0).all()
    only = S.SeedEngine(ToyMaps())(images(1), [np.zeros(4)])[0]
    assert only.stride4.shape == (0, 10, 13)


def test_seed_labels_by_hand():
    maps = np.array([[[0.2, 0.5, 0.3, 0.9]], [[0.1, 0.6, 0.3, 0.95]]], np.float32)  # (2 classes, 1, 4)
    labels = S.seed_labels(maps, np.array([0, 5]), 0.3)
    # pixel 0: both below 0.3 -> background; 1: class 5 (0.6); 2: tie with the threshold -> background
    assert labels.tolist() == [[0, 6, 0, 6]]
    assert S.seed_labels(maps, np.array([0, 5]), 0.55).tolist() == [[0, 6, 0, 6]]
    assert S.seed_labels(maps, np.array([0, 5]), 0.96).tolist() == [[0, 0, 0, 0]]
    # classes 2 and 3 with the maps [0.95, 0.3, 0.6, 0.1] and [0.9, 0.3, 0.5, 0.2]: a tie between
    # classes goes to the first one
    swapped = np.ascontiguousarray(maps[::-1, :, ::-1])
    assert S.seed_labels(swapped, np.array([2, 3]), 0.0).tolist() == [[3, 3, 3, 4]]


class ArraySource:
    """Images and tags in memory, as :class:`bas.wsss.seeds.SeedSource` asks."""

    def __init__(self, items):
        self.items = items
        self.image_ids = [f"img_{i:03d}" for i in range(len(items))]
        self.reads = []

    def read(self, index):
        self.reads.append(index)
        return self.items[index]


def source(count: int = 7) -> ArraySource:
    rng = np.random.default_rng(1)
    sizes = [(37, 50), (48, 40)]
    return ArraySource(
        [(images(1, sizes[i % 2], seed=i)[0], (rng.random(4) < 0.5).astype(np.float32)) for i in range(count)]
    )


def test_npz_holds_float16_maps_and_classes_without_pickle(tmp_path):
    data = source(3)
    engine = S.SeedEngine(ToyMaps())
    assert S.generate_seeds(engine, data, tmp_path, threshold=0.4, batch_size=2) == 3
    for index, image_id in enumerate(data.image_ids):
        maps_path, mask_path = S.seed_files(tmp_path, image_id)
        with np.load(maps_path, allow_pickle=False) as npz:
            assert sorted(npz.files) == ["classes", "full", "stride4"]
            classes, full, low = npz["classes"], npz["full"], npz["stride4"]
        image, tags = data.items[index]
        assert classes.dtype == np.int64 and classes.tolist() == np.flatnonzero(tags).tolist()
        assert full.dtype == np.float16 and full.shape == (len(classes), *image.shape[:2])
        assert low.dtype == np.float16 and low.shape == (len(classes), *S.strided_size(image.shape[:2], 4))
        direct = S.SeedEngine(ToyMaps())([image], [tags])[0]
        np.testing.assert_allclose(full, direct.full.numpy(), atol=1e-3)
        with Image.open(mask_path) as png:
            assert png.mode == "P"
        np.testing.assert_array_equal(read_label_png(mask_path), S.seed_labels(full, classes, 0.4))
        assert set(np.unique(read_label_png(mask_path))) <= {0, *(classes + 1).tolist()}


def test_resume_skips_finished_images_and_redoes_half_written_ones(tmp_path):
    data = source(5)
    engine = S.SeedEngine(ToyMaps(), scales=(1.0,))
    assert S.generate_seeds(engine, data, tmp_path, batch_size=2) == 5
    first = {i: S.seed_files(tmp_path, i)[0].read_bytes() for i in data.image_ids}
    # image 1 lost its pseudo-mask (interrupted before the last file), image 3 left a temporary file
    S.seed_files(tmp_path, data.image_ids[1])[1].unlink()
    maps_3, mask_3 = S.seed_files(tmp_path, data.image_ids[3])
    mask_3.unlink()
    maps_3.unlink()
    (maps_3.parent / f".{maps_3.name}.bas-999999-abc.tmp.npz").write_bytes(b"half")
    data.reads.clear()
    assert S.pending_indices(data, tmp_path) == [1, 3]
    assert S.generate_seeds(engine, data, tmp_path, batch_size=2) == 2
    assert sorted(data.reads) == [1, 3]
    assert all(S.is_finished(tmp_path, i) for i in data.image_ids)
    assert {i: S.seed_files(tmp_path, i)[0].read_bytes() for i in data.image_ids} == first
    assert S.generate_seeds(engine, data, tmp_path) == 0


def test_shards_together_equal_one_run(tmp_path):
    data = source(7)
    engine = S.SeedEngine(ToyMaps(), scales=(1.0, 0.5))
    S.generate_seeds(engine, data, tmp_path / "one", batch_size=3)
    for rank in range(3):
        S.generate_seeds(engine, data, tmp_path / "shards", batch_size=3, shard=S.Shard(rank, 3))
        assert S.pending_indices(data, tmp_path / "shards", S.Shard(rank, 3)) == []
    assert sorted(p.name for p in (tmp_path / "shards" / "maps").iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / "maps").iterdir()
    )
    for image_id in data.image_ids:
        a, b = (S.read_seeds(S.seed_files(tmp_path / d, image_id)[0]) for d in ("one", "shards"))
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1].astype(np.float32), b[1].astype(np.float32), atol=1e-3)


def test_reading_processes_write_the_same_seeds(tmp_path):
    data = source(4)
    engine = S.SeedEngine(ToyMaps(), scales=(1.0,))
    S.generate_seeds(engine, data, tmp_path / "a", batch_size=2)
    assert S.generate_seeds(engine, data, tmp_path / "b", batch_size=2, workers=2) == 4
    for image_id in data.image_ids:
        a, b = (S.read_seeds(S.seed_files(tmp_path / d, image_id)[0]) for d in "ab")
        np.testing.assert_array_equal(a[1], b[1])


def test_batches_group_images_of_one_size():
    items = [(i, np.zeros((10 + i % 2, 8, 3), np.uint8), None) for i in range(7)]
    batches = list(S.batches_by_size(items, 2))
    assert sorted(i for b in batches for i, _, _ in b) == list(range(7))
    for batch in batches:
        assert len(batch) <= 2 and len({im.shape for _, im, _ in batch}) == 1
    assert [[i for i, _, _ in b] for b in S.batches_by_size(items, 3, pending_limit=2)][0] == [0, 2]


def test_a_folder_of_other_settings_is_refused(tmp_path):
    manifest = {"checkpoint": "a", "scales": [1.0], "flip": True, "split": "train"}
    S.write_manifest(tmp_path, manifest)
    S.write_manifest(tmp_path, manifest)  # the same settings: resumable
    with pytest.raises(bas.errors.ConfigError, match="scales"):
        S.write_manifest(tmp_path, {**manifest, "scales": [1.0, 0.5]})


def test_bad_scales_are_refused():
    with pytest.raises(bas.errors.ConfigError, match="scales"):
        S.SeedEngine(ToyMaps(), scales=(1.0, 0.0))


# ---------------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def voc(tmp_path_factory) -> Path:
    root = make_multilabel_dataset(
        tmp_path_factory.mktemp("voc") / "data",
        num_classes=3,
        images_per_split={"train": 4, "val": 3, "test": 3},
        image_size=64,
        seed=0,
    )
    return root / VOC_SUBDIR


def checkpoint(path: Path, method: str, config: dict | None = None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = bas.build_model("resnet18", 3, method=method)
    save_model(path, model, class_names=["c1", "c2", "c3"], config=config or {})
    return path


def test_command_writes_every_image_and_resumes(voc, tmp_path, capsys):
    ckpt = checkpoint(tmp_path / "bas.safetensors", "multilabel_bas")
    out = tmp_path / "seeds"
    args = ["wsss", "seeds", "--checkpoint", str(ckpt), "--data-root", str(voc), "--split", "train"]
    args += ["--output", str(out), "--scales", "1", "0.5", "--no-progress", "--workers", "0"]
    assert main(args + ["--bg-threshold", "0.4"]) == 0
    ids = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert all(S.is_finished(out / "train", i) for i in ids)
    manifest = json.loads((out / "train" / "seeds.json").read_text())
    assert manifest["scales"] == [1.0, 0.5] and manifest["flip"] is True and manifest["fuse_cam"] is None
    assert manifest["bg_threshold"] == 0.4 and manifest["num_images"] == 4 and manifest["split"] == "train"
    assert "4/4 images" in capsys.readouterr().out
    # the tags come from the masks: the classes of each npz are those of its ground truth
    for image_id in ids:
        classes, _ = S.read_seeds(S.seed_files(out / "train", image_id)[0])
        gt = read_label_png(voc / "SegmentationClass" / f"{image_id}.png")
        assert (classes + 1).tolist() == sorted(set(np.unique(gt).tolist()) - {0, 255})
    before = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.npz")}
    assert main(args + ["--bg-threshold", "0.4"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.npz")} == before
    assert main(args + ["--bg-threshold", "0.5"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_recipe_fusion_key(voc, tmp_path, capsys):
    cam = checkpoint(tmp_path / "cam.safetensors", "multilabel_cam", seed=1)
    missing = tmp_path / "runs" / "cam" / "best.safetensors"
    ckpt = checkpoint(
        tmp_path / "bas.safetensors",
        "multilabel_bas",
        {"seeds": {"fuse_cam": str(missing)}, "data": {"root": str(voc)}},
    )
    base = ["wsss", "seeds", "--checkpoint", str(ckpt), "--scales", "1", "--no-progress", "--workers", "0"]
    assert main(base + ["--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "seeds.fuse_cam" in err and "--no-fuse-cam" in err
    assert not (tmp_path / "a").exists()
    assert main(base + ["--output", str(tmp_path / "b"), "--no-fuse-cam"]) == 0
    assert main(base + ["--output", str(tmp_path / "c"), "--fuse-cam", str(cam)]) == 0
    assert json.loads((tmp_path / "c" / "train" / "seeds.json").read_text())["fuse_cam"] == str(cam.resolve())
    missing.parent.mkdir(parents=True)
    missing.write_bytes(cam.read_bytes())
    assert main(base + ["--output", str(tmp_path / "d")]) == 0
    fused = json.loads((tmp_path / "d" / "train" / "seeds.json").read_text())
    assert fused["fuse_cam"] == str(missing.resolve())
    image_id = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()[0]
    a, b, c = (S.read_seeds(S.seed_files(tmp_path / d / "train", image_id)[0])[1] for d in "bcd")
    assert np.abs(a.astype(np.float32) - b.astype(np.float32)).max() > 1e-3  # fusion changes the maps
    np.testing.assert_array_equal(b, c)  # the recipe's CAM file = the same CAM given by hand


def test_a_wsol_model_is_refused(voc, tmp_path, capsys):
    ckpt = tmp_path / "wsol.safetensors"
    save_model(ckpt, bas.build_model("resnet18", 3))
    args = [
        "wsss",
        "seeds",
        "--checkpoint",
        str(ckpt),
        "--data-root",
        str(voc),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "multi-label" in capsys.readouterr().err


@pytest.mark.slow
def test_two_torchrun_processes_write_what_one_process_writes(voc, tmp_path):
    from test_distributed import LAUNCH, free_port

    ckpt = checkpoint(tmp_path / "bas.safetensors", "multilabel_bas")
    common = ["wsss", "seeds", "--checkpoint", str(ckpt), "--data-root", str(voc), "--split", "train"]
    common += [
        "--scales",
        "1",
        "0.5",
        "--no-progress",
        "--workers",
        "0",
        "--device",
        "cpu",
        "--batch-size",
        "1",
    ]
    assert main(common + ["--output", str(tmp_path / "one")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [*LAUNCH, "--nproc_per_node=2", f"--master_port={free_port()}", "-m", "bas.cli", *common]
        + ["--output", str(tmp_path / "two")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.count("4/4 images") == 1  # rank 0 reports once, after both ranks are done
    one, two = tmp_path / "one" / "train", tmp_path / "two" / "train"
    assert sorted(p.name for p in (two / "maps").iterdir()) == sorted(
        p.name for p in (one / "maps").iterdir()
    )
    for path in (one / "maps").iterdir():
        a, b = S.read_seeds(path), S.read_seeds(two / "maps" / path.name)
        assert a[0].tolist() == b[0].tolist()
        np.testing.assert_allclose(a[1].astype(np.float32), b[1].astype(np.float32), atol=1e-3)
    for path in (one / "masks").iterdir():
        assert (np.mean(read_label_png(path) != read_label_png(two / "masks" / path.name))) < 0.01
