"""The Interpretability tab's backend, through its routes (Werkzeug's test client): every route, the
numbers each view draws against the run's own records, bad parameters, path traversal, uploads, jobs."""

import base64
import csv
import hashlib
import io
import json
import time
from importlib.metadata import entry_points
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from tensorboard.plugins import base_plugin
from werkzeug.test import Client
from werkzeug.wrappers import Response

from callbacks.attribution.figures import attribution_panels, heat_scale
from callbacks.attribution.records import load_record, load_sanity
from callbacks.feature_vis.records import load_record as load_feature_vis
from callbacks.lca.analysis import module_series, peak_counts, summary
from callbacks.lca.integrity import DamagedStore
from callbacks.lca.store import LCARun
from lightning_app.cli import cli_main
from lightning_app.tab import plugin as plugin_module
from lightning_app.tab.downsample import min_max
from lightning_app.tab.explorer_model import MAX_UPLOAD_BYTES
from lightning_app.tab.jobs import JobRunner
from lightning_app.tab.lca_data import VIEW_COLUMNS, moving_average
from lightning_app.tab.plugin import InterpretabilityPlugin
from tests.spacenet_fixtures import make_spacenet3
from tests.synthetic_lca_store import write_store

ROOT = Path(__file__).parents[1]


class Tab:
    """The plugin on a logdir, asked through its WSGI routes as TensorBoard would route them."""

    def __init__(self, logdir: Path) -> None:
        self.plugin = InterpretabilityPlugin(base_plugin.TBContext(logdir=str(logdir)))
        self.apps = self.plugin.get_plugin_apps()

    def route(self, route: str, path: str | None = None, **kwargs) -> Response:
        client = Client(self.apps[route], Response)
        url = "/data/plugin/interpretability" + (path or route)
        return client.post(url, **kwargs) if "data" in kwargs else client.get(url)

    def get(self, route: str, query: str = "") -> tuple[int, object]:
        response = self.route(route, f"{route}?{query}")
        body = response.get_data()
        return response.status_code, json.loads(body) if response.mimetype == "application/json" else body

    def ask(self, fields: dict, image: bytes | None = None) -> tuple[int, dict]:
        """Submit a question and wait for its job: (status of the submit, the job or the error)."""
        data = dict(fields)
        if image is not None:
            data["image"] = (io.BytesIO(image), "upload.png")
        response = self.route("/explorer/submit", data=data)
        body = json.loads(response.get_data())
        if response.status_code != 200:
            return response.status_code, body
        for _ in range(12):
            status, body = self.get("/explorer/job", f"id={body['id']}&wait=10")
            if body["status"] not in ("queued", "running"):
                return status, body
        raise AssertionError("the job did not finish in 120 s")

    def close(self) -> None:
        self.plugin.jobs.shutdown()


@pytest.fixture(scope="module")
def tab(tab_run, tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("INTERPRETABILITY_TAB_CACHE", str(tmp_path_factory.mktemp("tab_cache")))
        tab = Tab(tab_run.parents[1])
        yield tab
        tab.close()


@pytest.fixture(scope="module")
def store_tab(tmp_path_factory):
    """A logdir with two synthetic LCA stores (300 and 5,000 steps)."""
    logdir = tmp_path_factory.mktemp("stores")
    for name, steps in (("short", 300), ("long", 5000)):
        (logdir / name).mkdir()
        write_store(logdir / name / "lca.h5", steps, seed=len(name))
    tab = Tab(logdir)
    yield tab, logdir
    tab.close()


def png(content: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(content)).convert("RGB"))


