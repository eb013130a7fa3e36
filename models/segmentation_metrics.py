"""Segmentation metrics (torchmetrics, synchronised across DDP processes).

Pixel metrics at a threshold come from torchmetrics (pixel accuracy, IoU, Dice/F1, precision, recall;
binary on the positive class, macro over classes for multi-class masks, whose IoU is then the mean IoU
and which add the mean per-class accuracy and each class's IoU). Two are written here because
torchmetrics has no equivalent: Lim et al.'s soft IoU, and SpaceNet's building F1 counts.
"""

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryF1Score,
    BinaryJaccardIndex,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassJaccardIndex,
    MulticlassPrecision,
    MulticlassRecall,
)

from datamodules.spacenet.building_score import Counts

SOFT_IOU_SMOOTH = 1e-5


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Per-class probabilities: sigmoid of a single channel, else softmax over channels."""
    return logits.sigmoid() if logits.shape[1] == 1 else logits.softmax(dim=1)


class SoftIoU(Metric):
    """Lim et al.'s metric (Keras segmentation_models' ``IOUScore()``): IoU of the probabilities without a
    threshold, ``(sum p*y + 1e-5) / (sum p + sum y - sum p*y + 1e-5)`` over all pixels of a batch (per class,
    then the mean over classes), averaged over batches. Ignored pixels are left out, and so are batches
    without a valid pixel."""

    full_state_update = False

    def __init__(self, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("batches", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, target: torch.Tensor) -> None:
        """``scores``: probabilities of the positive class (N, H, W) or of every class (N, C, H, W)."""
        scores = scores.float()
        valid = target != self.ignore_index
        if scores.ndim == 3:
            scores, truth = scores[:, None], (target == 1)[:, None]
        else:
            classes = torch.arange(scores.shape[1], device=target.device)[None, :, None, None]
            truth = target[:, None] == classes
        if not valid.any():  # a batch of no-data pixels only says nothing
            return
        valid = valid[:, None].to(scores.dtype)
        truth = truth.to(scores.dtype) * valid
        scores = scores * valid
        dims = (0, 2, 3)
        intersection = (scores * truth).sum(dims)
        union = scores.sum(dims) + truth.sum(dims) - intersection
        self.total += ((intersection + SOFT_IOU_SMOOTH) / (union + SOFT_IOU_SMOOTH)).mean().double()
        self.batches += 1

    def compute(self) -> torch.Tensor:
        """The mean over batches with a valid pixel; NaN, with a warning, when there was none."""
        if self.batches == 0:
            rank_zero_warn("soft_iou: no valid (non-ignored) pixel in the whole set; it is NaN")
            return torch.tensor(float("nan"))
        return (self.total / self.batches).float()


class MeanClassAccuracy(MulticlassConfusionMatrix):
    """Long et al.'s mean accuracy: over the classes present in the target, the mean share of each one's
    pixels predicted as it. (torchmetrics' macro accuracy also averages in, as 0, classes that are only
    predicted.) Shares its confusion matrix with the IoUs in one MetricCollection."""

    def __init__(self, num_classes: int, ignore_index: int) -> None:
        super().__init__(num_classes=num_classes, ignore_index=ignore_index)

    def compute(self) -> torch.Tensor:
        matrix = self.confmat.double()
        totals = matrix.sum(dim=1)
        present = totals > 0
        return (matrix.diagonal()[present] / totals[present]).mean().float()


class ClassIoU(MulticlassJaccardIndex):
    """The IoU of one class of a multi-class mask, a scalar to log; NaN when the class is neither in the
    target nor predicted (0 would read as a failure). In one MetricCollection, the instances for every
    class and the mean IoU share a single confusion matrix (torchmetrics' compute groups)."""

    def __init__(self, class_index: int, num_classes: int, ignore_index: int) -> None:
        super().__init__(
            num_classes=num_classes, ignore_index=ignore_index, average="none", zero_division=float("nan")
        )
        self.class_index = class_index

    def compute(self) -> torch.Tensor:
        return super().compute()[self.class_index]


def class_iou_metrics(class_names: list[str], ignore_index: int) -> dict[str, ClassIoU]:
    """``iou_<class name>`` for every class (spaces in names become underscores)."""
    return {
        f"iou_{'_'.join(name.split())}": ClassIoU(index, len(class_names), ignore_index)
        for index, name in enumerate(class_names)
    }


def pixel_metrics(num_classes: int, threshold: float, ignore_index: int) -> MetricCollection:
    """soft_iou, pixel_accuracy, iou, dice, precision, recall; binary when ``num_classes`` is 2 (one logit
    channel), else macro averages (``iou`` is the mean IoU) and ``mean_accuracy`` (of the per-class
    accuracies)."""
    if num_classes == 2:
        options = {"threshold": threshold, "ignore_index": ignore_index}
        metrics = {
            "pixel_accuracy": BinaryAccuracy(**options),
            "iou": BinaryJaccardIndex(**options),
            "dice": BinaryF1Score(**options),
            "precision": BinaryPrecision(**options),
            "recall": BinaryRecall(**options),
        }
    else:
        options = {"num_classes": num_classes, "ignore_index": ignore_index, "average": "macro"}
        metrics = {
            "pixel_accuracy": MulticlassAccuracy(**options | {"average": "micro"}),
            "mean_accuracy": MeanClassAccuracy(num_classes, ignore_index),
            "iou": MulticlassJaccardIndex(**options),
            "dice": MulticlassF1Score(**options),
            "precision": MulticlassPrecision(**options),
            "recall": MulticlassRecall(**options),
        }
    return MetricCollection({"soft_iou": SoftIoU(ignore_index), **metrics})


class BuildingF1(Metric):
    """SpaceNet's building-level scores from per-tile match counts (true positives, false positives,
    false negatives): ``compute`` gives precision, recall and F1 over every tile of every process."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        for name in ("true_pos", "false_pos", "false_neg"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, counts: Counts) -> None:
        self.true_pos += counts.true_pos
        self.false_pos += counts.false_pos
        self.false_neg += counts.false_neg

    def compute(self) -> dict[str, torch.Tensor]:
        counts = Counts(int(self.true_pos), int(self.false_pos), int(self.false_neg))
        return {
            "building_precision": torch.tensor(counts.precision),
            "building_recall": torch.tensor(counts.recall),
            "building_f1": torch.tensor(counts.f1),
        }
