"""ActivationCallback: feature maps of named layers, dead channels, and first-layer filters."""

import math

import lightning.pytorch as pl
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.inspection import InspectionCallback, ProbeSet, inspected_copy, tensorboard
from callbacks.model_copy import conv_layer_names, find_layer, network_layers
from callbacks.mosaic import Caption, ColourBar, Panel, mosaic_figure
from callbacks.placement import Placement

GREY = colormaps["gray"]


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
    strongest = int(order[0])
    panels = [Panel(GREY(tiles[channel])[..., :3], caption(channel, strongest)) for channel in shown]
    heading = f"{layer}: {maps.shape[1]}x{maps.shape[2]}, {len(shown)} of {len(maps)} channels, {title}"
    bar = ColourBar(GREY, 0, 1, "activation / the channel's maximum")
    return mosaic_figure(heading, square_grid(panels), colour_bar=bar)


def caption(channel: int, strongest: int) -> Caption:
    return Caption(f"{channel} max", alert=True) if channel == strongest else Caption(str(channel))


def filter_figure(layer: str, weight: torch.Tensor) -> Figure:
    """A layer's kernels (out, in, kh, kw), each scaled from its minimum to its maximum: in colour when
    they have 3 input channels, else one grey panel per input channel (captioned out.in)."""
    kernels = weight.detach().float().cpu()
    low = kernels.amin(dim=(1, 2, 3), keepdim=True)
    high = kernels.amax(dim=(1, 2, 3), keepdim=True)
    scaled = ((kernels - low) / (high - low).clamp(min=1e-12)).numpy()
    if kernels.shape[1] == 3:
        panels = [Panel(kernel.transpose(1, 2, 0), Caption(str(o))) for o, kernel in enumerate(scaled)]
        bar = None
    else:
        panels = [
            Panel(GREY(plane)[..., :3], Caption(f"{o}.{i}" if len(kernel) > 1 else str(o)))
            for o, kernel in enumerate(scaled)
            for i, plane in enumerate(kernel)
        ]
        bar = ColourBar(GREY, 0, 1, "weight, kernel min to max")
    heading = f"{layer}: {len(kernels)} kernels {kernels.shape[2]}x{kernels.shape[3]}"
    return mosaic_figure(heading, square_grid(panels), colour_bar=bar)


def square_grid(panels: list[Panel]) -> list[list[Panel]]:
    columns = math.ceil(math.sqrt(len(panels)))
    return [panels[i : i + columns] for i in range(0, len(panels), columns)]


class ActivationCallback(InspectionCallback):
    """Feature maps, dead channels and first-layer filters of a fixed probe set, in TensorBoard.

    Logs ``activations/<layer>/<image index>``: a grid of the feature maps of each of the first
    ``images`` probe images (per-map scaling, strongest channel marked "max", size annotated);
    ``dead_channels/<layer>``: after every training epoch, the fraction of channels never positive on
    any probe image; ``filters/<first conv layer>``: its kernels, each scaled from its min to its max.
    ``python -m lightning_app.layers --config X.yaml`` lists the layer names a model has.

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
        self.dead_channels_step: int | None = None

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
        self._log_dead_channels(outputs, writer, step)
        first_conv = next((n for n, m in network_layers(model).items() if isinstance(m, nn.Conv2d)), None)
        if first_conv is not None:
            figure = filter_figure(first_conv, find_layer(model, first_conv).weight)
            writer.add_figure(f"filters/{first_conv}", figure, step)

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """The figures on their schedule; the dead channels after every epoch, a curve per layer."""
        super().on_train_epoch_end(trainer, pl_module)
        writer = tensorboard(trainer)
        if not trainer.is_global_zero or writer is None or self.dead_channels_step == trainer.global_step:
            return
        inputs = Placement.of(pl_module).cast(self.probe_set(trainer, writer).inputs)
        with inspected_copy(pl_module, inputs, self.seed) as model:
            outputs = layer_outputs(model, self.layers or conv_layer_names(model), inputs)
        self._log_dead_channels(outputs, writer, trainer.global_step)

    def _log_dead_channels(self, outputs: dict[str, torch.Tensor], writer: SummaryWriter, step: int) -> None:
        """``dead_channels/<layer>`` once per step (the end of fit follows the last epoch's end)."""
        self.dead_fractions = {name: dead_channel_fraction(output) for name, output in outputs.items()}
        if self.dead_channels_step != step:
            for name, fraction in self.dead_fractions.items():
                writer.add_scalar(f"dead_channels/{name}", fraction, step)
            self.dead_channels_step = step
