"""evaluate's report.html: one self-contained file (no address outside it) with every figure,
the command, the sources worst first and the model card; it renders in a real browser."""

from __future__ import annotations

import re

import pytest
from conftest import make_model


@pytest.fixture(scope="module")
def report(multi_source_data, tmp_path_factory):
    from deepfake_detect.data.datasets import index_dataset
    from deepfake_detect.evaluation.runs import evaluate
    from deepfake_detect.inference import load_detector

    out = tmp_path_factory.mktemp("report")
    detector = load_detector(make_model(out / "model"))
    sources = [multi_source_data / "alpha", multi_source_data / "beta"]
    metrics = evaluate(detector, index_dataset(sources), out / "eval")
    return out / "eval" / "report.html", metrics


def test_the_report_holds_everything_and_reaches_for_nothing(report):
    path, metrics = report
    text = path.read_text()
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text and "<link" not in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == 4 and all(s.startswith("data:image/png;base64,") for s in sources)
    for words in ("Command", "Sources, worst first", "Model card", "alpha", "beta",
                  metrics["weights_sha256"]):  # fmt: skip
        assert words in text
    worst = min(metrics["per_source"], key=lambda s: metrics["per_source"][s]["roc_auc"])
    first_row = re.search(r"<tbody><tr[^>]*><td>([^<]+)</td>", text).group(1)
    assert first_row == worst
    assert not (path.parent / "by_source.png").exists()  # embedded, not left beside it


def test_the_report_renders_in_chromium_without_errors(report, tmp_path):
    from test_browser import CHROMIUM, CHROMIUM_ARGS, _unavailable

    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    path, _ = report
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)  # fmt: skip
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        errors, requests = [], []
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("request", lambda r: requests.append(r.url))
        page.goto(path.as_uri())
        page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth)")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert all(u.startswith(("file:", "data:")) for u in requests), requests
    assert (tmp_path / "report.png").stat().st_size > 10_000
