"""Random, differentiable transforms applied to the image at every optimisation step (Olah et al.,
2017): they keep the optimiser from exploiting single pixels and make features robust to small shifts,
scalings and rotations. Each is a callable ``(images, generator) -> images`` on display-space images
(N, bands, H, W), built on torchvision's functional transforms; the render loop crops the result back
to the model's input size.

``STANDARD`` is Lucid's standard set, for 224 px images: pad 12, jitter 8, scale 0.9-1.1, rotate
-10..10 degrees, jitter 4. :func:`standard_transforms` scales its distances in pixels to the image size:
on a 28 px MNIST digit Lucid's jitters shift the content by up to 6 px, more than a conv2 unit's
receptive field, so a single neuron never sees the pattern built for it (its render reached 0.15-1.0
of the best validation image; scaled, 1.0-1.75).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

from lightning_app.errors import UserInputError, is_number

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
PAD_FILL = 0.5  # mid-grey in display space


def choice(values: Sequence, generator: torch.Generator):
    return values[int(torch.randint(len(values), (1,), generator=generator))]


@dataclass(frozen=True)
class Pad:
    """``pixels`` of mid-grey on every side."""

    pixels: int

    def __call__(self, images, generator):
        return F.pad(images, [self.pixels], fill=PAD_FILL)


@dataclass(frozen=True)
class Jitter:
    """A random crop ``pixels`` smaller in height and width: a shift of up to ``pixels``."""

    pixels: int

    def __call__(self, images, generator):
        height, width = images.shape[-2:]
        dy, dx = (int(v) for v in torch.randint(self.pixels + 1, (2,), generator=generator))
        return images[..., dy : height - self.pixels + dy, dx : width - self.pixels + dx]


@dataclass(frozen=True)
class RandomScale:
    """Bilinear rescaling by a factor drawn from ``factors``."""

    factors: tuple[float, ...]

    def __call__(self, images, generator):
        factor = choice(self.factors, generator)
        height, width = images.shape[-2:]
        size = [max(1, round(height * factor)), max(1, round(width * factor))]
        return F.resize(images, size, interpolation=InterpolationMode.BILINEAR, antialias=False)


@dataclass(frozen=True)
class RandomRotate:
    """Bilinear rotation by an angle in degrees drawn from ``angles``, the corners filled with grey
    (blended through a rotated mask: torchvision's own ``fill`` works in place and breaks autograd)."""

    angles: tuple[float, ...]

    def __call__(self, images, generator):
        angle = float(choice(self.angles, generator))
        rotated, inside = (
            F.rotate(x, angle, interpolation=InterpolationMode.BILINEAR)
            for x in (images, torch.ones_like(images[:1, :1]))
        )
        return rotated + (1 - inside) * PAD_FILL


@dataclass(frozen=True)
class Blur:
    """A Gaussian blur of standard deviation ``sigma`` pixels, every step."""

    sigma: float

    def __call__(self, images, generator):
        kernel = 2 * round(2 * self.sigma) + 1
        return F.gaussian_blur(images, [kernel, kernel], [self.sigma, self.sigma])


LUCID_SIZE = 224  # the image size Lucid's pixel distances are for


def standard_transforms(size: int) -> tuple[Transform, ...]:
    """Lucid's standard set with its pixel distances scaled from 224 px to ``size`` (at least 1 px);
    scaling and rotation are relative already."""

    def pixels(distance: int) -> int:
        return max(1, round(distance * size / LUCID_SIZE))

    return (
        Pad(pixels(12)),
        Jitter(pixels(8)),
        RandomScale(tuple(1 + (i - 5) / 50 for i in range(11))),
        RandomRotate(tuple(range(-10, 11))),
        Jitter(pixels(4)),
    )


STANDARD = standard_transforms(LUCID_SIZE)
TRANSFORMS = {"pad": Pad, "jitter": Jitter, "scale": RandomScale, "rotate": RandomRotate, "blur": Blur}


TRANSFORM_ARGUMENTS = {
    "pad": "a whole number of pixels, 0 or more",
    "jitter": "a whole number of pixels, 0 or more",
    "scale": "a list of positive factors",
    "rotate": "a list of angles in degrees",
    "blur": "a positive standard deviation in pixels",
}


def transform_from_config(spec: dict) -> Transform:
    """One transform from ``{"jitter": 8}``, ``{"scale": [0.9, 1.1]}``, ``{"rotate": [-5, 0, 5]}``..."""
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in TRANSFORMS:
        raise UserInputError(
            f"transform {spec} is not one of {sorted(TRANSFORMS)} with its argument, e.g. {{jitter: 8}}"
        )
    name, argument = next(iter(spec.items()))
    if not valid_argument(name, argument):
        raise UserInputError(f"transform {spec}: the argument of {name} must be {TRANSFORM_ARGUMENTS[name]}")
    return TRANSFORMS[name](tuple(argument) if isinstance(argument, list) else argument)


def valid_argument(name: str, argument) -> bool:
    """Whether ``argument`` is what transform ``name`` takes (``TRANSFORM_ARGUMENTS``)."""
    if name in ("pad", "jitter"):
        return is_number(argument) and isinstance(argument, int) and argument >= 0
    if name == "blur":
        return is_number(argument) and argument > 0
    if not isinstance(argument, list) or not argument or not all(is_number(value) for value in argument):
        return False
    return name == "rotate" or all(value > 0 for value in argument)


def apply(transforms: Sequence[Transform], images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The transforms in order, then back to the input's size: a centre crop, grey padding first where
    the result is smaller."""
    height, width = images.shape[-2:]
    for transform in transforms:
        images = transform(images, generator)
    pad_y, pad_x = max(0, height - images.shape[-2]), max(0, width - images.shape[-1])
    if pad_y or pad_x:
        padding = [pad_x // 2, pad_y // 2, pad_x - pad_x // 2, pad_y - pad_y // 2]
        images = F.pad(images, padding, fill=PAD_FILL)
    return F.center_crop(images, [height, width])