def png_upload(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def run_name(run: Path) -> str:
    return run.relative_to(run.parents[1]).as_posix()


def test_the_plugin_is_registered_for_tensorboard_and_serves_its_modules_and_plotly(tab):
    (entry,) = [e for e in entry_points(group="tensorboard_plugins") if e.name == "interpretability"]
    assert entry.load() is InterpretabilityPlugin
    metadata = tab.plugin.frontend_metadata()
    assert (metadata.es_module_path, metadata.tab_name) == ("/index.js", "Interpretability")
    index = tab.route("/index.js")
    assert index.status_code == 200 and b"export async function render()" in index.get_data()
    for name in (
        "lca_view.js",
        "attribution_view.js",
        "feature_vis_view.js",
        "explorer_view.js",
        "style.css",
    ):
        assert tab.route("/static/*", f"/static/{name}").status_code == 200
    plotly = tab.route("/vendor/plotly.min.js")
    assert plotly.status_code == 200 and len(plotly.get_data()) > 1_000_000  # from the plotly wheel
    assert tab.route("/static/*", "/static/../plugin.py").status_code == 404
    assert tab.route("/static/*", "/static/%2e%2e/plugin.py").status_code == 404


def test_the_tab_is_active_only_when_a_run_under_the_logdir_holds_our_records(tab, tmp_path):
    empty = Tab(tmp_path)
    (tmp_path / "events_only").mkdir()
    (tmp_path / "events_only" / "events.out.tfevents.1").write_bytes(b"")
    assert not empty.plugin.is_active()
    assert empty.get("/runs") == (200, {"runs": [], "methods": empty.get("/runs")[1]["methods"]})
    assert tab.plugin.is_active()


def test_runs_lists_each_run_with_its_records_and_checkpoints(tab, tab_run):
    status, body = tab.get("/runs")
    assert status == 200
    (run,) = body["runs"]
    assert run == {
        "name": run_name(tab_run),
        "lca": True,
        "attributions": True,
        "feature_vis": True,
        "checkpoints": ["epoch=1-step=40.ckpt"],
    }
    assert {"Saliency", "IntegratedGradients", "LRP", "LayerGradCam"} <= set(body["methods"])


def test_lca_series_are_the_stores_numbers_per_step_cumulative_and_smoothed(store_tab):
    tab, logdir = store_tab
    run = LCARun(logdir / "short" / "lca.h5")
    status, view = tab.get("/lca/series", "run=short&buckets=1000")
    assert status == 200
    loss = run.steps["loss_end"] - run.steps["loss_start"]
    np.testing.assert_allclose(view["loss"][0]["y"], loss)
    np.testing.assert_allclose(view["loss"][1]["y"], run.steps["lca_sum"])
    modules, per_module = module_series(run, per_class=False)
    assert [s["name"] for s in view["layers"]] == modules == ["fc1", "fc2", "fc3"]
    for series, values in zip(view["layers"], per_module[:, 0], strict=True):
        np.testing.assert_allclose(series["y"], values)
        assert series["x"] == list(range(300))
    per_class = run.steps["class_layer_lca"].sum(axis=2)
    assert [s["name"] for s in view["classes"]] == [str(c) for c in range(10)]
    np.testing.assert_allclose([s["y"] for s in view["classes"]], per_class.T)
    helped = run.steps["layer_counts"][:, :, 0].sum(axis=1) / run.num_parameters
    np.testing.assert_allclose(view["fractions"][0]["y"], helped)
    _, cumulative = tab.get("/lca/series", "run=short&buckets=1000&cumulative=1")
    np.testing.assert_allclose(cumulative["loss"][1]["y"], np.cumsum(run.steps["lca_sum"]))
    _, smoothed = tab.get("/lca/series", "run=short&buckets=1000&smooth=10")
    by_hand = [run.steps["lca_sum"][max(0, t - 9) : t + 1].mean() for t in range(300)]
    np.testing.assert_allclose(smoothed["loss"][1]["y"], by_hand)


def test_a_long_run_is_downsampled_to_min_max_pairs_that_keep_every_buckets_extremes(store_tab):
    tab, logdir = store_tab
    run = LCARun(logdir / "long" / "lca.h5")
    _, view = tab.get("/lca/series", "run=long&buckets=100")
    drawn = view["loss"][1]
    assert len(drawn["y"]) <= 200 and drawn["x"] == sorted(drawn["x"])
    values = run.steps["lca_sum"]
    for bucket in np.array_split(np.arange(5000), 100):  # 50 steps each, as the route splits them
        inside = [y for x, y in zip(drawn["x"], drawn["y"], strict=True) if bucket[0] <= x <= bucket[-1]]
        assert min(inside) == values[bucket].min() and max(inside) == values[bucket].max()


def test_min_max_keeps_gaps_where_a_bucket_was_never_measured():
    values = np.arange(40, dtype=float)
    values[:10] = np.nan
    x, y = min_max(np.arange(40), values, buckets=4)
    assert np.isnan(y[:2]).all() and y[2:].tolist() == [10, 19, 20, 29, 30, 39]
    assert moving_average(np.array([1.0, np.nan, 3.0, 5.0]), 2).tolist() == [1.0, 1.0, 3.0, 4.0]


def test_lca_summary_peaks_and_units_equal_the_analysis_of_the_store(store_tab):
    tab, logdir = store_tab
    run = LCARun(logdir / "short" / "lca.h5")
    _, view = tab.get("/lca/summary", "run=short")
    expected = summary(run)
    assert view["summary"]["lca_sum"] == pytest.approx(expected["lca_sum"])
    assert view["tensors"] == pytest.approx(expected["layers"])
    assert view["steps"] == 300 and view["classes"] == [str(c) for c in range(10)]
    _, peaks = tab.get("/lca/peaks", "run=short&draws=50")
    _, found, synchronised, counts = peak_counts(run, draws=50)
    assert peaks["counts"] == pytest.approx(counts)
    assert sum(len(row["steps"]) for row in peaks["rows"]) == found.sum() == counts["peaks"]
    assert sum(len(row["steps"]) for row in peaks["synchronised"]) == synchronised.sum()
    _, units = tab.get("/lca/units", "run=short&layer=fc2")
    rows = np.flatnonzero(np.array(run.neuron_modules) == "fc2")
    totals = run.steps["neuron_lca"][:, rows].astype(np.float64).sum(axis=0)
    assert [u["unit"] for u in units["ranking"]] == np.argsort(totals).tolist()
    assert units["ranking"][0]["lca"] == pytest.approx(totals.min())
    assert units["renders"] == {}
    np.testing.assert_allclose(units["top_series"][0]["y"][-1], totals.min(), rtol=1e-5)


def test_the_attribution_view_gives_the_recorded_maps_at_full_resolution_with_sanity_verdicts(tab, tab_run):
    name = run_name(tab_run)
    status, index = tab.get("/attributions", f"run={name}")
    assert status == 200 and index["steps"] == [20, 40]
    assert index["methods"] == ["Saliency", "IntegratedGradients", "Occlusion"]
    assert len(index["images"]) == 10 and index["class_names"] == [str(c) for c in range(10)]
    sanity = load_sanity(tab_run)
    for method, numbers in sanity["methods"].items():
        assert index["sanity"][method]["rejected"] == bool(numbers["insensitive"])
        assert index["sanity"][method]["randomisation_correlation"] == numbers["randomisation_correlation"]
    record = load_record(tab_run, 40)
    maps = record.maps["IntegratedGradients"].astype(np.float64)
    assert maps.shape == (10, 28, 28)
    status, content = tab.get(
        "/attributions/image", f"run={name}&step=40&method=IntegratedGradients&image=3&panel=overlay"
    )
    pixels = np.repeat(np.transpose(record.display[3], (1, 2, 0)), 3, axis=2)
    expected = attribution_panels(pixels, maps[3], heat_scale(list(maps)))[2]
    assert status == 200 and png(content).shape == (28, 28, 3)
    np.testing.assert_allclose(png(content), np.clip(expected, 0, 1) * 255, atol=0.51)
    status, error = tab.get("/attributions/image", f"run={name}&step=40&method=Lime&image=0")
    assert status == 400 and "method 'Lime' was not recorded at step 40" in error["error"]
    status, error = tab.get("/attributions/image", f"run={name}&step=41&method=Saliency&image=0")
    assert status == 400 and error["error"] == "no attributions recorded at step 41; recorded: [20, 40]"


def test_faithfulness_over_training_is_read_from_the_runs_csv(tab, tab_run):
    _, view = tab.get("/faithfulness", f"run={run_name(tab_run)}")
    rows = list(csv.DictReader((tab_run / "faithfulness.csv").open()))
    series = view["metrics"]["deletion"]["Saliency"]
    expected = [r for r in rows if r["metric"] == "deletion" and r["method"] == "Saliency"]
    assert series["x"] == [int(r["step"]) for r in expected] and len(expected) == 3  # before training too
    assert series["y"] == [float(r["value"]) for r in expected]
    assert view["better"] == {"deletion": "lower"}


def test_the_feature_vis_gallery_ranks_dataset_examples_and_joins_the_units_lca(tab, tab_run):
    name = run_name(tab_run)
    status, index = tab.get("/feature_vis", f"run={name}")
    assert status == 200 and set(index["layers"]) == {"net.fc1", "net.fc2"}
    record = load_feature_vis(tab_run, 40, "net.fc1")
    assert index["layers"]["net.fc1"]["channels"] == record.channels.tolist()
    channel = int(record.channels[0])
    status, content = tab.get("/feature_vis/render", f"run={name}&step=40&layer=net.fc1&position=0")
    assert status == 200 and png(content).shape == (28, 28, 3)
    _, view = tab.get("/feature_vis/channel", f"run={name}&layer=net.fc1&channel={channel}")
    values = record.probe_values[0]
    assert [e["probe"] for e in view["top"]] == np.argsort(-values)[:5].tolist()
    assert [e["probe"] for e in view["bottom"]] == np.argsort(values)[:5].tolist()
    assert view["top"][0]["box"] == record.top_boxes[0, 0, 1:].tolist()
    run = LCARun(tab_run / "lca.h5")
    unit = np.flatnonzero(np.array(run.neuron_modules) == "net.fc1")[channel]
    assert view["lca"]["total"] == pytest.approx(
        float(run.steps["neuron_lca"][:, unit].astype(np.float64).sum())
    )
    top, left, bottom, right = view["top"][0]["box"]
    _, crop = tab.get(
        "/feature_vis/example", f"run={name}&step=40&layer=net.fc1&probe=0&box={top},{left},{bottom},{right}"
    )
    assert png(crop).shape == (bottom - top, right - left, 3)
    _, units = tab.get("/lca/units", f"run={name}&layer=net.fc1")
    assert units["renders"][str(channel)] == {"step": 40, "position": 0}


def trained_model(run: Path) -> torch.nn.Module:
    """The run's model and weights, built independently of the tab."""
    saved = yaml.safe_load((run / "config.yaml").read_text())
    cli = cli_main(["--config", yaml.safe_dump({"model": saved["model"], "data": saved["data"]})], run=False)
    state = torch.load(next((run / "checkpoints").glob("*.ckpt")), weights_only=True)["state_dict"]
    cli.model.load_state_dict(state)
    cli.datamodule.setup("fit")
    return cli.model.eval(), cli.datamodule


def test_the_explorer_answers_top5_and_saliency_as_plain_autograd_does(tab, tab_run):
    name = run_name(tab_run)
    model, datamodule = trained_model(tab_run)
    image = datamodule.evaluation_subset("val")[7][0][None]
    status, job = tab.ask({"run": name, "question": "predict", "val_index": "7"})
    assert status == 200 and job["status"] == "done"
    probabilities = model(image).softmax(dim=1)[0]
    top = probabilities.topk(5)
    assert [row["class"] for row in job["result"]["top"]] == top.indices.tolist()
    np.testing.assert_allclose(
        [row["probability"] for row in job["result"]["top"]], top.values.detach(), rtol=1e-5
    )
    target = int(top.indices[1])
    _, job = tab.ask(
        {"run": name, "question": "attribute", "val_index": "7", "method": "Saliency", "target": str(target)}
    )
    inputs = image.clone().requires_grad_()
    model(inputs)[0, target].backward()
    assert job["result"]["target"] == target
    assert job["result"]["sum"] == pytest.approx(float(inputs.grad.abs().sum()), rel=1e-5)
    assert job["result"]["png"]["overlay"].startswith("data:image/png;base64,")


def test_an_uploaded_png_is_prepared_as_the_training_images_and_oversized_or_foreign_files_are_refused(
    tab, tab_run
):
    name = run_name(tab_run)
    model, datamodule = trained_model(tab_run)
    digit = (
        (datamodule.denormalize(datamodule.evaluation_subset("val")[3][0]) * 255).round().byte()[0].numpy()
    )
    status, job = tab.ask({"run": name, "question": "predict"}, png_upload(digit))
    expected = model(datamodule.from_display(torch.from_numpy(digit / 255.0).float()[None, None])).argmax()
    assert status == 200 and job["result"]["top"][0]["class"] == int(expected)
    status, error = tab.ask({"run": name, "question": "predict"}, b"this is not an image")
    assert status == 400 and error["error"].startswith("the upload is not an image PIL or rasterio can read")
    status, error = tab.ask({"run": name, "question": "predict"}, b"0" * (MAX_UPLOAD_BYTES + 2 * 1024 * 1024))
    assert status == 413 and error["error"] == f"upload over the limit of {MAX_UPLOAD_BYTES} bytes"
    status, error = tab.ask(
        {"run": name, "question": "predict"}, png_upload(np.zeros((8000, 6000), np.uint8))
    )
    assert (status, error["error"]) == (
        400,
        "upload of 6000x8000 pixels is over the limit of 40000000 pixels",
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"question": "nonsense"}, "question 'nonsense' must be one of ['layers', 'predict'"),
        ({"question": "predict"}, "predict needs an image (the form field 'image') or val_index"),
        ({"question": "predict", "val_index": "x"}, "val_index 'x' is not a whole number"),
        (
            {"question": "attribute", "val_index": "0", "method": "os.system"},
            "method 'os.system' is not one of",
        ),
        ({"question": "attribute", "val_index": "0", "settings": "{bad"}, "settings '{bad' is not JSON"),
        ({"question": "activations", "val_index": "0"}, "activations needs the form field 'layer'"),
        (
            {"question": "render", "layer": "net.fc1", "channels": "a-b"},
            "channels 'a-b' is not a list like 0-7",
        ),
        (
            {"question": "render", "layer": "net.fc1", "settings": '{"steps": 0}'},
            "steps 0 must be a whole number",
        ),
        (
            {"question": "render", "layer": "net.fc1", "settings": '{"size": 4}'},
            "size 4 must be a whole number from 8",
        ),
        (
            {"question": "render", "layer": "net.fc1", "settings": '{"lr": "fast"}'},
            "lr 'fast' must be a positive",
        ),
        (
            {"question": "render", "layer": "net.fc1", "settings": '{"colour": 1}'},
            "render settings ['colour'] are",
        ),
        (
            {"question": "render", "layer": "net.fc1", "settings": '{"penalties": {"tv": -1}}'},
            "penalties {'tv': -1} must be",
        ),
        ({"question": "probe", "method": "Saliency"}, "probe needs the form field 'step'"),
        (
            {"question": "predict", "val_index": "0", "checkpoint": "../config.yaml"},
            "checkpoint '../config.yaml' is",
        ),
    ],
)
def test_a_question_with_a_bad_field_is_refused_before_any_work_in_one_json_line(
    tab, tab_run, fields, message
):
    status, body = tab.ask({"run": run_name(tab_run), **fields})
    assert status == 400 and body["error"].startswith(message), body


