"""A trained checkpoint asked new questions: the run's config rebuilds the model and data module, the
checkpoint's weights are loaded with ``weights_only=True``, and an uploaded image (or a validation
image) is prepared as the training images were. Answers: the top-5 classes, an attribution map of any
registered method with its settings for a chosen class, and a layer's activations sorted by strength.
"""

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image, UnidentifiedImageError

from callbacks.activations import layer_outputs
from callbacks.attribution.figures import attribution_panels, heat_scale
from callbacks.attribution.methods import build_method
from callbacks.attribution.methods.registry import method_names
from callbacks.attribution.records import summed_maps
from callbacks.attribution.targets import Scores, Targets
from callbacks.contracts import VisualisableDataModule
from callbacks.inspection import class_name, display_images, inspected_copy
from callbacks.model_copy import find_layer, network_layers
from lightning_app.errors import UserInputError, describe
from lightning_app.tab.attribution_data import png_bytes

TOP_K = 5
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_UPLOAD_PIXELS = 40_000_000
TOP_CHANNELS = 16


@dataclass(frozen=True)
class ExplorerImage:
    """An image as the model sees it (1, C, H, W), in display space, and its content hash."""

    inputs: torch.Tensor
    display: torch.Tensor
    digest: str


def checked_upload(content: bytes) -> None:
    """Refuse, in one line, an upload that is too large or that PIL cannot identify as an image."""
    if len(content) > MAX_UPLOAD_BYTES:
        raise UserInputError(f"upload of {len(content)} bytes is over the limit of {MAX_UPLOAD_BYTES} bytes")
    try:
        with Image.open(io.BytesIO(content)) as image:
            if image.width * image.height > MAX_UPLOAD_PIXELS:
                raise UserInputError(
                    f"upload of {image.width}x{image.height} pixels is over {MAX_UPLOAD_PIXELS}"
                )
            image.verify()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as error:
        raise UserInputError(f"the upload is not an image PIL can read ({describe(error)})") from error


def decoded_upload(content: bytes, shape: tuple[int, int, int]) -> torch.Tensor:
    """Uploaded bytes as a display-space image (C, H, W) in [0, 1] of ``shape`` (grey or RGB)."""
    channels, height, width = shape
    if channels not in (1, 3):
        raise UserInputError(f"this model takes {channels}-band images; uploads are read as grey or RGB only")
    checked_upload(content)
    try:
        with Image.open(io.BytesIO(content)) as image:
            converted = image.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    except (OSError, ValueError) as error:
        raise UserInputError(f"the upload cannot be decoded ({describe(error)})") from error
    pixels = np.asarray(converted, dtype=np.float32) / 255.0
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(pixels))


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


