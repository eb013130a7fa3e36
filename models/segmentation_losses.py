"""Segmentation losses from the YAML: smp.losses terms and their weighted sums.

``loss`` is a list of terms, each ``{name: ..., weight: 1.0, <the term's arguments>}``::

    loss:                       # 0.5 BCE + 0.5 Dice (selim_sef's bce_dice)
      - {name: bce, weight: 0.5}
      - {name: dice, weight: 0.5}

Names: ``bce`` / ``ce`` (binary / multi-class cross-entropy on logits), ``dice``, ``jaccard``, ``focal``,
``lovasz``, ``tversky`` (smp.losses), and ``fbeta`` (Lim et al.'s Keras ``DiceLoss(beta)``: the soft
F-beta score, which is smp's TverskyLoss with alpha = 1/(1+beta^2) on false positives and
beta^2/(1+beta^2) on false negatives). Lim et al.'s Keras settings: ``{name: jaccard, smooth: 1.0e-5}``
(batch-aggregated soft IoU), ``{name: focal, alpha: 0.25, gamma: 2}`` (alpha weighs the positives, as
in Keras), ``{name: fbeta, beta: 2}``. Every term ignores the DataModule's ``ignore_index`` pixels.
"""

from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from lightning_app.errors import UserInputError

SMP_TERMS = {
    "dice": smp.losses.DiceLoss,
    "jaccard": smp.losses.JaccardLoss,
    "focal": smp.losses.FocalLoss,
    "lovasz": smp.losses.LovaszLoss,
    "tversky": smp.losses.TverskyLoss,
}
TERM_NAMES = ("bce", "ce", "fbeta", *SMP_TERMS)


class BinaryCrossEntropy(nn.Module):
    """Binary cross-entropy on the logits (N, 1, H, W) of integer masks (N, H, W), averaged over the
    pixels that are not ``ignore_index`` (smp's SoftBCEWithLogitsLoss would count them in the mean).
    ``reduction='none'`` gives per-pixel losses (0 where ignored), as LCA needs."""

    def __init__(self, ignore_index: int = 255, reduction: str = "mean") -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.squeeze(1)
        valid = target != self.ignore_index
        per_pixel = (
            F.binary_cross_entropy_with_logits(logits, (target * valid).to(logits.dtype), reduction="none")
            * valid
        )
        if self.reduction == "none":
            return per_pixel
        return per_pixel.sum() / valid.sum().clamp(min=1)


class WeightedLoss(nn.Module):
    """The weighted sum of loss terms; ``last_terms`` keeps each term's last unweighted value, for logs."""

    def __init__(self, terms: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = weights
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        values = {name: term(logits, target) for name, term in self.terms.items()}
        self.last_terms = {name: value.detach() for name, value in values.items()}
        return sum(self.weights[name] * value for name, value in values.items())


def loss_term(name: str, args: dict[str, Any], binary: bool, ignore_index: int) -> nn.Module:
    """One term by name with its arguments, in binary or multi-class mode."""
    mode = "binary" if binary else "multiclass"
    if name == "bce":
        if not binary:
            raise UserInputError("loss 'bce' is for binary masks; use 'ce' for more classes")
        return BinaryCrossEntropy(ignore_index=ignore_index, **args)
    if name == "ce":
        return nn.CrossEntropyLoss(ignore_index=ignore_index, **args)
    if name == "fbeta":
        beta = float(args.pop("beta", 1.0))
        return smp.losses.TverskyLoss(
            mode, alpha=1 / (1 + beta**2), beta=beta**2 / (1 + beta**2), ignore_index=ignore_index, **args
        )
    if name not in SMP_TERMS:
        raise UserInputError(f"loss term {name!r} is not one of {', '.join(TERM_NAMES)}")
    return SMP_TERMS[name](mode, ignore_index=ignore_index, **args)


def build_loss(spec: list[dict[str, Any]], binary: bool, ignore_index: int) -> nn.Module:
    """The loss of a ``loss`` list: the term itself when there is one of weight 1 (so a cross-entropy
    keeps the ``reduction`` LCA needs), else their :class:`WeightedLoss`."""
    if not spec:
        raise UserInputError("model.loss is empty: give at least one term, e.g. [{name: bce}]")
    terms, weights = {}, {}
    for position, entry in enumerate(spec):
        args = dict(entry)
        name = args.pop("name", None)
        weight = float(args.pop("weight", 1.0))
        if name is None:
            raise UserInputError(f"model.loss[{position}] has no 'name' (one of {', '.join(TERM_NAMES)})")
        key = name if name not in terms else f"{name}_{position}"
        try:
            terms[key] = loss_term(name, args, binary, ignore_index)
        except TypeError as error:
            raise UserInputError(f"model.loss[{position}] ({name}): {error}") from None
        weights[key] = weight
    if len(terms) == 1 and next(iter(weights.values())) == 1.0:
        return next(iter(terms.values()))
    return WeightedLoss(terms, weights)
