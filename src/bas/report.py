"""One self-contained HTML page per run: ``bas report RUN_DIR``.

The page shows what the run folder and its evaluation hold, and says what is missing:

* the metrics of ``metrics.json`` (the reported split, the held-out split the threshold was chosen
  on, class-balanced means);
* the threshold curves of ``curve.csv`` / ``maxboxacc_curve.csv`` with the threshold used;
* the per-class table of ``per_class.csv`` (sorted by clicking a column header);
* a gallery of the best and worst images of the split (box IoU at the threshold used, the
  classification first), with the map and the boxes, computed from the run's checkpoint and data;
* the training log (``metrics.jsonl``), the config (``config.yaml``) and the environment
  (``environment.json`` written by ``bas train``, and the one the page was made in).

Images are PNG data URIs and the CSS / JavaScript are inline, so the page needs no network and no
other file. Where the files are: a training run folder (``config.yaml``, ``metrics.jsonl``,
``model.safetensors``) with its evaluation in ``results/`` (``bas demo``: RUN_DIR may also be the
demo's output folder or its ``run/``) or ``<checkpoint>_eval/<split>/`` (``bas evaluate``'s default),
or an evaluation folder itself.
"""

from __future__ import annotations

import base64
import csv
import datetime
import html
import json
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bas.errors import DataError

CHECKPOINTS = ("model.safetensors", "best.safetensors")
REPORT_NAME = "report.html"


@dataclass
class RunFiles:
    """Where the pieces of a run are (None: not found)."""

    run_dir: Path | None = None
    eval_dir: Path | None = None
    checkpoint: Path | None = None
    notes: list[str] = field(default_factory=list)


def _is_run(folder: Path) -> bool:
    return (folder / "config.yaml").is_file() or (folder / "metrics.jsonl").is_file()


def find_run(
    path: str | Path, eval_dir: str | Path | None = None, checkpoint: str | Path | None = None
) -> RunFiles:
    """Locate the run folder, its evaluation folder and its checkpoint from ``path`` (see the module doc)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError("not a folder", path)
    files = RunFiles()
    for candidate in (path, path / "run"):
        if _is_run(candidate):
            files.run_dir = candidate
            break
    if eval_dir is not None:
        files.eval_dir = Path(eval_dir)
        if not (files.eval_dir / "metrics.json").is_file():
            raise DataError("no metrics.json in this evaluation folder", files.eval_dir)
    else:
        candidates = [path, path / "results", path.parent / "results"]
        if files.run_dir is not None:
            run = files.run_dir
            candidates += [run / "results", run.parent / "results"]
            for name in CHECKPOINTS:
                stem = run / f"{Path(name).stem}_eval"
                candidates += [stem / "test", *sorted(stem.glob("*"))]
        files.eval_dir = next((c for c in candidates if (c / "metrics.json").is_file()), None)
    if checkpoint is not None:
        files.checkpoint = Path(checkpoint)
    else:
        found = []
        if files.eval_dir is not None:
            recorded = read_json(files.eval_dir / "metrics.json").get("checkpoint")
            found.append(Path(recorded) if recorded else None)
        if files.run_dir is not None:
            found += [files.run_dir / name for name in CHECKPOINTS]
        files.checkpoint = next((c for c in found if c is not None and c.is_file()), None)
    if files.run_dir is None and files.eval_dir is None:
        raise DataError(
            "neither a run folder (config.yaml, metrics.jsonl) nor an evaluation (metrics.json)", path
        )
    return files


# ------------------------------------------------------------------------------------ reading


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"invalid JSON: {exc.msg}", path, exc.lineno) from None
    if not isinstance(data, dict):
        raise DataError("expected a JSON object", path, 1)
    return data


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header, numbers as floats."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = []
        for row in reader:
            if None in row or None in row.values():
                raise DataError("wrong number of fields", path, reader.line_num)
            rows.append({k: _number(v) for k, v in row.items()})
    return rows


def read_log(path: Path) -> list[dict[str, Any]]:
    """The epoch records of a training log (``metrics.jsonl``)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"invalid JSON: {exc.msg}", path, number) from None
        if isinstance(record, dict) and record.get("kind") == "epoch":
            rows.append(record)
    return rows


