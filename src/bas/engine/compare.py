"""Method comparisons under one budget: the engine of ``bas benchmark``.

A *benchmark* is a YAML file (shipped ones live in ``configs/benchmark/``)::

    seeds: 3              # training seeds 0 .. seeds-1
    figure_images: 8      # test images of the side-by-side figure
    checkpoint: final     # final: the last epoch's model | best: the best on val by eval.select_metric
    recipe: demo          # optional: a training recipe every method starts from
    common: {...}         # a training config (keys of default.yaml) shared by every method, over the recipe
    methods:              # display name -> the method's own keys, merged over `common`
      CAM: {method: cam, ...}
      BAS: {method: bas, ...}
    default_methods: [CAM, BAS]   # optional: those trained without --methods (default: all)
    quick: {seeds: 1, figure_images: 2, overrides: [key=value, ...]}   # the --quick smoke run

For every method and seed the run goes through the ordinary code paths: :func:`bas.engine.train.train`
(the checkpoint evaluated is the final one or the one best on the val split), then :func:`bas.engine.evaluate.evaluate_split`
on the test split with the threshold chosen on val. The per-seed results are aggregated as
mean ± sample standard deviation and written as ``results.json`` and ``results.md``; ``comparison.png``
shows the maps and boxes of every method (first seed) on the same test images. The table also
gives the MaxBoxAccV2 of the whole-image box (:func:`whole_image_baseline`), the score of a method
that localizes nothing: a benchmark whose objects fill the image would make every method look good.

A run whose folder already holds a final model trained with exactly the same config is reused,
so an interrupted benchmark continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bas.config import default_config, dump_config, load_recipe, merge, parse_override, resolve_recipe
from bas.errors import ConfigError
from bas.schema import check_config

#: (result key, column title) of the comparison table.
TABLE_METRICS = (
    ("top1_cls", "Top-1 Cls"),
    ("gt_known_loc", "GT-known Loc"),
    ("top1_loc", "Top-1 Loc"),
    ("MaxBoxAccV2", "MaxBoxAccV2"),
)
_BENCHMARK_KEYS = frozenset(
    {"seeds", "figure_images", "checkpoint", "recipe", "common", "methods", "default_methods", "quick"}
)
#: Row title of the whole-image baseline in the tables.
WHOLE_IMAGE = "whole-image box"
CHECKPOINTS = ("final", "best")
_RUN_FILES = ("metrics.jsonl", "last.ckpt", "best.safetensors", "model.safetensors", "test_metrics.json")


@dataclass
class Benchmark:
    """A parsed benchmark file (see the module docstring)."""

    name: str
    seeds: int
    figure_images: int
    checkpoint: str  # "final" or "best"
    common: dict[str, Any]
    methods: dict[str, dict[str, Any]]
    quick_overrides: list[str] = field(default_factory=list)
    recipe: str | None = None  # training recipe under ``common`` (e.g. ``demo``)
    extra: dict[str, Any] = field(default_factory=dict)  # a caller's own sections (``extra_keys``)


@dataclass
class RunResult:
    """One trained and evaluated (method, seed)."""

    method: str
    seed: int
    run_dir: Path
    checkpoint: Path
    result: dict[str, Any]
    train_seconds: float  # wall-clock time of the training (0 when reused)
    train_cpu_seconds: float  # CPU time of this process during the training (data workers excluded)
    eval_seconds: float
    reused: bool
    report: Any = None  # the test split's EvaluationReport (None for a run built by hand)


# ---------------------------------------------------------------------------------- configuration


def load_benchmark(
    name: str | Path,
    *,
    quick: bool = False,
    methods: list[str] | tuple[str, ...] | None = None,
    extra_keys: tuple[str, ...] = (),
) -> Benchmark:
    """Read a benchmark: a YAML file, or the name of a shipped one (``synthetic``).

    ``methods`` chooses the methods to train, in that order, by their names in the file (any case:
    ``["cam", "has", "adl", "bas"]``); None: the file's ``default_methods``, else all of them.
    ``extra_keys``: top-level mappings of the caller's own (``Benchmark.extra``); with ``quick``,
    the same keys under ``quick`` are merged over them.
    """
    import yaml

    path = Path(name)
    if not path.is_file():
        path = resolve_recipe(f"benchmark/{name}")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    unknown = sorted(set(data) - _BENCHMARK_KEYS - set(extra_keys))
    if unknown:
        raise ConfigError(f"{path}: unknown benchmark keys {unknown}; expected {sorted(_BENCHMARK_KEYS)}")
    if not isinstance(data.get("methods"), dict) or not data["methods"]:
        raise ConfigError(f"{path}: 'methods' must map at least one method name to its settings")
    if data.get("checkpoint", "final") not in CHECKPOINTS:
        raise ConfigError(
            f"{path}: checkpoint must be one of {', '.join(CHECKPOINTS)}, got {data['checkpoint']!r}"
        )
    quick_cfg = data.get("quick") or {}
    bench = Benchmark(
        name=path.stem,
        seeds=int(data.get("seeds", 1)),
        figure_images=int(data.get("figure_images", 8)),
        checkpoint=data.get("checkpoint", "final"),
        common=data.get("common") or {},
        methods=data["methods"],
        recipe=data.get("recipe"),
        extra={key: data.get(key) or {} for key in extra_keys},
    )
    chosen = data.get("default_methods") if methods is None else methods
    if chosen is not None:
        bench.methods = _select_methods(
            data["methods"], chosen, f"{path}: default_methods" if methods is None else "--methods"
        )
    if quick:
        bench.seeds = int(quick_cfg.get("seeds", 1))
        bench.figure_images = int(quick_cfg.get("figure_images", bench.figure_images))
        bench.quick_overrides = list(quick_cfg.get("overrides") or [])
        bench.extra = {key: merge(value, quick_cfg.get(key) or {}) for key, value in bench.extra.items()}
    return bench


def _select_methods(known: dict[str, Any], names: Any, where: str) -> dict[str, dict[str, Any]]:
    """The entries of ``known`` called ``names`` (case-insensitive), in the order of ``names``."""
    by_lower = {name.lower(): name for name in known}
    expected = ", ".join(by_lower)
    if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
        raise ConfigError(f"{where} must list at least one method of {expected}, got {names!r}")
    selected: dict[str, dict[str, Any]] = {}
    for name in names:
        key = by_lower.get(str(name).lower())
        if key is None:
            raise ConfigError(f"{where}: unknown method {name!r}; the benchmark has {expected}")
        if key in selected:
            raise ConfigError(f"{where}: method {name!r} is listed twice")
        selected[key] = known[key]
    return selected


def method_config(
    bench: Benchmark,
    method: str,
    *,
    seed: int,
    output: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """The full training config of one (method, seed).

    Merge order: default.yaml, the benchmark's ``recipe``, ``common``, the quick overrides, the method's keys, ``overrides``
    (the command line's, which therefore apply to every method). The run folder is
    ``<output>/runs/<method>/seed<seed>``; a synthetic dataset without an explicit root is generated
    under ``<output>/data/``, in a folder named after its parameters, and shared by every run.
    """
    cfg = default_config()
    if bench.recipe:
        cfg = merge(cfg, load_recipe(bench.recipe))
    cfg = merge(cfg, bench.common)
    for text in bench.quick_overrides:
        cfg = merge(cfg, parse_override(text))
    cfg = merge(cfg, bench.methods[method])
    for text in overrides:
        cfg = merge(cfg, parse_override(text))
    check_config(cfg)
    output = Path(output)
    data = cfg["data"]
    if data["root"] is None:
        if data["dataset"] != "synthetic":
            raise ConfigError("data.root is not set (give --set data.root=DIR)")
        digest = hashlib.sha1(json.dumps(data["synthetic"], sort_keys=True).encode()).hexdigest()[:8]
        data["root"] = str(output / "data" / f"synthetic-{digest}")
    cfg["train"]["seed"] = int(seed)
    cfg["train"]["output_dir"] = str(output / "runs" / method / f"seed{seed}")
    return cfg


# ------------------------------------------------------------------------------------------ runs


def train_and_evaluate(
    method: str,
    cfg: dict[str, Any],
    *,
    checkpoint: str = "final",
    device: str = "cpu",
    progress: bool = False,
    reuse: bool = True,
) -> RunResult:
    """Train one config (or reuse its finished run) and evaluate it on the test split, threshold chosen on val.

    ``checkpoint``: ``"final"`` evaluates the last epoch's model; ``"best"`` the one best on val by
    ``eval.select_metric`` (the final one when no validation ran).
    """
    from bas.checkpoints import load_checkpoint
    from bas.engine.evaluate import evaluate_split
    from bas.io import write_json

    run_dir = Path(cfg["train"]["output_dir"])
    reused, train_seconds, train_cpu_seconds = train_or_reuse(
        cfg, device=device, progress=progress, reuse=reuse
    )
    path = evaluated_checkpoint(run_dir, checkpoint)
    start = time.perf_counter()
    model = load_checkpoint(path, map_location=device)
    report = evaluate_split(
        model,
        cfg,
        cfg["data"]["test_split"],
        select_on=cfg["data"]["val_split"],
        device=device,
        progress=progress,
    )
    eval_seconds = time.perf_counter() - start
    write_json(run_dir / "test_metrics.json", report.result)
    return RunResult(
        method,
        int(cfg["train"]["seed"]),
        run_dir,
        path,
        report.result,
        train_seconds,
        train_cpu_seconds,
        eval_seconds,
        reused,
        report,
    )


def evaluated_checkpoint(run_dir: str | Path, checkpoint: str) -> Path:
    """The model file of a finished run that ``checkpoint`` names: ``"best"``, the one best on val by
    ``eval.select_metric`` (the final one when no validation saved it); ``"final"``, the last epoch's."""
    from bas.engine.train import BEST, FINAL

    run_dir = Path(run_dir)
    return run_dir / BEST if checkpoint == "best" and (run_dir / BEST).is_file() else run_dir / FINAL


def train_or_reuse(
    cfg: dict[str, Any], *, device: str = "cpu", progress: bool = False, reuse: bool = True
) -> tuple[bool, float, float]:
    """Train one config unless its folder holds a finished run of it (:func:`run_is_finished`).

    Returns ``(reused, wall seconds, CPU seconds of this process)`` of the training (0 when reused).
    """
    from bas.engine.train import train

    if reuse and run_is_finished(cfg):
        return True, 0.0, 0.0
    run_dir = Path(cfg["train"]["output_dir"])
    for name in _RUN_FILES:  # leftovers of an older or interrupted run must not be mistaken for this one
        (run_dir / name).unlink(missing_ok=True)
    start, cpu_start = time.perf_counter(), time.process_time()
    train(cfg, progress=progress, device=device)
    return False, time.perf_counter() - start, time.process_time() - cpu_start


# ------------------------------------------------------------------------------------- summaries


def summarize(runs: list[RunResult]) -> dict[str, dict[str, Any]]:
    """Per method: the seeds, the chosen thresholds and, for every metric of :func:`run_metrics`,
    ``{"mean", "std", "values"}`` over seeds (``std``: sample standard deviation, 0 for one seed)."""
    summary: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r.method for r in runs):
        mine = [run_metrics(r.result) for r in runs if r.method == method]
        entry: dict[str, Any] = {
            "seeds": [r.seed for r in runs if r.method == method],
            "threshold": [float(r.result["threshold"]) for r in runs if r.method == method],
        }
        for key in mine[0]:
            values = [m[key] for m in mine]
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            entry[key] = {"mean": float(np.mean(values)), "std": std, "values": values}
        summary[method] = entry
    return summary