def test_answers_that_fail_inside_the_job_say_why_in_one_line(tab, tab_run):
    name = run_name(tab_run)
    _, job = tab.ask({"run": name, "question": "attribute", "val_index": "0", "target": "12"})
    assert job["status"] == "failed" and job["error"] == "target 12 is not a class index (0 to 9)"
    _, job = tab.ask({"run": name, "question": "activations", "val_index": "0", "layer": "net.nothing"})
    assert job["status"] == "failed" and "net.nothing" in job["error"]
    _, job = tab.ask({"run": name, "question": "predict", "val_index": "100000"})
    assert job["status"] == "failed" and job["error"].startswith("val_index 100000 is not 0 to")


def test_renders_dreams_filters_and_live_probe_classes_come_back(tab, tab_run):
    name = run_name(tab_run)
    settings = json.dumps({"steps": 8, "size": 28, "parameterisation": "pixel", "decorrelate": False})
    _, job = tab.ask(
        {"run": name, "question": "render", "layer": "net.fc2", "channels": "0-2", "settings": settings}
    )
    assert job["status"] == "done" and job["progress"] == 1.0
    assert [r["channel"] for r in job["result"]["renders"]] == [0, 1, 2]
    _, job = tab.ask(
        {"run": name, "question": "dream", "layer": "net.fc1", "val_index": "0", "settings": '{"steps": 4}'}
    )
    assert job["result"]["end"] > job["result"]["start"]
    _, job = tab.ask({"run": name, "question": "filters", "layer": "net.fc1", "val_index": "0", "count": "4"})
    shares = [f["share"] for f in job["result"]["filters"]]
    assert len(shares) == 4 and shares == sorted(shares, reverse=True)
    _, job = tab.ask({"run": name, "question": "probe", "step": "40", "method": "Saliency", "target": "3"})
    images = job["result"]["images"]
    assert len(images) == 10 and {image["target"] for image in images} == {3}


