"""The fixed evaluation subsets of classification splits that callbacks evaluate on."""

import torch

from lightning_app.errors import UserInputError


def subset_positions(
    labels: torch.Tensor, num_classes: int, split: str, size: int | None, per_class: int | None, seed: int
) -> torch.Tensor:
    """Sorted positions in a split with ``labels``: ``size`` drawn with ``seed``, or the first ``per_class``
    of each class in a seeded order (exactly one of the two is given)."""
    if size is not None and per_class is not None:
        raise UserInputError("give either size or per_class for an evaluation subset, not both")
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    if per_class is not None:
        ordered = labels[order]
        positions = torch.cat([order[ordered == c][:per_class] for c in range(num_classes)])
    elif size > len(labels):
        raise UserInputError(f"an evaluation subset of {size} images exceeds the {len(labels)} of {split}")
    else:
        positions = order[:size]
    return positions.sort().values
