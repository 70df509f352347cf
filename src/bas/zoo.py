"""The model zoo: the checkpoints released with the BAS papers and the numbers they report.

The table is the package's data file ``zoo.yaml`` (read with :mod:`importlib.resources`). Each
:class:`ZooEntry` names the paper, the dataset, the shipped recipe that reproduces it (which gives
the architecture, method, class count, ``top_k`` and threshold), the evaluation protocol preset,
the published figures with their source, and the authors' file name and download pages.
``bas zoo`` lists it, ``bas evaluate --zoo NAME`` evaluates a downloaded file with the entry's
settings and prints the measured figures next to the reported ones. Downloading stays with the
user: the files sit on web drives behind pages.

No torch here: ``bas zoo`` stays fast.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import MISSING, asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from bas.errors import CheckpointError, ConfigError, UsageError

ZOO_FILE = "zoo.yaml"
TASKS = ("wsol", "wsss")
AVERAGES = ("class", "image")
# Reported metric keys (the keys of `bas evaluate`'s metrics.json) and their column titles.
METRICS = {
    "top1_loc": "Top-1 Loc",
    "top5_loc": "Top-5 Loc",
    "gt_known_loc": "GT-known Loc",
    "PxAP": "PxAP",
    "PIoU": "PIoU",
    "seed_mIoU": "seed mIoU",
}
LOC = ("top1_loc", "top5_loc", "gt_known_loc")  # the fixed-threshold accuracies, per image or per class
PAPERS = {"cvpr2022": "CVPR 2022", "ijcv2023": "IJCV 2023"}


@dataclass(frozen=True)
class ZooEntry:
    """One released checkpoint (see ``zoo.yaml`` for the meaning of each field)."""

    name: str
    paper: str
    task: str
    dataset: str
    recipe: str
    protocol: str | None
    split: str
    reported: dict[str, float]
    average: str
    ten_crop: bool
    source: str
    table: str
    file: str
    authors_path: str
    download: tuple[str, ...]
    note: str = ""
    # from the recipe
    arch: str = ""
    method: str = ""
    num_classes: int = 0
    variant: str | None = None
    top_k: int = 1
    threshold: float = 0.5
    test_mode: str = "crop"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["download"] = list(self.download)
        return out

    def measured(self, result: dict[str, Any]) -> dict[str, float | None]:
        """The figures of a ``bas evaluate`` result that compare with :attr:`reported`, taken with
        the same mean (class-balanced or per image); None where the result has none."""
        out = {}
        for key in self.reported:
            source = result.get("class_balanced", {}) if self.average == "class" and key in LOC else result
            value = source.get(key)
            out[key] = None if value is None else float(value)
        return out

    def settings(self) -> str:
        """One line: what ``bas evaluate --zoo`` takes from the entry."""
        return (
            f"zoo {self.name}: recipe {self.recipe}, protocol {self.protocol}, top_k {self.top_k}, "
            f"threshold {self.threshold:g}" + (", ten-crop classification" if self.ten_crop else "")
        )

    def where_to_get(self) -> str:
        """One sentence: the authors' file name and the pages it is published on."""
        pages = " or ".join(self.download) if self.download else "no page (not released)"
        return (
            f"the {self.name} checkpoint is the authors' {self.file} ({self.authors_path} in their "
            f"repository); download it from {pages}"
        )


# What the data file's entries set (the other fields come from the recipe), and what they must set.
RECIPE_FIELDS = ("arch", "method", "num_classes", "variant", "top_k", "threshold", "test_mode")
ENTRY_FIELDS = tuple(f.name for f in dataclass_fields(ZooEntry) if f.name not in RECIPE_FIELDS)
REQUIRED = tuple(
    f.name for f in dataclass_fields(ZooEntry) if f.name in ENTRY_FIELDS and f.default is MISSING
)