def test_names_outside_the_logdir_and_runs_without_records_are_refused(tab, tab_run, tmp_path):
    for run, message in (
        ("../../..", "is outside the logdir"),
        ("/etc", "is outside the logdir"),
        (f"{run_name(tab_run)}/../../../..", "is outside the logdir"),
        ("tab", "no such run with our records"),
        ("", "run: missing"),
    ):
        status, body = tab.get("/lca/summary", f"run={run}")
        assert status == 400 and message in body["error"], run
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_store(outside / "lca.h5", 10)
    (tab_run.parents[1] / "link").symlink_to(outside)
    status, body = tab.get("/lca/summary", "run=link")
    assert status == 400 and "outside the logdir" in body["error"]
    (tab_run.parents[1] / "link").unlink()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("buckets=x", "buckets 'x' is not a whole number"),
        ("buckets=0", "buckets 0 must be 10 to 20000"),
        ("cumulative=maybe", "cumulative 'maybe' must be 0 or 1"),
        ("smooth=-3", "smooth -3 must be 1 to 100000"),
    ],
)
def test_bad_chart_parameters_get_a_json_error(store_tab, query, message):
    tab, _ = store_tab
    assert tab.get("/lca/series", f"run=short&{query}") == (400, {"error": message})


def test_an_unexpected_failure_is_a_json_500_not_a_traceback_page(store_tab, monkeypatch):
    tab, _ = store_tab
    monkeypatch.setattr(plugin_module.lca_data, "summary_view", lambda store: 1 / 0)
    status, body = tab.get("/lca/summary", "run=short")
    assert status == 500 and body == {"error": "internal error: ZeroDivisionError: division by zero"}


