"""The module's criterion made element-wise, with the rule of its mean, so that a loss summed over chunks
of any size equals the criterion applied to the whole evaluation set at once."""

import copy

import torch
from torch import nn

from lightning_app.errors import UserInputError

CLASS_WEIGHTED = (nn.CrossEntropyLoss, nn.NLLLoss)


class ElementwiseLoss:
    """Per-element losses of ``criterion`` and the denominator of its mean.

    A torch loss with ``reduction='mean'`` divides the sum of its element losses by the number of elements
    that count (not ``ignore_index``), or, for a cross-entropy or NLL loss with class ``weight``, by the
    sum of the weights of their target classes. ``fn`` is a copy of the criterion with
    ``reduction='none'`` (the class weights stay in it); the LCA loss of a set is
    ``sum(fn(outputs, targets) * counted(targets)) / total`` over its chunks.
    """

    def __init__(self, criterion: nn.Module) -> None:
        if not isinstance(criterion, nn.Module) or getattr(criterion, "reduction", None) != "mean":
            raise UserInputError(
                "LCA needs the module's criterion to be a torch loss averaged over elements "
                "(reduction='mean'), such as CrossEntropyLoss or BCEWithLogitsLoss; "
                f"got {type(criterion).__name__}"
            )
        self.fn = copy.copy(criterion)
        self.fn.reduction = "none"
        ignore_index = getattr(criterion, "ignore_index", None)
        self.ignore_index = ignore_index if isinstance(ignore_index, int) and ignore_index >= 0 else None
        weight = criterion.weight if isinstance(criterion, CLASS_WEIGHTED) else None
        self.class_weight = None if weight is None else weight.detach().double().cpu()

    def counted(self, targets: torch.Tensor) -> torch.Tensor:
        """1.0 for the elements the mean counts, 0.0 for ignored ones (float64, the targets' shape)."""
        if self.ignore_index is None:
            return torch.ones(targets.shape, dtype=torch.float64, device=targets.device)
        return (targets != self.ignore_index).double()

    def total(self, targets: torch.Tensor) -> float:
        """The denominator of the mean over ``targets``: counted elements, or their class weights."""
        counted = self.counted(targets).cpu()
        if self.class_weight is None or targets.is_floating_point():
            return float(counted.sum())
        classes = torch.where(counted.bool(), targets.cpu().long(), 0)
        return float((self.class_weight[classes] * counted).sum())
