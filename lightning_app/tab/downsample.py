"""Min/max downsampling of a series for drawing: per bucket of consecutive steps, the smallest and the
largest value in their order, so every peak a chart of ``buckets`` pixels can show survives."""

import numpy as np


def min_max(steps: np.ndarray, values: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) reduced to at most ``2 * buckets`` points. NaN (a step the run could not
    measure) is kept as a gap where a bucket holds only NaN."""
    if len(values) <= 2 * buckets:
        return steps, values
    size = -(-len(values) // buckets)
    padded = np.full(buckets * size, np.nan)
    padded[: len(values)] = values
    rows = padded.reshape(buckets, size)
    with np.errstate(invalid="ignore"):
        empty = np.isnan(rows).all(axis=1)
        low = np.where(empty, 0, np.nanargmin(np.where(empty[:, None], 0, rows), axis=1))
        high = np.where(empty, 0, np.nanargmax(np.where(empty[:, None], 0, rows), axis=1))
    pairs = np.sort(np.stack([low, high], axis=1), axis=1) + (np.arange(buckets) * size)[:, None]
    pairs = pairs[pairs[:, 0] < len(values)]
    index = np.minimum(pairs.ravel(), len(values) - 1)
    return steps[index], values[index]
