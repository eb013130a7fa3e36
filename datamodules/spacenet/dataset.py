"""SpaceNet samples: windows of tiles read with their bands normalised and their cached masks, padded
for the model, as ``(image float (C, H, W), mask long (H, W))``."""

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.spacenet.augmentation import Augmentation
from datamodules.spacenet.layouts import TilePair
from datamodules.spacenet.masks import BACKGROUND, MaskCache
from datamodules.spacenet.normalization import Normalization
from datamodules.spacenet.pending_image import PendingImage
from datamodules.spacenet.rasters import RasterInfo, keep_worker_environment, read_window
from datamodules.spacenet.tiling import TileWindow, random_crop

CROP_TRIES = 10


@dataclass(frozen=True)
class Tile:
    """A usable tile: its files and its raster header."""

    pair: TilePair
    info: RasterInfo


class TileReader:
    """Reads a :class:`TileWindow`: the configured bands, normalised (then the one-hot city planes of
    :mod:`~datamodules.spacenet.cities` with ``city_channels``), and the mask (``ignore_index`` where
    there is no label: padding, no data, or a tile without a label file)."""

    def __init__(
        self,
        tiles: list[Tile],
        bands: list[int] | None,
        normalization: Normalization,
        masks: MaskCache | None,
        ignore_index: int,
        city_channels: bool = False,
    ) -> None:
        self.tiles = tiles
        self.bands = bands
        self.normalization = normalization
        self.masks = masks
        self.ignore_index = ignore_index
        self.city_channels = city_channels

    def mask(self, window: TileWindow) -> np.ndarray:
        if self.masks is None:
            return np.full((window.height, window.width), self.ignore_index, dtype=np.uint8)
        return self.masks.read(self.tiles[window.tile].pair, window.window)

    def pending(
        self, window: TileWindow, mask: np.ndarray | None = None, augmentation: Augmentation | None = None
    ) -> tuple[PendingImage, np.ndarray]:
        """The window's image up to its last step (see :class:`PendingImage`) and its mask (uint8,
        augmented and padded)."""
        keep_worker_environment()
        pixels = read_window(self.tiles[window.tile].pair.image, self.bands, window.window, dtype=None)
        mask = self.mask(window) if mask is None else mask
        normalization = self.normalization
        if augmentation is not None and augmentation.on_raw_pixels:
            pixels, mask = augmentation(pixels, mask)
        elif augmentation is not None:
            pixels, mask = augmentation(normalization(pixels), mask)
            normalization = None
        pad_rows, pad_cols = window.padded_height - pixels.shape[1], window.padded_width - pixels.shape[2]
        if pad_rows or pad_cols:
            mask = np.pad(mask, ((0, pad_rows), (0, pad_cols)), constant_values=self.ignore_index)
        city = self.tiles[window.tile].pair.tile_id if self.city_channels else None
        pending = PendingImage(pixels, normalization, city, window.padded_height, window.padded_width)
        return pending, np.ascontiguousarray(mask)

    def read(
        self, window: TileWindow, mask: np.ndarray | None = None, augmentation: Augmentation | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The window's image (float32, normalised, augmented, padded) and mask (uint8)."""
        pending, mask = self.pending(window, mask, augmentation)
        return pending.array(), mask


class SpaceNetDataset(Dataset):
    """Samples of a split: the fixed ``windows``, or (training) one random ``crop_size`` crop per tile of
    ``tiles`` per epoch, a crop without labelled pixels redrawn with probability ``reject_empty``.

    ``source_indices`` are the tiles' positions in the DataModule's tile list (``tile_ids`` names them).
    Samples are ``(image float32 tensor, mask int64 tensor)``. With ``loader_samples`` (the DataModule's
    loaders) they are ``(PendingImage, mask uint8 tensor)`` for :func:`collate_samples`, which writes the
    images into the batch: one pass fewer over every image, and 8 times less mask to move between
    processes (the DataModule widens the masks once the batch is on its device).
    """

    def __init__(
        self,
        reader: TileReader,
        source: str,
        windows: list[TileWindow] | None = None,
        tiles: list[int] | None = None,
        crop_size: int | None = None,
        reject_empty: float = 0.0,
        augmentation: Augmentation | None = None,
        loader_samples: bool = False,
    ) -> None:
        if (windows is None) == (tiles is None):
            raise ValueError("give either fixed windows or tiles to crop from")
        self.reader = reader
        self.source = source
        self.windows = windows
        self.crop_tiles = tiles
        self.crop_size = crop_size
        self.reject_empty = reject_empty
        self.augmentation = augmentation
        self.loader_samples = loader_samples

    @property
    def tile_indices(self) -> list[int]:
        return self.crop_tiles if self.windows is None else [window.tile for window in self.windows]

    @property
    def source_indices(self) -> torch.Tensor:
        return torch.tensor(self.tile_indices, dtype=torch.long)

    @property
    def tile_ids(self) -> list[str]:
        return [self.reader.tiles[tile].pair.tile_id for tile in self.tile_indices]

    def __len__(self) -> int:
        return len(self.tile_indices)

    def _crop(self, tile: int) -> tuple[TileWindow, np.ndarray]:
        info = self.reader.tiles[tile].info
        for _ in range(CROP_TRIES):
            window = random_crop(tile, info.height, info.width, self.crop_size)
            mask = self.reader.mask(window)
            if not self.reject_empty:
                break
            labelled = np.any((mask != BACKGROUND) & (mask != self.reader.ignore_index))
            if labelled or float(torch.rand(1)) >= self.reject_empty:
                break
        return window, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor | PendingImage, torch.Tensor]:
        if self.windows is not None:
            pending, mask = self.reader.pending(self.windows[index], augmentation=self.augmentation)
        else:
            pending, mask = self.reader.pending(
                *self._crop(self.crop_tiles[index]), augmentation=self.augmentation
            )
        mask = torch.from_numpy(mask)
        if self.loader_samples:
            return pending, mask
        return torch.from_numpy(pending.array()), mask.long()
