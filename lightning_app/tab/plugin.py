"""The TensorBoard plugin behind the Interpretability tab: static ES modules, the views' data as JSON
read from the run folders under the logdir, and the live explorer's jobs.

Every route answers JSON; a bad parameter gets ``{"error": "<one line>"}`` with status 400 (413 for an
oversized upload), never a traceback page. Run and checkpoint names are resolved inside the logdir
only; the only files written are uploads, in the tab's cache folder
(:func:`~lightning_app.tab.explorer_model.upload_folder`), for the run's data module to read.
"""

import base64
import json
import logging
import math
import mimetypes
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import torch
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import exceptions, wrappers

from callbacks.attribution.methods.registry import method_names
from callbacks.lca.analysis import NULL_DRAWS
from callbacks.lca.store import LCARun
from lightning_app.errors import UserInputError, one_line
from lightning_app.tab import attribution_data, feature_vis_data, lca_data
from lightning_app.tab.explorer_model import MAX_UPLOAD_BYTES, ExplorerModel
from lightning_app.tab.jobs import Job, JobRunner
from lightning_app.tab.questions import Question, checked_int
from lightning_app.tab.run_folders import LCA_STORE, RunFolders

PLUGIN_NAME = "interpretability"
STATIC = Path(__file__).parent / "static"
ACTIVE_CHECK_SECONDS = 10  # how long "the logdir holds our records" is trusted before looking again
KEPT_STORES = 8
MAX_WAIT_SECONDS = 10  # the longest a job request waits for its answer


class UploadRequest(wrappers.Request):
    max_content_length = MAX_UPLOAD_BYTES + 1024 * 1024  # the image and the form's other fields
    max_form_memory_size = MAX_UPLOAD_BYTES + 1024 * 1024


def json_route(handler: Callable) -> Callable:
    """A route answering JSON (or PNG, when the handler returns bytes); bad input is a 400 with its one
    line as JSON, anything else a 500 with a line."""

    @UploadRequest.application
    def route(self, request):
        try:
            body = handler(self, request)
            if isinstance(body, bytes):
                return http_util.Respond(request, body, "image/png")
            return _respond(request, body)
        except exceptions.RequestEntityTooLarge:
            return _respond(request, {"error": f"upload over the limit of {MAX_UPLOAD_BYTES} bytes"}, 413)
        except UserInputError as error:
            return _respond(request, {"error": str(error)}, 400)
        except Exception as error:  # a bug: the page still gets one line, the server log the traceback
            line = one_line(error)
            if line is not None:
                return _respond(request, {"error": line}, 400)
            logging.getLogger(__name__).exception("interpretability plugin: %s", request.path)
            return _respond(request, {"error": f"internal error: {type(error).__name__}: {error}"}, 500)

    return route