def environment(device: Any = None) -> dict[str, str]:
    """Versions and device of this process (what ``bas train`` records in ``environment.json``)."""
    import cv2
    import torch
    import torchvision

    import bas

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        name = f"{device} ({torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda})"
    else:
        name = f"{device} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "bas-wsol": bas.__version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "platform": platform.platform(),
        "device": name,
    }


# ------------------------------------------------------------------------------------ pictures


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def curve_pictures(eval_dir: Path, threshold: float) -> list[str]:
    """The two threshold-curve figures as data URIs, drawn from the CSV files (or the saved PNGs)."""
    from bas.engine.figures import save_threshold_curves

    paper_csv, box_csv = eval_dir / "curve.csv", eval_dir / "maxboxacc_curve.csv"
    if paper_csv.is_file() and box_csv.is_file():
        paper_rows, box_rows = read_csv(paper_csv), read_csv(box_csv)
        paper = {
            key: np.array([r[key] for r in paper_rows]) for key in ("threshold", "gt_known_loc", "top1_loc")
        }
        levels = [k for k in box_rows[0] if k.startswith("box_acc_")] if box_rows else []
        box = {
            "thresholds": np.array([r["threshold"] for r in box_rows]),
            "accuracy": {
                float(k.removeprefix("box_acc_")) / 100: np.array([r[k] for r in box_rows]) for k in levels
            },
        }
        with tempfile.TemporaryDirectory() as tmp:
            return [_data_uri(p) for p in save_threshold_curves(tmp, paper, box, threshold)]
    return [_data_uri(p) for p in (eval_dir / "curve.png", eval_dir / "maxboxacc_curve.png") if p.is_file()]


@dataclass
class GalleryItem:
    title: str
    iou: float
    correct: bool
    overlay: str  # data URI: the map over the image, boxes
    image: str  # data URI: the image with its boxes


