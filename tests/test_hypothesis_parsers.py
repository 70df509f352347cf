"""Property-based tests: arbitrary bytes and arbitrary lines fed to every annotation parser and to
the checkpoint reader give a valid result or the project's own error (a BASError), never another
exception. Examples are bounded (``max_examples``, ``deadline``) to keep the suite fast."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bas.data import build_dataset
from bas.data.formats.bas_list import read_label_list
from bas.data.formats.ilsvrc import load_wnids, parse_loc_solution_csv, parse_val_gt, parse_val_xml_dir
from bas.data.metadata import load_metadata
from bas.data.parsing import parse_floats, parse_int, positive_size, read_lines
from bas.data.paths import relative_parts, resolve_in_root
from bas.errors import BASError

BOUNDED = settings(
    max_examples=60,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)

# Tokens that the formats give meaning to, so that generated lines come close to valid ones.
TOKENS = st.sampled_from(
    [" ", ",", ";", "\t", "\\", "\\\\", "/", "..", ".", "a.jpg", "n01", "001.A/a.jpg", "0", "1", "2", "-1",
     "1.5", "40", "1e309", "nan", "inf", "-0", "\ufeff", "\r", "C:", "<", ">"]
)  # fmt: skip
LINE = st.one_of(st.text(max_size=40), st.lists(TOKENS, max_size=12).map("".join))
LINES = st.lists(LINE, max_size=8).map("\n".join)
CONTENT = st.one_of(LINES.map(lambda s: s.encode("utf-8", "surrogatepass")), st.binary(max_size=200))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp())
    yield path
    shutil.rmtree(path)


def fresh(folder: Path) -> Path:
    """An empty folder for one example (hypothesis reuses the test's fixtures)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def valid_or_own_error(call: Callable[[], object]) -> None:
    try:
        call()
    except BASError:
        pass


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------- helpers of parsing


@BOUNDED
@given(text=st.text(max_size=30))
def test_token_parsers_never_raise(text):
    parse_floats(text.split())
    parse_int(text)
    positive_size(text.split())
    valid_or_own_error(lambda: relative_parts(text))


@BOUNDED
@given(content=CONTENT)
def test_read_lines(folder, content):
    path = write(fresh(folder) / "list.txt", content)
    valid_or_own_error(lambda: read_lines(path))


@BOUNDED
@given(relpath=LINE)
def test_resolve_in_root(folder, relpath):
    try:
        path = resolve_in_root(folder, relpath)
    except BASError:
        return
    assert str(path).startswith(str(folder))


# ----------------------------------------------------------------------------- one file of a format

# (format, file written with the arbitrary content, files written valid, options)
SINGLE_FILES = {
    "bas_list-list": ("bas_list", "test_list.txt", {}, {}),
    "bas_list-boxes": ("bas_list", "test_bounding_box.txt", {"test_list.txt": "a.jpg;0\nb.jpg;1\n"}, {}),
    "folder-boxes_csv": ("folder", "boxes.csv", {"cls/a.jpg": ""}, {"boxes_csv": "boxes.csv"}),
    "ilsvrc-val_gt": ("ilsvrc", "val_gt.txt", {}, {"boxes": "val_gt.txt"}),
    "ilsvrc-csv": ("ilsvrc", "LOC_val_solution.csv", {}, {"boxes": "LOC_val_solution.csv"}),
    "ilsvrc-val_list": (
        "ilsvrc",
        "val_list.txt",
        {"LOC_val_solution.csv": "ImageId,PredictionString\na,n01 0 0 5 5\n"},
        {"boxes": "LOC_val_solution.csv", "val_list": "val_list.txt"},
    ),
    "ilsvrc-synsets": (
        "ilsvrc",
        "synsets.txt",
        {"LOC_val_solution.csv": "ImageId,PredictionString\na,n01 0 0 5 5\n"},
        {"boxes": "LOC_val_solution.csv", "classes": "synsets.txt"},
    ),
    "ilsvrc-xml": ("ilsvrc", "xml/a.xml", {}, {"boxes": "xml"}),
}

CUB_VALID = {
    "classes.txt": "1 001.A\n2 002.B\n",
    "images.txt": "1 001.A/a.jpg\n2 002.B/b.jpg\n",
    "image_class_labels.txt": "1 1\n2 2\n",
    "train_test_split.txt": "1 0\n2 0\n",
    "bounding_boxes.txt": "1 0 0 5 5\n2 1 1 3 3\n",
}
for _name in CUB_VALID:
    SINGLE_FILES[f"cub-{_name}"] = ("cub", _name, {k: v for k, v in CUB_VALID.items() if k != _name}, {})

WSOL_VALID = {
    "image_ids.txt": "a.jpg\nb.jpg\n",
    "class_labels.txt": "a.jpg,0\nb.jpg,1\n",
    "image_sizes.txt": "a.jpg,40,30\nb.jpg,20,20\n",
    "localization.txt": "a.jpg,0,0,5,5\nb.jpg,1,1,3,3\n",
}
for _name in WSOL_VALID:
    SINGLE_FILES[f"wsol-{_name}"] = (
        "wsol",
        f"meta/{_name}",
        {f"meta/{k}": v for k, v in WSOL_VALID.items() if k != _name},
        {"metadata": "meta"},
    )


@pytest.mark.parametrize("collect", [False, True], ids=["raise", "collect"])
@pytest.mark.parametrize("case", sorted(SINGLE_FILES))
def test_format_files(folder, case, collect):
    kind, name, others, options = SINGLE_FILES[case]

    @BOUNDED
    @given(content=CONTENT)
    def check(content):
        root = fresh(folder)
        for other, text in others.items():
            write(root / other, text.encode())
        write(root / name, content)
        opts = {k: str(root / v) for k, v in options.items()}
        problems = [] if collect else None
        valid_or_own_error(lambda: build_dataset(kind, root, "test", None, problems=problems, **opts))

    check()


@BOUNDED
@given(content=CONTENT)
def test_ilsvrc_and_bas_readers_directly(folder, content):
    path = write(fresh(folder) / "x.txt", content)
    for reader in (read_label_list, parse_val_gt, parse_loc_solution_csv):
        valid_or_own_error(lambda reader=reader: reader(path))
        valid_or_own_error(lambda reader=reader: reader(path, []))
    valid_or_own_error(lambda: load_wnids(path))
    write(folder / "xml" / "a.xml", content)
    valid_or_own_error(lambda: parse_val_xml_dir(folder / "xml", []))


@BOUNDED
@given(files=st.dictionaries(st.sampled_from(sorted(WSOL_VALID)), CONTENT, max_size=4))
def test_metadata_any_combination(folder, files):
    root = fresh(folder)
    for name, content in files.items():
        write(root / name, content)
    valid_or_own_error(lambda: load_metadata(root))


# ----------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def valid_checkpoint(folder) -> bytes:
    from bas.checkpoints import save_model
    from bas.models import build_model

    path = folder.parent / f"{folder.name}-model.safetensors"
    save_model(path, build_model("mobilenet_v1", 2, hidden=8), input_size=32, resize_size=36)
    data = path.read_bytes()
    path.unlink()
    return data


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_checkpoint_reader(folder, valid_checkpoint, suffix):
    from bas.checkpoints import load_checkpoint

    @settings(BOUNDED, max_examples=40)
    @given(
        content=st.one_of(
            st.binary(max_size=300),
            # a valid file cut, or with a few bytes changed: the header and the tensors
            st.tuples(st.integers(0, len(valid_checkpoint)), st.binary(min_size=1, max_size=8)).map(
                lambda cut: valid_checkpoint[: cut[0]] + cut[1] + valid_checkpoint[cut[0] + len(cut[1]) :]
            ),
            st.integers(0, len(valid_checkpoint)).map(lambda n: valid_checkpoint[:n]),
        )
    )
    def check(content):
        path = write(fresh(folder) / f"model{suffix}", content)
        valid_or_own_error(lambda: load_checkpoint(path))

    check()
