"""Captum attribution methods configured by name and keyword arguments from the YAML.

Every method returns attributions of the input's shape. Besides Captum's own ``attribute`` arguments
(``n_steps``, ``nt_samples``, ``perturbations_per_eval``, ...) a few keys are ours:

- ``layer`` (LayerGradCam, GuidedGradCam): the layer's name; default the last Conv2d.
- ``baseline`` (methods with baselines): a number in input space, or ``mean`` for the per-channel
  mean of the probe images. Default 0.
- ``window``, ``stride`` (Occlusion): square sliding window and stride in pixels, over all channels.
- ``base`` (NoiseTunnel): the method it wraps, default Saliency. ``SmoothGrad`` is NoiseTunnel over
  Saliency with ``nt_type: smoothgrad``.
- ``superpixels`` (Lime): ``{algorithm: slic|quickshift|felzenszwalb, ...}`` passed to scikit-image;
  ``kernel_width`` of the cosine similarity kernel (0.25, as the ``lime`` package) and ``alpha`` of its
  ridge surrogate (1.0, as the ``lime`` package). Lime explains class probabilities, as ``lime`` does.

A dotted name (``my_package.MyAttribution``) uses any class with Captum's interface:
``Cls(forward_func).attribute(inputs, target=...)``.
"""

import importlib
import inspect
from dataclasses import dataclass

import captum.attr
import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import LayerAttribution
from captum.attr._core.lime import get_exp_kernel_similarity_function
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import PropagationRule
from skimage import segmentation
from torch import nn

from callbacks.model_copy import call_counts, find_layer, last_conv_layer_name
from lightning_app.errors import UserInputError

INPUT_METHODS = (
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "GradientShap",
    "DeepLift",
    "GuidedBackprop",
    "Deconvolution",
    "Occlusion",
    "FeatureAblation",
    "Lime",
    "LRP",
)
LAYER_METHODS = ("LayerGradCam", "GuidedGradCam")
WRAPPERS = ("NoiseTunnel", "SmoothGrad")
METHODS = INPUT_METHODS + LAYER_METHODS + WRAPPERS
OUR_KEYS = {
    "LayerGradCam": {"layer"},
    "GuidedGradCam": {"layer"},
    "Occlusion": {"window", "stride"},
    "NoiseTunnel": {"base"},
    "SmoothGrad": set(),
    "Lime": {"superpixels", "kernel_width", "alpha"},
}
PERTURBATIONS_PER_EVAL = 64  # perturbed copies evaluated in one forward pass (Lime, Occlusion, ablation)
SUPERPIXELS = {
    "slic": segmentation.slic,
    "quickshift": segmentation.quickshift,
    "felzenszwalb": segmentation.felzenszwalb,
}


@dataclass
class Attributions:
    """``values`` of the input's shape; for Lime also the superpixels (N, H, W) and their weights."""

    values: torch.Tensor
    superpixels: torch.Tensor | None = None
    weights: list[torch.Tensor] | None = None

    def rows(self, start: int, stop: int) -> "Attributions":
        """The attributions of examples ``start`` to ``stop`` (exclusive)."""
        if self.superpixels is None:
            return Attributions(self.values[start:stop])
        return Attributions(self.values[start:stop], self.superpixels[start:stop], self.weights[start:stop])


