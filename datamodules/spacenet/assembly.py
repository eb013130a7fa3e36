"""Whole tiles from window predictions: collect each tile's windows as they arrive (in any order, in
batches) and stitch the tile once all are in; and the building probability of a stitched tile."""

from collections import Counter

import numpy as np

from datamodules.spacenet.dataset import SpaceNetDataset
from datamodules.spacenet.tiling import TileWindow, stitch


class TileAssembler:
    """Stitches the predictions of ``dataset``'s windows tile by tile."""

    def __init__(self, dataset: SpaceNetDataset) -> None:
        self.tiles = dataset.reader.tiles
        self.expected = Counter(window.tile for window in dataset.windows)
        self.parts: dict[int, list[tuple[TileWindow, np.ndarray]]] = {}

    def add(self, window: TileWindow, prediction: np.ndarray) -> np.ndarray | None:
        """Keep ``prediction`` (C, padded H, padded W) of ``window``; the stitched (C, H, W) tile when this
        was its last window, else None."""
        parts = self.parts.setdefault(window.tile, [])
        parts.append((window, prediction))
        if len(parts) < self.expected[window.tile]:
            return None
        del self.parts[window.tile]
        info = self.tiles[window.tile].info
        windows, predictions = zip(*parts, strict=True)
        return stitch(list(windows), list(predictions), info.height, info.width)

    @property
    def incomplete(self) -> list[str]:
        """Tile ids with some but not all windows predicted."""
        return [self.tiles[tile].pair.tile_id for tile in self.parts]


def building_probability(probabilities: np.ndarray) -> np.ndarray:
    """The probability of the target class (class 1: building or road) of a stitched (C, H, W) tile: the
    sigmoid channel of a binary network; for more classes, class 1's probability where it is the most
    likely class and 0 elsewhere (so three-class edges split touching buildings)."""
    if len(probabilities) == 1:
        return probabilities[0]
    return np.where(probabilities.argmax(axis=0) == 1, probabilities[1], 0.0).astype(np.float32)
