"""Faithfulness and localisation of attribution maps.

- Deletion (Samek et al. 2017; Petsiuk et al. 2018): the pixels are replaced by the baseline, the most
  relevant first, in ``steps`` equal parts; the curve is the probability of the explained class after
  each part, its area (AUC over the fraction removed) is low for a faithful map.
- Insertion: the same from the baseline image, the most relevant pixels put back first; high is good.
- ROAD (Rong et al. 2022): deletion whose removed pixels are filled by noisy linear imputation from
  their neighbours, so that the model cannot read the shape of the removed area; low is good.
- Relevance mass (Arras et al. 2022): the share of the positive relevance inside the explained class's
  true mask (segmentation); pointing game (Zhang et al. 2018): 1 when the map's maximum lies in it.

Every perturbed image of a curve is built on the fly and the model sees ``batch_size`` of them per pass.
"""

from collections.abc import Callable

import numpy as np
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve

from callbacks.attribution.targets import Targets, explained_probability

ROAD_NOISE = 0.01  # the standard deviation of the imputation noise (the ROAD authors' default)
NEIGHBOUR_WEIGHTS = ((-1, 0, 1 / 6), (1, 0, 1 / 6), (0, -1, 1 / 6), (0, 1, 1 / 6),
                     (-1, -1, 1 / 12), (-1, 1, 1 / 12), (1, -1, 1 / 12), (1, 1, 1 / 12))  # fmt: skip


def relevance_order(values: torch.Tensor) -> torch.Tensor:
    """(N, H*W) pixel positions by attribution summed over channels, the most relevant first."""
    return torch.argsort(values.sum(dim=1).flatten(1), dim=1, descending=True, stable=True)


def fraction_masks(order: torch.Tensor, steps: int, shape: tuple[int, int]) -> torch.Tensor:
    """(N, steps + 1, 1, H, W) booleans: after step k, the first k/steps of each example's ``order``."""
    positions = order.shape[1]
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(positions, device=order.device).expand_as(order))
    counts = torch.round(torch.linspace(0, positions, steps + 1, device=order.device)).long()
    return (rank[:, None, :] < counts[None, :, None]).reshape(len(order), steps + 1, 1, *shape)