class AttributionMethod:
    """One Captum method with its arguments, checked against the method's signature on creation."""

    def __init__(self, name: str, params: dict | None = None) -> None:
        self.name = name
        self.params = dict(params or {})
        self.captum_class = _captum_class(name)
        self.accepted = self._accepted_keys()
        unknown = sorted(set(self.params) - self.accepted)
        if unknown:
            raise UserInputError(
                f"attribution method {name} does not take {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(self.accepted - {'inputs', 'target', 'self'}))}"
            )
        if name == "Lime":
            self._check_superpixels()

    def _accepted_keys(self) -> set[str]:
        keys = set(inspect.signature(self.captum_class.attribute).parameters) | OUR_KEYS.get(self.name, set())
        if "baselines" in keys:
            keys = (keys - {"baselines"}) | {"baseline"}
        if self.name in WRAPPERS:
            base = _captum_class(self.params.get("base", "Saliency"))
            keys = (keys - {"kwargs"}) | set(inspect.signature(base.attribute).parameters)
        if self.name == "Occlusion":
            keys -= {"sliding_window_shapes", "strides"}
        if self.name == "Lime":
            keys -= {"feature_mask", "return_input_shape"}
        return keys

    def _check_superpixels(self) -> None:
        algorithm = self.params.get("superpixels", {}).get("algorithm", "slic")
        if algorithm not in SUPERPIXELS:
            raise UserInputError(
                f"Lime superpixels algorithm {algorithm!r} is not one of {', '.join(SUPERPIXELS)}"
            )

    @property
    def layer_name(self) -> str | None:
        return self.params.get("layer") if self.name in LAYER_METHODS else None

    def attribute(
        self,
        scores: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        forward_args: tuple | None = None,
    ) -> Attributions:
        """Attributions of ``scores(inputs, *forward_args)[i, targets[i]]`` to ``inputs``; ``scores`` is
        a :class:`~callbacks.attribution.targets.Scores` module."""
        kwargs = {k: v for k, v in self.params.items() if k not in OUR_KEYS.get(self.name, set())}
        kwargs["additional_forward_args"] = forward_args
        if "perturbations_per_eval" in self.accepted:
            kwargs.setdefault("perturbations_per_eval", PERTURBATIONS_PER_EVAL)
        if "baseline" in self.accepted:
            kwargs["baselines"] = _baseline(kwargs.pop("baseline", 0.0), inputs)
        if self.name == "Lime":
            return self._lime(scores, inputs, targets, kwargs)
        if self.name in LAYER_METHODS:
            layer = find_layer(scores, "model." + (self.layer_name or last_conv_layer_name(scores.model)))
            values = self.captum_class(scores, layer).attribute(inputs, target=targets, **kwargs)
            if values.shape[-2:] != inputs.shape[-2:]:
                values = LayerAttribution.interpolate(values, tuple(inputs.shape[-2:]), "bilinear")
            return Attributions(values.expand_as(inputs).detach().contiguous())
        if self.name == "Occlusion":
            window, stride = self.params.get("window", 4), self.params.get("stride", 2)
            kwargs |= {
                "sliding_window_shapes": (inputs.shape[1], window, window),
                "strides": (inputs.shape[1], stride, stride),
            }
        if self.name in WRAPPERS:
            base = _captum_class(self.params.get("base", "Saliency"))
            attributor = captum.attr.NoiseTunnel(base(scores))
            if self.name == "SmoothGrad":
                kwargs.setdefault("nt_type", "smoothgrad")
        elif self.name == "LRP":
            attributor = captum.attr.LRP(_with_lrp_rules(scores, inputs[:1], forward_args))
        else:
            attributor = self.captum_class(scores)
        return Attributions(attributor.attribute(inputs, target=targets, **kwargs).detach())

    def _lime(self, scores, inputs, targets, kwargs) -> Attributions:
        options = dict(self.params.get("superpixels", {}))
        algorithm = SUPERPIXELS[options.pop("algorithm", "slic")]
        lime = captum.attr.Lime(
            scores if scores.segmentation else _Probabilities(scores),
            interpretable_model=SkLearnRidge(alpha=self.params.get("alpha", 1.0)),
            similarity_func=get_exp_kernel_similarity_function(
                "cosine", self.params.get("kernel_width", 0.25)
            ),
        )
        forward_args = kwargs.pop("additional_forward_args")
        masks, weights, values = [], [], []
        for index in range(len(inputs)):
            labels = superpixels(inputs[index], algorithm, options)
            weight = lime.attribute(
                inputs[index : index + 1],
                target=targets[index : index + 1],
                feature_mask=labels.expand_as(inputs[index]).unsqueeze(0),
                additional_forward_args=_select(forward_args, index),
                return_input_shape=False,
                **kwargs,
            ).detach()[0]
            masks.append(labels)
            weights.append(weight)
            values.append(weight[labels].expand_as(inputs[index]))
        return Attributions(torch.stack(values), torch.stack(masks), weights)