class InterpretabilityPlugin(base_plugin.TBPlugin):
    """The Interpretability tab: LCA, attributions and a live explorer of a run's checkpoints."""

    plugin_name = PLUGIN_NAME

    def __init__(self, context: base_plugin.TBContext) -> None:
        self.runs = RunFolders(context.logdir or ".")
        self.jobs = JobRunner()
        self._models: dict[tuple, ExplorerModel] = {}
        self._stores: dict[tuple, LCARun] = {}
        self._peaks: dict[tuple, tuple[LCARun, dict]] = {}
        self._active: tuple[float, bool] = (0.0, False)
        self._lock = threading.Lock()

    def get_plugin_apps(self) -> dict[str, Callable]:
        return {
            "/index.js": self._static,
            "/static/*": self._static,
            "/vendor/plotly.min.js": self._plotly,
            "/runs": self._runs,
            "/lca/summary": self._lca_summary,
            "/lca/series": self._lca_series,
            "/lca/peaks": self._lca_peaks,
            "/lca/units": self._lca_units,
            "/attributions": self._attributions,
            "/attributions/image": self._attribution_image,
            "/faithfulness": self._faithfulness,
            "/feature_vis": self._feature_vis,
            "/feature_vis/render": self._feature_vis_render,
            "/feature_vis/example": self._feature_vis_example,
            "/feature_vis/channel": self._feature_vis_channel,
            "/explorer/submit": self._explorer_submit,
            "/explorer/job": self._explorer_job,
            "/explorer/cancel": self._explorer_cancel,
        }

    def is_active(self) -> bool:
        checked, active = self._active
        if time.monotonic() - checked > ACTIVE_CHECK_SECONDS:
            active = bool(self.runs.all())
            self._active = (time.monotonic(), active)
        return active

    def frontend_metadata(self) -> base_plugin.FrontendMetadata:
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="Interpretability")

    @wrappers.Request.application
    def _static(self, request):
        name = request.path.rsplit(f"/{PLUGIN_NAME}/", 1)[-1].removeprefix("static/")
        path = (STATIC / name).resolve()
        if path.parent != STATIC.resolve() or not path.is_file():
            return _respond(request, {"error": f"no static file {name!r}"}, 404)
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return http_util.Respond(request, path.read_bytes(), content_type)

    @wrappers.Request.application
    def _plotly(self, request):
        script = resources.files("plotly") / "package_data" / "plotly.min.js"
        return http_util.Respond(request, script.read_bytes(), "text/javascript", expires=3600)

    @json_route
    def _runs(self, request):
        return {"runs": [run.describe() for run in self.runs.all()], "methods": method_names()}

    @json_route
    def _lca_summary(self, request):
        return lca_data.summary_view(self._store(request))

    @json_route
    def _lca_series(self, request):
        store = self._store(request)
        buckets = _int(request, "buckets", 1000, 10, 20000)
        cumulative = _flag(request, "cumulative")
        return lca_data.series_view(store, buckets, cumulative, _int(request, "smooth", 1, 1, 100000))

    @json_route
    def _lca_peaks(self, request):
        """Peak moments and their nulls (a thousand circular shifts: seconds on a long store), computed
        once per store and settings."""
        store = self._store(request)
        min_layers = request.args.get("min_layers")
        settings = (
            None if min_layers is None else _int(request, "min_layers", 1, 1, 10000),
            _int(request, "window", 1, 1, 1000), _int(request, "draws", NULL_DRAWS, 1, 100000),
        )  # fmt: skip
        key = (id(store), *settings)  # the store stays cached while its peaks are
        if key not in self._peaks:
            if len(self._peaks) >= KEPT_STORES:
                self._peaks.pop(next(iter(self._peaks)))
            self._peaks[key] = (store, lca_data.peaks_view(store, *settings))
        return self._peaks[key][1]

    @json_route
    def _lca_units(self, request):
        """The layer's units ranked by LCA and, where the run rendered them, their newest renders."""
        store, layer = self._store(request, lca_data.UNIT_COLUMNS), _text(request, "layer")
        view = lca_data.units_view(store, layer, _int(request, "buckets", 1000, 10, 20000))
        run = self.runs.get(request.args.get("run"))
        view["renders"] = feature_vis_data.newest_renders(run.path, layer) if run.has_feature_vis else {}
        return view

    @json_route
    def _attributions(self, request):
        return attribution_data.attribution_index(self.runs.get(request.args.get("run")).path)

    @json_route
    def _attribution_image(self, request):
        return attribution_data.attribution_png(
            self.runs.get(request.args.get("run")).path, _int(request, "step", 0, 0, 2**62),
            _text(request, "method"), _int(request, "image", 0, 0, 100000),
            request.args.get("panel", "overlay"),
        )  # fmt: skip

    @json_route
    def _faithfulness(self, request):
        return attribution_data.faithfulness_view(self.runs.get(request.args.get("run")).path)

    @json_route
    def _feature_vis(self, request):
        return feature_vis_data.feature_vis_index(self.runs.get(request.args.get("run")).path)

    @json_route
    def _feature_vis_render(self, request):
        run = self.runs.get(request.args.get("run"))
        return feature_vis_data.render_png(
            run.path, _int(request, "step", 0, 0, 2**62), _text(request, "layer"),
            _int(request, "position", 0, 0, 100000), _bands(request),
        )  # fmt: skip

    @json_route
    def _feature_vis_example(self, request):
        run = self.runs.get(request.args.get("run"))
        box = request.args.get("box")
        return feature_vis_data.example_png(
            run.path, _int(request, "step", 0, 0, 2**62), _text(request, "layer"),
            _int(request, "probe", 0, 0, 100000), None if box is None else _box(box), _bands(request),
        )  # fmt: skip

    @json_route
    def _feature_vis_channel(self, request):
        run = self.runs.get(request.args.get("run"))
        store = self._store(request, lca_data.UNIT_COLUMNS) if run.has_lca else None
        return feature_vis_data.channel_view(
            run.path, _text(request, "layer"), _int(request, "channel", 0, -1, 10**7), store,
            _int(request, "buckets", 1000, 10, 20000),
        )  # fmt: skip

    @json_route
    def _explorer_submit(self, request):
        """Queue a question (the form's ``question``: see :mod:`lightning_app.tab.questions`) for the
        run's checkpoint; answers the job's id and status."""
        if request.method != "POST":
            raise UserInputError("explorer/submit takes a POST (a form with the question and the image)")
        run = self.runs.get(request.form.get("run"))
        checkpoint = self.runs.checkpoint(run, request.form.get("checkpoint") or None)
        question = Question.of(request.form, request.files)
        stamp = checkpoint.stat().st_mtime_ns

        def work(job: Job) -> dict:
            model = self._model(run.path, checkpoint, stamp)
            job.check_cancelled()
            return question.answer(model, job)

        return self.jobs.submit(str(checkpoint), (str(checkpoint), stamp, *question.key()), work).describe()

    @json_route
    def _explorer_job(self, request):
        seconds = _int(request, "wait", 0, 0, MAX_WAIT_SECONDS)  # checked before the job is looked up
        job = self.jobs.wait(self.jobs.get(request.args.get("id")), seconds)
        return {**job.describe(), "result": _jsonable(job.result) if job.status == "done" else None}

    @json_route
    def _explorer_cancel(self, request):
        return self.jobs.cancel(request.args.get("id")).describe()

    def _store(self, request, columns: frozenset[str] = lca_data.VIEW_COLUMNS) -> LCARun:
        """The run's LCA store (its per-step ``columns``), read once per version of the file."""
        run = self.runs.get(request.args.get("run"))
        path = run.path / LCA_STORE
        if not path.is_file():
            raise UserInputError(f"run {run.name!r} has no LCA store ({LCA_STORE})")
        status = path.stat()
        key = (str(path), status.st_mtime_ns, status.st_size, columns)
        with self._lock:
            if key not in self._stores:
                while len(self._stores) >= KEPT_STORES:
                    self._stores.pop(next(iter(self._stores)))
                self._stores[key] = LCARun(path, columns=set(columns))
            return self._stores[key]

    def _model(self, run_dir: Path, checkpoint: Path, stamp: int) -> ExplorerModel:
        key = (str(checkpoint), stamp)
        if key not in self._models:
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            self._models[key] = ExplorerModel(run_dir / "config.yaml", checkpoint, device)
        return self._models[key]


