"""The Interpretability tab: time to first draw of the LCA view for stores of 1,000, 10,000 and 100,000
steps, and the live explorer's attribution latency for LeNet and a ResNet-18 at 224 px.

LCA view: synthetic stores (the LCA paper's FC network, per class) are written first. For each, a fresh
plugin answers the two requests the view makes before drawing (summary and series, 650 buckets, as in
a 1,400 px window), cold: the store is read from disk. The baseline is the same series sent whole,
without min/max downsampling. With Chromium and Playwright, the view is also drawn in a real browser
over TensorBoard: the time from choosing the run to its four charts drawn. Prints the growth from 1,000
to 100,000 steps.

Explorer: a run folder per network (its config and a checkpoint of its initial weights); the latency
of an attribution question through the plugin's routes (submit, job, answer with PNGs), the model
already loaded, against the same Captum call made directly on the model.

    python bench/tab_speed.py [--skip-browser]
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from PIL import Image  # noqa: E402

from callbacks.attribution.methods import build_method  # noqa: E402
from callbacks.attribution.targets import Scores  # noqa: E402
from lightning_app.cli import cli_main  # noqa: E402
from lightning_app.tab.tensorboard_process import running_tensorboard  # noqa: E402
from tests.synthetic_lca_store import write_store  # noqa: E402
from tests.test_tab import Tab  # noqa: E402

STORE_STEPS = (1_000, 10_000, 100_000)
REPEATS = 5
BUCKETS = 650  # what the view asks for in a 1,400 px window: one min/max pair per two pixels


def first_draw_backend(logdir: Path, run: str, buckets: int) -> tuple[float, int]:
    """Seconds for summary + series on a fresh plugin (cold store), and the bytes sent."""
    tab = Tab(logdir)
    start = time.perf_counter()
    sizes = [
        len(tab.route(r, f"{r}?run={run}&buckets={buckets}").get_data())
        for r in ("/lca/summary", "/lca/series")
    ]
    seconds = time.perf_counter() - start
    tab.close()
    return seconds, sum(sizes)


def first_draw_browser(logdir: Path, runs: list[str]) -> dict[str, float]:
    """Seconds from choosing each run to its LCA charts drawn, in Chromium over TensorBoard."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    drawn = {}
    with running_tensorboard(logdir) as base, sync_playwright() as driver:
        browser = driver.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--enable-unsafe-swiftshader"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{base}/#interpretability")
        frame = page.frame_locator("iframe")
        frame.locator("#view[data-drawn-ms]").wait_for(timeout=120_000)  # the first run, a short one
        for run in runs:
            start = time.perf_counter()
            frame.locator("#run-select").select_option(run)
            frame.locator("#view[data-drawn-ms]").wait_for(timeout=120_000)
            drawn[run] = time.perf_counter() - start
            frame.locator(".peaks", has_text="synchronised").wait_for(
                timeout=600_000
            )  # the server is idle again
        browser.close()
    return drawn


def lca_view(root: Path, browser: bool) -> None:
    logdir = root / "stores"
    (logdir / "a_start").mkdir(parents=True)
    write_store(
        logdir / "a_start" / "lca.h5", 10
    )  # the run the tab opens on, so that every measured one is cold
    for steps in STORE_STEPS:
        (logdir / f"steps_{steps}").mkdir(parents=True)
        start = time.perf_counter()
        write_store(logdir / f"steps_{steps}" / "lca.h5", steps)
        print(f"wrote a {steps:,}-step store in {time.perf_counter() - start:.1f} s")
    print("\nLCA view, time to first draw (summary + series, cold store, median of 5):")
    print(f"{'steps':>9} {'backend':>9} {'sent':>8} {'whole series':>13} {'sent':>9} {'ratio':>6}")
    medians = {}
    for steps in STORE_STEPS:
        run = f"steps_{steps}"
        fast = [first_draw_backend(logdir, run, BUCKETS) for _ in range(REPEATS)]
        whole = [first_draw_backend(logdir, run, min(steps, 20000)) for _ in range(REPEATS)]
        medians[steps] = np.median([s for s, _ in fast])
        slow = np.median([s for s, _ in whole])
        print(f"{steps:>9,} {1000 * medians[steps]:7.0f}ms {fast[0][1] / 1e3:6.0f}kB {1000 * slow:11.0f}ms "
              f"{whole[0][1] / 1e3:7.0f}kB {slow / medians[steps]:5.1f}x")  # fmt: skip
    print(
        f"growth 1,000 -> 100,000 steps: {medians[100_000] / medians[1_000]:.1f}x the time for 100x the steps"
    )
    if browser:
        runs = [f"steps_{steps}" for steps in STORE_STEPS]
        drawn = first_draw_browser(logdir, runs)
        print("in Chromium over TensorBoard, choosing the run to four charts drawn:")
        for steps, run in zip(STORE_STEPS, runs, strict=True):
            print(f"{steps:>9,} {1000 * drawn[run]:7.0f}ms")


