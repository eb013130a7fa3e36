"""The live explorer's questions: each is read from the request's form and checked before any work is
queued (a bad value is a 400 naming the field), then answered by :class:`ExplorerModel` on the
checkpoint's worker. One registry entry per question, naming what it needs."""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from callbacks.attribution.methods.registry import method_names
from lightning_app.errors import UserInputError
from lightning_app.tab.explorer_model import ExplorerModel, RenderOptions, checked_upload
from lightning_app.tab.jobs import Job

MAX_FILTERS = 1000


@dataclass(frozen=True)
class Question:
    """A checked question: what is asked, of which image, with which settings."""

    kind: str
    upload: bytes | None
    val_index: int | None
    method: str
    settings: dict
    target: int | None
    layer: str | None
    channels: tuple[int, ...]
    count: int
    step: int | None
    bands: tuple[int, ...] | None

    @classmethod
    def of(cls, form, files) -> "Question":
        kind = form.get("question", "predict")
        if kind not in ANSWERS:
            raise UserInputError(f"question {kind!r} must be one of {list(ANSWERS)}")
        needs = ANSWERS[kind]
        upload = files["image"].read() if "image" in files else None
        if upload is not None:
            checked_upload(upload)
        val_index = form_int(form, "val_index", 0, 2**31) if upload is None else None
        if needs.image and upload is None and val_index is None:
            raise UserInputError(f"{kind} needs an image (the form field 'image') or val_index")
        layer = form.get("layer") or None
        if needs.layer and layer is None:
            raise UserInputError(f"{kind} needs the form field 'layer'")
        settings = json_object(form.get("settings") or "{}")
        method = form.get("method", "Saliency")
        if kind in ("attribute", "probe") and method not in method_names():
            raise UserInputError(f"method {method!r} is not one of {method_names()}")
        if kind in ("render", "dream"):
            RenderOptions.of(settings)  # bad settings fail here, before the job is queued
        channels = tuple(channel_list(form.get("channels", "0"))) if kind == "render" else ()
        count = form_int(form, "count", 1, MAX_FILTERS) or 10
        target = form_int(form, "target", 0, 2**31)
        step = form_int(form, "step", 0, 2**62)
        if kind == "probe" and step is None:
            raise UserInputError("probe needs the form field 'step' (a step with attribution records)")
        bands = tuple(channel_list(form["bands"], "bands")) if form.get("bands") else None
        return cls(kind, upload, val_index, method, settings, target, layer, channels, count, step, bands)

    def key(self) -> tuple:
        """What the answer depends on, besides the checkpoint."""
        digest = hashlib.sha256(self.upload).hexdigest() if self.upload is not None else None
        settings = json.dumps(self.settings, sort_keys=True)
        asked = (
            self.method,
            settings,
            self.target,
            self.layer,
            self.channels,
            self.count,
            self.step,
            self.bands,
        )
        return (self.kind, digest, self.val_index, *asked)

    def answer(self, model: ExplorerModel, job: Job) -> dict:
        image = model.image(self.upload, self.val_index) if ANSWERS[self.kind].image else None
        return ANSWERS[self.kind].answer(model, self, image, job)


@dataclass(frozen=True)
class Answer:
    """How a question is answered and what it needs from the form."""

    answer: Callable
    image: bool
    layer: bool = False


def _layers(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    size = len(model.validation)
    return {"layers": model.layers(), "default_layer": model.default_layer(), "validation_size": size}


def _predict(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    return model.predict(image, _list(question.bands))


def _attribute(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    return model.attribute(image, question.method, question.settings, question.target, _list(question.bands))


def _probe(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    return model.probe(question.step, question.method, question.settings, question.target)


def _activations(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    return model.activations(image, question.layer)


def _filters(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    return model.filters(image, question.layer, question.count)


def _render(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    options = RenderOptions.of(question.settings)
    steps = options.settings.steps
    progress = lambda step: job.check_cancelled(step / steps)  # noqa: E731
    return model.render(question.layer, list(question.channels), options, progress)


def _dream(model: ExplorerModel, question: Question, image, job: Job) -> dict:
    options = RenderOptions.of(question.settings)
    total = 3 * options.settings.steps  # three octaves
    return model.dream(image, question.layer, options, lambda step: job.check_cancelled(step / total))


ANSWERS = {
    "layers": Answer(_layers, image=False),
    "predict": Answer(_predict, image=True),
    "attribute": Answer(_attribute, image=True),
    "probe": Answer(_probe, image=False),
    "activations": Answer(_activations, image=True, layer=True),
    "filters": Answer(_filters, image=True, layer=True),
    "render": Answer(_render, image=False, layer=True),
    "dream": Answer(_dream, image=True, layer=True),
}


def _list(values: tuple | None) -> list | None:
    return None if values is None else list(values)


def form_int(form, name: str, low: int, high: int) -> int | None:
    """A whole-number form field from ``low`` to ``high``, or None when it is absent or empty."""
    text = form.get(name)
    if text in (None, ""):
        return None
    return checked_int(name, text, low, high)


def checked_int(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise UserInputError(f"{name} {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise UserInputError(f"{name} {value} must be {low} to {high}")
    return value


def channel_list(text: str, field: str = "channels") -> list[int]:
    """'0-7' or '0,3,5' as channel (or band) indices, 1 to 64 of them."""
    from lightning_app.visualize import index_list

    channels = index_list(text, field)
    if not channels or len(channels) > 64 or min(channels) < 0:
        raise UserInputError(f"{field} {text!r} must name 1 to 64 indices, e.g. 0-7")
    return channels


def json_object(text: str) -> dict:
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserInputError(f"settings {text!r} is not JSON ({error.msg})") from None
    if not isinstance(settings, dict):
        raise UserInputError(f"settings {text!r} must be a JSON object of the method's arguments")
    return settings
