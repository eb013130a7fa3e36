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
    """The class explained per example, its probability, and the regions of segmentation targets."""

    classes: torch.Tensor
    probabilities: torch.Tensor
    regions: torch.Tensor | None

    @property
    def forward_args(self) -> tuple | None:
        return None if self.regions is None else (self.regions,)


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
    truth = labels.reshape(predicted.shape) == index
    region = truth if target == "true" else predicted
    regions = torch.zeros_like(logits)
    regions[:, channel] = region.to(logits.dtype)
    shown = probabilities if not binary or index == 1 else 1 - probabilities
    mean_probability = (shown * region).sum(dim=(1, 2)) / region.sum(dim=(1, 2)).clamp(min=1)
    return Targets(torch.full((len(logits),), channel, device=logits.device), mean_probability, regions)
