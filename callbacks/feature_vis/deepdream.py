"""DeepDream (Mordvintsev et al., 2015): start from an image and amplify what a layer sees in it, octave
by octave, from a coarse version of the image to its full size."""

from collections.abc import Callable

import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from callbacks.feature_vis.objectives import Objective
from callbacks.feature_vis.parameterisations import BandStatistics
from callbacks.feature_vis.render import Rendering, RenderSettings, render, scores

DEEPDREAM_SETTINGS = RenderSettings(steps=64)  # steps per octave


def deepdream(
    model: nn.Module,
    objective: Objective,
    statistics: BandStatistics,
    from_display,
    start: torch.Tensor,
    settings: RenderSettings = DEEPDREAM_SETTINGS,
    octaves: int = 3,
    octave_scale: float = 1.4,
    batch_objective: Objective | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Rendering:
    """``start`` (1, bands, H, W, display space) dreamed into by ``objective``: ``settings.steps`` steps
    at each of ``octaves`` sizes, each ``octave_scale`` times the one before, up to (H, W). The model
    always sees the image resized to (H, W), so any model works, a fixed-size classifier too.
    ``batch_objective`` (e.g. a penalty) is maximised beside it. The result's ``start`` and ``end`` are
    the objective on ``start`` and on the dream. ``on_step(step)`` counts the steps of all octaves."""
    height, width = start.shape[-2:]
    sizes = [
        (max(1, round(height / octave_scale**k)), max(1, round(width / octave_scale**k)))
        for k in reversed(range(octaves))
    ]
    image = start
    for octave, size in enumerate(sizes):
        image = F.resize(image, list(size), interpolation=InterpolationMode.BILINEAR, antialias=True)
        done = octave * settings.steps
        counted = None if on_step is None else (lambda step, done=done: on_step(done + step))
        rendering = render(
            model, [objective], statistics, from_display, tuple(image.shape[1:]), settings,
            batch_objective, start=image, input_size=(height, width), on_step=counted,
        )  # fmt: skip
        image = rendering.images
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    with torch.no_grad():
        rendering.start = scores(model, [objective], from_display(start.to(device, dtype)))
    return rendering
