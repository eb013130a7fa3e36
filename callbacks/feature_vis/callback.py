"""FeatureVisualization: what chosen channels of chosen layers respond to, rendered across training."""

from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.contracts import VisualisableDataModule, check_contract
from callbacks.feature_vis.examples import top_examples
from callbacks.feature_vis.figure import feature_vis_figure
from callbacks.feature_vis.objectives import Channel, check_objectives, named_objective
from callbacks.feature_vis.parameterisations import BandStatistics
from callbacks.feature_vis.render import Rendering, RenderSettings, render
from callbacks.feature_vis.transforms import STANDARD, transform_from_config
from callbacks.inspection import InspectionCallback, ProbeSet
from callbacks.model_copy import find_layer
from lightning_app.errors import check_positive

BANDS_FILE = "feature_vis_bands.json"


def band_statistics(datamodule, size: int, seed: int) -> BandStatistics:
    """The display-space band statistics of ``size`` training images drawn with ``seed``."""
    subset = datamodule.evaluation_subset("train", size=size, seed=seed)
    images = torch.stack([subset[i][0] for i in range(len(subset))])
    return BandStatistics.of(datamodule.denormalize(images))


class FeatureVisualization(InspectionCallback):
    """Activation maximisation of chosen channels, every ``every_n_epochs`` epochs and at the end of
    ``fit``, with the same seed and start image each time, so that a channel's picture can be compared
    across epochs (Olah et al., 2017: Fourier parameters, band decorrelation, random transforms).

    Logs per layer ``feature_vis/<layer>``: a row per channel, the rendered image (its caption: the
    channel and the mean activation reached) and beside it the probe images that activate the channel
    most, cropped to the patch its strongest position sees. Renders all of a layer's channels in one
    batch, on rank 0, on a copy of the model (training is untouched). The band statistics of the
    training data, from which the decorrelation is built, are saved as ``feature_vis_bands.json`` in
    the run folder.

    Args:
        layers: layer names as ``python -m lightning_app.layers --config X.yaml`` prints them.
        channels: the first N channels of each layer, or a list of channel indices.
        objective: 'channel' (mean activation), 'neuron' (the centre position) or 'layer' (DeepDream's
            energy of the whole layer, one image).
        steps, lr, fourier, seed: the render (Adam; Fourier or pixel parameters).
        transforms: random transforms as a list like ``[{pad: 12}, {jitter: 8}, {scale: [0.9, 1.1]},
            {rotate: [-5, 0, 5]}, {blur: 0.5}]``; default Lucid's standard set.
        examples: dataset examples shown per channel (0: none).
        statistics_size: training images the band statistics are estimated from.
        display_bands: the bands shown for images of other than 1 or 3 bands (default the first three).
        split, per_class, size, every_n_epochs: the probe set (for the dataset examples) and the
            schedule, as :class:`~callbacks.attribution.AttributionCallback`.
    """

    tag = "feature_vis"

    def __init__(
        self,
        layers: list[str],
        channels: int | list[int] = 8,
        objective: str = "channel",
        steps: int = 256,
        lr: float = 0.05,
        fourier: bool = True,
        transforms: list[dict] | None = None,
        examples: int = 3,
        statistics_size: int = 512,
        display_bands: list[int] | None = None,
        split: str = "val",
        per_class: int | None = 10,
        size: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 10,
    ) -> None:
        super().__init__(split, per_class, size, seed, every_n_epochs)
        check_positive("FeatureVisualization", steps=steps, lr=lr, statistics_size=statistics_size)
        self.layers = layers
        self.channels = channels
        self.objective = objective
        named_objective(objective, layers[0], 0)  # an unknown name fails here, before any training
        chosen = STANDARD if transforms is None else tuple(transform_from_config(t) for t in transforms)
        self.settings = RenderSettings(steps=steps, lr=lr, fourier=fourier, transforms=chosen, seed=seed)
        self.examples = examples
        self.statistics_size = statistics_size
        self.display_bands = display_bands
        self.statistics: BandStatistics | None = None
        self.renderings: dict[str, Rendering] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts and the layer names; estimate and save the band statistics."""
        super().setup(trainer, pl_module, stage)
        check_contract(type(self).__name__, "data module", trainer.datamodule, VisualisableDataModule)
        for layer in self.layers:
            find_layer(pl_module, layer)
        self.statistics = band_statistics(trainer.datamodule, self.statistics_size, self.seed)
        if trainer.is_global_zero and trainer.log_dir is not None:
            Path(trainer.log_dir).mkdir(parents=True, exist_ok=True)
            self.statistics.save(Path(trainer.log_dir) / BANDS_FILE)
        self.from_display = trainer.datamodule.from_display

    def channel_indices(self) -> list[int]:
        return list(range(self.channels)) if isinstance(self.channels, int) else list(self.channels)

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        model.requires_grad_(False)
        for layer in self.layers:
            if self.objective == "layer":
                objectives = [named_objective("layer", layer)]
            else:
                objectives = [named_objective(self.objective, layer, c) for c in self.channel_indices()]
            check_objectives(model, objectives, probe.inputs[:1])
            rendering = render(
                model, objectives, self.statistics, self.from_display, tuple(probe.inputs.shape[1:]),
                self.settings,
            )  # fmt: skip
            self.renderings[layer] = rendering
            rows = []
            for item, image, value in zip(objectives, rendering.images, rendering.end.tolist(), strict=True):
                examples = (
                    top_examples(model, item, probe.inputs, self.examples)
                    if isinstance(item, Channel) and self.examples
                    else []
                )
                rows.append((f"{item.name}\n{value:.3g}", image, examples))
            title = f"{layer} at step {step}: rendered | the probe images that activate it most"
            figure = feature_vis_figure(title, rows, probe.display, probe.indices, self.display_bands)
            writer.add_figure(f"{self.tag}/{layer}", figure, step)
