"""The web page in a real browser: Debian's Chromium, driven by Playwright, against the real
server on 127.0.0.1 (no browser download, nothing fetched from anywhere else).

Skipped when /usr/bin/chromium is missing, unless DEEPFAKE_DETECT_REQUIRE_BROWSER=1 (CI sets
it, and installs Chromium), where a missing browser fails instead.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from conftest import make_model, photo_like, running_server

from deepfake_detect.serving.app import ServiceSettings, create_app

CHROMIUM = Path("/usr/bin/chromium")
REQUIRE_ENV = "DEEPFAKE_DETECT_REQUIRE_BROWSER"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000


def _unavailable(reason: str):
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1 requires the browser test)", pytrace=False)
    pytest.skip(reason)


def _jpeg(seed: int, size: int = 96) -> bytes:
    buffer = io.BytesIO()
    photo_like(np.random.default_rng(seed), size).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real app, served by uvicorn in a thread, once its model has loaded."""
    model = make_model(tmp_path_factory.mktemp("model"), seed=3, threshold=0.5)
    # api_key="": no key, whatever DEEPFAKE_DETECT_API_KEY the environment holds
    app = create_app(ServiceSettings(model=str(model), engine="onnx", api_key=""))
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"playwright is not installed: {exc}")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
    except Exception:
        playwright.stop()
        raise
    yield browser
    browser.close()
    playwright.stop()


class Watched:
    """A page with its console errors, uncaught errors and every URL it requested."""

    def __init__(self, page):
        self.page = page
        self.errors: list[str] = []
        self.urls: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.urls.append(r.url))

    def assert_clean(self, base: str):
        assert self.errors == []
        origin = urlsplit(base)
        outside = [
            u
            for u in self.urls
            if urlsplit(u).scheme not in ("data", "blob")
            and (urlsplit(u).hostname, urlsplit(u).port) != (origin.hostname, origin.port)
        ]
        assert outside == [], "the page requested something from outside the server"


@pytest.fixture
def watched(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    yield Watched(context.new_page())
    context.close()


def _open(watched: Watched, base: str):
    page = watched.page
    page.goto(base + "/")
    page.wait_for_selector("#model-info .model-name", timeout=WAIT_MS)
    return page


def _finished(page, count: int):
    """The cards, once `count` of them have an answer (a verdict or an error)."""
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=result]:not([data-state=pending])')"
        ".length >= n",
        arg=count,
        timeout=WAIT_MS,
    )
    return page.locator("[data-testid=result]")


def test_verdict_on_the_page_is_the_apis_and_the_heatmap_loads(watched, server, tmp_path):
    import httpx

    data = _jpeg(seed=11)
    photo = tmp_path / "face.jpg"
    photo.write_bytes(data)
    page = _open(watched, server)
    assert "Read the score as an estimate, not proof" in page.inner_text("body")

    page.set_input_files("[data-testid=file-input]", str(photo))
    card = _finished(page, 1).first
    assert card.get_attribute("data-state") == "done"

    answer = httpx.post(
        f"{server}/v1/predict", files={"file": ("face.jpg", data, "image/jpeg")}, timeout=30
    ).json()["results"][0]
    label = card.get_attribute("data-label")
    assert label == answer["label"]
    assert float(card.get_attribute("data-score")) == pytest.approx(answer["score"], abs=1e-6)
    verdict = card.locator("[data-testid=verdict]").inner_text()
    assert f"Likely {label}" in verdict and f"label: {label}" in verdict
    numbers = card.locator("[data-testid=numbers]").inner_text()
    assert f"P(fake) {answer['score']:.3f}" in numbers
    assert f"threshold {answer['threshold']:.3f}" in numbers

    heatmap = card.locator("img[data-testid=heatmap]")
    heatmap.wait_for(state="visible", timeout=WAIT_MS)
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=heatmap.element_handle()
    )
    card.locator("[data-testid=toggle-original]").click()
    assert not heatmap.is_visible()
    watched.assert_clean(server)