def test_checkpoints_are_loaded_with_weights_only(tab_run, tmp_path):
    run = tmp_path / "runs" / "pickled"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text((tab_run / "config.yaml").read_text())
    state = torch.load(next((tab_run / "checkpoints").glob("*.ckpt")), weights_only=True)
    state["payload"] = Path("a pickled object, not a tensor")
    torch.save(state, run / "checkpoints" / "last.ckpt")
    tab = Tab(tmp_path / "runs")
    _, job = tab.ask({"run": "pickled", "question": "predict", "val_index": "0"})
    tab.close()
    assert job["status"] == "failed"
    assert job["error"].startswith(
        f"{run / 'checkpoints' / 'last.ckpt'} cannot be loaded with weights_only=True"
    )


def test_asking_writes_nothing_and_the_same_question_is_answered_from_the_cache(tab, tab_run):
    name = run_name(tab_run)
    before = {path: path.stat().st_mtime_ns for path in tab_run.parents[2].rglob("*")}
    fields = {"run": name, "question": "attribute", "val_index": "5", "method": "IntegratedGradients"}
    _, first = tab.ask(fields)
    status = tab.route("/explorer/submit", data=fields)
    again = json.loads(status.get_data())
    assert again["status"] == "done" and again["id"] != first["id"]  # answered at once, from the cache
    assert {path: path.stat().st_mtime_ns for path in tab_run.parents[2].rglob("*")} == before


