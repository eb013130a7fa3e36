"""AttributionCallback: Captum attribution maps of a fixed probe set, logged to TensorBoard."""

from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.attribution.attributions import Attributions
from callbacks.attribution.figures import attribution_figure
from callbacks.attribution.filter_relevance import class_filter_scores, filter_ranking_figure
from callbacks.attribution.methods import build_method
from callbacks.attribution.methods.cam import upsampled
from callbacks.attribution.records import AttributionRecord, save_record, save_sanity, summed_maps
from callbacks.attribution.sanity import (
    infidelity_score,
    randomisation_correlation,
    randomised_copy,
    sensitivity_score,
)
from callbacks.attribution.sanity_report import sanity_figure, sanity_table
from callbacks.attribution.targets import Scores, Targets, class_index, resolve_targets
from callbacks.inspection import InspectionCallback, ProbeSet
from callbacks.mosaic import Caption

CONSERVATION_TOLERANCE = 0.25  # LRP: warn when an image's input relevance leaves 0.75-1.25 of its score
DEFAULT_METHODS = {
    "Saliency": {},
    "IntegratedGradients": {"n_steps": 32},
    "SmoothGrad": {"nt_samples": 16, "stdevs": 0.15},
    "GuidedBackprop": {},
    "LayerGradCam": {},
    "Occlusion": {"window": 4, "stride": 2},
}


def check_methods_and_target(methods, target: str | int, pl_module: pl.LightningModule, class_names) -> None:
    """The methods' arguments fit the model (layer names, LRP's rules and what it cannot explain) and a
    fixed target class is one of its classes."""
    for method in methods:
        method.check_model(pl_module)
    if target not in ("predicted", "true"):
        class_index(target, list(class_names), pl_module.num_classes)