def explorer_run(root: Path, name: str, config: dict) -> Path:
    """A run folder with ``config`` and a checkpoint of the model's initial weights."""
    run = root / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cli = cli_main(["--config", str(run / "config.yaml"), "--trainer.logger", "false"], run=False)
    torch.save({"state_dict": cli.model.state_dict()}, run / "checkpoints" / "initial.ckpt")
    cli.datamodule.setup("fit")
    return run


def image_folder(root: Path) -> Path:
    """Three classes of ten 256 px RGB images, for the ResNet-18's data module (one per class in val)."""
    generator = np.random.default_rng(0)
    for label in ("a", "b", "c"):
        (root / label).mkdir(parents=True)
        for index in range(10):
            pixels = generator.integers(0, 256, (256, 256, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / label / f"{index}.png")
    return root


def explorer(root: Path) -> None:
    lenet = yaml.safe_load((ROOT / "configs" / "mnist_lenet_explain.yaml").read_text())
    resnet = yaml.safe_load((ROOT / "configs" / "imagefolder_resnet18_explain.yaml").read_text())
    resnet["data"]["init_args"].update(root=str(image_folder(root / "images")), num_workers=0)
    runs = {
        "LeNet (28 px)": explorer_run(root, "lenet", {"model": lenet["model"], "data": lenet["data"]}),
        "ResNet-18 (224 px)": explorer_run(
            root, "resnet18", {"model": resnet["model"], "data": resnet["data"]}
        ),
    }
    tab = Tab(root / "runs")
    print(
        "\nExplorer, attribution latency (model loaded; median of 5), against the Captum call made directly:"
    )
    for label, run in runs.items():
        for method, settings in (("Saliency", {}), ("IntegratedGradients", {"n_steps": 32})):
            fields = {
                "run": run.name,
                "question": "attribute",
                "method": method,
                "settings": json.dumps(settings),
            }
            tab.ask({**fields, "val_index": "0"})  # loads the model
            times = []
            for index in range(1, REPEATS + 1):
                start = time.perf_counter()
                image = {"val_index": str(index % 3), "target": str(index // 3)}  # a new question each time
                status, job = tab.ask({**fields, **image})
                times.append(time.perf_counter() - start)
                assert job["status"] == "done", job
            (model,) = [m for key, m in tab.plugin._models.items() if run.name in key[0]]
            direct = direct_attribution(model, method, settings)
            tab_time = np.median(times)
            ratio = tab_time / direct
            timing = f"tab {1000 * tab_time:7.1f} ms, direct {1000 * direct:7.1f} ms, {ratio:4.2f}x"
            print(f"  {label:<19} {method:<20} {timing}")
    tab.close()


def direct_attribution(model, method: str, settings: dict) -> float:
    """Median seconds of the method's Captum call on one validation image, nothing else."""
    built = build_method(method, settings)
    scores = Scores(model.module, segmentation=False)
    times = []
    for index in range(1, REPEATS + 1):
        inputs = model.validation[index % 3][0][None].requires_grad_()
        start = time.perf_counter()
        built.attribute(scores, inputs, torch.tensor([index // 3]), None)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--skip-browser", action="store_true", help="only the backend's time for the LCA view"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    lca_view(root, browser=not args.skip_browser and shutil.which("chromium") is not None)
    explorer(root)


if __name__ == "__main__":
    main()