@dataclass(frozen=True)
class Zoo:
    """The whole table: entries, the publications they cite and the released files not covered."""

    entries: tuple[ZooEntry, ...]
    sources: dict[str, str] = field(default_factory=dict)
    not_covered: tuple[dict[str, Any], ...] = ()

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> ZooEntry:
        """The entry called ``name``; UsageError naming the closest names otherwise."""
        for entry in self.entries:
            if entry.name == name:
                return entry
        close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `bas zoo` lists them"
        raise UsageError(f"unknown zoo entry {name!r}{hint}")


def zoo_text() -> str:
    """The data file's text."""
    return resources.files("bas").joinpath(ZOO_FILE).read_text(encoding="utf-8")


@cache
def load_zoo() -> Zoo:
    """The parsed and checked table; ConfigError naming the entry of a malformed field."""
    from bas.config import load_recipe

    data = yaml.safe_load(zoo_text())
    sources = dict(data.get("sources") or {})
    entries, seen = [], set()
    for raw in data["entries"]:
        name = raw.get("name", "?")
        where = f"{ZOO_FILE}: entry {name}"
        if name in seen:
            raise ConfigError(f"{where}: the name is used twice")
        seen.add(name)
        if raw.get("task") not in TASKS or raw.get("average") not in AVERAGES:
            raise ConfigError(f"{where}: task must be one of {TASKS} and average one of {AVERAGES}")
        if raw.get("protocol") is not None and raw["protocol"] not in protocol_names():
            raise ConfigError(
                f"{where}: unknown protocol {raw['protocol']!r}; expected one of {', '.join(protocol_names())}"
            )
        if raw.get("source") not in sources:
            raise ConfigError(f"{where}: source {raw.get('source')!r} is not in `sources`")
        unknown = set(raw.get("reported") or {}) - set(METRICS)
        if unknown:
            raise ConfigError(f"{where}: unknown reported metrics {sorted(unknown)}")
        unknown, missing = set(raw) - set(ENTRY_FIELDS), set(REQUIRED) - set(raw)
        if unknown or missing:
            raise ConfigError(f"{where}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}")
        recipe = load_recipe(raw["recipe"])
        model, ev, data_cfg = recipe.get("model", {}), recipe.get("eval", {}), recipe.get("data", {})
        entries.append(
            ZooEntry(
                **{
                    **raw,
                    "download": tuple(raw.get("download") or ()),
                    "reported": dict(raw.get("reported") or {}),
                },
                arch=model["arch"],
                method=recipe.get("method", "bas"),
                num_classes=int(model["num_classes"]),
                variant=model.get("variant"),
                top_k=int(ev.get("top_k", 1)),
                threshold=float(ev.get("threshold", 0.5)),
                test_mode=data_cfg.get("test_mode", "crop"),
            )
        )
    return Zoo(tuple(entries), sources, tuple(data.get("not_covered") or ()))


def protocol_names() -> tuple[str, ...]:
    """The protocol presets of :mod:`bas.protocols`."""
    from bas.protocols import PROTOCOLS as presets

    return tuple(presets)


# ----------------------------------------------------------------------------------- evaluation


def check_checkpoint(entry: ZooEntry, path: str | Path | None) -> Path:
    """``path`` as an existing file; CheckpointError saying where to get the file otherwise."""
    if path is None:
        raise CheckpointError(f"--zoo {entry.name} needs --checkpoint FILE: {entry.where_to_get()}")
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / entry.file
    if not path.is_file():
        raise CheckpointError(f"{path} not found: {entry.where_to_get()}, then pass it with --checkpoint")
    return path


def apply_entry(args: Any) -> tuple[ZooEntry, dict[str, Any]]:
    """Set the ``bas evaluate`` arguments the user left unset from the entry ``args.zoo``; returns
    the entry and its recipe (the config the evaluation starts from)."""
    from bas.config import load_recipe

    entry = load_zoo().get(args.zoo)
    if entry.task != "wsol":
        raise UsageError(
            f"{entry.name} is a segmentation entry: its {', '.join(METRICS[k] for k in entry.reported) or 'maps'} "
            "are scored on segmentation masks, not by bas evaluate (see docs/segmentation.md)"
        )
    args.checkpoint = str(check_checkpoint(entry, args.checkpoint))
    if args.threshold is None:
        args.threshold = entry.threshold
    if args.top_k is None:
        args.top_k = entry.top_k
    args.ten_crop = bool(args.ten_crop or entry.ten_crop)
    if getattr(args, "protocol", None) is None:
        args.protocol = entry.protocol
    return entry, load_recipe(entry.recipe)