class ExplorerModel:
    """A run's model with one checkpoint's weights, in eval mode on ``device``, and its data module."""

    def __init__(self, config: Path, checkpoint: Path, device: torch.device) -> None:
        from lightning_app.cli import check_checkpoint_file, cli_main

        check_checkpoint_file(checkpoint)
        cli = cli_main(["--config", model_and_data(config), "--trainer.logger", "false"], run=False)
        if not isinstance(cli.datamodule, VisualisableDataModule):
            raise UserInputError(f"{config}: the data module does not map display images to model inputs")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        except Exception as error:  # pickle refuses anything but tensors and plain containers
            raise UserInputError(
                f"{checkpoint} cannot be loaded with weights_only=True ({describe(error)})"
            ) from error
        cli.model.load_state_dict(state)
        cli.datamodule.setup("fit")
        self.module = cli.model.eval().requires_grad_(False).to(device)
        self.datamodule = cli.datamodule
        self.device = device
        self.validation = cli.datamodule.evaluation_subset("val", size=None, per_class=None, seed=0)
        self.shape = tuple(self.validation[0][0].shape)
        self.class_names = list(cli.datamodule.class_names)

    def image(self, upload: bytes | None, val_index: int | None) -> ExplorerImage:
        """The uploaded image, or validation image ``val_index``, prepared as the model sees it."""
        if upload is not None:
            display = decoded_upload(upload, self.shape)[None]
            inputs = self.datamodule.from_display(display)
            digest = hashlib.sha256(upload).hexdigest()
        elif val_index is not None:
            if not 0 <= val_index < len(self.validation):
                raise UserInputError(f"val_index {val_index} is not 0 to {len(self.validation) - 1}")
            inputs = self.validation[val_index][0][None]
            display = display_images(self.datamodule, inputs)
            digest = f"val:{val_index}"
        else:
            raise UserInputError("give an image (upload) or val_index")
        return ExplorerImage(inputs.to(self.device, next(self.module.parameters()).dtype), display, digest)

    def predict(self, image: ExplorerImage) -> dict:
        """The top-5 classes with their probabilities (for segmentation: the predicted mask overlaid)."""
        with torch.no_grad():
            logits = self.module(image.inputs)
        if logits.ndim == 4:
            return {"segmentation": True, "overlay": _mask_overlay(image.display[0], logits[0])}
        probabilities = logits.softmax(dim=-1)[0]
        top = probabilities.topk(min(TOP_K, len(probabilities)))
        return {
            "segmentation": False,
            "top": [
                {"class": int(c), "name": class_name(self.class_names, int(c)), "probability": float(p)}
                for p, c in zip(top.values.tolist(), top.indices.tolist(), strict=True)
            ],
        }

    def attribute(self, image: ExplorerImage, method: str, settings: dict, target: int | None) -> dict:
        """The attribution of ``method`` (a registered name) with ``settings`` for class ``target``
        (default: the predicted class): input, heat map and overlay as PNG, and the colour scale."""
        if method not in method_names():
            raise UserInputError(f"method {method!r} is not one of {method_names()}")
        built = build_method(method, settings)
        with inspected_copy(self.module, image.inputs, seed=0) as model:
            built.check_model(model)
            with torch.no_grad():
                logits = model(image.inputs)
            if logits.ndim == 4:
                raise UserInputError(
                    "live attribution answers classifiers; use the predict command for segmentation"
                )
            probabilities = logits.softmax(dim=-1)[0]
            chosen = int(probabilities.argmax()) if target is None else target
            if not 0 <= chosen < len(probabilities):
                raise UserInputError(f"target {chosen} is not a class index (0 to {len(probabilities) - 1})")
            classes = torch.tensor([chosen], device=image.inputs.device)
            targets = Targets(classes, probabilities[chosen : chosen + 1], None)
            inputs = image.inputs.clone().requires_grad_()
            result = built.attribute(Scores(model, segmentation=False), inputs, targets.classes, None)
        summed = summed_maps(result.values)[0].astype(np.float64)
        scale = heat_scale([summed])
        pixels = image.display[0].permute(1, 2, 0).cpu().numpy()
        pixels = np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]
        panels = attribution_panels(pixels, summed, scale)
        return {
            "method": method,
            "target": chosen,
            "target_name": class_name(self.class_names, chosen),
            "probability": float(probabilities[chosen]),
            "scale": scale,
            "sum": float(summed.sum()),
            "png": {
                name: png_bytes(panel)
                for name, panel in zip(("input", "attribution", "overlay"), panels, strict=True)
            },
        }

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

    def layers(self) -> list[str]:
        """The network's layers without children (the ones whose activations mean one thing)."""
        return [name for name, module in network_layers(self.module).items() if not list(module.children())]

    def default_layer(self) -> str | None:
        """The first layer with parameters (a convolution or a dense layer)."""
        layers = network_layers(self.module)
        return next((name for name in self.layers() if list(layers[name].parameters(recurse=False))), None)


def _mask_overlay(display: torch.Tensor, logits: torch.Tensor) -> bytes:
    """The predicted mask (red) over the grey image."""
    predicted = (logits.sigmoid()[0] > 0.5) if len(logits) == 1 else logits.argmax(dim=0) > 0
    pixels = display.permute(1, 2, 0).cpu().numpy()
    grey = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    red = np.zeros_like(grey)
    red[..., 0] = 1.0
    mask = predicted.cpu().numpy()[..., None]
    return png_bytes(np.where(mask, 0.5 * grey + 0.5 * red, grey))
