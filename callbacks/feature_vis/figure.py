"""The TensorBoard figure of a layer's visualisations: a row per channel, its rendered image first and
its dataset examples beside it (Distill's presentation)."""

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from callbacks.feature_vis.examples import DatasetExample
from callbacks.mosaic import Caption, Panel, mosaic_figure
from lightning_app.errors import UserInputError


def display_rgb(image: torch.Tensor, bands: list[int] | None) -> np.ndarray:
    """A display-space image (bands, H, W) as (H, W, 3): grey for one band, the first three bands (or
    ``bands``, e.g. [4, 2, 1] for a multispectral image's natural colours) otherwise."""
    chosen = bands if bands is not None else ([0] if len(image) < 3 else [0, 1, 2])
    if any(not 0 <= band < len(image) for band in chosen) or len(chosen) not in (1, 3):
        raise UserInputError(
            f"display_bands {chosen} must be one or three band indices of the {len(image)}-band images"
        )
    pixels = image[chosen].detach().float().cpu().permute(1, 2, 0).numpy()
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def eight_bit(pixels: np.ndarray) -> Image.Image:
    """A float image in [0, 1] ((H, W) or (H, W, 3)) as an 8-bit PIL image, rounded."""
    return Image.fromarray((np.clip(pixels, 0, 1) * 255 + 0.5).astype(np.uint8))


def feature_vis_figure(
    title: str,
    rows: list[tuple[str, torch.Tensor, list[DatasetExample]]],
    probe_display: torch.Tensor,
    probe_indices: list[int],
    bands: list[int] | None,
) -> Figure:
    """``rows``: (caption, rendered image (bands, H, W), dataset examples) per channel; each example is
    cropped to its box from ``probe_display`` and scaled to the rendered image's size."""
    size = list(rows[0][1].shape[-2:])
    panels = []
    for caption, image, examples in rows:
        row = [Panel(display_rgb(image, bands), Caption(caption))]
        for example in examples:
            top, left, bottom, right = example.box
            crop = probe_display[example.position][:, top:bottom, left:right]
            crop = F.resize(crop, size, interpolation=InterpolationMode.NEAREST)
            label = f"#{probe_indices[example.position]} {example.value:.3g}"
            row.append(Panel(display_rgb(crop, bands), Caption(label)))
        panels.append(row)
    return mosaic_figure(title, panels)
