"""A window's image before its last step, and the loaders' collate that takes that step in the batch.

A sample's image is its bands normalised (unless the augmentation already did it), then the city planes,
then zero padding to the model's size. Written into an array of its own, each sample would be written
once more when the DataLoader stacks the batch: at 512 px and 8 bands that is 8 MB a sample, as much
memory traffic as reading the window (see bench/spacenet_loading.py). :func:`collate_samples` writes
each image straight into the batch instead, in shared memory when it runs in a worker, as PyTorch's
``default_collate`` allocates its batches.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

from datamodules.spacenet.cities import CITIES, write_city_planes
from datamodules.spacenet.normalization import Normalization


@dataclass(frozen=True)
class PendingImage:
    """``pixels`` (C, h, w) still to be normalised with ``normalization`` (None: they already are), given
    the one-hot planes of ``city`` (a tile id; None: no city planes) and zero-padded to ``height`` x
    ``width``."""

    pixels: np.ndarray
    normalization: Normalization | None
    city: str | None
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int, int]:
        channels = self.pixels.shape[0] + (len(CITIES) if self.city is not None else 0)
        return channels, self.height, self.width

    def write(self, out: np.ndarray) -> np.ndarray:
        """The image written into ``out`` (float32 of :attr:`shape`); returns ``out``."""
        bands, height, width = self.pixels.shape
        if self.normalization is None:
            out[:bands, :height, :width] = self.pixels
        else:
            self.normalization(self.pixels, out=out[:bands, :height, :width])
        if self.city is not None:
            write_city_planes(self.city, out[bands:, :height, :width])
        out[:, height:] = 0.0
        out[:, :height, width:] = 0.0
        return out

    def array(self) -> np.ndarray:
        """The image as a new float32 array."""
        return self.write(np.empty(self.shape, dtype=np.float32))


def _batch_tensor(shape: tuple[int, ...]) -> torch.Tensor:
    if get_worker_info() is None:
        return torch.empty(shape)
    # in shared memory from the start, as default_collate does: sending it to the main process copies nothing
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * 4)
    return torch.empty(0).set_(storage, 0, shape)


def collate_samples(samples: list[tuple[PendingImage, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The SpaceNet loaders' ``collate_fn``: a float32 batch of the pending images and the stacked masks."""
    shapes = {pending.shape for pending, _ in samples}
    if len(shapes) > 1:
        raise RuntimeError(f"cannot batch images of different shapes {sorted(shapes)}")
    images = _batch_tensor((len(samples), *shapes.pop()))
    for out, (pending, _) in zip(images.numpy(), samples, strict=True):
        pending.write(out)
    return images, default_collate([mask for _, mask in samples])
