"""The render loop: optimise a batch of images, one objective each, in one forward pass per step."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from callbacks.feature_vis.capture import captured_outputs, forward
from callbacks.feature_vis.objectives import Objective
from callbacks.feature_vis.parameterisations import BandStatistics, ImageParameterisation
from callbacks.feature_vis.redirected_relu import REDIRECT_STEPS, redirected_relus
from callbacks.feature_vis.transforms import Transform, apply, standard_transforms


def diagonal(objectives: Sequence[Objective], outputs: dict, inputs: torch.Tensor) -> torch.Tensor:
    """Image ``i``'s score under objective ``i``, (N,), from one forward pass's ``outputs``."""
    return torch.stack([objective(outputs, inputs)[i] for i, objective in enumerate(objectives)])


def scores(model: nn.Module, objectives: Sequence[Objective], inputs: torch.Tensor) -> torch.Tensor:
    """Image ``i``'s score under objective ``i`` (the objectives' diagonal), (N,)."""
    layers = [layer for objective in objectives for layer in objective.layers]
    with captured_outputs(model, layers) as outputs:
        forward(model, inputs, outputs)
        return diagonal(objectives, outputs, inputs)


@dataclass
class Rendering:
    """The rendered images in display space (N, bands, H, W), those kept at ``thresholds`` (step ->
    images), and each objective's value on the first and on the final image (untransformed)."""

    images: torch.Tensor
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)
    start: torch.Tensor | None = None
    end: torch.Tensor | None = None


@dataclass(frozen=True)
class RenderSettings:
    """How to render: ``steps`` of Adam at ``lr``, Fourier or pixel parameters, the random transforms
    (None: Lucid's standard set scaled to the image size), ``thresholds`` (steps whose images are kept)
    and the ``seed`` of the start and the transforms (the same seed gives the same images)."""

    steps: int = 256
    lr: float = 0.05
    fourier: bool = True
    transforms: tuple[Transform, ...] | None = None
    thresholds: tuple[int, ...] = ()
    seed: int = 0


def render(
    model: nn.Module,
    objectives: Sequence[Objective],
    statistics: BandStatistics,
    from_display: Callable[[torch.Tensor], torch.Tensor],
    image_shape: tuple[int, int, int],
    settings: RenderSettings = RenderSettings(),
    batch_objective: Objective | None = None,
    start: torch.Tensor | None = None,
    input_size: tuple[int, int] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> Rendering:
    """Render one image per objective, in one batch: ``model`` (in eval mode, its parameters frozen)
    sees ``from_display`` of the transformed images; its ReLUs pass Lucid's redirected gradient for the
    first steps (:mod:`callbacks.feature_vis.redirected_relu`). ``batch_objective`` (e.g. diversity), a
    score per image that depends on the whole batch, is added to the objectives' sum; ``start``
    (display-space images) replaces the random start; images of ``image_shape`` are resized (bilinear)
    to ``input_size`` before the model when it differs. ``on_step(step)`` is called after each step
    (progress; it may raise to stop the render)."""
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(settings.seed)
    image = ImageParameterisation(
        (len(objectives), *image_shape), statistics, settings.fourier, generator
    ).to(parameter.device)
    if start is not None:
        image.start_from(start.to(parameter.device, torch.float32))
    optimizer = torch.optim.Adam(image.parameters(), lr=settings.lr)
    transforms = (
        standard_transforms(min(image_shape[-2:])) if settings.transforms is None else settings.transforms
    )
    all_objectives = [*objectives, batch_objective] if batch_objective else list(objectives)
    layers = [layer for objective in all_objectives for layer in objective.layers]
    dtype = parameter.dtype

    def model_input(images: torch.Tensor) -> torch.Tensor:
        if input_size is not None and tuple(images.shape[-2:]) != tuple(input_size):
            images = F.resize(
                images, list(input_size), interpolation=InterpolationMode.BILINEAR, antialias=False
            )
        return from_display(images.to(dtype))

    def untransformed_scores() -> torch.Tensor:
        with torch.no_grad():
            return scores(model, objectives, model_input(image()))

    rendering = Rendering(images=torch.empty(0), start=untransformed_scores())
    step = 0
    # the redirect's hooks go first, so that a captured ReLU output is the redirected one
    with redirected_relus(model, lambda: step <= REDIRECT_STEPS), captured_outputs(model, layers) as outputs:
        for step in range(1, settings.steps + 1):  # noqa: B007 -- the redirect reads the step
            optimizer.zero_grad()
            inputs = model_input(apply(transforms, image(), generator))
            forward(model, inputs, outputs)
            total = diagonal(objectives, outputs, inputs).sum()
            if batch_objective is not None:
                total = total + batch_objective(outputs, inputs).sum()
            (-total).backward()
            optimizer.step()
            if step in settings.thresholds:
                rendering.snapshots[step] = image().detach().cpu()
            if on_step is not None:
                on_step(step)
    rendering.images = image().detach().cpu()
    rendering.end = untransformed_scores()
    return rendering
