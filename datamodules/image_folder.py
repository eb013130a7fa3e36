"""Your own images: class folders as torchvision's ``ImageFolder`` reads them, with ImageNet-style
preprocessing, for any classifier (``models.nets.zoo``) and every callback."""

import difflib
from collections import Counter
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, find_classes, make_dataset
from torchvision.transforms import v2

from datamodules.image_files import ImageFilesDataset, expand_image_paths
from datamodules.resumable import ResumableData, shuffled_loader
from datamodules.subsets import subset_positions
from datamodules.transform_specs import build_transform
from lightning_app.errors import UserInputError, check_not_negative, check_positive, describe

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_CLASSES = Path(__file__).with_name("imagenet_classes.txt")  # torchvision's weights' categories
RESIZE_RATIO = 0.875  # ImageNet evaluation: resize to 256, centre-crop 224
SIZED_TRANSFORMS = ("RandomResizedCrop", "RandomCrop", "CenterCrop", "Resize")  # size: image_size by default
DEFAULT_AUGMENTATIONS = ({"RandomResizedCrop": {}}, {"RandomHorizontalFlip": {"p": 0.5}})


class ImageFolderDataset(Dataset):
    """``(image, label)`` of image files: read with torchvision's loader (PIL, RGB), then ``transform``.
    ``source`` and ``source_indices`` (positions in the folder's sorted file list) record the set."""

    def __init__(self, samples: list[tuple[str, int]], indices: list[int], transform, source: str) -> None:
        self.samples = samples
        self.indices = indices
        self.transform = transform
        self.source = source

    @property
    def source_indices(self) -> torch.Tensor:
        return torch.tensor(self.indices, dtype=torch.long)

    @property
    def labels(self) -> torch.Tensor:
        return torch.tensor([self.samples[i][1] for i in self.indices], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.samples[self.indices[index]]
        try:
            image = default_loader(path)
        except OSError as error:
            raise UserInputError(
                f"cannot read image {path} ({describe(error)}): remove or replace it"
            ) from error
        return self.transform(image), torch.tensor(label)


class ImageFolderDataModule(ResumableData, pl.LightningDataModule):
    """Images in class folders: ``root/<class>/*.jpg`` (split here, seeded and per class), or
    ``root/{train,val,test}/<class>/*.jpg`` (splits as given). Any format PIL reads; grey, palette and
    RGBA images become RGB.

    Evaluation images are resized (shorter side to ``image_size / 0.875``, ImageNet's 256 for 224) and
    centre-cropped to ``image_size``; training images go through ``augmentations`` and are then sized
    the same way. Pixels are scaled to [0, 1] and normalised by ``mean``/``std``.

    Args:
        root: the folder.
        image_size: side of the square images the model gets.
        mean: per-channel means, or "imagenet" (with ``std``: ImageNet's, what pretrained torchvision and
            timm models expect); null: pixels stay in [0, 1].
        std: per-channel standard deviations ("imagenet" or a list).
        labels: "folders" (class names = sorted folder names), "imagenet" (the 1,000 ImageNet classes in
            the order of pretrained heads; folders named by class or by index), or a text file with one
            class name per line in the model's output order.
        val_fraction: share of each class in val when ``root`` holds class folders.
        test_fraction: share of each class in test when ``root`` holds class folders.
        seed: seed of the split and of evaluation subsets.
        augmentations: torchvision.transforms.v2 transforms for training, ``[{Name: {args}}, ...]``
            (``size`` defaults to ``image_size``); ``[]`` for none. Default: RandomResizedCrop,
            RandomHorizontalFlip.
        batch_size: batch size of every loader.
        num_workers: DataLoader workers.
        predict_files: image files (paths or globs) to predict instead of the test split.
    """

    def __init__(
        self,
        root: str | Path = "data/images",
        image_size: int = 224,
        mean: Literal["imagenet"] | list[float] | None = "imagenet",
        std: Literal["imagenet"] | list[float] | None = "imagenet",
        labels: str = "folders",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        augmentations: list[dict] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        predict_files: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_positive("data", image_size=image_size, batch_size=batch_size)
        check_not_negative(
            "data", num_workers=num_workers, val_fraction=val_fraction, test_fraction=test_fraction
        )
        self.root = Path(root)
        self.image_size = image_size
        self.mean = IMAGENET_MEAN if mean == "imagenet" else None if mean is None else tuple(mean)
        self.std = IMAGENET_STD if std == "imagenet" else None if std is None else tuple(std)
        if (self.mean is None) != (self.std is None) or (self.mean and len(self.mean) != len(self.std)):
            raise UserInputError("data.mean and data.std are given together, with one value per channel")
        self.labels = labels
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        specs = DEFAULT_AUGMENTATIONS if augmentations is None else augmentations
        sized = {name: {"size": image_size} for name in SIZED_TRANSFORMS}
        kind = "a torchvision.transforms.v2"
        # built here, so a bad spec fails at start-up
        self.augmentation = [build_transform(spec, v2, v2.Transform, kind, sized) for spec in specs]
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.predict_files = predict_files
        self.class_names: list[str] = []
        self.samples: dict[str, list[tuple[str, int]]] = {}
        self.split_indices: dict[str, list[int]] = {}

    @property
    def num_classes(self) -> int:
        self.setup()
        return len(self.class_names)

    # ----- files and splits --------------------------------------------------------------------------
    def _class_index(self, folders: list[str]) -> dict[str, int]:
        """Folder name -> output index, from the folders or a labels file."""
        if self.labels == "folders":
            self.class_names = list(folders)
            return {name: index for index, name in enumerate(folders)}
        path = IMAGENET_CLASSES if self.labels == "imagenet" else Path(self.labels)
        if not path.is_file():
            raise UserInputError(f"data.labels={self.labels}: no such file (one class name per line)")
        self.class_names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        counts = Counter(self.class_names)
        mapping = {}
        for folder in folders:
            if folder.isdigit() and int(folder) < len(self.class_names):
                mapping[folder] = int(folder)
            elif counts[folder] == 1:
                mapping[folder] = self.class_names.index(folder)
            elif counts[folder] > 1:
                indices = ", ".join(str(i) for i, name in enumerate(self.class_names) if name == folder)
                raise UserInputError(
                    f"folder {self.root / folder}: {folder!r} names several classes in {path}; name the "
                    f"folder by its index ({indices})"
                )
            else:
                close = difflib.get_close_matches(folder, self.class_names, n=3)
                raise UserInputError(
                    f"folder {self.root / folder}: {folder!r} is not a class of {path}"
                    + (f" (close: {', '.join(close)})" if close else "")
                )
        return mapping

    def _scan(self, folder: Path, class_index: dict[str, int] | None = None) -> list[tuple[str, int]]:
        try:
            folders, _ = find_classes(str(folder))
            samples = make_dataset(str(folder), class_index or self._class_index(folders), IMG_EXTENSIONS)
        except (FileNotFoundError, OSError) as error:
            raise UserInputError(
                f"data.root {folder}: {describe(error)}. Expected class folders of images "
                f"({', '.join(IMG_EXTENSIONS)}), or train/, val/, test/ folders holding them"
            ) from error
        return samples

    def _seeded_split(self, samples: list[tuple[str, int]]) -> dict[str, list[int]]:
        """Per class, a seeded share in test, then in val, the rest in train."""
        generator = torch.Generator().manual_seed(self.seed)
        splits = {split: [] for split in SPLITS}
        for label in sorted({label for _, label in samples}):
            members = [i for i, (_, other) in enumerate(samples) if other == label]
            order = [members[i] for i in torch.randperm(len(members), generator=generator).tolist()]
            test, val = round(len(order) * self.test_fraction), round(len(order) * self.val_fraction)
            splits["test"] += order[:test]
            splits["val"] += order[test : test + val]
            splits["train"] += order[test + val :]
        return {split: sorted(indices) for split, indices in splits.items()}

    def setup(self, stage: str | None = None) -> None:
        if self.samples:
            return
        if not self.root.is_dir():
            raise UserInputError(f"data.root {self.root} is not a folder")
        if (self.root / "train").is_dir():
            folders, _ = find_classes(str(self.root / "train"))
            class_index = self._class_index(folders)
            for split in SPLITS:
                if (self.root / split).is_dir():
                    self.samples[split] = self._scan(self.root / split, class_index)
                    self.split_indices[split] = list(range(len(self.samples[split])))
        else:
            samples = self._scan(self.root)
            self.split_indices = self._seeded_split(samples)
            self.samples = dict.fromkeys(SPLITS, samples)
        if not self.split_indices.get("train"):
            raise UserInputError(f"data.root {self.root}: no training image")

    # ----- datasets --------------------------------------------------------------------------------
    def _tail(self) -> list[v2.Transform]:
        normalize = [v2.Normalize(self.mean, self.std)] if self.mean is not None else []
        return [v2.Resize(round(self.image_size / RESIZE_RATIO)), v2.CenterCrop(self.image_size),
                v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *normalize]  # fmt: skip

    def transform(self, augment: bool) -> v2.Compose:
        """What an image goes through: ``augmentations`` (training), resize and centre crop, [0, 1],
        normalisation."""
        steps = self._tail()
        if augment:  # after the augmentation's own crop, the resize-and-crop only fixes the size
            steps = [*self.augmentation, v2.Resize(self.image_size), *steps[1:]]
        return v2.Compose(steps)

    def dataset(self, split: str, augment: bool = True) -> ImageFolderDataset:
        """The ``split`` ('train', 'val', 'test'); ``augment`` applies to 'train' only."""
        if split not in SPLITS:
            raise UserInputError(f"split {split!r} is not one of {SPLITS}")
        self.setup()
        if split not in self.samples:
            raise UserInputError(f"data.root {self.root} has no {split}/ folder")
        transform = self.transform(augment and split == "train")
        return ImageFolderDataset(self.samples[split], self.split_indices[split], transform,
                                  f"image_folder:{self.root}:{split}")  # fmt: skip

    def evaluation_subset(
        self, split: str, size: int | None = None, per_class: int | None = None, seed: int = 0
    ) -> ImageFolderDataset:
        """A fixed subset of ``split`` without augmentation: ``size`` images drawn with ``seed``, or the
        first ``per_class`` of each class in a seeded order, or (both None) the whole split."""
        full = self.dataset(split, augment=False)
        if size is None and per_class is None:
            return full
        positions = subset_positions(full.labels, len(self.class_names), split, size, per_class, seed)
        return ImageFolderDataset(full.samples, [full.indices[i] for i in positions.tolist()], full.transform,
                                  full.source)  # fmt: skip

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model sees them, back in [0, 1] for display."""
        if self.mean is None:
            return images
        mean = torch.tensor(self.mean, device=images.device).view(-1, 1, 1)
        return images * torch.tensor(self.std, device=images.device).view(-1, 1, 1) + mean

    def from_display(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the model sees them (differentiable)."""
        if self.mean is None:
            return images
        options = {"dtype": images.dtype, "device": images.device}
        mean = torch.tensor(self.mean, **options).view(-1, 1, 1)
        return (images - mean) / torch.tensor(self.std, **options).view(-1, 1, 1)

    # ----- loaders ---------------------------------------------------------------------------------
    def train_dataloader(self) -> StatefulDataLoader:
        return shuffled_loader(self.dataset("train"), self.batch_size, self.num_workers)

    def _loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)  # fmt: skip

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("val"))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.dataset("test"))

    def predict_dataset(self) -> Dataset:
        """``predict_files`` prepared as this data's images, or the test split."""
        if not self.predict_files:
            return self.dataset("test")
        normalize = v2.Normalize(self.mean, self.std) if self.mean is not None else None
        shape = (3, self.image_size, self.image_size)
        return ImageFilesDataset(expand_image_paths(self.predict_files), shape, normalize)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset())
