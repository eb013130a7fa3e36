"""A trained checkpoint asked new questions: the run's config rebuilds the model and data module, the
checkpoint's weights are loaded with ``weights_only=True``, and an uploaded image (or a validation
image) is prepared as the training images were. Answers: the top-5 classes (or a segmentation mask),
attribution maps of any registered method for a chosen class, a layer's activations sorted by strength,
relevance per filter, DeepDream and feature visualisation of chosen channels.
"""

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError
from rasterio.errors import RasterioIOError
from rasterio.io import MemoryFile

from callbacks.activations import layer_outputs
from callbacks.attribution.figures import attribution_panels, heat_scale
from callbacks.attribution.filter_relevance import ranked_filters
from callbacks.attribution.methods import build_method
from callbacks.attribution.methods.registry import method_names
from callbacks.attribution.records import load_record, summed_maps
from callbacks.attribution.targets import Scores
from callbacks.contracts import FileReadingDataModule, VisualisableDataModule, check_contract
from callbacks.feature_vis.callback import band_statistics
from callbacks.feature_vis.deepdream import deepdream
from callbacks.feature_vis.figure import display_rgb
from callbacks.feature_vis.objectives import check_objectives, named_objective, penalty
from callbacks.feature_vis.parameterisations import BandStatistics
from callbacks.feature_vis.render import RenderSettings, render
from callbacks.feature_vis.transforms import transform_from_config
from callbacks.inspection import class_name, display_images, inspected_copy
from callbacks.model_copy import find_layer, network_layers
from datamodules.resumable import random_states, restore_random_states
from lightning_app.errors import UserInputError, describe, is_number
from lightning_app.tab.attribution_data import PANELS, png_bytes

TOP_K = 5
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
TOP_CHANNELS = 16
SUFFIXES = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "GIF": ".gif", "WEBP": ".webp"}
CACHE_VARIABLE = "INTERPRETABILITY_TAB_CACHE"
STATISTICS_SIZE = 512  # training images the band statistics come from
RENDER_KEYS = (
    "objective", "size", "steps", "lr", "parameterisation", "decorrelate", "transforms", "penalties", "seed",
    "bands",
)  # fmt: skip


@dataclass(frozen=True)
class ExplorerImage:
    """An image as the model sees it (1, C, H, W) and in display space."""

    inputs: torch.Tensor
    display: torch.Tensor


def checked_upload(content: bytes) -> str:
    """The file suffix of an upload PIL (or, for a multi-band GeoTIFF, rasterio) identifies as an image;
    refused in one line when too large or not an image."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise UserInputError(f"upload of {len(content)} bytes is over the limit of {MAX_UPLOAD_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(content)) as image:
            _check_pixels(image.width, image.height)
            image.verify()
            return SUFFIXES.get(image.format, ".png")
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as error:
        pil_error = error
    try:
        with MemoryFile(content) as memory, memory.open() as raster:
            _check_pixels(raster.width, raster.height)
            return ".tif"
    except RasterioIOError:
        raise UserInputError(
            f"the upload is not an image PIL or rasterio can read ({describe(pil_error)})"
        ) from None


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_UPLOAD_PIXELS:
        raise UserInputError(
            f"upload of {width}x{height} pixels is over the limit of {MAX_UPLOAD_PIXELS} pixels"
        )


def upload_folder() -> Path:
    """Where uploads are kept for the data module to read (``INTERPRETABILITY_TAB_CACHE``, default
    ``~/.cache/lightning-interpretability/uploads``): the only place the tab writes."""
    folder = Path(os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "lightning-interpretability")
    return folder / "uploads"


def model_and_data(config: Path) -> str:
    """The model and data sections of a run's saved ``config.yaml`` as YAML: the trainer, its callbacks
    and the subcommand's options (``ckpt_path``) are not needed to answer questions."""
    try:
        saved = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserInputError(f"{config} cannot be read as the run's config ({describe(error)})") from error
    if not isinstance(saved, dict) or "model" not in saved or "data" not in saved:
        raise UserInputError(f"{config} has no model and data sections; is it a run's config.yaml?")
    return yaml.safe_dump({key: saved[key] for key in ("seed_everything", "model", "data") if key in saved})


