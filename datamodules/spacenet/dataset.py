"""SpaceNet samples: windows of tiles read with their bands normalised and their cached masks, padded
for the model, as ``(image float (C, H, W), mask long (H, W))``."""

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from datamodules.spacenet.augmentation import Augmentation
from datamodules.spacenet.cities import city_planes
from datamodules.spacenet.layouts import TilePair
from datamodules.spacenet.masks import BACKGROUND, MaskCache
from datamodules.spacenet.normalization import Normalization
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

    def read(
        self, window: TileWindow, mask: np.ndarray | None = None, augmentation: Augmentation | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The window's image (float32, normalised, augmented, padded) and mask (uint8)."""
        keep_worker_environment()
        pixels = read_window(self.tiles[window.tile].pair.image, self.bands, window.window, dtype=None)
        mask = self.mask(window) if mask is None else mask
        if augmentation is not None and augmentation.on_raw_pixels:
            pixels, mask = augmentation(pixels, mask)
        image = self.normalization(pixels)
        if augmentation is not None and not augmentation.on_raw_pixels:
            image, mask = augmentation(image, mask)
        if self.city_channels:
            tile_id = self.tiles[window.tile].pair.tile_id
            image = np.concatenate([image, city_planes(tile_id, *image.shape[1:])])
        pad_rows, pad_cols = window.padded_height - image.shape[1], window.padded_width - image.shape[2]
        if pad_rows or pad_cols:
            image = np.pad(image, ((0, 0), (0, pad_rows), (0, pad_cols)))
            mask = np.pad(mask, ((0, pad_rows), (0, pad_cols)), constant_values=self.ignore_index)
        return image, np.ascontiguousarray(mask)


class SpaceNetDataset(Dataset):
    """Samples of a split: the fixed ``windows``, or (training) one random ``crop_size`` crop per tile of
    ``tiles`` per epoch, a crop without labelled pixels redrawn with probability ``reject_empty``.

    ``source_indices`` are the tiles' positions in the DataModule's tile list (``tile_ids`` names them).
    Masks are int64, or uint8 with ``compact_masks`` (the DataModule's loaders: 8 times less to move
    between processes; the DataModule widens them once the batch is on its device).
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
        compact_masks: bool = False,
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
        self.compact_masks = compact_masks

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
            labelled = np.any((mask != BACKGROUND) & (mask != self.reader.ignore_index))
            if labelled or not self.reject_empty or float(torch.rand(1)) >= self.reject_empty:
                break
        return window, mask

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.windows is not None:
            image, mask = self.reader.read(self.windows[index], augmentation=self.augmentation)
        else:
            image, mask = self.reader.read(
                *self._crop(self.crop_tiles[index]), augmentation=self.augmentation
            )
        mask = torch.from_numpy(mask)
        return torch.from_numpy(image), mask if self.compact_masks else mask.long()
