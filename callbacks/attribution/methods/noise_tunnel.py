"""NoiseTunnel over another registered method, and SmoothGrad (NoiseTunnel over Saliency)."""

import captum.attr
import torch
from torch import nn

from callbacks.attribution.methods.base import AttributionMethod
from callbacks.attribution.methods.registry import build_method, register_method


@register_method
class NoiseTunnel(AttributionMethod):
    """``base`` (a gradient method, default Saliency) averaged over noisy copies of the input; takes
    the base method's arguments too."""

    captum_class = captum.attr.NoiseTunnel
    our_keys = frozenset({"base"})
    default_type: str | None = None

    def captum_keys(self) -> set[str]:
        return super().captum_keys() | build_method(self.params.get("base", "Saliency")).captum_keys()

    def attributor(self, scores: nn.Module, inputs: torch.Tensor, forward_args: tuple | None):
        base = build_method(self.params.get("base", "Saliency")).captum_class
        return captum.attr.NoiseTunnel(base(scores))

    def captum_arguments(self, inputs: torch.Tensor, forward_args: tuple | None) -> dict:
        arguments = super().captum_arguments(inputs, forward_args)
        if self.default_type:
            arguments.setdefault("nt_type", self.default_type)
        return arguments


@register_method
class SmoothGrad(NoiseTunnel):
    """SmoothGrad (Smilkov et al. 2017): Saliency averaged over noisy copies of the input."""

    our_keys = frozenset()
    default_type = "smoothgrad"
