"""User image files (PNG, JPEG, ...) prepared exactly as a DataModule prepares its own images."""

import glob
import os
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from lightning_app.errors import UserInputError

NO_LABEL = -1


def expand_image_paths(patterns: list[str]) -> list[Path]:
    """Files named by ``patterns`` (paths or glob patterns), sorted per pattern, each file once (a warning
    counts the repeats); an error for a pattern that matches nothing."""
    paths: dict[Path, Path] = {}
    repeated = 0
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern)))
        if not matches:
            raise UserInputError(f"data.predict_files: no file matches {pattern!r}")
        for match in matches:
            repeated += Path(match).resolve() in paths
            paths.setdefault(Path(match).resolve(), Path(match))
    if repeated:
        warnings.warn(
            f"data.predict_files names {repeated} files more than once; each is read once", stacklevel=2
        )
    return list(paths.values())


def output_names(paths: list[Path]) -> list[str]:
    """A name per file for the outputs made from it, unique and the same for the same files: its stem
    when no other file shares that stem, else its path below the files' common folder, with '/' written
    '__' and the suffix kept (``a/digit.png`` and ``b/digit.png`` give ``a__digit.png``, ``b__digit.png``)."""
    stems = Counter(path.stem for path in paths)
    resolved = [path.resolve() for path in paths]
    common = Path(os.path.commonpath([path.parent for path in resolved])) if paths else Path()
    return [
        path.stem if stems[path.stem] == 1 else "__".join(full.relative_to(common).parts)
        for path, full in zip(paths, resolved, strict=True)
    ]


def read_image(path: Path, shape: tuple[int, int, int]) -> torch.Tensor:
    """The image at ``path`` as float (C, H, W) in [0, 1]: grey or RGB as ``shape`` has 1 or 3
    channels, resized (bilinear, antialiased) to its height and width. 16-bit images are scaled by
    their full range, not clipped at 255; transparent images are composited over white."""
    channels, height, width = shape
    try:
        with Image.open(path) as image:
            planes = [
                plane.resize((width, height), Image.Resampling.BILINEAR)
                if plane.size != (width, height)
                else plane
                for plane in _unit_planes(image, path, channels)
            ]
            pixels = np.stack([np.asarray(plane, dtype=np.float32) for plane in planes], axis=-1)
    except Image.DecompressionBombError as error:
        raise UserInputError(
            f"{path} has more pixels than PIL's decompression-bomb limit ({error}); if you trust the file, "
            "raise the limit with PIL.Image.MAX_IMAGE_PIXELS, or make the image smaller"
        ) from error
    except (OSError, UnidentifiedImageError) as error:
        raise UserInputError(
            f"cannot read image {path}: {error}; give PNG, JPEG or another format PIL reads"
        ) from error
    return torch.from_numpy(pixels).permute(2, 0, 1).contiguous()


def _unit_planes(image: Image.Image, path: Path, channels: int) -> list[Image.Image]:
    """The image's grey plane or its red, green and blue planes, as float ('F') images in [0, 1]."""
    if image.mode.startswith("I;16"):
        grey = np.asarray(image, dtype=np.float32) / 65535.0
        return [Image.fromarray(grey, mode="F")] * channels
    if image.mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float32)
        scale = 65535.0 if image.mode == "I" else 1.0
        if values.min() < 0 or values.max() > scale:
            raise UserInputError(
                f"{path}: {image.mode}-mode pixels from {values.min():g} to {values.max():g} lie outside "
                f"0..{scale:g}; save it as 8- or 16-bit PNG"
            )
        return [Image.fromarray(values / scale, mode="F")] * channels
    if "A" in image.getbands() or "transparency" in image.info:
        image = _over_white(image.convert("RGBA"), path)
    converted = image.convert("L" if channels == 1 else "RGB")
    return [
        Image.fromarray(np.asarray(plane, dtype=np.float32) / 255.0, mode="F") for plane in converted.split()
    ]


def _over_white(image: Image.Image, path: Path) -> Image.Image:
    """A transparent image as seen over a white page; a warning when only its alpha holds content."""
    rgba = np.asarray(image)
    if np.ptp(rgba[..., :3]) == 0 and np.ptp(rgba[..., 3]) > 0:
        warnings.warn(
            f"{path}: its content is in the alpha channel only (the colours are one value); it is read "
            "composited over white",
            stacklevel=4,
        )
    return Image.alpha_composite(Image.new("RGBA", image.size, "white"), image)


class ImageFilesDataset(Dataset):
    """Yields ``(image, -1)`` per file: read, resized to ``shape``, then ``transform`` (normalisation).
    ``paths`` says which file each index is, ``names`` what its outputs are called (``output_names``)."""

    def __init__(
        self, paths: list[Path], shape: tuple[int, int, int], transform: Callable | None = None
    ) -> None:
        self.paths = paths
        self.names = output_names(paths)
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