def run_metrics(result: dict[str, Any]) -> dict[str, float]:
    """The numbers a benchmark reports from one evaluation: the table's metrics, MaxBoxAcc at each
    IoU (``MaxBoxAcc@50`` ...) and PxAP / PIoU where masks exist."""
    flat = {key: float(result[key]) for key, _ in TABLE_METRICS}
    flat.update({f"MaxBoxAcc@{iou}": float(v) for iou, v in result.get("MaxBoxAcc", {}).items()})
    flat.update({key: float(result[key]) for key in ("PxAP", "PIoU") if key in result})
    return flat


def whole_image_boxacc(
    gt_boxes: list[np.ndarray], sizes: list[tuple[int, int]], iou_thresholds=(0.3, 0.5, 0.7)
) -> dict[str, Any]:
    """MaxBoxAcc of the box that covers the whole image, what a constant map scores.

    ``gt_boxes``: per image an (M, 4) array of ``[x0, y0, x1, y1]`` (inclusive corners, as
    :mod:`bas.metrics`); ``sizes``: per image ``(height, width)``; ``iou_thresholds``: fractions.
    Returns ``{"MaxBoxAcc": {iou: accuracy}, "MaxBoxAccV2": mean}``, accuracies in percent, keyed
    like the evaluator's.
    """
    from bas.metrics import best_iou, iou_fractions

    whole = np.array([[0, 0, w - 1, h - 1] for h, w in sizes], dtype=np.float64).reshape(-1, 4)
    ious = best_iou(whole, gt_boxes)
    acc = {d: 100.0 * float(np.mean(ious >= d)) for d in iou_fractions(iou_thresholds)}
    return {"MaxBoxAcc": acc, "MaxBoxAccV2": float(np.mean(list(acc.values())))}


