"""What an attribution explains: one score per example and class, and the class to explain.

For a classifier the score is the logit. For a segmentation network (output (N, classes, H, W)) it is
Captum's segmentation recipe: the sum of the class's logits over a fixed region, the pixels predicted
as that class (or its ground-truth pixels), so the region does not move when inputs are perturbed.
"""

from dataclasses import dataclass

import torch
from torch import nn

from lightning_app.errors import UserInputError

TARGET_CHOICES = "'predicted', 'true', a class index or a class name"


class Scores(nn.Module):
    """``forward(x, regions=None)``: the model's logits (N, classes), or for segmentation the logits
    summed over ``regions`` (N, classes, H, W). Captum passes ``regions`` as an additional forward
    argument, so it follows every expansion of the batch."""

    def __init__(self, model: nn.Module, segmentation: bool) -> None:
        super().__init__()
        self.model = model
        self.segmentation = segmentation

    def forward(self, x: torch.Tensor, regions: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.model(x)
        return (logits * regions).sum(dim=(2, 3)) if self.segmentation else logits


@dataclass
class Targets:
    """The output channel explained per example, its probability, and the regions of segmentation
    targets; ``complement`` when a one-channel segmentation explains the background (class 0)."""

    classes: torch.Tensor
    probabilities: torch.Tensor
    regions: torch.Tensor | None
    complement: bool = False

    @property
    def forward_args(self) -> tuple | None:
        return None if self.regions is None else (self.regions,)

    def class_indices(self, num_channels: int) -> torch.Tensor:
        """The class explained per example (for one-channel segmentation 1, or 0 for the complement)."""
        if num_channels > 1:
            return self.classes
        return torch.full_like(self.classes, 0 if self.complement else 1)

    def select(self, examples: torch.Tensor) -> "Targets":
        """The targets of the ``examples`` given by index, repeats allowed."""
        return Targets(
            self.classes[examples],
            self.probabilities[examples],
            None if self.regions is None else self.regions[examples],
            self.complement,
        )


def explained_probability(logits: torch.Tensor, targets: Targets) -> torch.Tensor:
    """The probability of each example's explained class: the softmax of a classifier's logits; for
    segmentation the class's probability (sigmoid for one channel) averaged over its fixed region."""
    if targets.regions is None:
        return logits.softmax(dim=-1).gather(1, targets.classes[:, None])[:, 0]
    if logits.shape[1] == 1:
        probabilities = logits.sigmoid()
        probabilities = 1 - probabilities if targets.complement else probabilities
    else:
        probabilities = logits.softmax(dim=1)
    region_sizes = targets.regions.sum(dim=(1, 2, 3)).clamp(min=1)
    return (probabilities * targets.regions).sum(dim=(1, 2, 3)) / region_sizes


def class_index(target: str | int, class_names: list[str], num_classes: int) -> int:
    """The index of a target given as an index or a class name; a clear error when out of range."""
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in class_names:
            raise UserInputError(
                f"target class {target!r} is not a class name; the classes are {class_names}"
            )
        return class_names.index(target)
    index = int(target)
    if not 0 <= index < num_classes:
        raise UserInputError(
            f"target class {index} is out of range: the model has {num_classes} classes (0-{num_classes - 1})"
        )
    return index


def resolve_targets(
    target: str | int, logits: torch.Tensor, labels: torch.Tensor, class_names: list[str]
) -> Targets:
    """The targets of ``target`` ({choices}) for a batch with these ``logits`` and ``labels``."""
    if logits.ndim == 4:
        return _segmentation_targets(target, logits, labels, class_names)
    probabilities = logits.softmax(dim=-1)
    if target == "predicted":
        classes = probabilities.argmax(dim=-1)
    elif target == "true":
        classes = labels.long()
    else:
        classes = torch.full_like(labels, class_index(target, class_names, logits.shape[-1])).long()
    return Targets(classes, probabilities.gather(1, classes[:, None])[:, 0], None)


resolve_targets.__doc__ = resolve_targets.__doc__.format(choices=TARGET_CHOICES)


def _segmentation_targets(target, logits: torch.Tensor, labels: torch.Tensor, class_names) -> Targets:
    num_classes = logits.shape[1]
    binary = num_classes == 1
    explicit = target not in ("predicted", "true")
    index = class_index(target, class_names, max(num_classes, 2)) if explicit else 1
    channel = 0 if binary else index
    if binary:
        probabilities = logits.sigmoid()[:, 0]
        predicted = probabilities > 0.5 if index == 1 else probabilities <= 0.5
    else:
        probabilities = logits.softmax(dim=1)[:, channel]
        predicted = logits.argmax(dim=1) == channel
    region = labels.reshape(predicted.shape) == index if target == "true" else predicted
    regions = torch.zeros_like(logits)
    regions[:, channel] = region.to(logits.dtype)
    channels = torch.full((len(logits),), channel, device=logits.device)
    targets = Targets(channels, torch.empty(0), regions, complement=binary and index == 0)
    targets.probabilities = explained_probability(logits, targets)
    return targets
