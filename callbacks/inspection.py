"""What the attribution, activation and embedding callbacks share: a fixed probe set of images, the
schedule they run on, rank-0-only work with gradients enabled in every loop, and the TensorBoard writer.

The callbacks talk to the model and the data module only through the protocols of
:mod:`callbacks.contracts`. The probe set is kept on the host as the data module gives it and cast to
the model's device and dtype each time it is used, so a model that the strategy moved or converted after
``setup`` (GPU, ``precision: 64-true``) is inspected as it is.
"""

from abc import abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.contracts import InspectableDataModule, check_contracts
from callbacks.model_copy import inspection_copy
from callbacks.placement import Placement


@dataclass
class ProbeSet:
    """The fixed images a callback inspects: ``inputs`` as the model sees them, ``labels`` (class
    indices, or masks for segmentation), ``display`` in [0, 1] for figures, and ``indices``, the
    position of each image in its source file."""

    inputs: torch.Tensor
    labels: torch.Tensor
    display: torch.Tensor
    indices: list[int]
    source: str
    class_names: list[str]

    def class_name(self, index: int) -> str:
        return class_name(self.class_names, index)


def class_name(class_names: list[str], index: int) -> str:
    """The name of class ``index``, or the index itself when the data module names no such class."""
    return class_names[index] if index < len(class_names) else str(index)


def display_images(datamodule: InspectableDataModule, inputs: torch.Tensor) -> torch.Tensor:
    """``inputs`` as the model sees them, back in [0, 1] for figures."""
    return datamodule.denormalize(inputs.detach()).clamp(0, 1)


def load_probe_set(
    datamodule: InspectableDataModule, split: str, per_class: int | None, size: int | None, seed: int
) -> ProbeSet:
    """Draw the probe set from ``datamodule.evaluation_subset`` (deterministic, indices recorded)."""
    dataset = datamodule.evaluation_subset(split, size=size, per_class=per_class, seed=seed)
    inputs, labels = (
        torch.stack(items) for items in zip(*(dataset[i] for i in range(len(dataset))), strict=True)
    )
    names = list(datamodule.class_names)
    return ProbeSet(
        inputs,
        labels,
        display_images(datamodule, inputs),
        dataset.source_indices.tolist(),
        dataset.source,
        names,
    )


@contextmanager
def gradients_enabled():
    """Gradients on, whichever loop is running: ``fit`` validates under no_grad, ``validate``, ``test``
    and ``predict`` run under inference mode (tensors made inside are ordinary tensors)."""
    with torch.inference_mode(False), torch.enable_grad():
        yield


@contextmanager
def inspected_copy(pl_module: pl.LightningModule, inputs: torch.Tensor, seed: int):
    """An inspection copy of the model (see :func:`~callbacks.model_copy.inspection_copy`) to use with
    gradients enabled and random numbers seeded by ``seed``; the caller's random state is restored."""
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    with gradients_enabled(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield inspection_copy(pl_module, inputs[:1].detach().clone())


def tensorboard(trainer: pl.Trainer) -> SummaryWriter | None:
    """The SummaryWriter of the first TensorBoard logger, if the trainer has one."""
    for logger in trainer.loggers:
        experiment = getattr(logger, "experiment", None)
        if isinstance(experiment, SummaryWriter):
            return experiment
    return None


class InspectionCallback(pl.Callback):
    """Runs :meth:`inspect` on rank 0 on a copy of the model: every ``every_n_epochs`` epochs of
    ``fit`` (0: never during training), at the end of ``fit``, and at the end of ``validate``,
    ``test`` and ``predict``. Other ranks do not wait for it: it makes no collective call."""

    def __init__(
        self,
        split: str = "val",
        per_class: int | None = 1,
        size: int | None = None,
        seed: int = 0,
        every_n_epochs: int = 10,
    ) -> None:
        super().__init__()
        self.split = split
        self.per_class = per_class
        self.size = size
        self.seed = seed
        self.every_n_epochs = every_n_epochs
        self.probe: ProbeSet | None = None
        self._probe_recorded = False
        self._last_run: tuple[str, int, bool] | None = None

    tag: str

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts before any training; for ``fit`` also draw the probe set now, so that a
        ``size`` or ``per_class`` that cannot hold is an error before the first epoch, not after it."""
        check_contracts(type(self).__name__, pl_module, trainer.datamodule)
        if stage == "fit" and self.probe is None:
            self.probe = load_probe_set(trainer.datamodule, self.split, self.per_class, self.size, self.seed)

    @abstractmethod
    def inspect(
        self, model: nn.Module, probe: ProbeSet, writer: SummaryWriter, step: int, final: bool
    ) -> None:
        """Compute on ``model`` (an eval-mode copy on the trainer's device) and log to ``writer``;
        ``final`` at the end of fit, validate, test and predict."""

    def probe_set(self, trainer: pl.Trainer, writer: SummaryWriter) -> ProbeSet:
        """The probe set (drawn in ``setup`` or on first use), recorded in TensorBoard's text tab once."""
        if self.probe is None:
            self.probe = load_probe_set(trainer.datamodule, self.split, self.per_class, self.size, self.seed)
        if not self._probe_recorded:
            writer.add_text(
                f"{self.tag}/probe_set",
                f"{len(self.probe.indices)} images of {self.probe.source} ({self.split} split), "
                f"indices {self.probe.indices}",
            )
            self._probe_recorded = True
        return self.probe

    def run(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        """Inspect once per stage and step, on rank 0, without touching the training's random state."""
        key = (trainer.state.fn, trainer.global_step, final)
        if not trainer.is_global_zero or self._last_run == key:
            return
        writer = tensorboard(trainer)
        if writer is None:
            rank_zero_warn(
                f"{type(self).__name__} logs to TensorBoard; this trainer has no TensorBoardLogger"
            )
            return
        probe = self.probe_set(trainer, writer)
        inputs = Placement.of(pl_module).cast(probe.inputs)
        with inspected_copy(pl_module, inputs, self.seed) as model:
            self.inspect(model, _on_device(probe, inputs), writer, trainer.global_step, final)
        writer.flush()
        self._last_run = key

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        last_epoch = trainer.max_epochs is not None and epoch >= trainer.max_epochs  # on_fit_end covers it
        if self.every_n_epochs and epoch % self.every_n_epochs == 0 and not last_epoch:
            self.run(trainer, pl_module, final=False)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run(trainer, pl_module, final=True)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "validate":
            self.run(trainer, pl_module, final=True)

    @override
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run(trainer, pl_module, final=True)

    @override
    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.run(trainer, pl_module, final=True)


def _on_device(probe: ProbeSet, inputs: torch.Tensor) -> ProbeSet:
    return ProbeSet(
        inputs.clone().requires_grad_(),
        probe.labels.to(inputs.device),
        probe.display,
        probe.indices,
        probe.source,
        probe.class_names,
    )
