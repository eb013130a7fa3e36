"""Training augmentation with albumentations, configured in the YAML as a list of ``{Transform: {args}}``
and applied to image and mask together, with fresh random draws for every sample.

albumentations' ``Compose`` keeps its own random state, seeded once; copied into DataLoader workers it
would repeat the same draws in each. So each sample re-seeds it from torch's generator, which Lightning
seeds per run, per worker and per epoch: runs reproduce, samples differ. The seed makes one generator
that all transforms share, so each transform's draw is independent of the others'.

When every transform is a flip or a 90 degree rotation with only ``p`` set (the default), they are drawn
the same way (torch's generator, each with its ``p``; a rotation by 0 to 3 quarter turns as
albumentations' ``RandomRotate90`` draws) but applied to the raw pixels before the normalisation, as
numpy views composed into one of the 8 flips and rotations, which OpenCV then applies plane by plane in
one pass, in place unless a quarter turn changes the shape (uint16 moves half the bytes of float32);
albumentations' copies after every transform cost as much as reading the window (see
bench/spacenet_loading.py).
"""

import random

import albumentations as A
import cv2
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
# OpenCV copies by element size, so any dtype moves bit for bit as the OpenCV type of its width
MOVE_TYPES = {1: np.uint8, 2: np.uint16, 4: np.int32, 8: np.float64}


def _view(transform: A.BasicTransform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(transform, A.HorizontalFlip):
        return image[..., ::-1], mask[:, ::-1]
    if isinstance(transform, A.VerticalFlip):
        return image[..., ::-1, :], mask[::-1]
    turns = int(torch.randint(4, (1,)))
    return np.rot90(image, turns, axes=(-2, -1)), np.rot90(mask, turns)


def _move_plane(plane: np.ndarray, out: np.ndarray, transposed: bool, rows: bool, columns: bool) -> None:
    """``out`` = ``plane`` transposed (if), then its rows and columns reversed (if); ``out`` may be
    ``plane`` itself unless a non-square plane is transposed."""
    if transposed:
        cv2.transpose(plane, dst=out)
    if rows or columns:
        cv2.flip(out if transposed else plane, -1 if rows and columns else 0 if rows else 1, dst=out)


def _applied(view: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``view`` (flips and quarter turns of the C-contiguous ``base``, an image (C, H, W) or a mask (H, W))
    made real by OpenCV plane by plane, in ``base`` itself unless a quarter turn changes its shape. The
    copies are vectorised and cache-blocked (5x faster than numpy's for a flip, 6x for a quarter turn)
    and, in place, allocate nothing; the normalisation then reads contiguous pixels."""
    transposed = abs(view.strides[-1]) != view.itemsize
    rows, columns = view.strides[-2] < 0, view.strides[-1] < 0
    if not (transposed or rows or columns):
        return base
    out = base if view.shape == base.shape else np.empty(view.shape, dtype=base.dtype)
    move_type = MOVE_TYPES[base.itemsize]
    planes = base.view(move_type).reshape(-1, *base.shape[-2:])
    targets = out.view(move_type).reshape(-1, *out.shape[-2:])
    for plane, target in zip(planes, targets, strict=True):
        _move_plane(plane, target, transposed, rows, columns)
    return out


class Augmentation:
    """Callable ``(image (C, H, W), mask (H, W)) -> (image, mask)`` applying the configured transforms.
    ``on_raw_pixels``: the transforms are flips and rotations (module docstring), so they may run on the
    raw pixels, before the normalisation, and do so in the arrays given (overwritten) unless a quarter
    turn changes their shape."""

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
            return _applied(view, image), _applied(labels, mask)
        seed = int(torch.randint(2**31 - 1, (1,)))
        # shared generators: Compose.set_random_seed gives every transform its own generator with the same
        # seed, so all of them would fire together (two flips: never a reflection)
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))
        result = self.compose(image=image.transpose(1, 2, 0), mask=mask)
        return result["image"].transpose(2, 0, 1), result["mask"]