def _respond(request, body: dict, code: int = 200):
    return http_util.Respond(
        request, json.dumps(_jsonable(body), allow_nan=False), "application/json", code=code
    )


def _int(request, name: str, default: int, low: int, high: int) -> int:
    text = request.args.get(name)
    if text is None:
        return default
    return checked_int(name, text, low, high)


def _bands(request) -> list[int] | None:
    """``bands=4,2,1``: the display bands of multispectral images (default: grey or the first three)."""
    text = request.args.get("bands")
    if not text:
        return None
    return [checked_int("bands", part, 0, 1000) for part in text.split(",")]


def _box(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    if len(parts) != 4:
        raise UserInputError(f"box {text!r} must be top,left,bottom,right")
    top, left, bottom, right = (checked_int("box", part, 0, 100000) for part in parts)
    return top, left, bottom, right


def _flag(request, name: str) -> bool:
    text = request.args.get(name, "0")
    if text not in ("0", "1", "true", "false"):
        raise UserInputError(f"{name} {text!r} must be 0 or 1")
    return text in ("1", "true")


def _text(request, name: str) -> str:
    text = request.args.get(name)
    if not text:
        raise UserInputError(f"{name}: missing")
    return text


def _jsonable(value):
    """A body with its PNG bytes as data URLs and NaN or infinite numbers as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return "data:image/png;base64," + base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value