def superpixels(image: torch.Tensor, algorithm, options: dict) -> torch.Tensor:
    """Superpixel labels 0..S-1 (H, W) of one (C, H, W) image, segmented after scaling it to [0, 1]
    (grey images as RGB, as scikit-image expects)."""
    pixels = image.permute(1, 2, 0).detach().double().cpu().numpy()
    pixels = (pixels - pixels.min()) / max(pixels.max() - pixels.min(), 1e-12)
    if pixels.shape[2] != 3:
        pixels = np.repeat(pixels.mean(axis=2, keepdims=True), 3, axis=2)
    labels = torch.as_tensor(algorithm(pixels, **options), device=image.device)
    return torch.unique(labels, return_inverse=True)[1]


def _select(forward_args: tuple | None, index: int) -> tuple | None:
    return None if forward_args is None else tuple(arg[index : index + 1] for arg in forward_args)


class _Probabilities(nn.Module):
    def __init__(self, scores: nn.Module) -> None:
        super().__init__()
        self.scores = scores

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores(x).softmax(dim=-1)


class PassThroughRule(PropagationRule):
    """LRP through a reshape (Flatten): no hooks, autograd carries the relevance through unchanged."""

    def forward_hook(self, module, inputs, outputs) -> None:
        return None

    def forward_hook_weights(self, module, inputs, outputs) -> None:
        return None

    def forward_pre_hook_activations(self, module, inputs) -> None:
        return None

    def _manipulate_weights(self, module, inputs, outputs) -> None:
        return None


def _with_lrp_rules(scores: nn.Module, example: torch.Tensor, forward_args: tuple | None) -> nn.Module:
    """Give Captum's LRP a pass-through rule for reshapes and for modules the forward pass never calls
    (metrics, the loss); any other module without a rule is refused with its name."""
    called = call_counts(scores, example, *_select(forward_args, 0) or ())
    for name, module in scores.named_modules():
        if any(module.children()) or hasattr(module, "rule"):
            continue
        if name not in called or isinstance(module, nn.Flatten | nn.Identity):
            module.rule = PassThroughRule()
        elif (
            type(module) not in SUPPORTED_LAYERS_WITH_RULES
            and type(module) not in SUPPORTED_NON_LINEAR_LAYERS
        ):
            raise UserInputError(
                f"LRP does not support layer {name.removeprefix('model.')} ({type(module).__name__}): Captum "
                f"has rules for {', '.join(t.__name__ for t in SUPPORTED_LAYERS_WITH_RULES)} and "
                f"{', '.join(t.__name__ for t in SUPPORTED_NON_LINEAR_LAYERS)}; leave LRP out for this model"
            )
    return scores


def _baseline(baseline, inputs: torch.Tensor) -> torch.Tensor:
    """One baseline image (1, C, H, W): the number everywhere, or the probe images' channel means."""
    if baseline == "mean":
        return inputs.mean(dim=(0, 2, 3), keepdim=True).expand_as(inputs[:1]).contiguous()
    if isinstance(baseline, int | float):
        return torch.full_like(inputs[:1], float(baseline))
    raise UserInputError(f"baseline must be a number or 'mean', not {baseline!r}")


def _captum_class(name: str) -> type:
    if "." in name:
        module_name, _, class_name = name.rpartition(".")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise UserInputError(f"attribution method {name!r} cannot be imported: {error}") from error
    if name not in METHODS:
        raise UserInputError(
            f"attribution method {name!r} is not one of Captum's image attribution methods: "
            f"{', '.join(METHODS)}"
        )
    return captum.attr.NoiseTunnel if name in WRAPPERS else getattr(captum.attr, name)
