"""Tests of the synthetic WSOL dataset generator (tiny sizes: 3 classes x 6 images x 64 px)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bas.data import synthetic
from bas.data.synthetic import (
    PART_AREA_RANGE,
    SyntheticSpec,
    class_styles,
    make_dataset,
    render_sample,
)
from bas.errors import BASError

K, N, S = 3, 6, 64


def _read_table(path: Path) -> dict[int, list[str]]:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        assert fields, f"blank line in {path.name}"
        assert int(fields[0]) not in rows, f"duplicate id in {path.name}"
        rows[int(fields[0])] = fields[1:]
    return rows


def _tight_box(mask: np.ndarray) -> list[float]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "data"
    assert make_dataset(root, K, N, S, seed=3) == root.absolute()
    return root


def test_layout_is_consistent(dataset: Path) -> None:
    images = _read_table(dataset / "images.txt")
    labels = _read_table(dataset / "image_class_labels.txt")
    split = _read_table(dataset / "train_test_split.txt")
    boxes = _read_table(dataset / "bounding_boxes.txt")
    parts = _read_table(dataset / "parts.txt")
    bodies = _read_table(dataset / "body_classes.txt")
    classes = _read_table(dataset / "classes.txt")

    ids = list(range(1, K * N + 1))
    for table in (images, labels, split, boxes, parts, bodies):
        assert sorted(table) == ids
    assert sorted(classes) == list(range(1, K + 1))
    assert len({c[0] for c in classes.values()}) == K

    per_class: dict[int, set[int]] = {k: set() for k in range(1, K + 1)}
    for i in ids:
        (rel,) = images[i]
        label = int(labels[i][0])
        assert 1 <= label <= K and 1 <= int(bodies[i][0]) <= K
        assert rel.split("/")[0] == classes[label][0]
        per_class[label].add(int(split[i][0]))

        with Image.open(dataset / "images" / rel) as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (S, S)
        with Image.open((dataset / "masks" / rel).with_suffix(".png")) as mk:
            assert mk.mode == "L" and mk.size == (S, S)
            mask = np.asarray(mk)
        assert set(np.unique(mask)) <= {0, 255}
        mask = mask > 0

        x, y, w, h = map(float, boxes[i])
        assert 0 <= x and 0 <= y and x + w <= S and y + h <= S
        assert [x, y, w, h] == _tight_box(mask)
        px, py, pw, ph = map(float, parts[i])
        assert x <= px and y <= py and px + pw <= x + w and py + ph <= y + h
    assert all(seen == {0, 1} for seen in per_class.values())

    meta = json.loads((dataset / "synthetic.json").read_text())
    assert meta["params"] == SyntheticSpec(K, N, S, 3).to_dict()


def test_deterministic_and_seed_dependent(dataset: Path, tmp_path: Path) -> None:
    again = make_dataset(tmp_path / "again", K, N, S, seed=3)
    other = make_dataset(tmp_path / "other", K, N, S, seed=4)
    reference = _digest(dataset)
    assert _digest(again) == reference
    changed = _digest(other)
    assert changed.keys() == reference.keys()
    assert sum(changed[k] != reference[k] for k in reference) > K * N


def test_rendering_is_order_independent() -> None:
    spec = SyntheticSpec(K, N, S, seed=5)
    late = render_sample(spec, 7)
    for i in range(7):
        render_sample(spec, i)
    assert np.array_equal(render_sample(spec, 7).image, late.image)


def test_recall_is_idempotent_and_guarded(dataset: Path) -> None:
    probe = [dataset / "synthetic.json", dataset / "images.txt", next((dataset / "images").rglob("*.jpg"))]
    before = [p.stat().st_mtime_ns for p in probe]
    assert make_dataset(dataset, K, N, S, seed=3) == dataset.absolute()
    assert [p.stat().st_mtime_ns for p in probe] == before

    with pytest.raises(BASError, match="other parameters.*seed"):
        make_dataset(dataset, K, N, S, seed=4)
    with pytest.raises(BASError, match="other parameters"):
        make_dataset(dataset, K, N + 1, S, seed=3)


def test_overwrite_and_incomplete(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "d", 2, 3, 48, seed=0)
    victim = next((root / "masks").rglob("*.png"))
    victim.unlink()
    with pytest.raises(BASError, match="incomplete"):
        make_dataset(root, 2, 3, 48, seed=0)
    make_dataset(root, 2, 3, 48, seed=0, overwrite=True)
    assert victim.is_file()

    make_dataset(root, 2, 4, 48, seed=1, overwrite=True)
    assert json.loads((root / "synthetic.json").read_text())["params"]["images_per_class"] == 4
    assert len((root / "images.txt").read_text().splitlines()) == 8
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temporary leftovers


def test_refuses_foreign_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "real_cub"
    foreign.mkdir()
    (foreign / "images.txt").write_text("1 a/b.jpg\n")
    for overwrite in (False, True):
        with pytest.raises(BASError, match="refusing"):
            make_dataset(foreign, 2, 3, 48, overwrite=overwrite)
    assert (foreign / "images.txt").read_text() == "1 a/b.jpg\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    make_dataset(empty, 2, 3, 48)
    assert (empty / "synthetic.json").is_file()


def test_interrupted_generation_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    real = synthetic.render_sample

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_sample", flaky)
    with pytest.raises(KeyboardInterrupt):
        make_dataset(tmp_path / "d", 2, 3, 48)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"num_classes": 0},
        {"images_per_class": 0},
        {"image_size": 16},
        {"seed": -1},
        {"test_fraction": 1.0},
        {"body_reliability": 1.5},
        {"num_classes": 2.5},
        {"striped_background": "no"},
    ],
)
def test_invalid_parameters(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(BASError):
        make_dataset(tmp_path / "d", **kwargs)
    assert not (tmp_path / "d").exists()


def test_part_is_class_specific_and_sized(dataset: Path) -> None:
    styles = class_styles(K)
    colors = np.array([s.part_color for s in styles])
    gaps = np.linalg.norm(colors[:, None] - colors[None], axis=-1) + np.eye(K) * 9
    assert gaps.min() > 0.3
    assert len({s.symbol for s in styles}) == K
    # Part hues are far more saturated than any body colour.
    assert min(max(c) - min(c) for c in colors) > 0.8
    assert max(max(c) - min(c) for s in styles for c in s.body_colors) < 0.6

    spec = SyntheticSpec(K, N, S, seed=3)
    images = _read_table(dataset / "images.txt")
    parts = _read_table(dataset / "parts.txt")
    for index in range(K * N):
        sample = render_sample(spec, index, styles)
        assert not (sample.part_mask & ~sample.mask).any()
        assert not (sample.distractor_mask & sample.mask).any()
        frac = sample.part_mask.sum() / sample.mask.sum()
        assert PART_AREA_RANGE[0] <= frac <= PART_AREA_RANGE[1]
        assert [float(v) for v in parts[index + 1]] == _tight_box(sample.part_mask)
        # The part's colour, read back from the JPEG, identifies the class.
        with Image.open(dataset / "images" / images[index + 1][0]) as im:
            pixels = np.asarray(im.convert("RGB"), dtype=np.float64)[sample.part_mask] / 255
        seen = np.median(pixels, axis=0)
        assert int(np.argmin(np.linalg.norm(colors - seen, axis=1))) == sample.label


def test_body_reliability_controls_body_texture() -> None:
    labels = range(0, 4 * 5)
    always = SyntheticSpec(4, 5, 48, seed=0, body_reliability=1.0)
    never = SyntheticSpec(4, 5, 48, seed=0, body_reliability=0.0)
    assert all(render_sample(always, i).body_label == i // 5 for i in labels)
    assert all(render_sample(never, i).body_label != i // 5 for i in labels)


def test_striped_background_only_changes_background_textures(texture_kinds: list[str]) -> None:
    kinds = texture_kinds
    striped = SyntheticSpec(4, 5, 64, seed=2)
    plain = SyntheticSpec(4, 5, 64, seed=2, striped_background=False)
    differs = 0
    for i in range(striped.num_images):
        kinds.clear()
        a = render_sample(striped, i)
        striped_kinds = list(kinds)
        kinds.clear()
        b = render_sample(plain, i)
        assert "stripes" not in kinds
        # Same random draws: the same object, part, distractor shapes and object pixels.
        assert len(kinds) == len(striped_kinds)
        assert [k for k in kinds if k == "flat"] == [k for k in striped_kinds if k == "flat"]
        assert (a.label, a.body_label, a.box, a.part_box) == (b.label, b.body_label, b.box, b.part_box)
        assert np.array_equal(a.mask, b.mask) and np.array_equal(a.distractor_mask, b.distractor_mask)
        assert np.array_equal(a.image[a.mask], b.image[b.mask])
        differs += "stripes" in striped_kinds and not np.array_equal(a.image, b.image)
    assert differs > 0  # the default does draw striped distractors or fields


def test_generation_is_fast() -> None:
    start = time.process_time()
    for i in range(20):
        render_sample(SyntheticSpec(4, 5, 160, seed=0), i)
    # ~6 ms of CPU per 160 px image; generous bound for a loaded machine.
    assert (time.process_time() - start) / 20 < 0.25


def test_boxes_inside_and_sizes_vary() -> None:
    spec = SyntheticSpec(2, 15, S, seed=11)
    fracs = []
    for i in range(spec.num_images):
        s = render_sample(spec, i)
        x, y, w, h = s.box
        assert x >= 1 and y >= 1 and x + w <= S - 1 and y + h <= S - 1
        fracs.append(w * h / S**2)
    assert min(fracs) < 0.25 and max(fracs) > 0.4
