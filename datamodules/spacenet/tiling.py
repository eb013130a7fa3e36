"""Where samples are cut from a tile: random training crops, the whole tile padded to a multiple of 32
(the stride of SMP encoders; SpaceNet's 650, 900 and 1300 px tiles are not), overlapping windows, Lim
et al.'s 16 sub-tiles, and stitching window predictions back into the full tile."""

import math
from dataclasses import dataclass

import numpy as np
import torch
from rasterio.windows import Window

from lightning_app.errors import UserInputError

SIZE_MULTIPLE = 32
SUBTILE_BORDER, SUBTILE_SIZE, SUBTILE_GRID = 2, 224, 4


@dataclass(frozen=True)
class TileWindow:
    """A sample: the part of tile ``tile`` at (``row``, ``col``) of ``height`` x ``width`` pixels,
    padded at the bottom and right to ``padded_height`` x ``padded_width`` for the model."""

    tile: int
    row: int
    col: int
    height: int
    width: int
    padded_height: int
    padded_width: int
    name: str = ""

    @property
    def window(self) -> Window:
        return Window(self.col, self.row, self.width, self.height)


def padded(size: int, multiple: int = SIZE_MULTIPLE) -> int:
    return math.ceil(size / multiple) * multiple


def whole_tile(tile: int, height: int, width: int) -> TileWindow:
    """The whole tile, padded to a multiple of 32."""
    return TileWindow(tile, 0, 0, height, width, padded(height), padded(width))


def _starts(length: int, size: int, overlap: int) -> list[int]:
    if size >= length:
        return [0]
    step = size - overlap
    starts = list(range(0, length - size, step))
    return [*starts, length - size]  # the last window ends on the tile's edge


def sliding_windows(tile: int, height: int, width: int, size: int, overlap: int) -> list[TileWindow]:
    """Windows of ``size`` px overlapping by at least ``overlap`` px that cover the tile (the last row and
    column end on the tile's edge); a tile smaller than ``size`` is one padded window."""
    if not 0 <= overlap < size:
        raise UserInputError(f"data.window_overlap={overlap} must be in [0, window_size={size})")
    return [
        TileWindow(tile, row, col, min(size, height), min(size, width), size, size)
        for row in _starts(height, size, overlap)
        for col in _starts(width, size, overlap)
    ]


def subtile_windows(tile: int, stem: str, height: int, width: int) -> list[TileWindow]:
    """Lim et al.'s tiling: a 2 px border cropped (900 -> 896), then a 4 x 4 grid of 224 px sub-tiles
    numbered 1..16 row by row, named ``<stem>_subtile_<k>``."""
    if (height, width) != (900, 900):
        raise UserInputError(
            f"data.split='report_subtiles' expects 900 x 900 tiles; {stem} is {height} x {width}"
        )
    return [
        TileWindow(
            tile,
            SUBTILE_BORDER + grid_row * SUBTILE_SIZE,
            SUBTILE_BORDER + grid_col * SUBTILE_SIZE,
            SUBTILE_SIZE,
            SUBTILE_SIZE,
            SUBTILE_SIZE,
            SUBTILE_SIZE,
            name=f"{stem}_subtile_{grid_row * SUBTILE_GRID + grid_col + 1}",
        )
        for grid_row in range(SUBTILE_GRID)
        for grid_col in range(SUBTILE_GRID)
    ]


def random_crop(tile: int, height: int, width: int, size: int) -> TileWindow:
    """A uniformly placed ``size`` crop inside the tile (padded if the tile is smaller)."""
    row = int(torch.randint(height - size + 1, (1,))) if height > size else 0
    col = int(torch.randint(width - size + 1, (1,))) if width > size else 0
    return TileWindow(tile, row, col, min(size, height), min(size, width), size, size)


def stitch(windows: list[TileWindow], predictions: list[np.ndarray], height: int, width: int) -> np.ndarray:
    """The (C, height, width) tile from per-window (C, padded_h, padded_w) predictions; where windows
    overlap, their mean."""
    channels = predictions[0].shape[0]
    total = np.zeros((channels, height, width), dtype=np.float64)
    count = np.zeros((height, width), dtype=np.float64)
    for window, prediction in zip(windows, predictions, strict=True):
        rows = slice(window.row, window.row + window.height)
        cols = slice(window.col, window.col + window.width)
        total[:, rows, cols] += prediction[:, : window.height, : window.width]
        count[rows, cols] += 1
    if (count == 0).any():
        raise ValueError("the windows do not cover the tile")
    return (total / count).astype(np.float32)
