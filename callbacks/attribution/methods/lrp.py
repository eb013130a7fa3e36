"""Layer-wise Relevance Propagation with per-layer rules and named composites (Zennit)."""

import torch
from torch import nn
from torch.nn.functional import one_hot

from callbacks.attribution.attributions import Attributions
from callbacks.attribution.lrp_rules import RuleSettings, lrp_composite
from callbacks.attribution.methods.base import AttributionMethod
from callbacks.attribution.methods.registry import register_method
from callbacks.model_copy import find_layer


@register_method
class LRP(AttributionMethod):
    """Relevance of each input value for the explained score, propagated layer by layer (Bach et al.
    2015; Montavon et al. 2017), with Zennit's rules; the input relevance sums to the score.

    Keys: ``composite``: ``epsilon_plus`` (default: z+ in convolutions, epsilon in dense layers),
    ``deep_taylor`` (z^B at the first layer, z+ elsewhere), ``epsilon_gamma_box`` (z^B first, gamma in
    convolutions, epsilon in dense layers) or ``epsilon`` (everywhere); ``rules``: layer name pattern
    or type -> ``epsilon``, ``gamma``, ``zplus``, ``alpha1beta0``, ``zbox`` or ``identity``, over the
    composite; ``epsilon`` (1e-6) and ``gamma`` (0.25) of those rules; ``bounds``: [low, high] of the
    input for z^B in the model's input space (default each channel's range over the probe images);
    ``layers``: layer names whose output relevance is kept too (maps and per-filter rankings).
    Batch norms are folded into the layer before them first, and residual additions split relevance
    between their branches. Operations no rule explains (a functional sigmoid, an addition or product
    of computed tensors, attention, layer norm) are refused before training, naming them, unless
    ``gradient_fallback: true`` lets relevance pass them by their gradient. Each image's conservation,
    the input relevance over the explained score, is returned with the maps (1 when nothing absorbs
    relevance; biases keep their share under z+ and epsilon)."""

    our_keys = frozenset({"composite", "rules", "epsilon", "gamma", "bounds", "layers", "gradient_fallback"})

    def check(self) -> None:
        self.settings.check()

    def check_model(self, model: nn.Module) -> None:
        for name in self.layers:
            find_layer(model, name)
        self.settings.check_model(model)

    @property
    def settings(self) -> RuleSettings:
        keys = ("composite", "rules", "epsilon", "gamma", "bounds", "gradient_fallback")
        return RuleSettings(**{key: self.params[key] for key in keys if key in self.params})

    @property
    def layers(self) -> list[str]:
        return list(self.params.get("layers", []))

    def attribute(self, scores, inputs, targets, forward_args=None) -> Attributions:
        model = scores.model
        x = inputs.detach().clone().requires_grad_()
        captured: dict[str, torch.Tensor] = {}
        handles = [
            find_layer(model, name).register_forward_hook(
                lambda module, args, output, name=name: captured.__setitem__(name, output)
            )
            for name in self.layers
        ]
        composite, unexplained = lrp_composite(model, x, self.settings)
        try:
            with torch.enable_grad(), composite.context(model):
                logits = model(x)
                selection = forward_args[0] if scores.segmentation else one_hot(targets, logits.shape[1])
                explained = logits.detach() * selection
                relevances = torch.autograd.grad(logits, [x, *captured.values()], grad_outputs=explained)
        finally:
            for handle in handles:
                handle.remove()
        layers = {name: value.detach() for name, value in zip(captured, relevances[1:], strict=True)}
        conservation = relevances[0].detach().flatten(1).sum(1) / explained.flatten(1).sum(1)
        return Attributions(relevances[0].detach(), layer_relevance=layers or None, conservation=conservation,
                            unexplained=unexplained)  # fmt: skip
