"""Tests of ``bas report``: the page's content, its self-containment, and a real headless browser.

The run is built without training (a random-weight tiny model evaluated on tiny synthetic data), in
the layout ``bas demo`` writes: ``run/`` (config.yaml, metrics.jsonl, model.safetensors) and
``results/`` (metrics.json, per_class.csv, curve CSVs and figures).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

import bas
from bas.checkpoints import save_model
from bas.cli import main
from bas.config import dump_config, load_config
from bas.engine.evaluate import evaluate_split, write_evaluation
from bas.io import to_json, write_json, write_text
from bas.report import environment, write_report

GALLERY = 3


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    run = out / "run"
    cfg = load_config(
        "demo",
        [
            f"data.root={out / 'data'}",
            f"train.output_dir={run}",
            "data.synthetic.images_per_class=8",
            "data.synthetic.image_size=48",
            "data.input_size=32",
            "data.resize_size=36",
            "data.options.val_per_class=1",
            "data.workers=0",
            "model.hidden=16",
        ],
    )
    torch.manual_seed(0)
    from bas.engine.data import make_dataset_split

    classes = make_dataset_split(cfg, "test", train=False).classes
    model = bas.build_model("resnet18", len(classes), hidden=16)
    save_model(
        run / "model.safetensors",
        model,
        class_names=classes,
        threshold=0.3,
        config=cfg,
        input_size=32,
        resize_size=36,
    )
    write_text(run / "config.yaml", dump_config(cfg))
    log = [
        {"kind": "epoch", "epoch": e, "step": 2 * e, "loss": 3.0 / e, "val_gt_known_loc": 10.0 * e}
        for e in (1, 2)
    ]
    write_text(run / "metrics.jsonl", "".join(to_json(r) + "\n" for r in log))
    model = bas.load_checkpoint(run / "model.safetensors")
    report = evaluate_split(model, cfg, "test", select_on="val", progress=False)
    report.result["checkpoint"] = str(run / "model.safetensors")
    write_evaluation(out / "results", report, model, cfg)
    return out


def _per_class_rows(results: Path) -> list[dict[str, str]]:
    with (results / "per_class.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_page_content(demo_dir, tmp_path):
    out = write_report(demo_dir, tmp_path / "page.html", gallery_size=GALLERY)
    page = out.read_text(encoding="utf-8")
    for heading in ("Metrics", "Threshold curves", "Per class", "Gallery", "Training log", "Config"):
        assert f"<h2>{heading}</h2>" in page
    # self-contained: every src / href is a data URI or an in-page anchor, no external resource
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(r.startswith(("data:", "#")) for r in refs), refs
    assert "http://" not in page and "https://" not in page
    # 2 curves + best and worst, two pictures each
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 2 + 2 * GALLERY * 2
    # per-class table: one row per class of the CSV, names as written there
    table = page.split('id="per-class"')[1].split("</table>")[0]
    rows = _per_class_rows(demo_dir / "results")
    assert table.count("<tr>") == len(rows) + 1
    for row in rows:
        assert f">{row['name']}<" in table
    # gallery: best IoUs (among images of one correctness) in descending order, worst ascending
    gallery = page.split("<h2>Gallery</h2>")[1].split("</section>")[0]
    best, worst = gallery.split("<h3>Worst</h3>")
    cards = [re.findall(r"box IoU ([0-9.]+), <span class=\"(ok|bad)\"", part) for part in (best, worst)]
    assert len(cards[0]) == len(cards[1]) == GALLERY
    best_rank, worst_rank = ([(kind == "ok", float(iou)) for iou, kind in part] for part in cards)
    assert best_rank == sorted(best_rank, reverse=True)
    assert worst_rank == sorted(worst_rank)
    assert min(best_rank) >= max(worst_rank)
    # metrics table shows the metrics.json values
    assert "MaxBoxAccV2" in page and "val (threshold selection)" in page
    metrics = json.loads((demo_dir / "results" / "metrics.json").read_text())
    for level, value in metrics["MaxBoxAcc"].items():
        assert f'>MaxBoxAcc @ IoU {float(level):.2f}</td><td class="num" data-value="{value}">' in page


def test_report_without_data_says_so(demo_dir, tmp_path):
    assert (
        main(
            [
                "report",
                str(demo_dir / "run"),
                "--output",
                str(tmp_path / "a.html"),
                "--data-root",
                str(tmp_path / "gone"),
            ]
        )
        == 0
    )
    page = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert "the dataset folder" in page and "is not there" in page
    assert "<h3>Best</h3>" not in page
    # --output DIR: the page is DIR/report.html
    args = [
        "report",
        str(demo_dir),
        "--output",
        str(tmp_path / "pages"),
        "--data-root",
        str(tmp_path / "gone"),
    ]
    assert main(args) == 0 and (tmp_path / "pages" / "report.html").is_file()


def test_report_evaluation_folder_only_and_environment(demo_dir, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(demo_dir / "results", results)
    out = write_report(results)
    assert out == results / "report.html"
    page = out.read_text(encoding="utf-8")
    assert "no per-image results" in page and "Training log" not in page
    run = tmp_path / "run"
    shutil.copytree(demo_dir / "run", run, ignore=shutil.ignore_patterns("*.safetensors"))
    write_json(run / "environment.json", {**environment("cpu"), "device": "cuda:0 (a test device)"})
    page = write_report(run, eval_dir=results).read_text(encoding="utf-8")
    assert "Environment of the training run" in page and "cuda:0 (a test device)" in page
    assert torch.__version__ in page


def test_report_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    (tmp_path / "metrics.json").write_text("{bad", encoding="utf-8")
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json:1: invalid JSON" in err
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------------ browser


def _browser():
    """A headless Chromium driven through the system chromedriver, or a skip with the reason."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)"
        )
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the system driver, given by path: selenium-manager (which downloads drivers) is never used
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def test_report_in_headless_browser(demo_dir, tmp_path):
    out = write_report(demo_dir, tmp_path / "page.html", gallery_size=GALLERY)
    browser = _browser()
    try:
        browser.get(out.resolve().as_uri())
        browser.execute_script(
            "window.__errors = []; window.onerror = function (m) { window.__errors.push(m); };"
        )
        widths = browser.execute_script(
            "return Array.from(document.images).map(function (im) { return im.complete ? im.naturalWidth : 0; });"
        )
        assert len(widths) == 2 + 2 * GALLERY * 2 and all(w > 0 for w in widths), widths
        from selenium.webdriver.common.by import By

        table = browser.find_element(By.ID, "per-class")
        headers = {th.text.strip(" ▲▼"): th for th in table.find_elements(By.CSS_SELECTOR, "thead th")}
        rows = _per_class_rows(demo_dir / "results")

        def column(name: str) -> list[str]:
            index = list(headers).index(name)
            return [
                tr.find_elements(By.TAG_NAME, "td")[index].get_attribute("data-value")
                for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")
            ]

        assert column("name") == [r["name"] for r in rows]  # the CSV's order before any click
        headers["gt_known_loc"].click()
        values = [float(v) for v in column("gt_known_loc")]
        assert values == sorted(values, reverse=True)
        assert headers["gt_known_loc"].get_attribute("aria-sort") == "descending"
        headers["gt_known_loc"].click()
        values = [float(v) for v in column("gt_known_loc")]
        assert values == sorted(values)
        headers["name"].click()
        assert column("name") == sorted((r["name"] for r in rows), reverse=True)
        headers["class"].click()
        assert [int(v) for v in column("class")] == sorted((int(r["class"]) for r in rows), reverse=True)
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [] and browser.execute_script("return window.__errors") == []
    finally:
        browser.quit()
