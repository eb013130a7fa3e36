"""Synthetic image classification data of any size, generated per item from its index: nothing is held in
memory, so a set can be made larger than a memory cap. Implements the callbacks' data-module contract."""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

SPLITS = {"train": 0, "val": 1, "test": 2}


class LazyImages(Dataset):
    """``count`` images of ``shape``, item i drawn from a generator seeded with (split, i); label i % 10."""

    def __init__(self, count: int, shape: tuple[int, ...], split: str, indices: torch.Tensor | None = None):
        self.shape = shape
        self.split = split
        self.source = f"synthetic:{split}"
        self.source_indices = torch.arange(count) if indices is None else indices

    def __len__(self) -> int:
        return len(self.source_indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        index = int(self.source_indices[position])
        generator = torch.Generator().manual_seed(SPLITS[self.split] * 10**9 + index)
        return torch.rand(self.shape, generator=generator), torch.tensor(index % 10)


class SyntheticImages(pl.LightningDataModule):
    """Train/val/test splits of :class:`LazyImages`."""

    class_names = tuple(str(c) for c in range(10))
    num_classes = 10

    def __init__(self, train: int, val: int, shape: tuple[int, ...], batch_size: int = 100) -> None:
        super().__init__()
        self.sizes = {"train": train, "val": val, "test": val}
        self.shape = shape
        self.batch_size = batch_size

    def evaluation_subset(
        self, split: str, size: int | None = None, per_class: int | None = None, seed: int = 0
    ):
        count = self.sizes[split]
        indices = (
            None
            if size is None
            else torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:size]
        )
        return LazyImages(count, self.shape, split, None if indices is None else indices.sort().values)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return images

    def train_dataloader(self) -> DataLoader:
        return DataLoader(LazyImages(self.sizes["train"], self.shape, "train"), batch_size=self.batch_size)
