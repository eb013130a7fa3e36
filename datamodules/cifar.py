"""CIFAR-10: torchvision's python-pickle batches, optional crop-and-flip augmentation."""

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision.datasets import CIFAR10
from torchvision.transforms import v2

from datamodules.image_classification import ImageClassificationDataModule, LabelledImages
from lightning_app.errors import UserInputError, describe

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{index}" for index in range(1, 6))
TEST_FILES = ("test_batch",)


class CIFAR10DataModule(ImageClassificationDataModule):
    """CIFAR-10, 3x32x32, 10 classes, pixels scaled to [0, 1].

    Reads torchvision's layout, ``<data_dir>/cifar-10-batches-py/`` with ``data_batch_1`` ... ``data_batch_5``
    and ``test_batch``. The 50,000 training images are split into train and val (45,000/5,000 by default,
    as the LCA reference); the 10,000 official test images form the test split.

    Args:
        data_dir: folder holding ``cifar-10-batches-py/``.
        batch_size: examples per batch.
        val_size: images held out for validation.
        seed: seed of the train/val split.
        normalize: subtract CIFAR-10's per-channel mean and divide by its std after scaling to [0, 1].
        augment: random crop with ``crop_padding`` zero padding and random horizontal flip on the train split.
        crop_padding: padding in pixels of the random crop.
        download: fetch the data set into ``data_dir`` in ``prepare_data``.
        num_workers: DataLoader worker processes.
        predict_files: image files (paths or glob patterns) that `predict` reads instead of the test
            split, resized to the data's image size and normalised as its images (the explain command).
    """

    name = "CIFAR-10"
    image_shape = (3, 32, 32)
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    class_names = (
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
    )  # fmt: skip
    folder = FOLDER
    files = (*TRAIN_FILES, *TEST_FILES)
    torchvision_dataset = CIFAR10
    offline_hint = "extract cifar-10-python.tar.gz (the folder cifar-10-batches-py) into data_dir."

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 250,
        val_size: int = 5000,
        seed: int = 0,
        normalize: bool = False,
        augment: bool = False,
        crop_padding: int = 4,
        download: bool = False,
        num_workers: int = 0,
        predict_files: list[str] | None = None,
    ) -> None:
        super().__init__(
            data_dir, batch_size, val_size, seed, normalize, download, num_workers, predict_files
        )
        self.augment = augment
        self.crop_padding = crop_padding

    def train_transform(self) -> Callable | None:
        if not self.augment:
            return None
        return v2.Compose([v2.RandomCrop(32, padding=self.crop_padding), v2.RandomHorizontalFlip()])

    def load_train_pool(self) -> LabelledImages:
        return self._read_batches(TRAIN_FILES)

    def load_test(self) -> LabelledImages:
        return self._read_batches(TEST_FILES)

    def _read_batches(self, names: tuple[str, ...]) -> LabelledImages:
        self.check_files()
        batches = [_read_batch(self.files_dir / name) for name in names]
        images = np.concatenate([batch[0] for batch in batches])
        labels = np.concatenate([batch[1] for batch in batches])
        source = str(self.files_dir / names[0]) if len(names) == 1 else f"{self.files_dir}/data_batch_*"
        return LabelledImages(
            torch.from_numpy(images), torch.from_numpy(labels), source, torch.arange(len(labels))
        )


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 pickle batch as (uint8 images N x 3 x 32 x 32, int64 labels)."""
    try:
        with open(path, "rb") as file:
            entry = pickle.load(file, encoding="latin1")
        images = np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(entry["labels"], dtype=np.int64)
    except Exception as error:
        raise UserInputError(
            f"{path} is not a valid CIFAR-10 batch: expected a pickled dict with 'data' "
            f"(N x 3072 uint8) and 'labels' ({describe(error)})"
        ) from error
    if len(images) != len(labels) or labels.min() < 0 or labels.max() > 9:
        raise UserInputError(f"{path} holds {len(images)} images and {len(labels)} labels (0-9 expected)")
    return images, labels
