"""Gradient methods: Captum's classes as they are, with ``baseline`` (a number in input space or
``mean``, the probe images' channel means; default 0) where the method takes baselines."""

import captum.attr

from callbacks.attribution.methods.base import AttributionMethod
from callbacks.attribution.methods.registry import register_method


@register_method
class Saliency(AttributionMethod):
    """|gradient| of the score (``abs: false`` for the signed gradient); Simonyan et al. 2014."""

    captum_class = captum.attr.Saliency


@register_method
class InputXGradient(AttributionMethod):
    """Input times gradient."""

    captum_class = captum.attr.InputXGradient


@register_method
class IntegratedGradients(AttributionMethod):
    """Integrated Gradients from the baseline; Sundararajan et al. 2017."""

    captum_class = captum.attr.IntegratedGradients


@register_method
class GradientShap(AttributionMethod):
    """Expected gradients over noisy points between the baseline and the input."""

    captum_class = captum.attr.GradientShap


@register_method
class DeepLift(AttributionMethod):
    """DeepLIFT's rescale rule against the baseline."""

    captum_class = captum.attr.DeepLift


@register_method
class GuidedBackprop(AttributionMethod):
    """Guided backpropagation: only positive gradients through ReLUs."""

    captum_class = captum.attr.GuidedBackprop


@register_method
class Deconvolution(AttributionMethod):
    """Deconvolution: ReLUs applied to the gradient instead of the forward input."""

    captum_class = captum.attr.Deconvolution
