"""ActivationCallback: feature maps of named layers, dead channels, and first-layer filters."""

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid
from typing_extensions import override

from callbacks.inspection import InspectionCallback, ProbeSet
from callbacks.model_copy import conv_layer_names, find_layer, network_layers
from callbacks.mosaic import mosaic_figure

PANEL_INCHES = 1.1


def layer_outputs(model: nn.Module, names: list[str], inputs: torch.Tensor) -> dict[str, torch.Tensor]:
    """The outputs of the named layers for ``inputs``, copied when produced (an in-place activation
    after a layer cannot change them)."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        find_layer(model, name).register_forward_hook(
            lambda _m, _i, output, name=name: outputs.__setitem__(name, output.detach().clone())
        )
        for name in names
    ]
    try:
        with torch.no_grad():
            model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def dead_channel_fraction(output: torch.Tensor) -> float:
    """The fraction of channels (dim 1) of a layer's output never positive on any example or position."""
    channels = output.transpose(0, 1).reshape(output.shape[1], -1)
    return float((channels.amax(dim=1) <= 0).float().mean())


def feature_map_figure(layer: str, maps: torch.Tensor, top: int | None, title: str) -> Figure:
    """A grid of one image's feature maps (C, H, W) of ``layer``: the ``top`` channels by mean
    activation (all with None), each scaled to its own maximum, the strongest marked "max"."""
    order = maps.mean(dim=(1, 2)).argsort(descending=True)
    shown = (order[:top] if top else torch.arange(len(maps))).tolist()
    peaks = maps.flatten(start_dim=1).amax(dim=1).clamp(min=1e-12)
    tiles = (maps.clamp(min=0) / peaks[:, None, None]).float().cpu().numpy()
    columns = math.ceil(math.sqrt(len(shown)))
    panels = [np.repeat(tiles[channel][..., None], 3, axis=2) for channel in shown]
    labels = [f"{channel} max" if channel == int(order[0]) else str(channel) for channel in shown]
    rows = [panels[i : i + columns] for i in range(0, len(panels), columns)]
    row_labels = [labels[i : i + columns] for i in range(0, len(labels), columns)]
    heading = f"{layer}: {maps.shape[1]}x{maps.shape[2]}, {len(shown)} of {len(maps)} channels, {title}"
    return mosaic_figure(heading, rows, row_labels, inches=PANEL_INCHES)


def filter_grid(weight: torch.Tensor) -> torch.Tensor:
    """First-layer kernels (out, in, kh, kw) as one (3, H, W) image, each kernel scaled to [0, 1];
    kernels with other than 3 input channels are shown per input channel in grey."""
    kernels = weight.detach().float().cpu()
    if kernels.shape[1] != 3:
        kernels = kernels.reshape(-1, 1, *kernels.shape[2:])
    low = kernels.amin(dim=(1, 2, 3), keepdim=True)
    high = kernels.amax(dim=(1, 2, 3), keepdim=True)
    scaled = (kernels - low) / (high - low).clamp(min=1e-12)
    scaled = torch.nn.functional.interpolate(scaled, scale_factor=4, mode="nearest")
    return make_grid(scaled, nrow=int(math.ceil(math.sqrt(len(scaled)))), padding=2, pad_value=1.0)


class ActivationCallback(InspectionCallback):
    """Feature maps, dead channels and first-layer filters of a fixed probe set, in TensorBoard.

    Logs ``activations/<layer>/<image index>``: a grid of the feature maps of each of the first
    ``images`` probe images (per-map scaling, strongest channel marked "max", size annotated);
    ``dead_channels/<layer>``: the fraction of channels never positive on any probe image;
    ``filters/<first conv layer>``: its kernels as an image grid. ``python -m lightning_app.layers
    --config X.yaml`` lists the layer names a model has.

    Args:
        layers: layer names (``net.conv1``); default all Conv2d layers.
        top_channels: channels shown per grid, strongest first by mean activation; null shows all.
        images: probe images whose feature maps are drawn (the dead-channel report uses all).
        split, per_class, size, seed, every_n_epochs: the probe set and the schedule, as
            :class:`~callbacks.attribution.AttributionCallback`.
    """

    tag = "activations"

    def __init__(
        self,
        layers: list[str] | None = None,
        top_channels: int | None = 16,
        images: int = 1,
        split: str = "val",
        per_class: int | None = 1,
        size: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 10,
    ) -> None:
        super().__init__(split, per_class, size, seed, every_n_epochs)
        self.layers = layers
        self.top_channels = top_channels
        self.images = images
        self.dead_fractions: dict[str, float] = {}

    @override
    def setup(self, trainer, pl_module, stage: str) -> None:
        """Check the contracts and the layer names before any training."""
        super().setup(trainer, pl_module, stage)
        for name in self.layers or []:
            find_layer(pl_module, name)

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        names = self.layers or conv_layer_names(model)
        outputs = layer_outputs(model, names, probe.inputs)
        for name in names:
            output = outputs[name]
            if output.ndim == 4:
                for position in range(min(self.images, len(output))):
                    title = f"image #{probe.indices[position]}"
                    figure = feature_map_figure(name, output[position], self.top_channels, title)
                    writer.add_figure(f"{self.tag}/{name}/{probe.indices[position]}", figure, step)
            self.dead_fractions[name] = dead_channel_fraction(output)
            writer.add_scalar(f"dead_channels/{name}", self.dead_fractions[name], step)
        first_conv = next((n for n, m in network_layers(model).items() if isinstance(m, nn.Conv2d)), None)
        if first_conv is not None:
            writer.add_image(f"filters/{first_conv}", filter_grid(find_layer(model, first_conv).weight), step)