def test_one_job_at_a_time_per_checkpoint_and_cancelling_stops_queued_and_running_jobs():
    runner = JobRunner()
    started, release = [], []

    def slow(job):
        started.append(job.id)
        for step in range(200):
            job.check_cancelled(step / 200)
            time.sleep(0.01)
        return {"done": job.id}

    first = runner.submit("a.ckpt", ("first",), slow)
    second = runner.submit("a.ckpt", ("second",), slow)
    time.sleep(0.2)
    assert first.status == "running" and second.status == "queued" and started == [first.id]
    assert runner.submit("a.ckpt", ("first",), slow) is first  # the same question joins the running job
    assert runner.cancel(second.id).status == "cancelled"
    runner.cancel(first.id)
    runner.shutdown()
    assert first.status == "cancelled" and 0 < first.progress < 1 and started == [first.id] and not release
    with pytest.raises(Exception, match="job 'nope': no such job"):
        runner.get("nope")


def test_the_view_reads_and_checks_only_the_columns_it_draws_and_a_damaged_one_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "lca.h5"
    write_store(path, 50)
    with h5py.File(path, "r+") as file:
        file["steps/neuron_lca"][10, 0] += 1.0  # damage a column the charts do not read
    with pytest.raises(DamagedStore, match="steps/neuron_lca fails its checksum"):
        LCARun(path)
    assert set(LCARun(path, columns=set(VIEW_COLUMNS)).steps) == set(VIEW_COLUMNS)
    tab = Tab(tmp_path)
    assert tab.get("/lca/summary", "run=run")[0] == 200
    status, body = tab.get("/lca/units", "run=run&layer=fc1")
    assert status == 400 and "steps/neuron_lca fails its checksum" in body["error"]
    assert tab.get("/explorer/job", "id=1&wait=11") == (400, {"error": "wait 11 must be 0 to 10"})
    tab.close()


