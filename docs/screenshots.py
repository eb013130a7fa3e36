"""Screenshots of TensorBoard's dashboards and of the Interpretability tab for a run folder, taken by
headless Chromium with a fresh profile, so at TensorBoard's default settings (smoothing 0.6, outliers
ignored): what a new user sees.

    python docs/screenshots.py runs/quickstart --out docs/screenshots

Starts TensorBoard on localhost on the folder, opens each dashboard and each view of the tab in headless
Chromium (Debian's ``chromium``, driven by Playwright; its WebGL charts need
``--enable-unsafe-swiftshader`` without a GPU), saves one PNG each and stops TensorBoard. It waits for
content, not for a fixed time: TensorBoard's dashboards until the page has stopped changing for two
seconds, the tab's views until their charts and images are drawn; a view that does not come is
retried once after a reload. Not part of the tests: it needs a browser (``apt-get install -y chromium
&& pip install -e ".[docs]"``). The README's screenshots come from it.
"""

import argparse
import shutil
import sys
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lightning_app.tab.tensorboard_process import running_tensorboard  # noqa: E402

DASHBOARDS = (
    "timeseries", "scalars", "custom_scalars", "images", "text", "histograms", "projector", "hparams",
)  # fmt: skip
TAB_VIEWS = {  # view button -> what shows it is drawn
    "lca": "#lca-layers-chart .scatterlayer .trace",
    "attributions": "#attribution-grid img",
    "feature_vis": ".gallery img",
    "explorer": "#explorer-attribution img",
}
VIEWPORT = {"width": 1600, "height": 1100}
BROWSER_FLAGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]  # WebGL, no GPU
CONTENT_MS = 180_000  # the longest wait for content on a slow machine
QUIET = """() => new Promise(done => {
    let timer = setTimeout(finish, 2000);
    const observer = new MutationObserver(() => { clearTimeout(timer); timer = setTimeout(finish, 2000); });
    function finish() { observer.disconnect(); done(); }
    observer.observe(document.body, {subtree: true, childList: true, attributes: true, characterData: true});
})"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("no chromium on PATH; install it with: apt-get install -y chromium")
    return path


def with_retry(page, show) -> None:
    """``show()``; once more after a reload when its content did not come in time."""
    try:
        show()
    except PlaywrightError:
        page.reload()
        show()


def dashboard(page, base: str, name: str, out: Path) -> None:
    def show() -> None:
        page.goto(f"{base}/#{name}", wait_until="load")
        page.wait_for_load_state("networkidle", timeout=CONTENT_MS)
        page.evaluate(QUIET)  # charts and the projector draw after the data arrives

    with_retry(page, show)
    page.screenshot(path=out / f"{name}.png")
    print(out / f"{name}.png")


def tab_view(page, base: str, view: str, out: Path) -> None:
    def show() -> None:
        page.goto(f"{base}/#interpretability", wait_until="load")
        frame = page.frame_locator("iframe")
        frame.locator(f"#view-{view}").click(timeout=CONTENT_MS)
        if view == "explorer":
            frame.locator("#explorer-layer option").first.wait_for(state="attached", timeout=CONTENT_MS)
            frame.locator("#explorer-predict").click()
        frame.locator(TAB_VIEWS[view]).first.wait_for(timeout=CONTENT_MS)
        page.evaluate(QUIET)

    with_retry(page, show)
    path = out / f"interpretability_{view}.png"
    page.screenshot(path=path)
    print(path)


def take_screenshots(base: str, dashboards: list[str], views: list[str], out: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=BROWSER_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)  # a fresh profile: TensorBoard's defaults
        for name in dashboards:
            dashboard(page, base, name, out)
        for view in views:
            tab_view(page, base, view, out)
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", help="the folder TensorBoard reads (e.g. runs/quickstart)")
    parser.add_argument("--out", default="docs/screenshots", help="folder for the PNGs")
    parser.add_argument("--only", nargs="*", choices=[*DASHBOARDS, *TAB_VIEWS], help="these pages only")
    args = parser.parse_args(argv)
    if not Path(args.logdir).is_dir():
        raise SystemExit(f"{args.logdir} is not a folder; pass a run folder such as runs/quickstart")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = args.only or [*DASHBOARDS, *TAB_VIEWS]
    with running_tensorboard(Path(args.logdir)) as base:
        take_screenshots(
            base, [d for d in chosen if d in DASHBOARDS], [v for v in chosen if v in TAB_VIEWS], out
        )


if __name__ == "__main__":
    main()