def gallery(
    checkpoint: Path,
    cfg: dict[str, Any],
    split: str,
    threshold: float,
    top_k: int,
    *,
    count: int = 6,
    device: str = "cpu",
) -> tuple[list[GalleryItem], list[GalleryItem]]:
    """The ``count`` best and worst images of ``split`` by (classification, box IoU at ``threshold``),
    drawn at their original resolution: ground truth green, prediction red."""
    import torch

    from bas import metrics
    from bas.checkpoints import load_checkpoint
    from bas.data import collate
    from bas.engine.data import eval_loader, make_dataset_split
    from bas.engine.evaluate import predict_batches
    from bas.localization import localization_maps, maps_to_boxes
    from bas.predict import map_to_original
    from bas.visualize import save_overlay

    model = load_checkpoint(checkpoint, map_location=device)
    dataset = make_dataset_split(cfg, split, train=False)
    ious, correct = [], []
    for pred in predict_batches(model, eval_loader(dataset, cfg), top_k=top_k, device=device, progress=False):
        gt = [b.numpy().reshape(-1, 4) for b in pred.boxes]
        ious.append(metrics.best_iou(maps_to_boxes(pred.maps.numpy(), threshold), gt))
        correct.append(pred.logits.argmax(1).numpy() == pred.labels.numpy())
    iou, ok = np.concatenate(ious), np.concatenate(correct)
    order = np.lexsort((-iou, ~ok))  # correct first, then by IoU, best first
    count = max(1, min(count, len(order) // 2 or 1))
    best, worst = order[:count], order[::-1][:count] if len(order) > 1 else order[:0]
    names = list(getattr(model, "class_names", None) or getattr(dataset, "classes", []) or [])
    crop = cfg["data"]["test_mode"] == "crop"

    def draw(indices: np.ndarray) -> list[GalleryItem]:
        if not len(indices):
            return []
        batch = collate([dataset[int(i)] for i in indices])
        images = batch["image"].to(device)
        with torch.no_grad():  # with the labels, as the evaluation ran (the true class's map at top_k 1)
            out = model.eval()(images, batch["label"].to(device), top_k=top_k)
        maps = localization_maps(out.fg_map.float(), images.shape[-2:]).cpu()
        labels = out.logits.argmax(1).tolist()
        items = []
        with tempfile.TemporaryDirectory() as tmp:
            for index, crop_map, label in zip(indices.tolist(), maps, labels):
                image, _, _ = dataset.load(index)
                record = dataset.records[index]
                full = map_to_original(
                    crop_map, image.size, crop=crop, resize_size=cfg["data"]["resize_size"]
                )
                box = maps_to_boxes(full.numpy()[None], threshold)[0]
                truth = names[record.label] if record.label < len(names) else str(record.label)
                guess = names[label] if label < len(names) else str(label)
                paths = [Path(tmp) / "overlay.png", Path(tmp) / "image.png"]
                save_overlay(paths[0], image, full.numpy(), pred_boxes=[box], gt_boxes=record.boxes)
                save_overlay(paths[1], image, None, pred_boxes=[box], gt_boxes=record.boxes)
                items.append(
                    GalleryItem(
                        f"{record.image_id} (true {truth}, predicted {guess})",
                        float(iou[index]),
                        bool(ok[index]),
                        *(_data_uri(p) for p in paths),
                    )
                )
        return items

    return draw(best), draw(worst)


# ------------------------------------------------------------------------------------ the page

METRIC_NAMES = {
    "top1_cls": "Top-1 classification",
    "top5_cls": "Top-5 classification",
    "gt_known_loc": "GT-known Loc",
    "top1_loc": "Top-1 Loc",
    "top5_loc": "Top-5 Loc",
    "MaxBoxAccV2": "MaxBoxAccV2",
    "PxAP": "PxAP",
    "PIoU": "PIoU",
    "CorLoc": "CorLoc (multi-object)",
}

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2430;background:#f5f6f8}
header{background:#1d2b45;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;opacity:.8}main{max-width:1180px;margin:0 auto;padding:12px 28px 40px}
section{background:#fff;border-radius:8px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:14px 20px;margin:16px 0}
h2{font-size:17px;margin:4px 0 12px}table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:4px 12px;border-bottom:1px solid #e3e6eb;text-align:left}td.num,th.num{text-align:right}
table.sortable th{cursor:pointer;user-select:none;background:#eef1f5}table.sortable th:hover{background:#dfe5ee}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
.curves img{max-width:48%;min-width:320px;margin-right:1%}.note{color:#8a5300;background:#fff6e0;padding:6px 10px;border-radius:4px}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #e3e6eb;border-radius:6px;padding:6px;width:340px}
.card img{width:164px;height:auto;image-rendering:pixelated;vertical-align:top}.card p{margin:4px 0 0;font-size:12px;overflow-wrap:anywhere}
.ok{color:#17803d}.bad{color:#b3261e}pre{background:#f0f2f5;padding:10px;overflow:auto;font-size:12px;max-height:480px}
.scroll{max-height:420px;overflow:auto}
"""

JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") !== "descending";
      table.querySelectorAll("th").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return descending ? -order : order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]], *, sortable: bool = False, table_id: str = "") -> str:
    def cell(tag: str, value: Any) -> str:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        attrs = ' class="num"' if numeric else ""
        if tag == "td":
            attrs += f' data-value="{_e(value)}"'
        return f"<{tag}{attrs}>{_e(_fmt(value))}</{tag}>"

    first = rows[0] if rows else []
    head = "".join(
        f"<th{' class=num' if i < len(first) and isinstance(first[i], float) else ''}>{_e(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join("<tr>" + "".join(cell("td", v) for v in row) + "</tr>" for row in rows)
    attrs = (f' id="{table_id}"' if table_id else "") + (' class="sortable"' if sortable else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def metric_rows(result: dict[str, Any]) -> dict[str, float]:
    """Display name -> value of the headline metrics present in an evaluation result."""
    rows = {label: float(result[key]) for key, label in METRIC_NAMES.items() if key in result}
    for level, value in (result.get("MaxBoxAcc") or {}).items():
        rows[f"MaxBoxAcc @ IoU {_iou(level):.2f}"] = float(value)
    for level, value in (result.get("MaxBoxAcc_at_selected") or {}).items():
        rows[f"box accuracy @ IoU {_iou(level):.2f}, thresholds chosen on the held-out split"] = float(value)
    return rows


def _iou(level: Any) -> float:
    """An IoU level as a fraction: metrics.json keys are fractions (``"0.5"``); older files say ``"50"``."""
    value = float(level)
    return value / 100 if value > 1 else value


def _metrics_section(result: dict[str, Any]) -> str:
    columns = {f"{result.get('split', 'evaluation')}": metric_rows(result)}
    if result.get("class_balanced"):
        columns[f"{result.get('split', 'evaluation')}, class-balanced"] = metric_rows(
            result["class_balanced"]
        )
    selected = result.get("selected_on") or {}
    if selected.get("metrics"):
        columns[f"{selected.get('split')} (threshold selection)"] = metric_rows(selected["metrics"])
    names = list(dict.fromkeys(name for col in columns.values() for name in col))
    rows = [[name, *(col.get(name, "") for col in columns.values())] for name in names]
    table = _table(["metric (%)", *columns], rows, table_id="metrics")
    facts = []
    for key, label in (
        ("num_images", "images"),
        ("threshold", "threshold used"),
        ("best_threshold", "best threshold on this split"),
        ("top_k", "classes fused (top_k)"),
        ("test_mode", "test mode"),
        ("ten_crop", "ten-crop classification"),
        ("checkpoint", "checkpoint"),
    ):
        if key in result:
            facts.append([label, result[key]])
    if selected:
        facts.append(["threshold chosen on", f"{selected.get('split')} (GT-known Loc maximised)"])
    return f"<section><h2>Metrics</h2>{table}<p></p>{_table(['', 'value'], facts)}</section>"


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _gallery_section(best: list[GalleryItem], worst: list[GalleryItem], missing: str | None) -> str:
    if missing:
        return f"<section><h2>Gallery</h2>{_note(missing)}</section>"

    def cards(items: list[GalleryItem]) -> str:
        out = []
        for item in items:
            verdict = (
                '<span class="ok">class right</span>'
                if item.correct
                else '<span class="bad">class wrong</span>'
            )
            out.append(
                f'<div class="card"><img src="{item.overlay}" alt="map and boxes">'
                f'<img src="{item.image}" alt="image and boxes"><p>{_e(item.title)}<br>'
                f"box IoU {item.iou:.2f}, {verdict}</p></div>"
            )
        return '<div class="gallery">' + "".join(out) + "</div>"

    legend = (
        "<p>Left: the foreground map the evaluation used (top_k classes; the true class at top_k 1) over "
        "the image; right: the image. Green: ground truth; red: predicted box.</p>"
    )
    return (
        f"<section><h2>Gallery</h2>{legend}<h3>Best</h3>{cards(best)}"
        f"<h3>Worst</h3>{cards(worst) if worst else _note('too few images for a worst list')}</section>"
    )


def render_page(
    title: str,
    *,
    result: dict[str, Any] | None,
    curves: list[str],
    per_class: list[dict[str, Any]],
    best: list[GalleryItem],
    worst: list[GalleryItem],
    gallery_missing: str | None,
    log: list[dict[str, Any]],
    config_text: str | None,
    environments: dict[str, dict[str, str]],
    notes: list[str],
) -> str:
    """The HTML text of a report page."""
    parts = [_note(n) for n in notes]
    parts.append(
        _metrics_section(result)
        if result
        else f"<section><h2>Metrics</h2>{_note('no evaluation found (metrics.json)')}</section>"
    )
    if curves:
        images = "".join(f'<img src="{uri}" alt="threshold curve">' for uri in curves)
        text = "<p>Accuracy against the map threshold; the vertical line is the threshold the metrics above used.</p>"
        parts.append(f'<section class="curves"><h2>Threshold curves</h2>{text}{images}</section>')
    if per_class:
        header = list(per_class[0])
        table = _table(
            header, [[r[k] for k in header] for r in per_class], sortable=True, table_id="per-class"
        )
        parts.append(
            f'<section><h2>Per class</h2><p>Click a column header to sort.</p><div class="scroll">{table}</div></section>'
        )
    parts.append(_gallery_section(best, worst, gallery_missing))
    if log:
        keys = list(
            dict.fromkeys(k for r in log for k, v in r.items() if k != "kind" and isinstance(v, (int, float)))
        )
        rows = [[r.get(k, "") for k in keys] for r in log]
        parts.append(
            f'<section><h2>Training log</h2><div class="scroll">{_table(keys, rows)}</div></section>'
        )
    if config_text:
        parts.append(f"<section><h2>Config</h2><pre>{_e(config_text)}</pre></section>")
    for label, env in environments.items():
        parts.append(
            f"<section><h2>{_e(label)}</h2>{_table(['', ''], [[k, v] for k, v in env.items()])}</section>"
        )
    made = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<link rel="icon" href="data:,"><title>{_e(title)}</title><style>{CSS}</style></head>'
        f"<body><header><h1>{_e(title)}</h1><p>bas-wsol run report, made {_e(made)}</p></header>"
        f"<main>{''.join(parts)}</main><script>{JS}</script></body></html>\n"
    )


def write_report(
    run_dir: str | Path,
    output: str | Path | None = None,
    *,
    eval_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    data_root: str | Path | None = None,
    gallery_size: int = 6,
    device: str = "cpu",
) -> Path:
    """Write the report page of ``run_dir``; returns its path. ``output``: a folder (the page is
    ``<output>/report.html``) or a file name ending in ``.html``; default: in the run folder."""
    from bas.config import load_config
    from bas.io import write_text

    files = find_run(run_dir, eval_dir, checkpoint)
    result = read_json(files.eval_dir / "metrics.json") if files.eval_dir else None
    notes = list(files.notes)
    per_class, curves = [], []
    if files.eval_dir is not None:
        if (files.eval_dir / "per_class.csv").is_file():
            per_class = read_csv(files.eval_dir / "per_class.csv")
        curves = curve_pictures(files.eval_dir, float(result.get("threshold", 0.5)))
    config_path = files.run_dir / "config.yaml" if files.run_dir else None
    cfg = load_config(config_path) if config_path and config_path.is_file() else None
    config_text = config_path.read_text(encoding="utf-8") if cfg is not None else None
    log_path = files.run_dir / "metrics.jsonl" if files.run_dir else None
    log = read_log(log_path) if log_path and log_path.is_file() else []

    best: list[GalleryItem] = []
    worst: list[GalleryItem] = []
    missing = _gallery_missing(files, cfg, result, data_root)
    if missing is None:
        if data_root is not None:
            cfg["data"]["root"] = str(data_root)
        if result.get("test_mode"):
            cfg["data"]["test_mode"] = result["test_mode"]
        best, worst = gallery(
            files.checkpoint,
            cfg,
            result.get("split", cfg["data"]["test_split"]),
            float(result["threshold"]),
            int(result.get("top_k", cfg["eval"]["top_k"])),
            count=gallery_size,
            device=device,
        )
    environments = {}
    recorded = files.run_dir / "environment.json" if files.run_dir else None
    if recorded and recorded.is_file():
        environments["Environment of the training run"] = {k: str(v) for k, v in read_json(recorded).items()}
    else:
        notes.append(
            "the run folder records no environment.json (older runs); the environment below is the report's"
        )
    environments["Environment the report was made in"] = environment(device)
    title_dir = files.run_dir or files.eval_dir
    page = render_page(
        f"Run {title_dir.resolve().name}"
        if title_dir.name != "run"
        else f"Run {title_dir.resolve().parent.name}",
        result=result,
        curves=curves,
        per_class=per_class,
        best=best,
        worst=worst,
        gallery_missing=missing,
        log=log,
        config_text=config_text,
        environments=environments,
        notes=notes,
    )
    out = Path(output) if output else files.run_dir or files.eval_dir
    out = out if out.suffix.lower() in (".html", ".htm") else out / REPORT_NAME
    write_text(out, page)
    return out


def _gallery_missing(
    files: RunFiles, cfg: dict[str, Any] | None, result: dict[str, Any] | None, data_root: Any
) -> str | None:
    """Why the gallery cannot be computed, or None when it can."""
    if result is None or "threshold" not in result:
        return "no per-image results: no evaluation (metrics.json) to take the threshold from"
    if files.checkpoint is None:
        return "no per-image results: the run's checkpoint was not found (pass --checkpoint)"
    if cfg is None:
        return "no per-image results: the run's config.yaml was not found"
    root = Path(data_root) if data_root is not None else Path(str(cfg.get("data", {}).get("root", "")))
    if not str(root) or not root.is_dir():
        return f"no per-image results: the dataset folder {root} is not there (pass --data-root)"
    return None