class AttributionCallback(InspectionCallback):
    """Attribution maps of the configured Captum methods on a fixed probe set.

    Every ``every_n_epochs`` epochs and at the end of ``fit`` (and at the end of ``validate``, ``test``
    and ``predict``), logs one figure per method to TensorBoard under ``attribution/<method>``: a column
    per probe image (its index, the explained class and its probability above it, the true class in
    red when the prediction is wrong) and the rows input, heat map (with a colour bar of the values)
    and overlay. The maps themselves, full resolution, go to ``attributions/step_<N>.npz`` in the
    run folder and the sanity checks to ``attributions/sanity.json``, for the Interpretability tab
    (:mod:`callbacks.attribution.records`). Lime logs Lees's five panels as rows. Works on classifiers
    and on segmentation networks (the sum of a class's logits over the predicted or true region). Runs
    on rank 0, on a copy of the model.

    Args:
        methods: method name -> arguments; see :mod:`callbacks.attribution.methods` for the names
            (Saliency, IntegratedGradients, SmoothGrad/NoiseTunnel, GradientShap, DeepLift,
            GuidedBackprop, Deconvolution, LayerGradCam, GradCamPlusPlus, ScoreCam, GuidedGradCam,
            Occlusion, FeatureAblation, Lime, LRP, InputXGradient) and the keys each takes. Default:
            Saliency, IntegratedGradients, SmoothGrad, GuidedBackprop, LayerGradCam, Occlusion. LRP
            with ``layers`` also logs per layer ``attribution/LRP/<layer>`` (the relevance at its
            output, convolutions) and ``attribution/LRP/<layer>/filters`` (its filters ranked by
            relevance per explained class).
        target: the class explained: 'predicted' (default), 'true', a class index or a class name.
        split: the split the probe images come from.
        per_class: probe images per class (seeded); or ``size`` images drawn at random.
        size: number of probe images, instead of ``per_class``.
        seed: seed of the probe draw and of the methods' random numbers (the training's random
            state is left as it was).
        every_n_epochs: period during ``fit``; 0 logs only at the end.
        sanity_checks: at the end of ``fit``/``validate``/``test``, check every method: the rank
            correlation of its maps with those of a randomised model (Adebayo et al. 2018), infidelity
            and max sensitivity (Captum's metrics); logged as one table (``sanity/checks`` in the TEXT
            tab) and one bar chart (``sanity/checks`` in IMAGES).
        randomisation_threshold: a method whose maps correlate above this with those of the randomised
            model is flagged: a warning and "yes" in the table's "insensitive" column.
    """

    tag = "attribution"

    def __init__(
        self,
        methods: dict[str, dict] | None = None,
        target: str | int = "predicted",
        split: str = "val",
        per_class: int | None = 1,
        size: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 10,
        sanity_checks: bool = True,
        randomisation_threshold: float = 0.5,
    ) -> None:
        super().__init__(split, per_class, size, seed, every_n_epochs)
        configured = DEFAULT_METHODS if methods is None else methods
        self.methods = [build_method(name, params) for name, params in configured.items()]
        self.target = target
        self.sanity_checks = sanity_checks
        self.randomisation_threshold = randomisation_threshold
        self.sanity: dict[str, dict[str, float]] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts, layer names and a fixed target class before any training."""
        super().setup(trainer, pl_module, stage)
        check_methods_and_target(self.methods, self.target, pl_module, trainer.datamodule.class_names)

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        with torch.no_grad():
            logits = model(probe.inputs)
        scores = Scores(model, segmentation=logits.ndim == 4)
        targets = resolve_targets(self.target, logits, probe.labels, probe.class_names)
        captions = self._captions(probe, targets, logits.argmax(dim=1).cpu())
        randomised = randomised_copy(scores, self.seed) if final and self.sanity_checks else None
        maps = {}
        for method in self.methods:
            result = method.attribute(scores, probe.inputs, targets.classes, targets.forward_args)
            maps[method.name] = summed_maps(result.values)
            if result.conservation is not None:
                self._conservation(writer, step, method.name, result)
            figure = method.figure(probe.display, result, captions)
            writer.add_figure(f"{self.tag}/{method.name}", figure, step)
            for layer, relevance in (result.layer_relevance or {}).items():
                self._layer_relevance(
                    writer, step, f"{method.name}/{layer}", relevance, probe, targets, captions
                )
            if randomised is not None:
                self._sanity(method, scores, randomised, probe.inputs, targets, result.values)
        run_dir = Path(writer.log_dir)
        save_record(run_dir, _record(step, probe, targets, maps))
        if randomised is not None:
            writer.add_text("sanity/checks", sanity_table(self.sanity, self.randomisation_threshold), step)
            writer.add_figure("sanity/checks", sanity_figure(self.sanity, self.randomisation_threshold), step)
            save_sanity(run_dir, step, self.sanity, self.randomisation_threshold)

    def _conservation(self, writer: SummaryWriter, step: int, name: str, result: Attributions) -> None:
        """Log the mean conservation (``attribution/<method>/conservation``: input relevance over the
        explained score) and warn when an image's is outside 1 +- CONSERVATION_TOLERANCE."""
        ratios = result.conservation.float()
        writer.add_scalar(f"{self.tag}/{name}/conservation", float(ratios.mean()), step)
        low, high = float(ratios.min()), float(ratios.max())
        if low >= 1 - CONSERVATION_TOLERANCE and high <= 1 + CONSERVATION_TOLERANCE:
            return
        cause = (f"relevance passed {', '.join(result.unexplained)} by their gradient" if result.unexplained
                 else "biases absorb much of it (z+ and epsilon keep a bias's share)")  # fmt: skip
        rank_zero_warn(
            f"{name}: the relevance reaching the input is {low:.3g} to {high:.3g} times the explained score "
            f"(outside {1 - CONSERVATION_TOLERANCE:g} to {1 + CONSERVATION_TOLERANCE:g}): {cause}"
        )

    def _layer_relevance(self, writer, step, name, relevance, probe, targets, captions) -> None:
        """The relevance at a layer's output summed over its filters (for convolutions), and its
        filters ranked by relevance per explained class."""
        if relevance.ndim == 4:
            maps = upsampled(relevance.sum(dim=1, keepdim=True), probe.inputs)
            writer.add_figure(
                f"{self.tag}/{name}", attribution_figure(name, probe.display, maps, captions), step
            )
        per_class = class_filter_scores(relevance, targets.classes)
        named = {probe.class_name(cls): scores for cls, scores in per_class.items()}
        writer.add_figure(f"{self.tag}/{name}/filters", filter_ranking_figure(name, named), step)

    @staticmethod
    def _captions(probe: ProbeSet, targets: Targets, predicted: torch.Tensor) -> list[Caption]:
        """Per probe image: its index, the explained class and its probability, and for a classifier
        the true class, in red when the prediction is wrong."""
        captions = []
        for position, (index, cls, probability) in enumerate(
            zip(probe.indices, targets.classes.tolist(), targets.probabilities.tolist(), strict=True)
        ):
            text = f"#{index}\n{probe.class_name(cls)} p={probability:.2f}"
            label = probe.labels[position]
            if label.ndim > 0:  # a segmentation mask
                captions.append(Caption(text))
                continue
            wrong = int(label) != int(predicted[position])
            captions.append(Caption(f"{text}\ntrue {probe.class_name(int(label))}", alert=wrong))
        return captions

    def _sanity(self, method, scores, randomised, inputs, targets, values) -> None:
        results = {
            "randomisation_correlation": randomisation_correlation(
                method, scores, randomised, inputs, targets, values
            ),
            "infidelity": infidelity_score(scores, inputs, targets, values),
            "sensitivity_max": sensitivity_score(method, scores, inputs, targets),
        }
        results["insensitive"] = float(results["randomisation_correlation"] > self.randomisation_threshold)
        if results["insensitive"]:
            rank_zero_warn(
                f"attribution method {method.name} barely changes when the model's parameters are randomised "
                f"(rank correlation {results['randomisation_correlation']:.2f} > "
                f"{self.randomisation_threshold}): its maps do not explain this model"
            )
        self.sanity[method.name] = results


def _record(step: int, probe: ProbeSet, targets: Targets, maps: dict) -> AttributionRecord:
    labels = probe.labels if probe.labels.ndim == 1 else torch.full((len(probe.labels),), -1)
    return AttributionRecord(
        step, probe.display.float().cpu().numpy(), np.asarray(probe.indices), labels.cpu().numpy(),
        targets.classes.cpu().numpy(), targets.probabilities.float().cpu().numpy(), list(probe.class_names),
        maps,
    )  # fmt: skip
