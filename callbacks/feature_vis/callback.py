"""FeatureVisualization: what chosen channels of chosen layers respond to, rendered across training."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.attribution.filter_relevance import ranked_filters
from callbacks.contracts import VisualisableDataModule, check_contract
from callbacks.feature_vis.examples import top_examples
from callbacks.feature_vis.figure import feature_vis_figure
from callbacks.feature_vis.objectives import Channel, check_objectives, named_objective, penalty
from callbacks.feature_vis.parameterisations import BandStatistics
from callbacks.feature_vis.records import FeatureVisRecord, save_record
from callbacks.feature_vis.render import Rendering, RenderSettings, render, scores
from callbacks.feature_vis.transforms import transform_from_config
from callbacks.inspection import InspectionCallback, ProbeSet
from callbacks.lca.callback import LossChangeAllocation
from callbacks.model_copy import find_layer
from lightning_app.errors import UserInputError, check_positive
from models.receptive_field import Field, theoretical_fields

BANDS_FILE = "feature_vis_bands.json"
LCA_CHOICES = ("lca_top_helped", "lca_top_hurt")
RELEVANCE_CHOICE = "relevance_top"


def ranked(neuron_lca: np.ndarray, choice: str, count: int) -> list[tuple[int, float]]:
    """(channel, LCA) of up to ``count`` channels that helped the loss most (most negative LCA) or, for
    'lca_top_hurt', hurt it most; only channels that did help (hurt), so possibly fewer."""
    order = np.argsort(neuron_lca, kind="stable")
    if choice == "lca_top_hurt":
        order = order[::-1]
    sign = 1.0 if choice == "lca_top_hurt" else -1.0
    chosen = [int(channel) for channel in order if sign * neuron_lca[channel] > 0][:count]
    return [(channel, float(neuron_lca[channel])) for channel in chosen]


def band_statistics(datamodule, size: int, seed: int) -> BandStatistics:
    """The display-space band statistics of ``size`` training images drawn with ``seed`` (all of them
    when the split has fewer)."""
    split = datamodule.evaluation_subset("train", seed=seed)
    chosen = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:size]
    images = torch.stack([split[int(i)][0] for i in chosen])
    return BandStatistics.of(datamodule.denormalize(images))


def receptive_fields(model: nn.Module) -> dict[str, Field]:
    """Each layer's theoretical receptive field, to crop the dataset examples; none for a network
    torch.fx cannot trace (the examples are then cropped to the extent of the gradient)."""
    try:
        return theoretical_fields(model)
    except UserInputError:
        return {}


def distinct_tag_suffix(callback: "FeatureVisualization", callbacks: list) -> str:
    """The end of ``callback``'s tags: empty, unless an earlier FeatureVisualization of ``callbacks``
    renders one of its layers: then ``/<label>`` (its channel choice or objective), and ``_<position>``
    too when the earlier one has the same label."""
    others = [other for other in callbacks if isinstance(other, FeatureVisualization)]
    before = others[: others.index(callback)]
    earlier = [other for other in before if set(other.layers) & set(callback.layers)]
    if not earlier:
        return ""
    same_label = any(other.label == callback.label for other in earlier)
    return f"/{callback.label}" + (f"_{others.index(callback) + 1}" if same_label else "")


class FeatureVisualization(InspectionCallback):
    """Activation maximisation of chosen channels, every ``every_n_epochs`` epochs and at the end of
    ``fit``, with the same seed and start image each time, so that a channel's picture can be compared
    across epochs (Olah et al., 2017: Fourier parameters, band decorrelation, random transforms).

    Logs per layer ``feature_vis/<layer>`` (``feature_vis/<layer>/<choice or objective>`` when an
    earlier FeatureVisualization of the run renders the same layer): a row per channel, the rendered
    image (its caption: the channel and the mean activation reached) and beside it the probe images
    that activate the channel most, cropped to the patch its strongest position sees. Renders all of a
    layer's channels in one batch, on rank 0, on a copy of the model (training is untouched). The band
    statistics of the training data, from which the decorrelation is built, are saved as
    ``feature_vis_bands.json`` in the run folder; the renders, the probe images' activations and the
    examples' crop boxes go to ``feature_vis/step_<N>/<layer>.npz`` for the Interpretability tab
    (:mod:`callbacks.feature_vis.records`).

    Args:
        layers: layer names as ``python -m lightning_app.layers --config X.yaml`` prints them.
        channels: the first N channels of each layer, a list of channel indices, or chosen by Loss
            Change Allocation: ``{lca_top_helped: 8}`` (``lca_top_hurt``) picks per layer the output
            channels whose parameters helped (hurt) the loss most over the last epoch, from the
            per-neuron records of the same run's ``LossChangeAllocation`` callback (the layers must own
            parameters: net.conv2, not net.relu2); only channels that did help (hurt) are shown, so
            possibly fewer, with a warning when none did; the captions give each channel's LCA. Or by
            relevance: ``{relevance_top: 8}`` picks per layer the channels with the most Deep Taylor
            relevance (LRP, z+ with z^B at the input) for the predicted classes of the probe images,
            summed over them; the captions give each channel's share of the layer's relevance.
        objective: 'channel' (mean activation), 'neuron' (the centre position) or 'layer' (DeepDream's
            energy of the whole layer, one image).
        steps, lr, fourier, seed: the render (Adam; Fourier or pixel parameters).
        transforms: random transforms as a list like ``[{pad: 12}, {jitter: 8}, {scale: [0.9, 1.1]},
            {rotate: [-5, 0, 5]}, {blur: 0.5}]``; default Lucid's standard set, its distances in pixels
            scaled from 224 px to the image size.
        examples: dataset examples shown per channel (0: none), each cropped to the receptive field of
            the channel's strongest position.
        statistics_size: training images the band statistics are estimated from.
        penalties: weights of penalties on the image subtracted from every objective: ``{tv: 0.01}``
            (total variation), ``l1``, ``l2`` (means over the model's input); the captions give the
            objective reached without them.
        display_bands: the bands shown for images of other than 1 or 3 bands (default the first three).
        split, per_class, size, every_n_epochs: the probe set (for the dataset examples) and the
            schedule, as :class:`~callbacks.attribution.AttributionCallback`.
    """

    tag = "feature_vis"

    def __init__(
        self,
        layers: list[str],
        channels: int | list[int] | dict[str, int] = 8,
        objective: str = "channel",
        steps: int = 256,
        lr: float = 0.05,
        fourier: bool = True,
        transforms: list[dict] | None = None,
        examples: int = 3,
        statistics_size: int = 512,
        penalties: dict[str, float] | None = None,
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
        if isinstance(channels, dict):
            choice, count = next(iter(channels.items()))
            if len(channels) != 1 or choice not in (*LCA_CHOICES, RELEVANCE_CHOICE) or count < 1:
                raise UserInputError(
                    f"FeatureVisualization: channels {channels} must be one of {', '.join(LCA_CHOICES)} "
                    f"or {RELEVANCE_CHOICE} with a positive count, e.g. {{lca_top_helped: 8}}"
                )
        self.channels = channels
        self.lca: LossChangeAllocation | None = None
        self.chosen: dict[str, list[tuple[int, float]]] = {}
        self.lca_epoch: int | None = None
        self.objective = objective
        named_objective(objective, layers[0], 0)  # an unknown name fails here, before any training
        chosen = None if transforms is None else tuple(transform_from_config(t) for t in transforms)
        self.settings = RenderSettings(steps=steps, lr=lr, fourier=fourier, transforms=chosen, seed=seed)
        self.penalty = penalty(penalties or {})
        self.examples = examples
        self.statistics_size = statistics_size
        self.display_bands = display_bands
        self.statistics: BandStatistics | None = None
        self.renderings: dict[str, Rendering] = {}
        self.tag_suffix = ""  # set in setup when another FeatureVisualization renders one of these layers

    @property
    def label(self) -> str:
        """What this callback renders, for its tags: the channel choice, or the objective."""
        return self.choice or self.objective

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts and the layer names; estimate and save the band statistics."""
        super().setup(trainer, pl_module, stage)
        check_contract(type(self).__name__, "data module", trainer.datamodule, VisualisableDataModule)
        for layer in self.layers:
            find_layer(pl_module, layer)
        self.tag_suffix = distinct_tag_suffix(self, trainer.callbacks)
        if self.choice in LCA_CHOICES:
            self.lca = self._lca_callback(trainer, pl_module)
        self.statistics = band_statistics(trainer.datamodule, self.statistics_size, self.seed)
        if trainer.is_global_zero and trainer.log_dir is not None:
            Path(trainer.log_dir).mkdir(parents=True, exist_ok=True)
            self.statistics.save(Path(trainer.log_dir) / BANDS_FILE)
        self.from_display = trainer.datamodule.from_display

    def _lca_callback(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> LossChangeAllocation:
        lca = next((c for c in trainer.callbacks if isinstance(c, LossChangeAllocation)), None)
        if lca is None:
            raise UserInputError(
                f"FeatureVisualization: channels {self.channels} need the LossChangeAllocation callback "
                "in the same run"
            )
        for layer in self.layers:
            if next(find_layer(pl_module, layer).parameters(recurse=False), None) is None:
                raise UserInputError(
                    f"FeatureVisualization: layer {layer!r} owns no parameters, so LCA has no channels "
                    "to rank there; name the convolution or linear layer before it"
                )
        return lca

    @override
    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        """Inspect; with channels chosen by LCA, first read the last epoch's per-neuron LCA (outside
        ``fit`` the channels chosen last, if any)."""
        if self.lca is not None and trainer.is_global_zero and trainer.state.fn == "fit":
            self.lca_epoch, per_layer = self.lca.last_epoch_neuron_lca()
            count = self.channels[self.choice]
            self.chosen = {layer: ranked(per_layer[layer], self.choice, count) for layer in self.layers}
        super().run(trainer, pl_module, final)

    @property
    def choice(self) -> str | None:
        """How the channels are chosen: one of LCA_CHOICES, RELEVANCE_CHOICE, or None (given)."""
        return next(iter(self.channels)) if isinstance(self.channels, dict) else None

    def channel_indices(self, layer: str) -> list[int]:
        if isinstance(self.channels, int):
            return list(range(self.channels))
        if isinstance(self.channels, dict):
            if layer not in self.chosen:
                raise UserInputError(
                    f"FeatureVisualization: channels {self.channels} are chosen during fit; "
                    "this run has no LCA records to choose from"
                )
            return [channel for channel, _ in self.chosen[layer]]
        return list(self.channels)

    def caption(self, layer: str, name: str, position: int, value: float) -> str:
        text = f"{name}\n{value:.3g}"
        if layer in self.chosen:
            score = self.chosen[layer][position][1]
            text += (
                f"\nrelevance {100 * score:.1f} %"
                if self.choice == RELEVANCE_CHOICE
                else f"\nLCA {score:.3g}"
            )
        return text

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        if self.choice == RELEVANCE_CHOICE:
            count = self.channels[RELEVANCE_CHOICE]
            self.chosen = ranked_filters(model, probe.inputs, self.layers, count)
        model.requires_grad_(False)
        fields = receptive_fields(model) if self.examples else {}
        for layer in self.layers:
            if self.objective == "layer":
                objectives = [named_objective("layer", layer)]
            else:
                objectives = [named_objective(self.objective, layer, c) for c in self.channel_indices(layer)]
            if not objectives:
                rank_zero_warn(
                    f"FeatureVisualization: no channel of {layer} {self._verb()} the loss in epoch "
                    f"{self.lca_epoch}; nothing rendered for it"
                )
                continue
            check_objectives(model, objectives, probe.inputs[:1])
            shape = tuple(probe.inputs.shape[1:])
            rendering = render(
                model, objectives, self.statistics, self.from_display, shape, self.settings, self.penalty
            )
            self.renderings[layer] = rendering
            rows = [
                (
                    self.caption(layer, item.name, position, value),
                    image,
                    self._examples(model, item, probe, fields),
                )
                for position, (item, image, value) in enumerate(
                    zip(objectives, rendering.images, rendering.end.tolist(), strict=True)
                )
            ]
            figure = feature_vis_figure(
                self._title(layer, step), rows, probe.display, probe.indices, self.display_bands
            )
            writer.add_figure(f"{self.tag}/{layer}{self.tag_suffix}", figure, step)
            if not self.tag_suffix:  # the first FeatureVisualization of a layer keeps its records
                record = self._record(model, step, layer, objectives, rendering, rows, probe)
                save_record(Path(writer.log_dir), record)

    def _record(self, model, step, layer, objectives, rendering, rows, probe: ProbeSet) -> FeatureVisRecord:
        """The layer's renders at ``step`` with every channel's activation on every probe image."""
        with torch.no_grad():
            probe_values = torch.stack(
                [scores(model, [objective] * len(probe.inputs), probe.inputs) for objective in objectives]
            )
        boxes = [[(e.position, *e.box) for e in examples] for _, _, examples in rows]
        width = max((len(b) for b in boxes), default=0)
        top_boxes = np.full((len(objectives), width, 5), -1, dtype=np.int64)
        for row, channel_boxes in enumerate(boxes):
            if channel_boxes:
                top_boxes[row, : len(channel_boxes)] = channel_boxes
        channels = np.array([-1] if self.objective == "layer" else self.channel_indices(layer))
        return FeatureVisRecord(
            step, layer, rendering.images.float().numpy(), channels, rendering.end.float().cpu().numpy(),
            probe.display.float().cpu().numpy(), np.asarray(probe.indices),
            probe_values.float().cpu().numpy(), top_boxes,
        )  # fmt: skip

    def _examples(self, model: nn.Module, item, probe: ProbeSet, fields: dict[str, Field]) -> list:
        if not isinstance(item, Channel) or not self.examples:
            return []
        return top_examples(model, item, probe.inputs, self.examples, fields.get(item.layer))

    def _title(self, layer: str, step: int) -> str:
        title = f"{layer} at step {step}: rendered | the probe images that activate it most"
        if layer not in self.chosen:
            return title
        if self.choice == RELEVANCE_CHOICE:
            return f"{title} (the channels with the most Deep Taylor relevance for the probe's predictions)"
        found, asked = len(self.chosen[layer]), self.channels[self.choice]
        which = f"the {found} channels" if found == asked else f"the only {found} of {asked} channels asked"
        verb = self._verb()
        return f"{title} ({which} whose parameters {verb} the loss most in epoch {self.lca_epoch}, by LCA)"

    def _verb(self) -> str:
        return "helped" if self.choice == "lca_top_helped" else "hurt"