def whole_image_baseline(cfg: dict[str, Any], split: str | None = None) -> dict[str, Any]:
    """:func:`whole_image_boxacc` on a split (default: the test split) as the evaluator sees it
    (same test transform, boxes in the transformed image)."""
    from bas.engine.data import make_dataset_split

    dataset = make_dataset_split(cfg, split or cfg["data"]["test_split"], train=False)
    boxes, sizes = [], []
    for i in range(len(dataset)):
        sample = dataset[i]
        boxes.append(sample["boxes"].numpy().reshape(-1, 4))
        sizes.append(tuple(sample["image"].shape[-2:]))
    return whole_image_boxacc(boxes, sizes, cfg["eval"]["iou_thresholds"])


def format_table(
    summary: dict[str, dict[str, Any]], markdown: bool = False, whole_image: float | None = None
) -> str:
    """The comparison table (mean ± std over seeds; the plain value when every method has one seed),
    as aligned text or Markdown.

    With two or more methods a row gives the difference of the last method's means minus the
    first's (e.g. BAS - CAM); ``whole_image`` (a MaxBoxAccV2) adds the whole-image baseline's row.
    """
    single = all(len(entry[TABLE_METRICS[0][0]]["values"]) == 1 for entry in summary.values())

    def cell(value: dict[str, Any]) -> str:
        return f"{value['mean']:.2f}" if single else f"{value['mean']:.2f} ± {value['std']:.2f}"

    header = ["method", *(title for _, title in TABLE_METRICS)]
    rows = [[name, *(cell(entry[k]) for k, _ in TABLE_METRICS)] for name, entry in summary.items()]
    names = list(summary)
    if len(names) > 1:
        first, last = summary[names[0]], summary[names[-1]]
        rows.append(
            [
                f"{names[-1]} - {names[0]}",
                *(f"{last[k]['mean'] - first[k]['mean']:+.2f}" for k, _ in TABLE_METRICS),
            ]
        )
    if whole_image is not None:
        rows.append([WHOLE_IMAGE, *(["-"] * (len(TABLE_METRICS) - 1)), f"{whole_image:.2f}"])
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join(["---"] + ["---:"] * len(TABLE_METRICS)) + "|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in [header, *rows]
    )


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op thread count (``None``: leave it); returns the count in use."""
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished child processes (data workers)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


# ---------------------------------------------------------------------------------------- figure


@torch.no_grad()
def save_comparison_figure(
    path: str | Path,
    models: dict[str, tuple[torch.nn.Module, float]],
    dataset,
    *,
    n: int = 8,
    top_k: int = 1,
    device: str = "cpu",
    columns: int = 2,
) -> Path:
    """The same ``n`` test images (spread evenly over ``dataset``) under every method, side by side.

    Each image gets one panel with its ground-truth box (green) and, per method, a panel with the
    method's map, its box at its own threshold (red), the ground truth again and the IoU. ``models`` maps a method name to
    ``(model, threshold)``.
    """
    import matplotlib.pyplot as plt

    from bas.data import collate, denormalize
    from bas.localization import localization_maps, maps_to_boxes
    from bas.metrics import best_iou
    from bas.visualize import draw_panel, save_figure

    n = max(1, min(n, len(dataset)))
    indices = np.linspace(0, len(dataset) - 1, n).round().astype(int)
    batch = collate([dataset[int(i)] for i in indices])
    images = batch["image"].to(device)
    labels = batch["label"].to(device)
    gt = [b.numpy().reshape(-1, 4) for b in batch["boxes"]]
    panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, (model, threshold) in models.items():
        model.eval()
        maps = (
            localization_maps(model(images, labels, top_k=top_k).fg_map.float(), images.shape[-2:])
            .cpu()
            .numpy()
        )
        boxes = maps_to_boxes(maps, threshold)
        panels[name] = (maps, boxes, best_iou(boxes, gt))
    pictures = [denormalize(img).clamp(0, 1) for img in batch["image"]]
    per = 1 + len(models)
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    fig, axes = plt.subplots(rows, columns * per, figsize=(2.0 * columns * per, 2.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        r, c = divmod(i, columns)
        draw_panel(axes[r, c * per], pictures[i], None, [], gt[i], "image + GT box")
        for j, (name, (maps, boxes, ious)) in enumerate(panels.items(), start=1):
            draw_panel(
                axes[r, c * per + j],
                pictures[i],
                maps[i],
                [boxes[i]],
                gt[i],
                f"{name} map + box, IoU {ious[i]:.2f}",
            )
    fig.tight_layout()
    return save_figure(fig, path)


# ----------------------------------------------------------------------------------------- driver


def run_benchmark(
    bench: Benchmark,
    output: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    device: str = "cpu",
    progress: bool = False,
    reuse: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every method over every seed; write results.json, results.md and comparison.png.

    Returns the document written to ``results.json``.
    """
    from bas.checkpoints import load_checkpoint
    from bas.engine.data import make_dataset_split
    from bas.io import write_json, write_text

    output = Path(output)
    start, cpu_start = time.perf_counter(), cpu_seconds()
    runs: list[RunResult] = []
    configs: dict[str, dict[str, Any]] = {}
    for method in bench.methods:  # every method's config is checked before the first run trains
        method_config(bench, method, seed=0, output=output, overrides=overrides)
    for seed in range(bench.seeds):
        for method in bench.methods:
            cfg = method_config(bench, method, seed=seed, output=output, overrides=overrides)
            configs.setdefault(method, cfg)
            action = "reusing the finished run" if reuse and run_is_finished(cfg) else "training"
            log(f"[{method} seed {seed}] {action} in {cfg['train']['output_dir']}")
            run = train_and_evaluate(
                method, cfg, checkpoint=bench.checkpoint, device=device, progress=progress, reuse=reuse
            )
            runs.append(run)
            r = run.result
            log(
                f"[{method} seed {seed}] GT-known Loc {r['gt_known_loc']:.2f}  Top-1 Loc {r['top1_loc']:.2f}  "
                f"MaxBoxAccV2 {r['MaxBoxAccV2']:.2f}  (train {run.train_seconds:.0f} s wall / "
                f"{run.train_cpu_seconds:.0f} s CPU, eval {run.eval_seconds:.0f} s)"
            )
    summary = summarize(runs)

    first = {m: next(r for r in runs if r.method == m) for m in bench.methods}
    models = {
        m: (load_checkpoint(run.checkpoint, map_location=device), float(run.result["threshold"]))
        for m, run in first.items()
    }
    any_cfg = next(iter(configs.values()))
    test_set = make_dataset_split(any_cfg, any_cfg["data"]["test_split"], train=False)
    figure = save_comparison_figure(
        output / "comparison.png",
        models,
        test_set,
        n=bench.figure_images,
        top_k=any_cfg["eval"]["top_k"],
        device=device,
    )
    whole = whole_image_baseline(any_cfg)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu_start
    document = {
        "benchmark": bench.name,
        "seeds": bench.seeds,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "threads": torch.get_num_threads(),
        "settings": _shared_settings(any_cfg),
        "methods": summary,
        "whole_image": whole,
        "runs": [
            {
                "method": r.method,
                "seed": r.seed,
                "checkpoint": str(r.checkpoint),
                "reused": r.reused,
                "train_seconds": r.train_seconds,
                "train_cpu_seconds": r.train_cpu_seconds,
                "eval_seconds": r.eval_seconds,
                "threshold": float(r.result["threshold"]),
                "metrics": run_metrics(r.result),
            }
            for r in runs
        ],
        "configs": configs,
        "files": {"markdown": str(output / "results.md"), "figure": str(figure)},
    }
    write_json(output / "results.json", document)
    write_text(output / "results.md", _markdown_report(bench, document))
    return document


