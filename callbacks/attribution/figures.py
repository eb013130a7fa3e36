"""Figures of attributions: input | heat map | overlay per sample, and the five LIME panels of Lees (2017)
(original, top-5 positive superpixels alone, the same over the image, top-10 positive and negative,
weight >= 0.1)."""

import numpy as np
import torch
from captum.attr._utils.visualization import _normalize_attr
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from skimage.segmentation import mark_boundaries

from callbacks.attribution.methods import Attributions
from callbacks.mosaic import mosaic_figure

HIDDEN_GREY = 0.5
GREEN, RED = np.array([0.0, 0.8, 0.0]), np.array([0.9, 0.0, 0.0])
OUTLIER_PERCENT = 2
SIGNED = LinearSegmentedColormap.from_list("signed", ["red", "white", "green"])


def image_hwc(image: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor in [0, 1] as an (H, W, 3) float array."""
    pixels = image.detach().permute(1, 2, 0).float().cpu().numpy()
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels[..., :3]


def heat_map(attribution: torch.Tensor) -> np.ndarray:
    """Signed heat map (H, W) in [-1, 1]: channels summed, scaled by the 98th percentile of |values|
    (Captum's normalisation)."""
    values = attribution.detach().sum(dim=0).double().cpu().numpy()
    if not np.any(values):
        return values
    return _normalize_attr(values, "all", OUTLIER_PERCENT)


def attribution_panels(pixels: np.ndarray, attribution: torch.Tensor) -> list[np.ndarray]:
    """Input, heat map (green positive, red negative) and the heat map blended over the grey input."""
    heat = SIGNED((heat_map(attribution) + 1) / 2)[..., :3]
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


def method_figure(method: str, display: torch.Tensor, result: Attributions, titles: list[str]) -> Figure:
    """The figure of one method's result: Lime's five panels when it has superpixels, else input |
    heat map | overlay."""
    if result.superpixels is not None:
        return lime_figure(display, result.superpixels, result.weights, titles)
    return attribution_figure(method, display, result.values, titles)


def attribution_figure(method: str, display: torch.Tensor, values: torch.Tensor, titles: list[str]) -> Figure:
    """One row per sample: the input, the signed heat map and the overlay."""
    rows = [
        attribution_panels(image_hwc(image), values) for image, values in zip(display, values, strict=True)
    ]
    return mosaic_figure(f"{method}: input | attribution | overlay", rows, [[title] for title in titles])


def lime_figure(
    display: torch.Tensor, superpixels: torch.Tensor, weights: list[torch.Tensor], titles: list[str]
) -> Figure:
    """Lees's five LIME panels per sample."""
    rows = [
        lime_panels(image_hwc(image), segments.cpu().numpy(), weight.cpu().numpy())
        for image, segments, weight in zip(display, superpixels, weights, strict=True)
    ]
    headers = "original | top 5 positive | top 5 over image | top 10 +/- | weight >= 0.1"
    return mosaic_figure(f"Lime: {headers}", rows, [[title] for title in titles])
