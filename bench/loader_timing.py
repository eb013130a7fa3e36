"""Epoch timing of two DataLoaders compared in one run, shared by the loading benchmarks."""

import statistics
import time

from torch.utils.data import DataLoader


def epoch_seconds(loader: DataLoader) -> float:
    """Seconds to draw every batch of ``loader`` once."""
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def alternating_medians(baseline: DataLoader, candidate: DataLoader, rounds: int) -> tuple[float, float]:
    """Median epoch seconds of ``baseline`` and ``candidate`` over ``rounds`` alternating epochs (the page
    cache and the machine's load then affect both alike)."""
    timings = [(epoch_seconds(baseline), epoch_seconds(candidate)) for _ in range(rounds)]
    return statistics.median(t for t, _ in timings), statistics.median(t for _, t in timings)
