"""What every LightningModule of the project does the same way: check its class count against the data,
and build the optimizer and the optional LR scheduler from the YAML."""

import lightning.pytorch as pl
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from lightning_app.errors import UserInputError


def check_data_classes(module: pl.LightningModule) -> None:
    """Stop with a clear error when the data module names a different number of classes than the model."""
    data_classes = getattr(module.trainer.datamodule, "num_classes", module.num_classes)
    if data_classes != module.num_classes:
        raise UserInputError(
            f"model.num_classes={module.num_classes} but the data has {data_classes} classes"
        )


def optimizers_and_scheduler(
    module: pl.LightningModule, optimizer: OptimizerCallable, lr_scheduler: LRSchedulerCallable | None
):
    """``configure_optimizers``' answer: the optimizer, and the scheduler stepped every epoch
    (ReduceLROnPlateau watches ``val/loss``)."""
    built = optimizer(module.parameters())
    if lr_scheduler is None:
        return built
    scheduler = lr_scheduler(built)
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler, "monitor": "val/loss"}}
