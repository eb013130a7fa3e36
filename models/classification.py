"""The LightningModule that trains any classification network with cross-entropy."""

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_app.errors import UserInputError
from models.training_setup import check_data_classes, optimizers_and_scheduler


class ClassificationModule(pl.LightningModule):
    """Trains ``net`` with cross-entropy; logs loss and top-1 (and top-5) accuracy per epoch.

    The protocol callbacks rely on: ``forward(x)`` returns logits of shape (N, num_classes), and
    ``criterion(logits, y)`` is the unregularised loss, a mean over examples.

    Args:
        net: the network, e.g. ``{class_path: models.nets.fc.FullyConnected}`` in the YAML.
        num_classes: number of classes; must match the data and the network's output.
        optimizer: the optimizer class and its arguments (``class_path: torch.optim.SGD``, ``init_args``).
        lr_scheduler: an optional LR scheduler, stepped every epoch (ReduceLROnPlateau watches val/loss).

    Logged: ``train/loss`` (per step and epoch), ``{train,val,test}/loss``, ``/acc`` and, with five or
    more classes, ``/acc_top5``. ``predict_step`` returns class probabilities.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = net
        self.num_classes = num_classes
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.criterion = nn.CrossEntropyLoss()
        metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes >= 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        metrics = MetricCollection(metrics)
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")

    def setup(self, stage: str) -> None:
        check_data_classes(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        if logits.shape[-1] != self.num_classes:
            raise UserInputError(
                f"the network outputs {logits.shape[-1]} logits but model.num_classes={self.num_classes}"
            )
        loss = self.criterion(logits, y)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(logits, y)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, sync_dist=not on_step)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=-1)

    def configure_optimizers(self):
        return optimizers_and_scheduler(self, self.optimizer, self.lr_scheduler)