def probability_curves(
    model: torch.nn.Module,
    targets: Targets,
    variants: Callable[[torch.Tensor], torch.Tensor],
    count: int,
    batch_size: int,
) -> torch.Tensor:
    """The explained class's probability of ``count`` variants of the inputs, ``variants(indices)``
    building those with the flat indices given (variant v of example n = n * per_example + v), run
    ``batch_size`` at a time. Returns the flat (count,) probabilities."""
    per_example = count // len(targets.classes)
    probabilities = []
    with torch.no_grad():
        for start in range(0, count, batch_size):
            indices = torch.arange(start, min(start + batch_size, count))
            chosen = targets.select(indices // per_example)
            probabilities.append(explained_probability(model(variants(indices)), chosen))
    return torch.cat(probabilities)


def morph_curves(model, inputs, targets, start, end, order, steps: int, batch_size: int) -> torch.Tensor:
    """(N, steps + 1) probabilities while the pixels of ``start`` turn into those of ``end`` in
    ``order``: ``start`` at step 0, ``end`` at the last."""
    masks = fraction_masks(order, steps, tuple(inputs.shape[-2:]))

    def variants(indices: torch.Tensor) -> torch.Tensor:
        examples, step = indices // (steps + 1), indices % (steps + 1)
        return torch.where(masks[examples, step], end[examples], start[examples])

    count = len(inputs) * (steps + 1)
    return probability_curves(model, targets, variants, count, batch_size).reshape(len(inputs), steps + 1)


def deletion_curves(model, inputs, targets, values, baseline, steps: int, batch_size: int) -> torch.Tensor:
    """(N, steps + 1): the most relevant pixels replaced by ``baseline`` (broadcast to the inputs)."""
    end = baseline.expand_as(inputs)
    return morph_curves(model, inputs, targets, inputs, end, relevance_order(values), steps, batch_size)


def insertion_curves(model, inputs, targets, values, baseline, steps: int, batch_size: int) -> torch.Tensor:
    """(N, steps + 1): from the baseline, the most relevant pixels of the inputs put back first."""
    start = baseline.expand_as(inputs)
    return morph_curves(model, inputs, targets, start, inputs, relevance_order(values), steps, batch_size)


def road_curves(model, inputs, targets, values, steps: int, batch_size: int, seed: int) -> torch.Tensor:
    """(N, steps + 1): deletion with noisy linear imputation of the removed pixels (ROAD, MoRF)."""
    masks = fraction_masks(relevance_order(values), steps, tuple(inputs.shape[-2:]))
    generator = torch.Generator().manual_seed(seed)
    imputed = torch.stack(
        [
            torch.stack([noisy_linear_imputation(image, mask[0], generator) for mask in image_masks])
            for image, image_masks in zip(inputs, masks, strict=True)
        ]
    )

    def variants(indices: torch.Tensor) -> torch.Tensor:
        return imputed[indices // (steps + 1), indices % (steps + 1)]

    count = len(inputs) * (steps + 1)
    return probability_curves(model, targets, variants, count, batch_size).reshape(len(inputs), steps + 1)


def noisy_linear_imputation(image: torch.Tensor, removed: torch.Tensor, generator) -> torch.Tensor:
    """``image`` (C, H, W) with the ``removed`` (H, W) pixels set, per channel, to the weighted mean of
    their 8 neighbours (1/6 direct, 1/12 diagonal, renormalised at the border) solved jointly as one
    sparse linear system, plus Gaussian noise of standard deviation ROAD_NOISE."""
    if not removed.any():
        return image
    if removed.all():  # nothing to impute from: the channel means
        means = image.mean(dim=(1, 2), keepdim=True).expand_as(image)
        return means + ROAD_NOISE * torch.randn(image.shape, generator=generator).to(image)
    height, width = removed.shape
    pixels = image.detach().cpu().double().reshape(image.shape[0], -1).numpy()
    unknown = removed.cpu().numpy().ravel()
    number = np.full(unknown.shape, -1)
    number[unknown] = np.arange(unknown.sum())
    rows, columns, weights = [], [], []
    right = np.zeros((unknown.sum(), image.shape[0]))
    total = np.zeros(unknown.sum())
    ys, xs = np.divmod(np.flatnonzero(unknown), width)
    for dy, dx, weight in NEIGHBOUR_WEIGHTS:
        y, x = ys + dy, xs + dx
        inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
        own = number[ys[inside] * width + xs[inside]]
        neighbour = y[inside] * width + x[inside]
        total[own] += weight
        unknown_neighbour = unknown[neighbour]
        rows.append(own[unknown_neighbour])
        columns.append(number[neighbour[unknown_neighbour]])
        weights.append(np.full(unknown_neighbour.sum(), -weight))
        np.add.at(right, own[~unknown_neighbour], weight * pixels[:, neighbour[~unknown_neighbour]].T)
    rows.append(np.arange(unknown.sum()))
    columns.append(np.arange(unknown.sum()))
    weights.append(total)
    size = int(unknown.sum())
    system = coo_matrix(
        (np.concatenate(weights), (np.concatenate(rows), np.concatenate(columns))), (size, size)
    )
    solved = spsolve(system.tocsc(), right).reshape(size, -1)
    filled = pixels.copy()
    noise = torch.randn(filled.shape[0], size, generator=generator, dtype=torch.float64).numpy()
    filled[:, unknown] = solved.T + ROAD_NOISE * noise
    return torch.from_numpy(filled).reshape(image.shape).to(image)


def curve_area(curves: torch.Tensor) -> torch.Tensor:
    """(N,) area under each curve over the fraction of pixels changed, 0 to 1 (trapezoids)."""
    steps = curves.shape[1] - 1
    return torch.trapezoid(curves, dx=1 / steps, dim=1)


def relevance_mass(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) share of the positive relevance (channels summed) inside the (N, H, W) ``masks``; 0 for a
    map without positive relevance."""
    positive = values.sum(dim=1).clamp(min=0)
    total = positive.sum(dim=(1, 2))
    inside = (positive * masks).sum(dim=(1, 2))
    return torch.where(total > 0, inside / total.clamp(min=torch.finfo(total.dtype).tiny), 0.0)


def pointing_game(values: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(N,) 1.0 where the map's maximum (channels summed) lies inside the (N, H, W) ``masks``, else 0."""
    peaks = values.sum(dim=1).flatten(1).argmax(dim=1)
    return masks.flatten(1).gather(1, peaks[:, None])[:, 0].to(values.dtype)
