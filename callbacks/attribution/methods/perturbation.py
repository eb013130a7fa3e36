"""Perturbation methods: occlusion by a sliding square and ablation of single pixels."""

import captum.attr
import torch

from callbacks.attribution.methods.base import AttributionMethod
from callbacks.attribution.methods.registry import register_method


@register_method
class Occlusion(AttributionMethod):
    """Score drop when a ``window`` x ``window`` square (all channels) is replaced by the baseline, slid
    by ``stride`` pixels (defaults 4 and 2)."""

    captum_class = captum.attr.Occlusion
    our_keys = frozenset({"window", "stride"})
    set_keys = frozenset({"sliding_window_shapes", "strides"})

    def captum_arguments(self, inputs: torch.Tensor, forward_args: tuple | None) -> dict:
        window, stride = self.params.get("window", 4), self.params.get("stride", 2)
        return super().captum_arguments(inputs, forward_args) | {
            "sliding_window_shapes": (inputs.shape[1], window, window),
            "strides": (inputs.shape[1], stride, stride),
        }


@register_method
class FeatureAblation(AttributionMethod):
    """Score drop when each input value alone is replaced by the baseline."""

    captum_class = captum.attr.FeatureAblation
