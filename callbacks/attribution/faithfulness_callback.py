"""FaithfulnessCallback: how faithful and how well localised each attribution method's maps are, tracked
over training."""

import csv
from pathlib import Path

import lightning.pytorch as pl
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.attribution.callback import check_methods_and_target
from callbacks.attribution.faithfulness import (
    curve_area,
    deletion_curves,
    insertion_curves,
    pointing_game,
    relevance_mass,
    road_curves,
)
from callbacks.attribution.methods import build_method
from callbacks.attribution.methods.base import baseline_image
from callbacks.attribution.targets import Scores, Targets, resolve_targets
from callbacks.inspection import InspectionCallback, ProbeSet
from lightning_app.errors import UserInputError, check_positive

DEFAULT_METHODS = {
    "Saliency": {},
    "IntegratedGradients": {"n_steps": 16},
    "LayerGradCam": {},
    "LRP": {},
}
CURVE_METRICS = ("deletion", "insertion", "road")
MASK_METRICS = ("relevance_mass", "pointing_game")
BETTER = {"deletion": "lower", "road": "lower", "insertion": "higher", "relevance_mass": "higher",
          "pointing_game": "higher"}  # fmt: skip
RANDOM = "random"
CSV_FILE = "faithfulness.csv"


class FaithfulnessCallback(InspectionCallback):
    """Faithfulness and localisation of attribution maps on a fixed probe set, before the first step
    of ``fit`` (the untrained model), every ``every_n_epochs`` epochs and at its end, so that a user
    sees when each method's maps become faithful.

    Per method and metric it logs the mean over the probe images as the scalar
    ``faithfulness/<metric>/<method>`` in a TensorBoard run of its own (``<run>/faithfulness``), with
    one chart per metric and a line per method in the CUSTOM SCALARS tab; at the end of ``fit``,
    ``validate`` and ``test`` the same as the figure ``faithfulness/over_training`` and the mean curves
    of the last evaluation as the figure ``faithfulness/curves``; and every value in ``faithfulness.csv``
    in the run folder (step, metric, method, value). A map of random numbers is measured as the
    method ``random``: a method is faithful where it beats it.

    Args:
        methods: method name -> arguments, as :class:`~callbacks.attribution.AttributionCallback`;
            default Saliency, IntegratedGradients, LayerGradCam and LRP.
        metrics: any of ``deletion`` (AUC of the explained class's probability while the most
            relevant pixels are replaced by the baseline; lower is better), ``insertion`` (from the
            baseline image, the most relevant put back first; higher is better), ``road`` (deletion
            with noisy linear imputation, Rong et al. 2022; lower is better), and for segmentation
            ``relevance_mass`` and ``pointing_game`` inside the explained class's true mask. Default
            deletion and insertion, and the two mask metrics for segmentation.
        steps: parts in which the pixels are removed or inserted.
        baseline: the replacement of removed pixels in the model's input space: a number or
            ``mean`` (the probe images' channel means).
        batch_size: perturbed images per forward pass.
        target, split, per_class, size, seed, every_n_epochs: as AttributionCallback; default 10
            images of the validation split, every 5 epochs.
    """

    tag = "faithfulness"

    def __init__(
        self,
        methods: dict[str, dict] | None = None,
        metrics: list[str] | None = None,
        steps: int = 20,
        baseline: float | str = 0.0,
        batch_size: int = 256,
        target: str | int = "predicted",
        split: str = "val",
        per_class: int | None = None,
        size: int | None = 10,
        seed: int = 0,
        every_n_epochs: int = 5,
    ) -> None:
        super().__init__(split, per_class, size, seed, every_n_epochs)
        check_positive("FaithfulnessCallback", steps=steps, batch_size=batch_size)
        configured = DEFAULT_METHODS if methods is None else methods
        self.methods = [build_method(name, params) for name, params in configured.items()]
        unknown = sorted(set(metrics or ()) - set(BETTER))
        if unknown:
            raise UserInputError(f"FaithfulnessCallback: metrics {unknown} are not among {', '.join(BETTER)}")
        self.metrics = metrics
        self.steps = steps
        self.baseline = baseline
        baseline_image(baseline, torch.zeros(1, 1, 1, 1))  # a bad baseline fails here
        self.batch_size = batch_size
        self.target = target
        self.history: list[tuple[int, str, str, float]] = []
        self.curves: dict[str, dict[str, torch.Tensor]] = {}
        self.writer: SummaryWriter | None = None
        self.csv_path: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts, layer names, target and metrics before any training."""
        super().setup(trainer, pl_module, stage)
        check_methods_and_target(self.methods, self.target, pl_module, trainer.datamodule.class_names)
        label = trainer.datamodule.evaluation_subset(self.split, size=1, seed=self.seed)[0][1]
        segmentation = torch.as_tensor(label).ndim > 0
        if self.metrics is None:
            self.metrics = ["deletion", "insertion", *(MASK_METRICS if segmentation else ())]
        if not segmentation and set(self.metrics) & set(MASK_METRICS):
            raise UserInputError(
                f"FaithfulnessCallback: metrics {sorted(set(self.metrics) & set(MASK_METRICS))} need "
                "segmentation masks; this data module's labels are class indices"
            )
        if trainer.is_global_zero and trainer.log_dir is not None:
            self.csv_path = Path(trainer.log_dir) / CSV_FILE

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Measure once before the first step, so the curves start from the untrained model."""
        if self.every_n_epochs:
            self.run(trainer, pl_module, final=False)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    @override
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        own_writer = self._own_writer(writer)
        if not self.history or self.history[-1][0] != step:  # else the end of fit right after an evaluation
            self._evaluate(model, probe, step)
            self._log_scalars(own_writer, step)
        if final:
            self._log_figures(own_writer, step)

    def _evaluate(self, model: nn.Module, probe: ProbeSet, step: int) -> None:
        with torch.no_grad():
            logits = model(probe.inputs)
        segmentation = logits.ndim == 4
        scores = Scores(model, segmentation)
        targets = resolve_targets(self.target, logits, probe.labels, probe.class_names)
        masks = (
            probe.labels == targets.class_indices(logits.shape[1])[:, None, None] if segmentation else None
        )
        generator = torch.Generator().manual_seed(self.seed)
        maps = {RANDOM: torch.rand(probe.inputs.shape, generator=generator).to(probe.inputs)}
        for method in self.methods:
            result = method.attribute(scores, probe.inputs, targets.classes, targets.forward_args)
            maps[method.name] = result.values.detach()
        self.curves = {}
        for name, values in maps.items():
            for metric, value in self.measure(model, probe.inputs, targets, values, masks, name).items():
                self.history.append((step, metric, name, value))

    def measure(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: Targets,
        values: torch.Tensor,
        masks: torch.Tensor | None,
        name: str,
    ) -> dict[str, float]:
        """Metric -> mean over the probe images for one method's maps; keeps its mean curves."""
        baseline = baseline_image(self.baseline, inputs)
        results = {}
        for metric in self.metrics:
            if metric in CURVE_METRICS:
                curves = self._curves(metric, model, inputs, targets, values, baseline)
                self.curves.setdefault(metric, {})[name] = curves.mean(dim=0).cpu()
                results[metric] = float(curve_area(curves).mean())
            elif metric == "relevance_mass":
                results[metric] = float(relevance_mass(values, masks).mean())
            else:
                results[metric] = float(pointing_game(values, masks).mean())
        return results

    def _curves(self, metric, model, inputs, targets, values, baseline) -> torch.Tensor:
        if metric == "deletion":
            return deletion_curves(model, inputs, targets, values, baseline, self.steps, self.batch_size)
        if metric == "insertion":
            return insertion_curves(model, inputs, targets, values, baseline, self.steps, self.batch_size)
        return road_curves(model, inputs, targets, values, self.steps, self.batch_size, self.seed)

    def _own_writer(self, writer: SummaryWriter) -> SummaryWriter:
        """The writer of this callback's TensorBoard run (``<run>/faithfulness``), with its charts;
        opened on first use and again after ``teardown`` (a ``validate`` after ``fit``)."""
        if self.writer is None:
            self.writer = SummaryWriter(str(Path(writer.log_dir) / self.tag))
            self.writer.add_custom_scalars(
                {
                    "faithfulness": {
                        f"{metric} ({BETTER[metric]} is better)": ["Multiline", [f"{self.tag}/{metric}/.*"]]
                        for metric in self.metrics
                    }
                }
            )
        return self.writer

    def _log_scalars(self, writer: SummaryWriter, step: int) -> None:
        latest = [row for row in self.history if row[0] == step]
        for _, metric, name, value in latest:
            writer.add_scalar(f"{self.tag}/{metric}/{name}", value, step)
        writer.flush()
        if self.csv_path is not None:
            self._append_csv(latest)

    def _log_figures(self, writer: SummaryWriter, step: int) -> None:
        """The figures, drawn only at the end (matplotlib takes longer than the metrics)."""
        if self.curves:
            writer.add_figure(f"{self.tag}/curves", curves_figure(self.curves, step), step)
        writer.add_figure(f"{self.tag}/over_training", history_figure(self.history, self.metrics), step)
        writer.flush()

    def _append_csv(self, rows: list[tuple[int, str, str, float]]) -> None:
        new = not self.csv_path.exists()
        with self.csv_path.open("a", newline="") as file:
            table = csv.writer(file)
            if new:
                table.writerow(["step", "metric", "method", "value"])
            table.writerows(rows)