def test_a_multispectral_geotiff_is_read_as_the_spacenet_data_module_reads_its_tiles(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERPRETABILITY_TAB_CACHE", str(tmp_path / "cache"))
    aoi = make_spacenet3(tmp_path / "sn3", tiles=6, size=64)
    saved = yaml.safe_load((ROOT / "configs" / "spacenet3_linknet_lca.yaml").read_text())
    options = {"data_dir": str(aoi.parent), "cache_dir": str(tmp_path / "masks"), "crop_size": 64}
    saved["data"]["init_args"].update(options, num_workers=0, val_fraction=0.2, test_fraction=0.2)
    run = tmp_path / "runs" / "roads"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": saved["model"], "data": saved["data"]}))
    cli = cli_main(["--config", str(run / "config.yaml"), "--trainer.logger", "false"], run=False)
    torch.save({"state_dict": cli.model.state_dict()}, run / "checkpoints" / "initial.ckpt")
    tile = next((aoi / "PS-MS").glob("*img3.tif"))
    tab = Tab(tmp_path / "runs")
    status, job = tab.ask({"run": "roads", "question": "predict", "bands": "0,1,2"}, tile.read_bytes())
    tab.close()
    assert status == 200 and job["status"] == "done", job
    cli.datamodule.setup("fit")
    cli.datamodule.predict_files = [str(tile)]
    inputs = cli.datamodule.predict_dataset()[0][0]  # the tile as the data module prepares it
    assert inputs.shape == (8, 64, 64)
    with torch.no_grad():
        foreground = (cli.model.eval()(inputs[None])[0, 0].sigmoid() > 0.5).float().mean()
    assert job["result"]["segmentation"] and job["result"]["mask_fraction"] == pytest.approx(
        float(foreground)
    )
    assert png(base64.b64decode(job["result"]["overlay"].split(",")[1])).shape == (64, 64, 3)
    digest = hashlib.sha256(tile.read_bytes()).hexdigest()
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == [f"{digest}.tif"]


def test_a_running_render_is_cancelled_through_its_route(tab, tab_run):
    settings = json.dumps({"steps": 4000, "size": 28})
    fields = {"run": run_name(tab_run), "question": "render", "layer": "net.fc1", "channels": "0-63"}
    job = json.loads(tab.route("/explorer/submit", data={**fields, "settings": settings}).get_data())
    for _ in range(600):
        _, job = tab.get("/explorer/job", f"id={job['id']}")
        if job["progress"] > 0:
            break
        time.sleep(0.05)
    status, answer = tab.get("/explorer/cancel", f"id={job['id']}")
    assert status == 200 and answer["id"] == job["id"]
    _, final = tab.get("/explorer/job", f"id={job['id']}&wait=10")
    assert final["status"] == "cancelled" and 0 < final["progress"] < 1 and final["result"] is None
