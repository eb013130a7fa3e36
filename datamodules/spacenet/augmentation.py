"""Training augmentation with albumentations, configured in the YAML as a list of ``{Transform: {args}}``
and applied to image and mask together, with fresh random draws for every sample.

albumentations' ``Compose`` keeps its own random state, seeded once; copied into DataLoader workers it
would repeat the same draws in each. So each sample re-seeds it from torch's generator, which Lightning
seeds per run, per worker and per epoch: runs reproduce, samples differ.
"""

import inspect

import albumentations as A
import numpy as np
import torch

from lightning_app.errors import UserInputError, describe

# Geometric only: right for any band count, dtype and normalisation.
DEFAULT_AUGMENTATIONS = (
    {"HorizontalFlip": {"p": 0.5}},
    {"VerticalFlip": {"p": 0.5}},
    {"RandomRotate90": {"p": 0.5}},
)


def _transform(spec: dict) -> A.BasicTransform:
    if not isinstance(spec, dict) or len(spec) != 1:
        raise UserInputError(f"data.augmentations: each item is {{TransformName: {{args}}}}, got {spec!r}")
    ((name, args),) = spec.items()
    transform_class = getattr(A, str(name), None)
    if not (isinstance(transform_class, type) and issubclass(transform_class, A.BasicTransform)):
        raise UserInputError(f"data.augmentations: {name!r} is not an albumentations transform")
    args = args or {}
    accepted = inspect.signature(transform_class.__init__).parameters
    unknown = sorted(set(args) - set(accepted) - {"self"})
    if unknown:
        raise UserInputError(
            f"data.augmentations: {name} has no argument {', '.join(unknown)}; it takes "
            f"{', '.join(p for p in accepted if p not in ('self', 'kwargs'))}"
        )
    try:
        return transform_class(**args)
    except (TypeError, ValueError) as error:
        raise UserInputError(f"data.augmentations: {name} {args}: {describe(error)}") from error


class Augmentation:
    """Callable ``(image (C, H, W), mask (H, W)) -> (image, mask)`` applying the configured transforms."""

    def __init__(self, specs: list[dict]) -> None:
        self.compose = A.Compose([_transform(spec) for spec in specs])

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.compose.set_random_seed(int(torch.randint(2**31 - 1, (1,))))
        result = self.compose(image=image.transpose(1, 2, 0), mask=mask)
        return result["image"].transpose(2, 0, 1), result["mask"]
