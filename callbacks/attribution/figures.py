"""Figures of attributions: input | heat map | overlay per sample, and the five LIME panels of Lees (2017)
(original, top-5 positive superpixels alone, the same over the image, top-10 positive and negative,
weight >= 0.1)."""

import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from skimage.segmentation import mark_boundaries

from callbacks.mosaic import Caption, ColourBar, Panel, mosaic_figure

HIDDEN_GREY = 0.5
GREEN, RED = np.array([0.0, 0.8, 0.0]), np.array([0.9, 0.0, 0.0])
OUTLIER_PERCENT = 2
SIGNED = LinearSegmentedColormap.from_list("signed", ["red", "white", "green"])
ATTRIBUTION_ROWS = ["input", "attribution", "overlay"]
LIME_ROWS = ["original", "top 5 positive", "top 5 over image", "top 10 +/-", "weight >= 0.1"]


def image_hwc(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor in [0, 1] as an (H, W, 3) float array."""
    pixels = image.detach().permute(1, 2, 0).float().cpu().numpy()
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]


def summed_channels(attribution: torch.Tensor) -> np.ndarray:
    """An attribution (C, H, W) summed over its channels, as an (H, W) array."""
    return attribution.detach().sum(dim=0).double().cpu().numpy()


def heat_scale(maps: list[np.ndarray]) -> float:
    """The value shown at the ends of the colour scale: the 98th percentile of |attribution| over the
    figure's maps, so one outlier pixel does not wash out the rest (as Captum clips 2 % outliers)."""
    values = np.abs(np.concatenate([m.ravel() for m in maps]))
    return float(np.percentile(values, 100 - OUTLIER_PERCENT)) if values.any() else 0.0


def attribution_panels(pixels: np.ndarray, summed: np.ndarray, scale: float) -> list[np.ndarray]:
    """Input, heat map (green positive, red negative, clipped at +-scale) and the heat map blended over
    the grey input."""
    signed = np.clip(summed / scale, -1, 1) if scale > 0 else np.zeros_like(summed)
    heat = SIGNED((signed + 1) / 2)[..., :3]
    grey = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    return [pixels, heat, 0.5 * grey + 0.5 * heat]


def lime_panels(pixels: np.ndarray, segments: np.ndarray, weights: np.ndarray) -> list[np.ndarray]:
    """The five LIME panels as (H, W, 3) arrays for an image, its superpixels and their weights."""
    order = np.argsort(-weights)
    top_positive = [s for s in order[:5] if weights[s] > 0]
    by_magnitude = np.argsort(-np.abs(weights))[:10]
    strong = np.flatnonzero(weights >= 0.1)

    def only(selected) -> np.ndarray:
        keep = np.isin(segments, selected)
        return mark_boundaries(np.where(keep[..., None], pixels, HIDDEN_GREY), keep.astype(int))

    signed = pixels.copy()
    for segment in by_magnitude:
        inside = segments == segment
        signed[inside] = 0.5 * signed[inside] + 0.5 * (GREEN if weights[segment] > 0 else RED)
    return [
        pixels,
        only(top_positive),
        mark_boundaries(pixels, np.isin(segments, top_positive).astype(int)),
        mark_boundaries(signed, np.isin(segments, by_magnitude).astype(int)),
        only(strong),
    ]


def attribution_figure(
    method: str, display: torch.Tensor, values: torch.Tensor, captions: list[Caption]
) -> Figure:
    """One column per probe image: the input, the signed heat map and the overlay, with a colour bar
    of the attribution values."""
    summed = [summed_channels(attribution) for attribution in values]
    scale = heat_scale(summed)
    columns = [
        attribution_panels(image_hwc(image), heat, scale) for image, heat in zip(display, summed, strict=True)
    ]
    bar = ColourBar(SIGNED, -scale, scale, "attribution, summed over channels")
    return mosaic_figure(method, as_rows(columns, captions), ATTRIBUTION_ROWS, bar)


def lime_figure(
    display: torch.Tensor, superpixels: torch.Tensor, weights: list[torch.Tensor], captions: list[Caption]
) -> Figure:
    """Lees's five LIME panels per probe image, one image per column."""
    columns = [
        lime_panels(image_hwc(image), segments.cpu().numpy(), weight.cpu().numpy())
        for image, segments, weight in zip(display, superpixels, weights, strict=True)
    ]
    return mosaic_figure("Lime", as_rows(columns, captions), LIME_ROWS)


def as_rows(columns: list[list[np.ndarray]], captions: list[Caption]) -> list[list[Panel]]:
    """Each probe image's panels as a column, its caption above the first row."""
    rows = [[Panel(pixels) for pixels in row] for row in zip(*columns, strict=True)]
    rows[0] = [Panel(panel.pixels, caption) for panel, caption in zip(rows[0], captions, strict=True)]
    return rows
