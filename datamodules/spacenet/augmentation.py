"""Training augmentation with albumentations, configured in the YAML as a list of ``{Transform: {args}}``
and applied to image and mask together, with fresh random draws for every sample.

albumentations' ``Compose`` keeps its own random state, seeded once; copied into DataLoader workers it
would repeat the same draws in each. So each sample re-seeds it from torch's generator, which Lightning
seeds per run, per worker and per epoch: runs reproduce, samples differ. The seed makes one generator
that all transforms share, so each transform's draw is independent of the others'.

When every transform is a flip or a 90 degree rotation with only ``p`` set (the default), they are drawn
the same way (torch's generator, each with its ``p``; a rotation by 0 to 3 quarter turns as
albumentations' ``RandomRotate90`` draws) but applied to the raw pixels before the normalisation, as
numpy views that at most one copy materialises (uint16 moves half the bytes of float32); albumentations'
copies after every transform cost as much as reading the window (see bench/spacenet_loading.py).
"""

import random

import albumentations as A
import numpy as np
import torch

from datamodules.transform_specs import build_transform

# Geometric only: right for any band count, dtype and normalisation.
DEFAULT_AUGMENTATIONS = (
    {"HorizontalFlip": {"p": 0.5}},
    {"VerticalFlip": {"p": 0.5}},
    {"RandomRotate90": {"p": 0.5}},
)


VIEW_TRANSFORMS = (A.HorizontalFlip, A.VerticalFlip, A.RandomRotate90)
SAME_BITS_SIGNED = {np.dtype(np.uint16): np.int16, np.dtype(np.uint32): np.int32}  # torch moves these bits


def _view(transform: A.BasicTransform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(transform, A.HorizontalFlip):
        return image[..., ::-1], mask[:, ::-1]
    if isinstance(transform, A.VerticalFlip):
        return image[..., ::-1, :], mask[::-1]
    turns = int(torch.randint(4, (1,)))
    return np.rot90(image, turns, axes=(-2, -1)), np.rot90(mask, turns)


def _materialised(view: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``view`` (flips and quarter turns of ``base``) ready for the normalisation. With rows and columns
    swapped it stays a view, which the normalisation reads in its one pass; flips alone are copied by
    torch, vectorised, where numpy reads negative strides 2-3x slower."""
    if abs(view.strides[-1]) != view.itemsize:
        return view
    flipped = [axis for axis in (-2, -1) if view.strides[axis] < 0]
    if not flipped:
        return view
    pixels = torch.from_numpy(base.view(SAME_BITS_SIGNED.get(base.dtype, base.dtype)))
    return pixels.flip(flipped).numpy().view(base.dtype)


class Augmentation:
    """Callable ``(image (C, H, W), mask (H, W)) -> (image, mask)`` applying the configured transforms.
    ``on_raw_pixels``: the transforms are flips and rotations (module docstring), so they may run on the
    raw pixels, before the normalisation."""

    def __init__(self, specs: list[dict]) -> None:
        transforms = [build_transform(spec, A, A.BasicTransform, "an albumentations") for spec in specs]
        self.compose = A.Compose(transforms)
        self.on_raw_pixels = all(
            type(transform) in VIEW_TRANSFORMS and set(spec[next(iter(spec))] or {}) <= {"p"}
            for transform, spec in zip(transforms, specs, strict=True)
        )
        self.transforms = transforms

    def __call__(self, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.on_raw_pixels:
            view, labels = image, mask
            for transform in self.transforms:
                if float(torch.rand(1)) < transform.p:
                    view, labels = _view(transform, view, labels)
            return _materialised(view, image), labels
        seed = int(torch.randint(2**31 - 1, (1,)))
        # shared generators: Compose.set_random_seed gives every transform its own generator with the same
        # seed, so all of them would fire together (two flips: never a reflection)
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        result = self.compose(image=image.transpose(1, 2, 0), mask=mask)
        return result["image"].transpose(2, 0, 1), result["mask"]