@dataclass(frozen=True)
class RenderOptions:
    """A feature visualisation's parameters, as the visualize command takes them."""

    objective: str = "channel"
    size: int = 64
    settings: RenderSettings = RenderSettings(steps=128)
    decorrelate: bool = True
    penalties: dict = field(default_factory=dict)
    bands: list[int] | None = None

    @classmethod
    def of(cls, values: dict) -> "RenderOptions":
        """From the request's JSON: objective, size, steps, lr, parameterisation ('fourier' or 'pixel'),
        decorrelate, transforms (a list as the callback's), penalties ({tv: 0.01}), seed, bands."""
        unknown = set(values) - set(RENDER_KEYS)
        if unknown:
            raise UserInputError(f"render settings {sorted(unknown)} are unknown; known: {list(RENDER_KEYS)}")
        objective = _choice(values, "objective", ("channel", "neuron"))
        parameterisation = _choice(values, "parameterisation", ("fourier", "pixel"))
        lr = values.get("lr", 0.05)
        if not is_number(lr) or lr <= 0:
            raise UserInputError(f"lr {lr!r} must be a positive number")
        transforms = values.get("transforms")
        if transforms is not None and not isinstance(transforms, list):
            raise UserInputError("transforms must be a list like [{pad: 2}, {jitter: 1}]")
        penalties = values.get("penalties", {})
        if not isinstance(penalties, dict) or not all(is_number(w) for w in penalties.values()):
            raise UserInputError(f"penalties {penalties!r}: give numbers for tv, l1 or l2, e.g. {{tv: 0.01}}")
        penalty(penalties)  # unknown kinds and negative weights fail here, in one line
        bands = values.get("bands")
        if bands is not None and not (isinstance(bands, list) and all(isinstance(b, int) for b in bands)):
            raise UserInputError(f"bands {bands!r} must be a list of band indices, e.g. [4, 2, 1]")
        settings = RenderSettings(
            steps=_whole(values, "steps", 128, 1, 4096), lr=float(lr), fourier=parameterisation == "fourier",
            seed=_whole(values, "seed", 0, 0, 2**31),
            transforms=None if transforms is None else tuple(transform_from_config(t) for t in transforms),
        )  # fmt: skip
        size = _whole(values, "size", 64, 8, 1024)
        return cls(objective, size, settings, bool(values.get("decorrelate", True)), penalties, bands)

    def statistics(self, data: BandStatistics) -> BandStatistics:
        """The data's statistics, or without decorrelation only each band's own variance."""
        if self.decorrelate:
            return data
        return BandStatistics(data.mean, torch.diag(torch.diag(data.covariance)))


def _whole(values: dict, key: str, default: int, low: int, high: int) -> int:
    value = values.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UserInputError(f"{key} {value!r} must be a whole number from {low} to {high}")
    return value


def _choice(values: dict, key: str, choices: tuple[str, ...]) -> str:
    value = values.get(key, choices[0])
    if value not in choices:
        raise UserInputError(f"{key} {value!r} must be one of {list(choices)}")
    return value


