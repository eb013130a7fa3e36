"""Relevance per layer and per filter (the visualisation platform's combination method): a filter's
score is the total LRP relevance of its output map, summed over the probe images that explain one
class; the ranked filters are what the feature visualisation renders with ``channels:
{relevance_top: N}``."""

import numpy as np
import torch
from matplotlib.figure import Figure

from callbacks.attribution.methods import build_method
from callbacks.attribution.targets import Scores, resolve_targets

TOP_FILTERS = 8
RANKING_COMPOSITE = "deep_taylor"


def filter_scores(layer_relevance: torch.Tensor) -> torch.Tensor:
    """(N, C) total relevance of each filter's output per example, from a layer's relevance (N, C, ...)."""
    return layer_relevance.flatten(2).sum(dim=2) if layer_relevance.ndim > 2 else layer_relevance


def class_filter_scores(layer_relevance: torch.Tensor, classes: torch.Tensor) -> dict[int, torch.Tensor]:
    """Explained class -> (C,) relevance of each filter summed over the examples explaining it."""
    scores = filter_scores(layer_relevance)
    return {int(c): scores[classes == c].sum(dim=0) for c in classes.unique().tolist()}


def top_filters(scores: torch.Tensor, count: int) -> list[tuple[int, float]]:
    """(filter, share of the layer's total relevance) of the ``count`` filters with the most relevance."""
    total = scores.sum().item()
    order = torch.argsort(scores, descending=True, stable=True)[:count]
    return [(int(f), float(scores[f]) / total if total else 0.0) for f in order]


def ranked_filters(model: torch.nn.Module, inputs: torch.Tensor, layers: list[str], count: int):
    """Layer -> the ``count`` filters with the most Deep Taylor relevance (z+, z^B at the input) for
    the predicted classes of ``inputs``, summed over them, as (filter, share of the layer's relevance)."""
    with torch.no_grad():
        logits = model(inputs)
    scores = Scores(model, segmentation=logits.ndim == 4)
    targets = resolve_targets("predicted", logits, torch.zeros(len(inputs)), [])
    method = build_method("LRP", {"composite": RANKING_COMPOSITE, "layers": layers})
    result = method.attribute(scores, inputs, targets.classes, targets.forward_args)
    return {
        layer: top_filters(filter_scores(result.layer_relevance[layer]).sum(dim=0), count) for layer in layers
    }


def filter_ranking_figure(layer: str, per_class: dict[str, torch.Tensor], count: int = TOP_FILTERS) -> Figure:
    """One bar chart per explained class: the ``count`` filters of ``layer`` with the most relevance,
    as a share of the layer's total relevance for that class."""
    columns = min(len(per_class), 5)
    rows = -(-len(per_class) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for ax, (name, scores) in zip(axes, per_class.items(), strict=False):
        ranking = top_filters(scores, count)
        shares = [100 * share for _, share in ranking]
        ax.bar(range(len(ranking)), shares, color="tab:green")
        ax.set_xticks(range(len(ranking)), [str(f) for f, _ in ranking], fontsize=7)
        ax.set_title(f"{name}: top {len(ranking)} = {sum(shares):.0f} %", fontsize=9)
        ax.set_xlabel("filter", fontsize=8)
        ax.set_ylabel("% of layer relevance", fontsize=8)
    for ax in axes[len(per_class) :]:
        ax.set_visible(False)
    figure.suptitle(f"{layer}: filters ranked by total LRP relevance, per explained class")
    return figure
