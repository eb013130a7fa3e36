"""The Interpretability tab in a real browser: Debian's Chromium driven by Playwright opens the tab on a
small run made by the test, checks that every view draws (charts with data, images that decode, no
console errors), and uploads an image to get an attribution map back."""

import shutil

import numpy as np
import pytest
from PIL import Image

from lightning_app.tab.tensorboard_process import running_tensorboard

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip(
    "playwright.sync_api",
    reason="Playwright is not installed (pip install -e '.[dev]'): browser test skipped",
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (apt-get install -y chromium): browser test skipped"
)
FLAGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]
ALL_LOADED = """grid => Promise.all([...grid.querySelectorAll('img')].map(
    i => i.complete ? null : new Promise(done => { i.onload = done; i.onerror = done; })))"""
WAIT_MS = 120_000  # content, not a fixed pause: a slow machine only waits longer


def decoded(frame, selector: str) -> int:
    """How many images matching ``selector`` have decoded to a picture."""
    return frame.locator(selector).evaluate_all(
        "images => images.filter(i => i.complete && i.naturalWidth > 0).length"
    )


def drawn_traces(frame, chart: str) -> int:
    """The number of plotted series with points in a Plotly chart."""
    return frame.locator(f"{chart} .scatterlayer .trace path.js-line").count()


def test_every_view_of_the_tab_draws_and_an_upload_gets_its_attribution(tab_run, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPRETABILITY_TAB_CACHE", str(tmp_path / "cache"))  # TensorBoard inherits it
    digit = Image.fromarray(np.pad(np.full((12, 4), 255, np.uint8), ((8, 8), (12, 12))))
    upload = tmp_path / "one.png"
    digit.save(upload)
    errors = []
    log = tmp_path / "tensorboard.log"
    with running_tensorboard(tab_run.parents[1], log=log) as base, playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{base}/#interpretability")
        frame = page.frame_locator("iframe")
        frame.locator("#lca-layers-chart .scatterlayer .trace").first.wait_for(timeout=WAIT_MS)
        assert drawn_traces(frame, "#lca-layers-chart") == 3  # net.fc1, net.fc2, net.fc3
        assert drawn_traces(frame, "#lca-classes-chart") == 10
        assert drawn_traces(frame, "#lca-loss-chart") == 2
        frame.locator(".peaks", has_text="synchronised").wait_for(timeout=WAIT_MS)

        frame.locator("#view-attributions").click()
        frame.locator("#attribution-grid img").first.wait_for(timeout=WAIT_MS)
        frame.locator("#attribution-grid").evaluate(ALL_LOADED, timeout=WAIT_MS)
        assert decoded(frame, "#attribution-grid img") == 30  # 10 probe images x 3 methods
        assert frame.locator(".verdict.rejected").count() + frame.locator(".verdict.passed").count() == 3

        frame.locator("#view-feature_vis").click()
        frame.locator(".gallery figure").first.click()
        frame.locator("#channel-lca-chart .scatterlayer .trace").first.wait_for(timeout=WAIT_MS)
        frame.locator("#channel-top img").first.wait_for(timeout=WAIT_MS)
        assert decoded(frame, ".gallery img") == 16  # 8 channels of net.fc1 and net.fc2

        frame.locator("#view-explorer").click()
        frame.locator("#explorer-layer option").first.wait_for(state="attached", timeout=WAIT_MS)
        frame.locator("#explorer-file").set_input_files(str(upload))
        frame.locator("#explorer-predict").click()
        frame.locator("#explorer-attribution img").nth(2).wait_for(timeout=WAIT_MS)
        assert frame.locator("#explorer-top5 tr.prediction").count() == 5
        assert decoded(frame, "#explorer-attribution img") == 3
        overlay = frame.locator("#explorer-attribution img").nth(2).get_attribute("src")
        assert overlay.startswith("data:image/png;base64,")
        browser.close()
    assert errors == []
    assert len(list((tmp_path / "cache" / "uploads").iterdir())) == 1  # the upload, and only there
