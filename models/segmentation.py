"""The LightningModule that trains any segmentation network on integer masks."""

from typing import Any

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lightning_app.errors import UserInputError
from models.segmentation_losses import WeightedLoss, build_loss
from models.segmentation_metrics import class_iou_metrics, pixel_metrics, probabilities
from models.supervised import SupervisedModule

DEFAULT_LOSS = [{"name": "bce"}]


def checked_logits(logits: torch.Tensor, num_classes: int, channels: int) -> torch.Tensor:
    """``logits`` if shaped (N, channels, H, W), else an error saying how to size the network."""
    if logits.ndim != 4 or logits.shape[1] != channels:
        raise UserInputError(
            f"the network outputs shape {tuple(logits.shape)}, but model.num_classes={num_classes} "
            f"needs (N, {channels}, H, W) logits: set the network's classes to {channels}"
        )
    return logits


torch.fx.wrap("checked_logits")  # a single call in traced graphs (receptive fields), not traced into


class SegmentationModule(SupervisedModule):
    """Trains ``net`` on batches ``(image (N, C, H, W), mask (N, H, W) long)``.

    Binary masks (``num_classes: 2``, background and one class) take a network with one output channel
    (sigmoid); more classes take ``num_classes`` channels (softmax). Pixels labelled ``ignore_index`` (the
    DataModule's: no data, padding) count in no loss and no metric.

    The protocol callbacks rely on: ``forward(x)`` returns logits (N, channels, H, W); ``criterion`` is the
    loss (with a single cross-entropy term, an element-wise-capable torch loss, as LCA needs).

    Args:
        net: the network, e.g. ``{class_path: models.nets.smp_net.SMPNet}`` or
            ``models.nets.linknet_selim.LinkNetSelim``.
        num_classes: classes of the masks, background included (2 for binary).
        loss: loss terms and weights, e.g. ``[{name: bce, weight: 0.5}, {name: dice, weight: 0.5}]``; see
            :mod:`models.segmentation_losses` for the names and Lim et al.'s Keras settings. Default BCE.
        threshold: probability above which a pixel is positive, for the thresholded metrics.
        ignore_index: mask value ignored; must equal the DataModule's.
        optimizer: the optimizer class and its arguments (default Adam, lr 1e-3).
        lr_scheduler: an optional LR scheduler, stepped every epoch.
        param_groups: per-layer optimizer settings, e.g. ``[{params: "net.decoders.*", lr: 1.0e-3}]``
            (see :mod:`models.param_groups`).

    Logged per epoch for train/val/test: ``loss`` (and each term of a weighted loss), ``soft_iou`` (Lim
    et al.'s metric: probabilities, no threshold, per batch, averaged), ``pixel_accuracy``, ``iou``,
    ``dice``, ``precision``, ``recall`` at ``threshold`` (binary: of the positive class). Multi-class masks
    take the class with the highest probability and log macro averages (``iou`` is the mean IoU), the mean
    per-class accuracy ``mean_accuracy`` and each class's IoU as ``iou_<class>``, named by the data's
    ``class_names``. ``predict_step`` returns probabilities (N, 1 or classes, H, W).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int = 2,
        loss: list[dict[str, Any]] | None = None,
        threshold: float = 0.5,
        ignore_index: int = 255,
        optimizer: OptimizerCallable = torch.optim.Adam,
        lr_scheduler: LRSchedulerCallable | None = None,
        param_groups: list[dict] | None = None,
    ) -> None:
        if num_classes < 2:
            raise UserInputError(f"model.num_classes={num_classes}: masks have 2 or more classes")
        metrics = pixel_metrics(num_classes, threshold, ignore_index)
        super().__init__(net, num_classes, optimizer, lr_scheduler, metrics, param_groups)
        self.save_hyperparameters()
        self.binary = num_classes == 2
        self.ignore_index = ignore_index
        self.criterion = build_loss(DEFAULT_LOSS if loss is None else loss, self.binary, ignore_index)

    @property
    def output_channels(self) -> int:
        return 1 if self.binary else self.num_classes

    def setup(self, stage: str) -> None:
        super().setup(stage)
        data_ignore = getattr(self.trainer.datamodule, "ignore_index", self.ignore_index)
        if data_ignore != self.ignore_index:
            raise UserInputError(
                f"model.ignore_index={self.ignore_index} but the data marks ignored pixels with {data_ignore}"
            )
        if not self.binary:
            self._add_class_metrics()

    def _add_class_metrics(self) -> None:
        """``iou_<class>`` for each class, once, named by the data module's class names when it has them."""
        names = getattr(self.trainer.datamodule, "class_names", None) or [
            str(i) for i in range(self.num_classes)
        ]
        for metrics in (self.train_metrics, self.val_metrics, self.test_metrics):
            if not any(key.startswith(f"{metrics.prefix}iou_") for key in metrics):
                metrics.add_metrics(class_iou_metrics(list(names), self.ignore_index))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checked_logits(self.net(x), self.num_classes, self.output_channels)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Probabilities for the metrics: of the positive class (N, H, W) when binary, else (N, C, H, W)."""
        scores = probabilities(logits.float())
        return scores[:, 0] if self.binary else scores

    def step_outputs(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str):
        images, masks = batch
        logits = self(images)
        loss = self.criterion(logits, masks)
        if isinstance(self.criterion, WeightedLoss):
            for name, value in self.criterion.last_terms.items():
                self.log(f"{stage}/loss_{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        return loss, self.scores(logits.detach()), masks

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return probabilities(self(batch[0]).float())
