"""Lime on superpixels, with Lees's five panels as its figure."""

import captum.attr
import numpy as np
import torch
from matplotlib.figure import Figure
from skimage import segmentation
from torch import nn

from callbacks.attribution.attributions import Attributions
from callbacks.attribution.figures import lime_figure
from callbacks.attribution.methods.base import AttributionMethod, select_rows
from callbacks.attribution.methods.captum_private import SkLearnRidge, get_exp_kernel_similarity_function
from callbacks.attribution.methods.registry import register_method
from callbacks.mosaic import Caption
from lightning_app.errors import UserInputError

SUPERPIXELS = {
    "slic": segmentation.slic,
    "quickshift": segmentation.quickshift,
    "felzenszwalb": segmentation.felzenszwalb,
}


@register_method
class Lime(AttributionMethod):
    """A ridge surrogate fitted on superpixels switched off and on (Ribeiro et al. 2016).

    ``superpixels: {algorithm: slic|quickshift|felzenszwalb, ...}`` are passed to scikit-image;
    ``kernel_width`` of the cosine similarity kernel (0.25) and ``alpha`` of the ridge surrogate (1.0)
    are those of the ``lime`` package. Lime explains class probabilities, as ``lime`` does."""

    captum_class = captum.attr.Lime
    our_keys = frozenset({"superpixels", "kernel_width", "alpha"})
    set_keys = frozenset({"feature_mask", "return_input_shape"})

    def check(self) -> None:
        algorithm = self.params.get("superpixels", {}).get("algorithm", "slic")
        if algorithm not in SUPERPIXELS:
            raise UserInputError(
                f"Lime superpixels algorithm {algorithm!r} is not one of {', '.join(SUPERPIXELS)}"
            )

    def attributor(self, scores: nn.Module, inputs: torch.Tensor, forward_args: tuple | None):
        return captum.attr.Lime(
            scores if scores.segmentation else _Probabilities(scores),
            interpretable_model=SkLearnRidge(alpha=self.params.get("alpha", 1.0)),
            similarity_func=get_exp_kernel_similarity_function(
                "cosine", self.params.get("kernel_width", 0.25)
            ),
        )

    def attribute(self, scores, inputs, targets, forward_args=None) -> Attributions:
        lime = self.attributor(scores, inputs, forward_args)
        arguments = self.captum_arguments(inputs, forward_args)
        del arguments["additional_forward_args"]
        options = dict(self.params.get("superpixels", {}))
        algorithm = SUPERPIXELS[options.pop("algorithm", "slic")]
        masks, weights, values = [], [], []
        for index in range(len(inputs)):
            labels = superpixels(inputs[index], algorithm, options)
            weight = lime.attribute(
                inputs[index : index + 1],
                target=targets[index : index + 1],
                feature_mask=labels.expand_as(inputs[index]).unsqueeze(0),
                additional_forward_args=select_rows(forward_args, index, index + 1),
                return_input_shape=False,
                **arguments,
            ).detach()[0]
            masks.append(labels)
            weights.append(weight)
            values.append(weight[labels].expand_as(inputs[index]))
        return Attributions(torch.stack(values), torch.stack(masks), weights)

    def figure(self, display: torch.Tensor, result: Attributions, captions: list[Caption]) -> Figure:
        return lime_figure(display, result.superpixels, result.weights, captions)


def superpixels(image: torch.Tensor, algorithm, options: dict) -> torch.Tensor:
    """Superpixel labels 0..S-1 (H, W) of one (C, H, W) image, segmented after scaling it to [0, 1]
    (grey images as RGB, as scikit-image expects)."""
    pixels = image.permute(1, 2, 0).detach().double().cpu().numpy()
    pixels = (pixels - pixels.min()) / max(pixels.max() - pixels.min(), 1e-12)
    if pixels.shape[2] != 3:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    labels = torch.as_tensor(algorithm(pixels, **options), device=image.device)
    return torch.unique(labels, return_inverse=True)[1]


class _Probabilities(nn.Module):
    def __init__(self, scores: nn.Module) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).softmax(dim=-1)
