"""The repository is self-contained: no code, test, doc or CI script refers to a file outside it.

The method's specification lives in docs/method.md and the facts the tests need under
tests/fixtures/; a reference to an outside spec document or folder is a read that a fresh clone
cannot satisfy.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("src", "tests", "benchmarks", "docs", ".ci")
TOP_LEVEL = ("README.md", "pyproject.toml")
# Spelled in pieces so that this file does not match itself.
FORBIDDEN = re.compile("|".join([r"shared[/\\]+reference", r"\bBAS" + r"\.md\b", r"formats" + r"\.md\b"]))
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", ".json", ".sh", ""}


def scanned_files() -> list[Path]:
    files = [ROOT / name for name in TOP_LEVEL if (ROOT / name).is_file()]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in SUFFIXES and "__pycache__" not in path.parts:
                files.append(path)
    return files


def offending_lines(paths: list[Path], root: Path = ROOT) -> list[str]:
    found = []
    for path in paths:
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(root).as_posix()}:{number}: {line.strip()}")
    return found


def test_scan_covers_the_tree():
    files = {p.relative_to(ROOT).as_posix() for p in scanned_files()}
    for expected in ("README.md", ".ci/run", "docs/method.md", "tests/test_checkpoints.py"):
        assert expected in files
    assert any(name.startswith("src/bas/configs/") and name.endswith(".yaml") for name in files)


def test_nothing_refers_outside_the_repository():
    found = offending_lines(scanned_files())
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_the_scan_finds_a_re_added_reference(tmp_path):
    # planted text, assembled from pieces: an outside spec document and an outside spec folder
    spec_document = "".join(["BAS", ".", "md"])
    spec_folder = "/".join(["..", "shared", "reference"])
    for line in (f"see {spec_document} §4", f"keys from {spec_folder}/keys.json"):
        path = tmp_path / "src" / "bad.py"
        path.parent.mkdir(exist_ok=True)
        path.write_text(f"x = 1\n# {line}\n")
        assert offending_lines([path], tmp_path) == [f"src/bad.py:2: # {line}"]
    clean = tmp_path / "src" / "good.py"
    clean.write_text("# docs/method.md §4; a shared pool of distractors\n")
    assert offending_lines([clean], tmp_path) == []