def run_is_finished(cfg: dict[str, Any]) -> bool:
    """Whether the run folder holds a final model trained with exactly this config."""
    from bas.engine.train import FINAL

    run_dir = Path(cfg["train"]["output_dir"])
    config_file = run_dir / "config.yaml"
    return (
        (run_dir / FINAL).is_file()
        and config_file.is_file()
        and config_file.read_text(encoding="utf-8") == dump_config(cfg)
    )


def _shared_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    data, optim = cfg["data"], cfg["optim"]
    return {
        "arch": cfg["model"]["arch"],
        "epochs": optim["epochs"],
        "input_size": data["input_size"],
        "batch_size": data["batch_size"],
        "dataset": data["dataset"],
        "synthetic": data["synthetic"] if data["dataset"] == "synthetic" else None,
        "top_k": cfg["eval"]["top_k"],
    }


def _markdown_report(bench: Benchmark, document: dict[str, Any]) -> str:
    s = document["settings"]
    lines = [
        f"# Benchmark `{bench.name}`",
        "",
        f"{', '.join(document['methods'])} on `{s['dataset']}` with `{s['arch']}`, {s['epochs']} epochs, "
        f"input {s['input_size']} px, batch {s['batch_size']}, {bench.seeds} seed(s); "
        f"test split, {checkpoint_words(bench)}, threshold of the paper metrics chosen on val; "
        "mean ± std over seeds.",
        "",
        format_table(document["methods"], markdown=True, whole_image=document["whole_image"]["MaxBoxAccV2"]),
        "",
        f"`{WHOLE_IMAGE}`: the MaxBoxAccV2 of one box covering the whole image (a method that "
        "localizes nothing).",
        "",
        f"Wall time: {document['wall_seconds']:.0f} s ({document['cpu_seconds']:.0f} s CPU, "
        f"{document['threads']} torch thread(s)). Figure: `{Path(document['files']['figure']).name}`.",
        "",
    ]
    return "\n".join(lines)


def checkpoint_words(bench: Benchmark) -> str:
    """How the benchmark picks the evaluated checkpoint, in words."""
    return "final checkpoints" if bench.checkpoint == "final" else "checkpoints chosen on val"
