"""Your own multi-label data (``multilabel_folder``): images, a CSV of tags per split, optional masks.

Layout::

    <split>.csv                       header ``image,tags``, then one line per image
    images/<image>                    the images (option ``image_dir``: another folder name)
    classes.txt                       optional: one class name per line, in class-index order
    masks/<image with .png>           optional (option ``mask_dir``): label masks (0 background, c + 1 = class c, 255 ignore)

A CSV line is ``<image path relative to images/>,<tags>``; the tags are class names separated by
spaces or ``|`` (``dog cat`` or ``dog|cat``; quote the field if a name contains a comma). Classes:
the names of ``classes.txt`` (option ``classes``: another file) when it exists, and then a tag
outside it is an error; otherwise the sorted names found in all the split CSVs, so that every
split numbers the classes alike. An image whose mask is missing from ``masks/`` has no mask.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from pathlib import Path

from bas.data.datasets import Location
from bas.data.formats.registry import DatasetFormat, Option, register_format
from bas.data.formats.voc07 import read_class_names
from bas.data.multilabel import MultiLabelDataset, TagRecord, check_multilabel
from bas.data.parsing import Problems, read_lines
from bas.data.paths import check_inside, relative_parts
from bas.errors import ConfigError, DataError

HEADER = ["image", "tags"]
_SEPARATORS = re.compile(r"[\s|]+")

#: One parsed line: image path, tag names, (file, line).
Entry = tuple[str, list[str], Location]


def read_tag_csv(path: Path, report: Problems) -> list[Entry]:
    """The ``image,tags`` lines of a split CSV (header required); bad lines are reported."""
    lines = read_lines(path)
    if not lines or [f.strip().lower() for f in next(csv.reader([lines[0][1]]))] != HEADER:
        raise DataError(
            f"the first line must be the header {','.join(HEADER)!r}", path, lines[0][0] if lines else None
        )
    entries: list[Entry] = []
    seen: dict[str, int] = {}
    for lineno, text in lines[1:]:
        fields = [f.strip() for f in next(csv.reader([text]))]
        if len(fields) != 2 or not fields[0]:
            report.report(f"expected '<image>,<tags>', got {text!r}", path, lineno)
            continue
        image, tags = fields[0], [t for t in _SEPARATORS.split(fields[1]) if t]
        if not tags:
            report.report(f"{image}: no tags", path, lineno)
            continue
        key = image.replace("\\", "/")
        if key in seen:
            report.report(f"{image}: already listed on line {seen[key]}", path, lineno)
            continue
        seen[key] = lineno
        entries.append((image, tags, (str(path), lineno)))
    return entries


def _split_csv(root: Path, split: str) -> Path:
    path = root / f"{split}.csv"
    check_inside(root, path)
    if not path.is_file():
        found = ", ".join(splits(root)) or "none"
        raise DataError(f"no tag list for the split {split!r} ({split}.csv; found: {found})", root)
    return path


class MultiLabelFolderDataset(MultiLabelDataset):
    """Images with a CSV of tags per split and optional label masks (module docstring: the layout)."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Callable | None = None,
        image_dir: str = "images",
        mask_dir: str = "masks",
        classes: str | None = None,
        problems: list[DataError] | None = None,
    ):
        self.root = root = Path(root)
        if not root.is_dir():
            raise DataError("dataset folder not found", root)
        report = Problems(problems)
        entries = read_tag_csv(_split_csv(root, split), report)
        class_file = Path(classes) if classes is not None else root / "classes.txt"
        if classes is not None and not class_file.is_file():
            raise ConfigError(f"the classes file {class_file} does not exist")
        if class_file.is_file():
            if classes is None:
                check_inside(root, class_file)
            names = read_class_names(class_file)
        else:  # every split's names, so that the splits agree
            quiet = Problems([])
            names = sorted(
                {
                    t
                    for s in splits(root)
                    for _, tags, _ in read_tag_csv(root / f"{s}.csv", quiet)
                    for t in tags
                }
            )
        index = {name: k for k, name in enumerate(names)}
        image_dir, mask_dir = root / image_dir, root / mask_dir
        use_masks = mask_dir.is_dir()
        records = []
        for image, tags, (file, line) in entries:
            unknown = [t for t in tags if t not in index]
            if unknown:
                report.report(
                    f"{image}: unknown class(es) {', '.join(unknown)} (not in {class_file.name})", file, line
                )
                continue
            path = self._contained(image_dir, image, file, line, report)
            if path is None:
                continue
            image = path.relative_to(image_dir).as_posix()
            mask = None
            if use_masks:
                mask = self._contained(mask_dir, str(Path(image).with_suffix(".png")), file, line, report)
                if mask is None:
                    continue
                mask = mask if mask.is_file() else None
            records.append(
                TagRecord(image, path, tuple(sorted({index[t] for t in tags})), mask, (file, line))
            )
        super().__init__(records, names, transform)

    def _contained(
        self, folder: Path, relpath: str, file: str, line: int | None, report: Problems
    ) -> Path | None:
        """``folder / relpath``: no ``..`` nor absolute path, and no link leading out of the dataset
        root (a link from the image folder to elsewhere in the root is fine); None once reported."""
        if not report.contained(relpath, file, line):
            return None
        path = folder.joinpath(*relative_parts(relpath))
        return path if report.inside(self.root, path, file, line) else None


def build(
    root: Path, split: str, transform: Callable | None, problems: list | None, **options
) -> MultiLabelFolderDataset:
    return MultiLabelFolderDataset(root, split, transform, problems=problems, **options)


def splits(root: Path, **options) -> list[str]:
    return sorted(p.stem for p in root.glob("*.csv"))


FORMAT = register_format(
    DatasetFormat(
        name="multilabel_folder",
        summary="images + <split>.csv of 'image,tags' (tags split by spaces or |), optional masks/ and classes.txt",
        build=build,
        splits=splits,
        options={
            "image_dir": Option("images", "folder of the images under the root"),
            "mask_dir": Option("masks", "folder of the optional label masks under the root"),
            "classes": Option(
                None, "file of class names, one per line (default: classes.txt or the CSVs' tags)"
            ),
        },
        check=check_multilabel,
    )
)
