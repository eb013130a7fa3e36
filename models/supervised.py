"""What the classification and segmentation modules share: the network, the class count checked against
the data, train/val/test steps that log the loss and torchmetrics, and the optimizer from the YAML."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MetricCollection

from lightning_app.errors import UserInputError
from models.param_groups import check_group_settings, parameter_groups


class SupervisedModule(pl.LightningModule):
    """Base of the modules: subclasses define ``criterion``, ``forward`` and :meth:`step_outputs`."""

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerCallable,
        lr_scheduler: LRSchedulerCallable | None,
        metrics: MetricCollection,
        param_groups: list[dict] | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.num_classes = num_classes
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.param_groups = param_groups or []
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def setup(self, stage: str) -> None:
        data_classes = getattr(self.trainer.datamodule, "num_classes", self.num_classes)
        if data_classes != self.num_classes:
            raise UserInputError(
                f"model.num_classes={self.num_classes} but the data has {data_classes} classes"
            )

    def step_outputs(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The loss of ``batch`` in ``stage``, and the predictions and targets for its metrics."""
        raise NotImplementedError

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        loss, predictions, targets = self.step_outputs(batch, stage)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(predictions, targets)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_optimizers(self):
        """The optimizer (with ``param_groups``, see :mod:`models.param_groups`), and the scheduler stepped
        every epoch (ReduceLROnPlateau watches ``val/loss``)."""
        groups = parameter_groups(list(self.named_parameters()), self.param_groups)
        optimizer = built("optimizer", lambda: self.optimizer(groups))
        check_group_settings(optimizer, self.param_groups)
        if self.lr_scheduler is None:
            return optimizer
        scheduler = built("lr_scheduler", lambda: self.lr_scheduler(optimizer))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}


def built(key: str, build):
    """``build()``, a setting torch refuses (``lr: -1.0``) in one line naming ``model.init_args.<key>``."""
    try:
        return build()
    except (ValueError, TypeError) as error:
        raise UserInputError(f"model.init_args.{key}: {error}; fix its init_args") from error