def test_a_bad_file_shows_its_error_and_the_good_one_its_verdict(watched, server, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("these are notes, not a photograph\n")
    good = tmp_path / "good.jpg"
    good.write_bytes(_jpeg(seed=12))
    page = _open(watched, server)
    page.uncheck("[data-testid=explain]")  # the verdicts are the point here, not heat-maps

    page.set_input_files("[data-testid=file-input]", [str(bad), str(good)])
    _finished(page, 2)
    bad_card = page.locator("[data-testid=result][data-filename='notes.jpg']")
    good_card = page.locator("[data-testid=result][data-filename='good.jpg']")
    assert bad_card.get_attribute("data-state") == "error"
    error = bad_card.locator("[data-testid=error]")
    assert error.is_visible() and "notes.jpg" in error.inner_text()
    assert good_card.get_attribute("data-state") == "done"
    assert good_card.get_attribute("data-label") in ("fake", "real")
    assert good_card.locator("img[data-testid=heatmap]").is_hidden()
    # Chromium logs the server's refusal of the bad file (its own request) as a failed load
    refused = "Failed to load resource: the server responded with a status of 4"
    watched.errors = [e for e in watched.errors if not e.startswith(refused)]
    watched.assert_clean(server)


def test_keyboard_reaches_the_file_input_and_the_page_fits_a_phone(browser, server, tmp_path):
    context = browser.new_context(viewport={"width": 360, "height": 740})
    try:
        watched = Watched(context.new_page())
        page = _open(watched, server)
        reached = False
        for _ in range(10):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == "file-input":
                reached = True
                break
        assert reached, "Tab never reached the file input"
        outline = page.evaluate(
            "getComputedStyle(document.querySelector('label[for=file-input]')).outlineStyle"
        )
        assert outline != "none", "the focused file button shows no focus outline"

        photo = tmp_path / "portrait-with-a-rather-long-file-name-from-a-phone-camera.jpg"
        photo.write_bytes(_jpeg(seed=13, size=120))
        page.set_input_files("[data-testid=file-input]", str(photo))
        _finished(page, 1)
        page.locator("img[data-testid=heatmap]").wait_for(state="visible", timeout=WAIT_MS)
        width = page.evaluate(
            "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
        )
        assert width[0] <= width[1], f"horizontal scroll at 360 px: {width}"
        page.screenshot(path=str(tmp_path / "results-360px.png"), full_page=True)
        watched.assert_clean(server)
    finally:
        context.close()


def test_faces_are_boxed_by_verdict_and_provenance_is_shown(watched, server, tmp_path):
    import httpx
    from provenance_files import sd_png
    from test_faces import two_face_jpeg

    group = tmp_path / "group.jpg"
    group.write_bytes(two_face_jpeg("real"))
    made = tmp_path / "made.png"
    made.write_bytes(sd_png())
    page = _open(watched, server)
    page.uncheck("[data-testid=explain]")
    page.check("[data-testid=faces]")
    page.set_input_files("[data-testid=file-input]", [str(group), str(made)])
    _finished(page, 2)
    card = page.locator("[data-testid=result][data-filename='group.jpg']")
    answer = httpx.post(f"{server}/v1/predict", params={"faces": "auto"},
                        files={"file": ("group.jpg", group.read_bytes(), "image/jpeg")},
                        timeout=60).json()["results"][0]  # fmt: skip
    boxes = card.locator("[data-testid=face-box]")
    assert boxes.count() == len(answer["faces"]) == 2
    assert [boxes.nth(i).get_attribute("data-label") for i in range(2)] == [
        f["label"] for f in answer["faces"]
    ]
    line = card.locator("[data-testid=faces-line]").inner_text()
    assert line.startswith("whole image: ") and answer["whole_score"] is not None
    first = boxes.nth(0).bounding_box()
    picture = card.locator(".card-media").bounding_box()
    assert picture["x"] < first["x"] < picture["x"] + picture["width"] / 2  # the left face
    provenance = page.locator("[data-testid=result][data-filename='made.png'] "
                              "[data-testid=provenance]").inner_text()  # fmt: skip
    assert "Stable Diffusion" in provenance
    watched.assert_clean(server)
