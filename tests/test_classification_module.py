from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from datamodules.mnist import MNISTDataModule
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError
from models.classification import ClassificationModule
from models.nets.fc import FullyConnected

QUICKSTART = str(Path(__file__).parents[1] / "configs" / "mnist_fc_sample.yaml")


class ConstantLogits(nn.Module):
    """Ranks the classes 0 > 1 > 2 > ... for every input."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.logits = nn.Parameter(-torch.arange(num_classes, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)


def quiet_trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, **kwargs,
    )  # fmt: skip


def test_validation_accuracy_top1_and_top5_are_the_fractions_of_matching_labels():
    data = MNISTDataModule(source="sample", batch_size=64)
    model = ClassificationModule(ConstantLogits())
    metrics = quiet_trainer().validate(model, datamodule=data, verbose=False)[0]
    labels = data.dataset("val").labels
    assert metrics["val/acc"] == pytest.approx((labels == 0).float().mean().item())
    assert metrics["val/acc_top5"] == pytest.approx((labels < 5).float().mean().item())
    expected_loss = nn.functional.cross_entropy(model(labels.float()), labels)
    assert metrics["val/loss"] == pytest.approx(expected_loss.item(), rel=1e-5)


def test_fewer_than_five_classes_log_no_top5():
    model = ClassificationModule(ConstantLogits(3), num_classes=3)
    assert list(model.val_metrics.keys()) == ["val/acc"]


def test_training_lowers_the_loss_and_logs_per_epoch_metrics():
    data = MNISTDataModule(source="sample", batch_size=100)
    model = ClassificationModule(
        FullyConnected(), optimizer=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)
    )
    before = quiet_trainer().validate(model, datamodule=data, verbose=False)[0]["val/loss"]
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=20)
    trainer.fit(model, datamodule=data)
    after = trainer.callback_metrics
    assert after["val/loss"] < before / 2
    assert {"train/loss_step", "train/loss_epoch", "train/acc", "train/acc_top5", "val/acc"} <= set(after)


def test_predict_step_returns_class_probabilities():
    model = ClassificationModule(FullyConnected())
    probabilities = model.predict_step((torch.rand(4, 1, 28, 28), torch.zeros(4)), 0)
    assert probabilities.shape == (4, 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(4))
    assert (probabilities >= 0).all()


def test_num_classes_that_differs_from_the_data_is_refused():
    model = ClassificationModule(FullyConnected(num_classes=5), num_classes=5)
    with pytest.raises(UserInputError, match="model.num_classes=5 but the data has 10 classes"):
        quiet_trainer(max_steps=1).fit(model, datamodule=MNISTDataModule(source="sample"))


def test_network_output_that_differs_from_num_classes_is_refused():
    model = ClassificationModule(FullyConnected(num_classes=7), num_classes=10)
    with pytest.raises(UserInputError, match="outputs 7 logits but model.num_classes=10"):
        quiet_trainer(max_steps=1).fit(model, datamodule=MNISTDataModule(source="sample"))


def test_optimizer_and_lr_scheduler_come_from_the_yaml():
    cli = cli_main(
        [
            "--config", QUICKSTART,
            "--model.optimizer.init_args.lr=0.2",
            "--model.lr_scheduler.class_path=torch.optim.lr_scheduler.StepLR",
            "--model.lr_scheduler.init_args.step_size=1",
            "--model.lr_scheduler.init_args.gamma=0.5",
        ],
        run=False,
    )  # fmt: skip
    configured = cli.model.configure_optimizers()
    optimizer, scheduler = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1)