class ExplorerModel:
    """A run's model with one checkpoint's weights, in eval mode on ``device``, and its data module."""

    def __init__(self, config: Path, checkpoint: Path, device: torch.device) -> None:
        from lightning_app.cli import check_checkpoint_file, cli_main

        check_checkpoint_file(checkpoint)
        cli = cli_main(["--config", model_and_data(config), "--trainer.logger", "false"], run=False)
        check_contract("The explorer", "data module", cli.datamodule, VisualisableDataModule)
        try:
            saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # pickle refuses anything but tensors and plain containers
            raise UserInputError(
                f"{checkpoint} cannot be loaded with weights_only=True ({describe(error)})"
            ) from error
        cli.model.load_state_dict(saved["state_dict"])
        data_state = saved.get(type(cli.datamodule).__qualname__)
        if data_state is not None:  # e.g. normalisation statistics; the random states stay the server's
            own_states = random_states()
            cli.datamodule.load_state_dict(data_state)
            restore_random_states(own_states)
        cli.datamodule.setup("fit")
        self.run_dir = config.parent
        self.module = cli.model.eval().requires_grad_(False).to(device)
        self.datamodule = cli.datamodule
        self.device = device
        self.validation = cli.datamodule.evaluation_subset("val", size=None, per_class=None, seed=0)
        example = (
            self.validation if len(self.validation) else cli.datamodule.evaluation_subset("train", size=1)
        )
        if not len(example):
            raise UserInputError(
                f"{config}: the run's data module finds no images; the explorer needs its data"
            )
        self.shape = tuple(example[0][0].shape)
        self.class_names = list(cli.datamodule.class_names)
        self._statistics: BandStatistics | None = None

    def image(self, upload: bytes | None, val_index: int | None) -> ExplorerImage:
        """The uploaded image, or validation image ``val_index``, prepared as the model sees it."""
        if upload is not None:
            inputs = self._read_upload(upload)[None]
        elif val_index is not None:
            if not 0 <= val_index < len(self.validation):
                raise UserInputError(f"val_index {val_index} is not 0 to {len(self.validation) - 1}")
            inputs = self.validation[val_index][0][None]
        else:
            raise UserInputError("give an image (upload) or val_index")
        display = display_images(self.datamodule, inputs)
        return ExplorerImage(inputs.to(self.device, next(self.module.parameters()).dtype), display)

    def _read_upload(self, upload: bytes) -> torch.Tensor:
        """The upload read by the data module's own ``predict_files`` route, as its images are read (size,
        bands, normalisation; a GeoTIFF's first window): the upload is kept in :func:`upload_folder`."""
        if not isinstance(self.datamodule, FileReadingDataModule):
            raise UserInputError(
                f"{type(self.datamodule).__name__} cannot read image files (it has no predict_files and "
                "predict_dataset): pick a validation image"
            )
        path = upload_folder() / f"{hashlib.sha256(upload).hexdigest()}{checked_upload(upload)}"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(upload)
        self.datamodule.predict_files = [str(path)]
        try:
            return self.datamodule.predict_dataset()[0][0]
        finally:
            self.datamodule.predict_files = None

    def predict(self, image: ExplorerImage, bands: list[int] | None = None) -> dict:
        """The top-5 classes with their probabilities (for segmentation: the predicted mask overlaid)."""
        with torch.no_grad():
            logits = self.module(image.inputs)
        if logits.ndim == 4:
            foreground = _foreground(logits[0])
            overlay = _mask_overlay(image.display[0], foreground, bands)
            return {
                "segmentation": True,
                "overlay": overlay,
                "mask_fraction": float(foreground.float().mean()),
            }
        probabilities = logits.softmax(dim=-1)[0]
        top = probabilities.topk(min(TOP_K, len(probabilities)))
        return {
            "segmentation": False,
            "top": [
                {"class": int(c), "name": class_name(self.class_names, int(c)), "probability": float(p)}
                for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ],
        }

    def attribute(
        self,
        image: ExplorerImage,
        method: str,
        settings: dict,
        target: int | None,
        bands: list[int] | None = None,
    ) -> dict:
        """The attribution of ``method`` (a registered name) with ``settings`` for class ``target``
        (default: the predicted class): input, heat map and overlay as PNG, and the colour scale."""
        maps, classes, probabilities = self._attributions(image.inputs, method, settings, target)
        scale = heat_scale([maps[0]])
        panels = attribution_panels(display_rgb(image.display[0], bands), maps[0], scale)
        return {
            "method": method,
            "target": classes[0],
            "target_name": class_name(self.class_names, classes[0]),
            "probability": probabilities[0],
            "scale": scale,
            "sum": float(maps[0].sum()),
            "png": dict(zip(PANELS, (png_bytes(panel) for panel in panels), strict=True)),
        }

    def probe(self, step: int, method: str, settings: dict, target: int | None) -> dict:
        """The run's probe images recorded at ``step`` (:mod:`callbacks.attribution.records`, display
        space at half precision) explained for class ``target`` (default: each one's predicted class),
        the overlays on one 98th-percentile scale as the attribution view draws them."""
        images = torch.from_numpy(load_record(self.run_dir, step).display).to(self.device)
        inputs = self.datamodule.from_display(images).to(next(self.module.parameters()).dtype)
        maps, classes, probabilities = self._attributions(inputs, method, settings, target)
        scale = heat_scale(list(maps))
        overlays = [
            attribution_panels(display_rgb(image, None), heat, scale)[2]
            for image, heat in zip(images, maps, strict=True)
        ]
        return {
            "method": method,
            "scale": scale,
            "images": [
                {
                    "target": c,
                    "target_name": class_name(self.class_names, c),
                    "probability": p,
                    "png": png_bytes(o),
                }
                for c, p, o in zip(classes, probabilities, overlays, strict=True)
            ],
        }

    def _attributions(self, inputs: torch.Tensor, method: str, settings: dict, target: int | None):
        """Maps (N, H, W) of a registered ``method`` for class ``target`` (or the predicted class), the
        classes explained and their probabilities."""
        if method not in method_names():
            raise UserInputError(f"method {method!r} is not one of {method_names()}")
        built = build_method(method, settings)
        with inspected_copy(self.module, inputs, seed=0) as model:
            built.check_model(model)
            with torch.no_grad():
                logits = model(inputs)
            if logits.ndim == 4:
                raise UserInputError(
                    "live attribution answers classifiers; use the predict command for segmentation"
                )
            probabilities = logits.softmax(dim=-1)
            if target is not None and not 0 <= target < probabilities.shape[1]:
                raise UserInputError(
                    f"target {target} is not a class index (0 to {probabilities.shape[1] - 1})"
                )
            classes = (
                probabilities.argmax(dim=1)
                if target is None
                else torch.full_like(probabilities[:, 0], target).long()
            )
            values = built.attribute(
                Scores(model, segmentation=False), inputs.clone().requires_grad_(), classes, None
            )
        chosen = probabilities.gather(1, classes[:, None])[:, 0]
        return summed_maps(values.values).astype(np.float64), classes.tolist(), chosen.tolist()

    def activations(self, image: ExplorerImage, layer: str) -> dict:
        """The channels of ``layer`` sorted by their mean activation on the image, strongest first, with
        the maps of the ``TOP_CHANNELS`` strongest as PNG (each on its own scale)."""
        find_layer(self.module, layer)
        output = layer_outputs(self.module, [layer], image.inputs)[layer][0].float().cpu()
        if output.ndim == 1:
            output = output[:, None, None]
        means = output.flatten(1).mean(dim=1)
        order = torch.argsort(means, descending=True)
        maps = []
        for channel in order[:TOP_CHANNELS].tolist():
            values = output[channel].numpy()
            low, high = float(values.min()), float(values.max())
            grey = (values - low) / (high - low) if high > low else np.zeros_like(values)
            maps.append({"channel": channel, "png": png_bytes(np.repeat(grey[..., None], 3, axis=2))})
        return {
            "layer": layer,
            "ranking": [{"channel": int(c), "mean": float(means[c])} for c in order.tolist()],
            "maps": maps,
        }

    def render(self, layer: str, channels: list[int], options: "RenderOptions", on_step) -> dict:
        """Feature visualisation of ``channels`` of ``layer`` (one batch): the renders as PNG (grey, RGB
        or the display bands) and the activation each reached, without penalties."""
        objectives = [named_objective(options.objective, layer, channel) for channel in channels]
        check_objectives(self.module, objectives, self.validation[0][0][None].to(self.device))
        rendering = render(
            self.module, objectives, options.statistics(self.statistics()), self.datamodule.from_display,
            (self.shape[0], options.size, options.size), options.settings, penalty(options.penalties),
            input_size=self.shape[1:], on_step=on_step,
        )  # fmt: skip
        return {
            "layer": layer,
            "renders": [
                {"channel": c, "value": float(v), "png": png_bytes(display_rgb(image, options.bands))}
                for c, v, image in zip(channels, rendering.end.tolist(), rendering.images, strict=True)
            ],
        }

    def dream(self, image: ExplorerImage, layer: str, options: "RenderOptions", on_step) -> dict:
        """DeepDream of ``layer`` into the image over three octaves."""
        objective = named_objective("deepdream", layer)
        check_objectives(self.module, [objective], image.inputs)
        rendering = deepdream(
            self.module, objective, options.statistics(self.statistics()), self.datamodule.from_display,
            image.display.to(self.device), options.settings, batch_objective=penalty(options.penalties),
            on_step=on_step,
        )  # fmt: skip
        return {
            "layer": layer,
            "start": float(rendering.start[0]),
            "end": float(rendering.end[0]),
            "png": png_bytes(display_rgb(rendering.images[0], options.bands)),
        }

    def filters(self, image: ExplorerImage, layer: str, count: int) -> dict:
        """The ``count`` filters of ``layer`` with the most Deep Taylor relevance for the predicted class,
        with their share of the layer's relevance."""
        with inspected_copy(self.module, image.inputs, seed=0) as model:
            ranked = ranked_filters(model, image.inputs.clone(), [layer], count)[layer]
        return {"layer": layer, "filters": [{"filter": int(f), "share": float(s)} for f, s in ranked]}

    def statistics(self) -> BandStatistics:
        """The band statistics of the training images (for the decorrelated parameterisation)."""
        if self._statistics is None:
            self._statistics = band_statistics(self.datamodule, STATISTICS_SIZE, seed=0)
        return self._statistics

    def layers(self) -> list[str]:
        """The network's layers without children (the ones whose activations mean one thing)."""
        return [name for name, module in network_layers(self.module).items() if not list(module.children())]

    def default_layer(self) -> str | None:
        """The first layer with parameters (a convolution or a dense layer)."""
        layers = network_layers(self.module)
        return next((name for name in self.layers() if list(layers[name].parameters(recurse=False))), None)


def _foreground(logits: torch.Tensor) -> torch.Tensor:
    """The pixels predicted as foreground (any class but 0) from one image's logits (C, H, W)."""
    return (logits.sigmoid()[0] > 0.5) if len(logits) == 1 else logits.argmax(dim=0) > 0


def _mask_overlay(display: torch.Tensor, predicted: torch.Tensor, bands: list[int] | None) -> bytes:
    """The predicted mask (red) over the image's display bands in grey."""
    pixels = display_rgb(display, bands)
    grey = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    red = np.zeros_like(grey)
    red[..., 0] = 1.0
    mask = predicted.cpu().numpy()[..., None]
    return png_bytes(np.where(mask, 0.5 * grey + 0.5 * red, grey))
