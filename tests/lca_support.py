"""Test-only pieces for LCA runs: data in a fixed order, and a process that dies mid-run."""

import os

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from datamodules.mnist import MNISTDataModule


class UnshuffledMNIST(MNISTDataModule):
    """MNIST whose train batches come in file order, so that a resumed run replays the same steps and a
    run on 2 processes (``use_distributed_sampler=false``) sees, together, the batches of one process."""

    def train_dataloader(self) -> DataLoader:
        dataset = self.dataset("train")
        sampler = DistributedSampler(dataset, shuffle=False) if torch.distributed.is_initialized() else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler)


class ExitAtStep(pl.Callback):
    """Ends the process abruptly (no clean-up, like a killed job) after optimizer step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step >= self.step:
            os._exit(3)