def comparison(entry: ZooEntry, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows ``metric, reported, measured, difference`` (measured - reported) of a result."""
    rows = []
    for key, measured in entry.measured(result).items():
        reported = float(entry.reported[key])
        rows.append(
            {
                "metric": METRICS[key],
                "key": key,
                "reported": reported,
                "measured": measured,
                "difference": None if measured is None else measured - reported,
            }
        )
    return rows


def format_comparison(rows: list[dict[str, Any]]) -> str:
    """The rows of :func:`comparison` as a small aligned text table."""
    width = max([len("metric")] + [len(r["metric"]) for r in rows])

    def number(value: float | None, signed: bool = False) -> str:
        return "-" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")

    lines = [f"{'metric':<{width}}  {'reported':>8}  {'measured':>8}  {'difference':>10}"]
    for r in rows:
        lines.append(
            f"{r['metric']:<{width}}  {number(r['reported']):>8}  {number(r['measured']):>8}  "
            f"{number(r['difference'], signed=True):>10}"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- listing


def _figures(entry: ZooEntry) -> str:
    return ", ".join(f"{METRICS[k]} {v:.2f}" for k, v in entry.reported.items()) or "-"


def format_listing(zoo: Zoo) -> str:
    """The plain-text table of ``bas zoo``: one line per entry, then the files not covered."""
    header = ("name", "paper", "dataset", "arch", "reported", "protocol", "recipe", "file")
    rows = [
        (
            e.name,
            PAPERS[e.paper],
            e.dataset,
            e.arch,
            _figures(e),
            e.protocol or "-",
            e.recipe,
            e.file,
        )
        for e in zoo.entries
    ]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.append("")
    lines.append(
        "Download pages: bas zoo NAME. Evaluate: bas evaluate --zoo NAME --checkpoint FILE --data-root DIR"
    )
    if zoo.not_covered:
        lines.append(
            "Also released, not read by this project: " + "; ".join(o["file"] for o in zoo.not_covered)
        )
    return "\n".join(lines)


def format_entry(entry: ZooEntry, zoo: Zoo) -> str:
    """Every field of one entry (``bas zoo NAME``)."""
    lines = [
        f"{entry.name}: {PAPERS[entry.paper]}, {entry.dataset}, {entry.arch} ({entry.method}, {entry.task})",
        f"  reported       {_figures(entry)} ({entry.split} split, {entry.average} mean"
        + (", ten-crop classification" if entry.ten_crop else "")
        + ")",
        f"  source         {entry.table}: {zoo.sources[entry.source]}",
        f"  recipe         {entry.recipe} (classes {entry.num_classes}, top_k {entry.top_k}, "
        f"threshold {entry.threshold:g}, test mode {entry.test_mode})",
        f"  protocol       {entry.protocol or '- (segmentation: seeds are scored on masks)'}",
        f"  file           {entry.file} ({entry.authors_path} in the authors' repository)",
        *[f"  download       {url}" for url in entry.download],
    ]
    if entry.note:
        lines.append(f"  note           {entry.note}")
    if entry.task == "wsol":
        lines.append(
            f"  evaluate       bas evaluate --zoo {entry.name} --checkpoint {entry.file} --data-root DIR"
        )
    return "\n".join(lines)


def to_json(zoo: Zoo) -> str:
    """``bas zoo --json``: the entries (recipe-derived fields included), sources and the rest."""
    document = {
        "entries": [e.to_dict() for e in zoo.entries],
        "sources": zoo.sources,
        "not_covered": list(zoo.not_covered),
    }
    return json.dumps(document, indent=2)


def markdown(zoo: Zoo) -> str:
    """docs/zoo.md (``bas zoo --markdown``); a test keeps the committed page equal to it."""
    out = [
        "# Model zoo",
        "",
        "<!-- Generated from src/bas/zoo.yaml by `bas zoo --markdown > docs/zoo.md`; do not edit. -->",
        "",
        "Every checkpoint released with the two BAS papers, the figures the papers report for it "
        "(percent), the recipe and protocol preset that reproduce them, and where the authors publish "
        "the file. `bas zoo` prints this table, `bas zoo NAME` one entry in full, `bas zoo --json` all "
        "of it. Download a file from its page (web drives: in a browser), then",
        "",
        "```",
        "bas evaluate --zoo NAME --checkpoint FILE --data-root DIR",
        "```",
        "",
        "evaluates it with the entry's recipe, protocol, top-k and threshold (ten-crop classification "
        "where the authors used it) and prints `metric, reported, measured, difference`; the measured "
        "localization accuracies use the mean the paper used (`class`: mean of per-class accuracies, "
        "`image`: over images). A missing file is reported with its name and pages. Other options of "
        "`bas evaluate` still apply (`--dataset`, `--set data.options.metadata=...` for the layout of "
        "your copy of the data).",
        "",
        "## Weakly supervised object localization",
        "",
        "| name | paper | dataset | arch | Top-1 Loc | Top-5 Loc | GT-known Loc | mean | protocol | recipe | top_k | threshold | file |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    box = [e for e in zoo.entries if e.task == "wsol" and "gt_known_loc" in e.reported]
    for e in box:
        r = e.reported
        out.append(
            f"| `{e.name}` | {PAPERS[e.paper]} | {e.dataset} | {e.arch} | {r['top1_loc']:.2f} | "
            f"{r['top5_loc']:.2f} | {r['gt_known_loc']:.2f} | {e.average} | `{e.protocol}` | "
            f"`{e.recipe}` | {e.top_k} | {e.threshold:g} | `{e.file}` |"
        )
    masks = [e for e in zoo.entries if e.task == "wsol" and e not in box]
    if masks:
        out += ["", "OpenImages (masks, no threshold):", ""]
        out += [
            "| name | paper | arch | PxAP | PIoU | protocol | recipe | file |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for e in masks:
            out.append(
                f"| `{e.name}` | {PAPERS[e.paper]} | {e.arch} | {e.reported['PxAP']:.2f} | "
                f"{e.reported['PIoU']:.2f} | `{e.protocol}` | `{e.recipe}` | `{e.file}` |"
            )
    seg = [e for e in zoo.entries if e.task == "wsss"]
    if seg:
        out += [
            "",
            "## Weakly supervised semantic segmentation",
            "",
            "Scored on segmentation masks (seed mIoU), not by `bas evaluate`; see "
            "[segmentation.md](segmentation.md).",
            "",
            "| name | paper | dataset | method | arch | seed mIoU | recipe | file | note |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for e in seg:
            miou = f"{e.reported['seed_mIoU']:.1f}" if "seed_mIoU" in e.reported else "-"
            out.append(
                f"| `{e.name}` | {PAPERS[e.paper]} | {e.dataset} | {e.method} | {e.arch} | {miou} | "
                f"`{e.recipe}` | `{e.file}` | {e.note} |"
            )
    out += ["", "## Where the files are", "", "| name | authors' path | download |", "|---|---|---|"]
    for e in zoo.entries:
        links = ", ".join(f"<{url}>" for url in e.download)
        out.append(f"| `{e.name}` | `{e.authors_path}` | {links} |")
    if zoo.not_covered:
        out += ["", "Also released with the papers, not read by this project:", ""]
        for o in zoo.not_covered:
            links = ", ".join(f"<{url}>" for url in o.get("download") or []) or "not released"
            out.append(f"- `{o['file']}`: {o['what']} ({links})")
    out += ["", "## Sources of the figures", ""]
    out += [f"- `{key}`: {text}" for key, text in zoo.sources.items()]
    return "\n".join(out) + "\n"
