"""Segmentation data generated from a seed: filled circles, squares and triangles on a noisy background,
with their pixel masks, to try segmentation networks and every callback offline."""

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from datamodules.image_classification import ImageClassificationDataset, LabelledImages
from datamodules.resumable import ResumableData, shuffled_loader
from datamodules.subsets import subset_positions
from lightning_app.errors import UserInputError, check_not_negative, check_positive

SPLITS = ("train", "val", "test")
CLASS_NAMES = ("background", "circle", "square", "triangle")
NOISE = 0.08  # standard deviation of the pixel noise, in [0, 1] intensity


def shape_mask(kind: int, rows: torch.Tensor, cols: torch.Tensor, centre: torch.Tensor, radius: float):
    """Pixels inside a circle (1), an axis-aligned square (2) or an upward triangle (3) of ``radius``."""
    dy, dx = rows - centre[0], cols - centre[1]
    if kind == 1:
        return dy**2 + dx**2 <= radius**2
    if kind == 2:
        return (dy.abs() <= radius) & (dx.abs() <= radius)
    return (dy.abs() <= radius) & (dx.abs() <= (dy + radius) / 2)


def draw_shapes(count: int, size: int, max_shapes: int, generator: torch.Generator) -> LabelledImages:
    """``count`` RGB images (uint8) with 1 to ``max_shapes`` shapes each, later ones on top; the mask holds
    each pixel's class. Colours are random, so only the shape tells the class."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    images = torch.empty(count, 3, size, size)
    masks = torch.zeros(count, size, size, dtype=torch.long)
    for index in range(count):
        image = torch.rand(3, 1, 1, generator=generator).expand(3, size, size).clone()
        for _ in range(int(torch.randint(1, max_shapes + 1, (), generator=generator))):
            kind = int(torch.randint(1, len(CLASS_NAMES), (), generator=generator))
            radius = size * (0.08 + 0.12 * float(torch.rand((), generator=generator)))
            centre = torch.rand(2, generator=generator) * size
            inside = shape_mask(kind, rows, cols, centre, radius)
            image[:, inside] = torch.rand(3, 1, generator=generator)
            masks[index][inside] = kind
        images[index] = image + NOISE * torch.randn(3, size, size, generator=generator)
    images = (images.clamp(0, 1) * 255).round().to(torch.uint8)
    return LabelledImages(images, masks, "synthetic shapes", torch.arange(count))


class SyntheticShapesDataModule(ResumableData, pl.LightningDataModule):
    """Images of random circles, squares and triangles (random colours and sizes, overlapping, pixel noise)
    with masks of 4 classes (background, circle, square, triangle), drawn from ``seed``: each split from
    its own generator, so the sizes of the others do not change it. Images are in [0, 1], not normalised.

    Args:
        image_size: height and width in pixels.
        train_size: images in the train split (val and test likewise).
        val_size: images in the val split.
        test_size: images in the test split.
        max_shapes: shapes per image are drawn from 1 to this.
        seed: seed of the drawing.
        batch_size: images per batch.
        num_workers: data-loading processes.
    """

    class_names = CLASS_NAMES
    ignore_index = 255

    def __init__(
        self,
        image_size: int = 128,
        train_size: int = 512,
        val_size: int = 64,
        test_size: int = 64,
        max_shapes: int = 3,
        seed: int = 0,
        batch_size: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        check_positive(
            "data", image_size=image_size, train_size=train_size, val_size=val_size, test_size=test_size,
            max_shapes=max_shapes, batch_size=batch_size,
        )  # fmt: skip
        check_not_negative("data", num_workers=num_workers)
        if image_size < 16:
            raise UserInputError(f"data.image_size={image_size}: shapes need 16 pixels or more")
        self.image_size = image_size
        self.sizes = {"train": train_size, "val": val_size, "test": test_size}
        self.max_shapes = max_shapes
        self.seed = seed
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.splits: dict[str, LabelledImages] = {}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        for position, split in enumerate(SPLITS):
            if split not in self.splits:
                generator = torch.Generator().manual_seed(self.seed * len(SPLITS) + position)
                drawn = draw_shapes(self.sizes[split], self.image_size, self.max_shapes, generator)
                drawn.source = f"synthetic shapes, {split}, seed {self.seed}"
                self.splits[split] = drawn

    def dataset(self, split: str) -> ImageClassificationDataset:
        """``(image (3, H, W) in [0, 1], mask (H, W) long)`` of ``split`` ('train', 'val', 'test')."""
        if split not in SPLITS:
            raise UserInputError(f"split {split!r} is not one of {SPLITS}")
        self.setup()
        return ImageClassificationDataset(self.splits[split])

    def evaluation_subset(
        self, split: str, size: int | None = None, per_class: int | None = None, seed: int = 0
    ) -> ImageClassificationDataset:
        """``size`` images of ``split`` drawn with ``seed`` (all when None); ``per_class`` does not apply to
        segmentation."""
        if per_class is not None:
            raise UserInputError("per_class subsets are for classification; give a size for segmentation")
        full = self.dataset(split)
        if size is None:
            return full
        positions = subset_positions(full.labels, self.num_classes, split, size, None, seed)
        return ImageClassificationDataset(full.data.select(positions))

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """The images as they are: already in [0, 1]."""
        return images

    def from_display(self, images: torch.Tensor) -> torch.Tensor:
        """The images as they are: the model sees [0, 1]."""
        return images

    def train_dataloader(self) -> StatefulDataLoader:
        return shuffled_loader(self.dataset("train"), self.batch_size, self.num_workers)

    def _loader(self, split: str) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")
