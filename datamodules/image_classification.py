"""What the MNIST and CIFAR-10 DataModules share: in-memory uint8 images, a seeded train/val split,
scaling to [0, 1] with optional normalisation, and fixed, index-recorded evaluation subsets."""

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision.transforms import v2

from datamodules.image_files import ImageFilesDataset, expand_image_paths
from datamodules.resumable import ResumableData, shuffled_loader
from datamodules.subsets import subset_positions
from lightning_app.errors import UserInputError, check_not_negative, check_positive

SPLITS = ("train", "val", "test")


@dataclass
class LabelledImages:
    """Images (N, C, H, W) as uint8, their labels, and the index of each in the file it was read from."""

    images: torch.Tensor
    labels: torch.Tensor
    source: str
    source_indices: torch.Tensor

    def select(self, positions: torch.Tensor) -> "LabelledImages":
        return LabelledImages(
            self.images[positions], self.labels[positions], self.source, self.source_indices[positions]
        )


class ImageClassificationDataset(Dataset):
    """Yields ``(image, label)``: the image as float in [0, 1], then ``transform`` (augmentation,
    normalisation). ``source`` and ``source_indices`` record exactly which images it holds."""

    def __init__(self, data: LabelledImages, transform: Callable | None = None) -> None:
        self.data = data
        self.transform = transform

    @property
    def source(self) -> str:
        return self.data.source

    @property
    def source_indices(self) -> torch.Tensor:
        return self.data.source_indices

    @property
    def labels(self) -> torch.Tensor:
        return self.data.labels

    def __len__(self) -> int:
        return len(self.data.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.data.images[index].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.data.labels[index]


class ImageClassificationDataModule(ResumableData, pl.LightningDataModule, ABC):
    """Base of the image-classification DataModules; subclasses read the files.

    Subclasses implement :meth:`load_train_pool` (images the train and val splits are drawn from) and
    :meth:`load_test`, and describe their files: ``folder`` (below ``data_dir``), ``files``, the
    torchvision class that downloads them, and how to provide them offline.
    """

    name: str
    image_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    folder: str
    files: tuple[str, ...]
    torchvision_dataset: Callable
    offline_hint: str

    def __init__(
        self,
        data_dir: str | Path = "data",
        batch_size: int = 250,
        val_size: int = 5000,
        seed: int = 0,
        normalize: bool = False,
        download: bool = False,
        num_workers: int = 0,
        predict_files: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_positive("data", batch_size=batch_size, val_size=val_size)
        check_not_negative("data", num_workers=num_workers)
        self.predict_files = predict_files
        self.data_dir = Path(data_dir)
        self.batch_size = batch_size
        self.val_size = val_size
        self.seed = seed
        self.normalize = normalize
        self.download = download
        self.num_workers = num_workers
        self.splits: dict[str, LabelledImages] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @abstractmethod
    def load_train_pool(self) -> LabelledImages:
        """The labelled images the train and val splits are drawn from."""

    @abstractmethod
    def load_test(self) -> LabelledImages:
        """The test split."""

    @property
    def files_dir(self) -> Path:
        return self.data_dir / self.folder

    def train_transform(self) -> Callable | None:
        """Augmentation for the train split; none by default."""
        return None

    def prepare_data(self) -> None:
        if not self.download:
            return
        try:
            self.torchvision_dataset(self.data_dir, train=True, download=True)
        except Exception as error:
            raise UserInputError(
                f"could not download {self.name} into {self.files_dir} ({str(error).splitlines()[0]}). "
                f"{self._how_to_provide()}"
            ) from error

    def check_files(self) -> None:
        """Raise a :class:`UserInputError` naming the folder and the files when any file is missing."""
        missing = [name for name in self.files if not (self.files_dir / name).is_file()]
        if missing:
            raise UserInputError(
                f"{self.name} files missing in {self.files_dir}: {', '.join(missing)}. "
                f"{self._how_to_provide()}"
            )

    def _how_to_provide(self) -> str:
        return (
            f"Expected torchvision's layout: {self.files_dir}/{{{', '.join(self.files)}}}. "
            f"Set data.download=true on a machine with network access, or {self.offline_hint}"
        )

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        pool = self.load_train_pool()
        if not 0 < self.val_size < len(pool.labels):
            raise UserInputError(
                f"data.val_size={self.val_size} must be between 1 and {len(pool.labels) - 1}: "
                f"{pool.source} holds {len(pool.labels)} labelled images for train and val"
            )
        order = torch.randperm(len(pool.labels), generator=torch.Generator().manual_seed(self.seed))
        self.splits = {
            "train": pool.select(order[self.val_size :].sort().values),
            "val": pool.select(order[: self.val_size].sort().values),
            "test": self.load_test(),
        }

    def dataset(self, split: str, augment: bool = True) -> ImageClassificationDataset:
        """The ``split`` ('train', 'val' or 'test') as a dataset; ``augment`` applies to 'train' only."""
        if split not in SPLITS:
            raise UserInputError(f"split {split!r} is not one of {SPLITS}")
        self.setup()
        augmentation = self.train_transform() if augment and split == "train" else None
        steps = [augmentation] if augmentation is not None else []
        if self.normalize:
            steps.append(v2.Normalize(self.mean, self.std))
        return ImageClassificationDataset(self.splits[split], v2.Compose(steps) if steps else None)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model sees them, back in [0, 1] for display (undoes ``normalize``)."""
        if not self.normalize:
            return images
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, device=images.device).view(shape)
        return images * torch.tensor(self.std, device=images.device).view(shape) + mean

    def from_display(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the model sees them (applies ``normalize``; differentiable)."""
        if not self.normalize:
            return images
        shape = (-1, 1, 1)
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(shape)
        return (images - mean) / torch.tensor(self.std, dtype=images.dtype, device=images.device).view(shape)

    def evaluation_subset(
        self,
        split: str,
        size: int | None = None,
        per_class: int | None = None,
        seed: int = 0,
    ) -> ImageClassificationDataset:
        """A fixed, deterministic subset of ``split`` without augmentation, for callbacks to evaluate on.

        Args:
            split: 'train', 'val' or 'test'.
            size: number of images drawn at random (seeded); ``None`` takes the whole split.
            per_class: instead of ``size``, the first ``per_class`` images of each class in a seeded order.
            seed: seed of the draw.

        The returned dataset's ``source_indices`` are the indices of its images in the source file.
        """
        full = self.dataset(split, augment=False)
        if size is None and per_class is None:
            return full
        positions = subset_positions(full.labels, self.num_classes, split, size, per_class, seed)
        return ImageClassificationDataset(full.data.select(positions), full.transform)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> StatefulDataLoader:
        return shuffled_loader(self.dataset("train"), self.batch_size, self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataset(self) -> Dataset:
        """``predict_files`` prepared as this data's images (size, channels, normalisation), or the
        test split when no files are given."""
        if not self.predict_files:
            return self.dataset("test")
        normalize = v2.Normalize(self.mean, self.std) if self.normalize else None
        return ImageFilesDataset(expand_image_paths(self.predict_files), self.image_shape, normalize)

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(self.predict_dataset(), batch_size=self.batch_size, num_workers=self.num_workers)