def curves_figure(curves: dict[str, dict[str, torch.Tensor]], step: int) -> Figure:
    """One panel per curve metric: the mean probability of the explained class against the fraction
    of pixels changed, a line per method (the random map dashed)."""
    figure = Figure(figsize=(4.2 * len(curves), 3.4), layout="constrained")
    axes = figure.subplots(1, len(curves), squeeze=False)[0]
    for ax, (metric, lines) in zip(axes, curves.items(), strict=True):
        for name, curve in lines.items():
            fractions = torch.linspace(0, 1, len(curve))
            style = "--" if name == RANDOM else "-"
            area = float(torch.trapezoid(curve, fractions))
            ax.plot(fractions, curve, style, label=f"{name} (AUC {area:.3f})")
        ax.set_title(f"{metric} ({BETTER[metric]} AUC is better)", fontsize=10)
        ax.set_xlabel("fraction of pixels " + ("inserted" if metric == "insertion" else "removed"))
        ax.set_ylabel("probability of the explained class")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7)
    figure.suptitle(f"faithfulness at step {step}: mean over the probe images")
    return figure


def history_figure(history: list[tuple[int, str, str, float]], metrics: list[str]) -> Figure:
    """One panel per metric: its value against the training step, a line per method (random dashed)."""
    figure = Figure(figsize=(4.2 * len(metrics), 3.4), layout="constrained")
    axes = figure.subplots(1, len(metrics), squeeze=False)[0]
    for ax, metric in zip(axes, metrics, strict=True):
        methods = dict.fromkeys(name for _, m, name, _ in history if m == metric)
        for name in methods:
            points = [(step, value) for step, m, n, value in history if m == metric and n == name]
            steps, values = zip(*points, strict=True)
            ax.plot(steps, values, "--" if name == RANDOM else "-", marker="o", markersize=3, label=name)
        ax.set_title(f"{metric} ({BETTER[metric]} is better)", fontsize=10)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    figure.suptitle("faithfulness over training: mean over the probe images")
    return figure
