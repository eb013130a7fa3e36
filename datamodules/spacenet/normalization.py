"""Input normalisation of SpaceNet imagery, explicit and checked.

- ``fixed``: divide by ``max_value`` (255 for 8-bit, 2047 for 11-bit WorldView) -> [0, 1].
- ``percentile``: per band, stretch the ``percentiles`` (computed on the train split) to [0, 1], clipped.
- ``mean_std``: per band, subtract ``mean`` and divide by ``std`` (computed on the train split unless
  given; giving them reproduces a library's preprocessing, e.g. ImageNet's or ``x / 1024 - 1``).

Statistics come from valid (not no-data) pixels of up to ``stats_tiles`` train tiles, and are kept in
the DataModule's state, so a checkpoint carries them to ``validate``/``test``/``predict``.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from lightning_app.errors import UserInputError

Method = Literal["fixed", "percentile", "mean_std"]
UNIT_RANGE = (0.0, 1.0)


@dataclass
class Normalization:
    """Per-band normalisation; ``input_range`` is the range the model expects (default: [0, 1] for
    'fixed' and 'percentile', unchecked for 'mean_std')."""

    method: Method = "fixed"
    max_value: float = 255.0
    percentiles: tuple[float, float] = (2.0, 98.0)
    mean: list[float] | None = None
    std: list[float] | None = None
    input_range: tuple[float, float] | None = None
    low: list[float] | None = None
    high: list[float] | None = None

    def __post_init__(self) -> None:
        if self.method not in ("fixed", "percentile", "mean_std"):
            raise UserInputError(
                f"data.normalization={self.method!r} is not one of fixed, percentile, mean_std"
            )
        if self.method == "fixed" and self.max_value <= 0:
            raise UserInputError(f"data.max_value={self.max_value} must be positive")
        if (self.mean is None) != (self.std is None):
            raise UserInputError("data.mean and data.std are given together or not at all")

    @property
    def needs_statistics(self) -> bool:
        return (self.method == "percentile" and self.low is None) or (
            self.method == "mean_std" and self.mean is None
        )

    @property
    def promised_range(self) -> tuple[float, float] | None:
        if self.input_range is not None:
            return tuple(self.input_range)
        return None if self.method == "mean_std" else UNIT_RANGE

    def fit(self, band_pixels: np.ndarray) -> None:
        """Compute the statistics from valid train pixels, ``band_pixels`` of shape (bands, N)."""
        if band_pixels.shape[1] == 0:
            raise UserInputError(
                "the train tiles have no valid pixels to compute normalisation statistics from"
            )
        if self.method == "percentile":
            low, high = np.percentile(band_pixels, self.percentiles, axis=1)
            self.low, self.high = low.tolist(), np.maximum(high, low + 1e-6).tolist()
        elif self.method == "mean_std":
            self.mean = band_pixels.mean(axis=1).tolist()
            self.std = np.maximum(band_pixels.std(axis=1), 1e-6).tolist()

    def _band_values(self, values: list[float], bands: int) -> np.ndarray:
        if len(values) != bands:
            raise UserInputError(f"normalisation statistics have {len(values)} bands, the image has {bands}")
        return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)

    def __call__(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``pixels`` (C, H, W; any dtype and strides) normalised into ``out`` (float32, the same shape;
        a new C-contiguous array when None), written in one pass per operation."""
        bands = pixels.shape[0]
        out = np.empty(pixels.shape, dtype=np.float32) if out is None else out
        if self.method == "fixed":
            return np.divide(pixels, np.float32(self.max_value), out=out, casting="unsafe")
        if self.needs_statistics:
            raise RuntimeError(
                "normalisation statistics are not computed yet (the DataModule's setup does it)"
            )
        if self.method == "percentile":
            low, high = self._band_values(self.low, bands), self._band_values(self.high, bands)
            np.subtract(pixels, low, out=out, casting="unsafe")
            return np.clip(np.divide(out, high - low, out=out), 0.0, 1.0, out=out)
        np.subtract(pixels, self._band_values(self.mean, bands), out=out, casting="unsafe")
        return np.divide(out, self._band_values(self.std, bands), out=out)

    def to_display(self, images: np.ndarray) -> np.ndarray:
        """Normalised images (..., C, H, W) back in [0, 1] for figures: 'mean_std' images are shown as
        mean -/+ 2 std."""
        if self.method != "mean_std":
            return np.clip(images, 0.0, 1.0)
        return np.clip((images + 2.0) / 4.0, 0.0, 1.0)

    def from_display(self, images):
        """Display-space images (a tensor in [0, 1]) as normalised inputs: the inverse of
        :meth:`to_display` inside its clipping range."""
        return images * 4.0 - 2.0 if self.method == "mean_std" else images

    def range_message(self, low: float, high: float) -> tuple[str, bool]:
        """A line reporting the first training batch's value range, and whether it breaks the promise."""
        promised = self.promised_range
        line = f"first training batch: inputs in [{low:.4g}, {high:.4g}] after '{self.method}' normalisation"
        if promised is None:
            return line, False
        tolerance = 1e-3 * (promised[1] - promised[0])
        outside = low < promised[0] - tolerance or high > promised[1] + tolerance
        if outside:
            line += (
                f", OUTSIDE the range [{promised[0]:g}, {promised[1]:g}] the model expects "
                "(data.input_range). "
                "A model trained on one range and fed another predicts nothing useful (Macura, 2020, lost "
                "weeks to [-1, 1] inputs for a [0, 1] model): check data.normalization, max_value, mean, std"
            )
        return line, outside

    def state(self) -> dict:
        return {"method": self.method, "low": self.low, "high": self.high, "mean": self.mean, "std": self.std}

    def load(self, state: dict) -> None:
        if state.get("method") != self.method:
            raise UserInputError(
                f"the checkpoint's normalisation is {state.get('method')!r}, the config's {self.method!r}"
            )
        self.low, self.high, self.mean, self.std = state["low"], state["high"], state["mean"], state["std"]
