"""Screenshots of TensorBoard's dashboards for a run folder, taken by headless Chromium.

    python docs/screenshots.py runs/quickstart --out docs/screenshots

Starts TensorBoard on localhost on the folder, opens each dashboard in headless Chromium (Debian's
``chromium``, driven by Playwright; its WebGL charts need ``--enable-unsafe-swiftshader`` without a
GPU) with smoothing off and outliers kept, saves one PNG per dashboard and stops TensorBoard. Not part
of the tests: it needs a browser (``apt-get install -y chromium && pip install -e ".[docs]"``). The
README's screenshots come from it.
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

DASHBOARDS = {
    "time_series": "timeseries",
    "scalars": "scalars&_smoothingWeight=0",
    "custom_scalars": "custom_scalars&_smoothingWeight=0",
    "images": "images",
    "text": "text",
    "histograms": "histograms",
    "projector": "projector",
    "hparams": "hparams",
}
VIEWPORT = {"width": 1600, "height": 1100}
SETTLE_MILLISECONDS = 6000  # after the network is idle: charts draw, the projector computes PCA
BROWSER_FLAGS = ["--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader"]  # WebGL, no GPU
SETTINGS = {"scalarSmoothing": 0, "ignoreOutliers": False, "timeSeriesSettingsPaneOpened": False}


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise SystemExit("no chromium on PATH; install it with: apt-get install -y chromium")
    return path


def wait_until_serving(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"TensorBoard did not answer at {url} within {seconds:.0f} s")


def take_screenshots(base: str, names: list[str], out: Path) -> None:
    """One PNG per dashboard, with TensorBoard's own settings for a first look at training curves:
    no smoothing, outliers kept in the chart's range."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=BROWSER_FLAGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.add_init_script(f"localStorage.setItem('_tb_global_settings', '{json.dumps(SETTINGS)}')")
        for name in names:
            page.goto(f"{base}/#{DASHBOARDS[name]}", wait_until="networkidle")
            ignoring = page.locator("paper-checkbox[aria-checked='true']:visible", has_text="Ignore outliers")
            if ignoring.count():  # the Scalars and Custom Scalars tabs' own setting, on by default
                ignoring.first.click()
            page.wait_for_timeout(SETTLE_MILLISECONDS)
            path = out / f"{name}.png"
            page.screenshot(path=path)
            print(path)
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("logdir", help="the folder TensorBoard reads (e.g. runs/quickstart)")
    parser.add_argument("--out", default="docs/screenshots", help="folder for the PNGs")
    parser.add_argument("--port", type=int, default=6123)
    parser.add_argument("--only", nargs="*", choices=sorted(DASHBOARDS), help="these dashboards only")
    args = parser.parse_args(argv)
    if not Path(args.logdir).is_dir():
        raise SystemExit(f"{args.logdir} is not a folder; pass a run folder such as runs/quickstart")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{args.port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", args.logdir, "--host", "127.0.0.1",
         "--port", str(args.port), "--reload_interval", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_serving(f"{base}/data/runs")
        take_screenshots(base, args.only or list(DASHBOARDS), out)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
