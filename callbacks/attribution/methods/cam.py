"""Class activation maps of a layer (``layer``: its name; default the last Conv2d), upsampled
bilinearly to the input: Grad-CAM and Guided Grad-CAM (Captum), Grad-CAM++ and Score-CAM."""

import captum.attr
import torch
from captum.attr import LayerAttribution
from torch import nn

from callbacks.attribution.attributions import Attributions
from callbacks.attribution.methods.base import PERTURBATIONS_PER_EVAL, AttributionMethod, select_rows
from callbacks.attribution.methods.registry import register_method
from callbacks.model_copy import find_layer, last_conv_layer_name

STABILISER = 1e-7


class LayerMethod(AttributionMethod):
    """A method that reads one layer of the model."""

    our_keys = frozenset({"layer"})

    @property
    def layer_name(self) -> str | None:
        return self.params.get("layer")

    def layer(self, scores: nn.Module) -> nn.Module:
        return find_layer(scores, "model." + (self.layer_name or last_conv_layer_name(scores.model)))

    def attributor(self, scores: nn.Module, inputs: torch.Tensor, forward_args: tuple | None):
        return self.captum_class(scores, self.layer(scores))

    def attribute(self, scores, inputs, targets, forward_args=None) -> Attributions:
        values = super().attribute(scores, inputs, targets, forward_args).values
        return Attributions(upsampled(values, inputs))


def upsampled(values: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Layer maps (N, 1 or C, h, w) at the input's size and shape."""
    if values.shape[-2:] != inputs.shape[-2:]:
        values = LayerAttribution.interpolate(values, tuple(inputs.shape[-2:]), "bilinear")
    return values.expand_as(inputs).detach().contiguous()


@register_method
class LayerGradCam(LayerMethod):
    """Grad-CAM (Selvaraju et al. 2017): the layer's channels weighted by their mean gradient."""

    captum_class = captum.attr.LayerGradCam


@register_method
class GuidedGradCam(LayerMethod):
    """Guided Grad-CAM: Grad-CAM times guided backpropagation, at the input's resolution."""

    captum_class = captum.attr.GuidedGradCam


@register_method
class GradCamPlusPlus(LayerMethod):
    """Grad-CAM++ (Chattopadhay et al. 2018): channels weighted by their positive gradients, each
    scaled by the closed-form coefficient of an exponential score (as pytorch-grad-cam computes it)."""

    def attribute(self, scores, inputs, targets, forward_args=None) -> Attributions:
        activations, gradients = layer_activations_and_gradients(
            scores, self.layer(scores), inputs, targets, forward_args
        )
        squared = gradients.pow(2)
        alpha = squared / (
            2 * squared + activations.sum(dim=(2, 3), keepdim=True) * gradients.pow(3) + STABILISER
        )
        alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
        weights = (alpha * gradients.relu()).sum(dim=(2, 3), keepdim=True)
        cam = (weights * activations).sum(dim=1, keepdim=True).relu()
        return Attributions(upsampled(cam, inputs))


@register_method
class ScoreCam(LayerMethod):
    """Score-CAM (Wang et al. 2020): each channel of the layer, upsampled and scaled to [0, 1], masks
    the input; the channels are weighted by the softmax over channels of the masked inputs' scores.
    One forward pass per channel, ``perturbations_per_eval`` masked copies at a time (default 64)."""

    our_keys = frozenset({"layer", "perturbations_per_eval"})

    def attribute(self, scores, inputs, targets, forward_args=None) -> Attributions:
        layer = self.layer(scores)
        with torch.no_grad():
            activations = layer_output(scores, layer, inputs, forward_args)
            masks = upsampled_masks(activations, inputs)
            batch = self.params.get("perturbations_per_eval", PERTURBATIONS_PER_EVAL)
            channel_scores = torch.stack(
                [
                    masked_scores(
                        scores,
                        inputs[i],
                        masks[i],
                        int(targets[i]),
                        select_rows(forward_args, i, i + 1),
                        batch,
                    )
                    for i in range(len(inputs))
                ]
            )
            weights = channel_scores.softmax(dim=1)[:, :, None, None]
            cam = (weights * activations).sum(dim=1, keepdim=True).relu()
        return Attributions(upsampled(cam, inputs))


def layer_output(scores: nn.Module, layer: nn.Module, inputs: torch.Tensor, forward_args) -> torch.Tensor:
    """The output of ``layer`` for ``inputs``."""
    return layer_activations_and_gradients(scores, layer, inputs, None, forward_args)[0]


def layer_activations_and_gradients(
    scores: nn.Module, layer: nn.Module, inputs: torch.Tensor, targets: torch.Tensor | None, forward_args
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The output of ``layer`` for ``inputs`` and, with ``targets``, the gradient of each example's
    target score with respect to it."""
    captured = []
    handle = layer.register_forward_hook(lambda module, args, output: captured.append(output))
    # with targets, inputs on the graph, so that the layer's output is even with frozen parameters or
    # under no_grad; without, no graph at all
    wanted = targets is not None
    with torch.set_grad_enabled(wanted):
        try:
            output = scores(inputs.detach().requires_grad_(wanted), *(forward_args or ()))
        finally:
            handle.remove()
        activations = captured[0]
        if targets is None:
            return activations.detach(), None
        chosen = output.gather(1, targets[:, None]).sum()
        (gradients,) = torch.autograd.grad(chosen, activations)
    return activations.detach(), gradients


def upsampled_masks(activations: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """Each channel (N, C, h, w) upsampled to the input's size and scaled to [0, 1] per channel."""
    maps = LayerAttribution.interpolate(activations, tuple(inputs.shape[-2:]), "bilinear")
    low = maps.amin(dim=(2, 3), keepdim=True)
    high = maps.amax(dim=(2, 3), keepdim=True)
    return (maps - low) / (high - low).clamp(min=STABILISER)


def masked_scores(scores, image, masks, target: int, forward_args, batch: int) -> torch.Tensor:
    """The target score of ``image`` times each mask (C, H, W), ``batch`` masked copies per pass."""
    results = []
    for start in range(0, len(masks), batch):
        chunk = image.unsqueeze(0) * masks[start : start + batch, None]
        expanded = tuple(arg.expand(len(chunk), *arg.shape[1:]) for arg in forward_args or ())
        results.append(scores(chunk, *expanded)[:, target])
    return torch.cat(results)
