"""The LightningModule that trains any classification network with cross-entropy."""

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from lightning_app.errors import UserInputError
from models.supervised import SupervisedModule


class ClassificationModule(SupervisedModule):
    """Trains ``net`` with cross-entropy; logs loss and top-1 (and top-5) accuracy per epoch.

    The protocol callbacks rely on: ``forward(x)`` returns logits of shape (N, num_classes), and
    ``criterion(logits, y)`` is the unregularised loss, a mean over examples.

    Args:
        net: the network, e.g. ``{class_path: models.nets.fc.FullyConnected}`` in the YAML.
        num_classes: number of classes; must match the data and the network's output.
        optimizer: the optimizer class and its arguments (``class_path: torch.optim.SGD``, ``init_args``).
        lr_scheduler: an optional LR scheduler, stepped every epoch (ReduceLROnPlateau watches val/loss).
        param_groups: per-layer optimizer settings, e.g. ``[{params: "net.fc3.*", lr: 0.0}]`` (see
            :mod:`models.param_groups`).

    Logged: ``train/loss`` (per step and epoch), ``{train,val,test}/loss``, ``/acc`` and, with five or
    more classes, ``/acc_top5``. ``predict_step`` returns class probabilities.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 10,
        optimizer: OptimizerCallable = torch.optim.SGD,
        lr_scheduler: LRSchedulerCallable | None = None,
        param_groups: list[dict] | None = None,
    ) -> None:
        metrics = {"acc": MulticlassAccuracy(num_classes, average="micro")}
        if num_classes >= 5:
            metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        super().__init__(net, num_classes, optimizer, lr_scheduler, MetricCollection(metrics), param_groups)
        self.save_hyperparameters()
        self.criterion = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def step_outputs(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str):
        x, y = batch
        logits = self(x)
        if logits.shape[-1] != self.num_classes:
            raise UserInputError(
                f"the network outputs {logits.shape[-1]} logits but model.num_classes={self.num_classes}"
            )
        return self.criterion(logits, y), logits, y

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=-1)
