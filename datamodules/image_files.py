"""User image files (PNG, JPEG, ...) prepared exactly as a DataModule prepares its own images."""

import glob
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from lightning_app.errors import UserInputError

NO_LABEL = -1


def expand_image_paths(patterns: list[str]) -> list[Path]:
    """Files named by ``patterns`` (paths or glob patterns), sorted per pattern; an error for a pattern
    that matches nothing."""
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern)))
        if not matches:
            raise UserInputError(f"data.predict_files: no file matches {pattern!r}")
        paths += [Path(match) for match in matches]
    return paths


def read_image(path: Path, shape: tuple[int, int, int]) -> torch.Tensor:
    """The image at ``path`` as float (C, H, W) in [0, 1]: grey or RGB as ``shape`` has 1 or 3
    channels, resized (bilinear, antialiased) to its height and width."""
    channels, height, width = shape
    try:
        with Image.open(path) as image:
            image = image.convert("L" if channels == 1 else "RGB")
            if image.size != (width, height):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError) as error:
        raise UserInputError(
            f"cannot read image {path}: {error}; give PNG, JPEG or another format PIL reads"
        ) from error
    return torch.from_numpy(pixels).reshape(height, width, channels).permute(2, 0, 1).contiguous()


class ImageFilesDataset(Dataset):
    """Yields ``(image, -1)`` per file: read, resized to ``shape``, then ``transform`` (normalisation).
    ``paths`` says which file each index is."""

    def __init__(
        self, paths: list[Path], shape: tuple[int, int, int], transform: Callable | None = None
    ) -> None:
        self.paths = paths
        self.shape = shape
        self.transform = transform
        for path in paths:
            read_image(path, shape)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = read_image(self.paths[index], self.shape)
        if self.transform is not None:
            image = self.transform(image)
        return image, NO_LABEL
