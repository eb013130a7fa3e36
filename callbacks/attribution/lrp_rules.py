"""LRP rules per layer, from the YAML, as a Zennit composite.

A layer's rule comes from, in order: ``rules`` keys that match its name (a pattern such as
``net.conv1`` or ``features.*``), ``rules`` keys that name its type (``Conv2d``, ``Linear``), then the
named composite (its first layer -- the first convolution or linear layer the input meets -- and its
convolution and dense layers). Activations pass relevance on unchanged, and average pooling and the sums
of residual additions (:mod:`callbacks.attribution.residual_sums`) redistribute it in proportion to the
inputs, in every composite (as Zennit's own composites do). What no rule explains
(:mod:`callbacks.attribution.lrp_support`) is refused, unless ``gradient_fallback`` lets relevance pass
it by its gradient.
"""

from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from zennit.core import Composite
from zennit.layer import Sum
from zennit.rules import AlphaBeta, Epsilon, Gamma, Norm, Pass, ZBox, ZPlus
from zennit.types import Activation, AvgPool, Convolution, Linear

from callbacks.attribution.batch_norm_folding import BatchNormFolding, forward_with_leaf_hook
from callbacks.attribution.lrp_support import has_rule, unsupported_operations
from callbacks.attribution.residual_sums import ResidualSums
from lightning_app.errors import UserInputError

RULES = ("epsilon", "gamma", "zplus", "alpha1beta0", "zbox", "identity")
COMPOSITES = {  # name -> (first layer, other convolutions, dense layers)
    "epsilon": ("epsilon", "epsilon", "epsilon"),
    "epsilon_plus": ("zplus", "zplus", "epsilon"),
    "epsilon_gamma_box": ("zbox", "gamma", "epsilon"),
    "deep_taylor": ("zbox", "zplus", "zplus"),
}


@dataclass
class RuleSettings:
    """The named composite, the per-layer rules and the rules' parameters."""

    composite: str = "epsilon_plus"
    rules: dict[str, str] | None = None
    epsilon: float = 1e-6
    gamma: float = 0.25
    bounds: tuple[float, float] | None = None
    gradient_fallback: bool = False

    def check(self) -> None:
        if self.composite not in COMPOSITES:
            raise UserInputError(f"LRP composite {self.composite!r} is not one of {', '.join(COMPOSITES)}")
        for key, rule in (self.rules or {}).items():
            if rule not in RULES:
                raise UserInputError(f"LRP rules: {key}: {rule!r} is not one of {', '.join(RULES)}")
        if self.bounds is not None and (len(self.bounds) != 2 or not self.bounds[0] < self.bounds[1]):
            raise UserInputError(
                f"LRP bounds {self.bounds} must be [low, high] with low < high, in input space"
            )

    def check_model(self, model: nn.Module) -> None:
        """Before any training: every ``rules`` key names a layer (pattern) or a layer type of ``model``,
        and nothing in its forward is beyond LRP (unless ``gradient_fallback``)."""
        modules = dict(model.named_modules())
        types = {type(module).__name__ for module in modules.values()}
        unknown = [key for key in self.rules or {}
                   if key not in types and not any(fnmatchcase(name, key) for name in modules)]  # fmt: skip
        if unknown:
            raise UserInputError(
                f"LRP rules: {', '.join(unknown)} match no layer name or type of the model; its layers "
                f"are: {', '.join(name for name in modules if name)}"
            )
        self.refuse_unexplained(unsupported_operations(model) or [])

    def refuse_unexplained(self, names: list[str]) -> None:
        """Refuse LRP when ``names`` (operations no rule explains) is not empty, or with
        ``gradient_fallback`` warn that relevance passes them by their gradient."""
        if not names:
            return
        listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
        if not self.gradient_fallback:
            raise UserInputError(
                f"LRP cannot explain {listed}: relevance would pass them by their gradient, which does not "
                "conserve it; set the LRP method's gradient_fallback: true to go on anyway (the conservation "
                "ratio is logged), or use another attribution method"
            )
        rank_zero_warn(f"LRP has no rule for {listed}: relevance passes them by their gradient")

    def rule(self, name: str, low: torch.Tensor, high: torch.Tensor):
        """The Zennit rule called ``name``."""
        return {
            "epsilon": lambda: Epsilon(epsilon=self.epsilon),
            "gamma": lambda: Gamma(gamma=self.gamma),
            "zplus": ZPlus,
            "alpha1beta0": lambda: AlphaBeta(alpha=1.0, beta=0.0),
            "zbox": lambda: ZBox(low=low, high=high),
            "identity": Pass,
            "norm": Norm,
        }[name]()


def lrp_composite(
    model: nn.Module, inputs: torch.Tensor, settings: RuleSettings
) -> tuple[Composite, list[str]]:
    """The composite of ``settings`` for ``model``, with batch norms folded and residual additions
    split, and what it leaves to the gradient (refused unless ``gradient_fallback``); ``inputs`` give
    the first layer, the layers run, and the default z^B bounds (each channel's range over them)."""
    called = called_leaves(model, inputs[:1])
    first = next((name for name, module in called if isinstance(module, Linear)), None)
    names, unruled = rule_names(model, called, first, settings)
    unexplained = list(dict.fromkeys([*(unsupported_operations(model) or []), *unruled]))
    settings.refuse_unexplained(unexplained)
    low, high = box(inputs, settings.bounds)
    if names.get(first) == "zbox" and isinstance(model.get_submodule(first), nn.Linear):
        low, high = flat_box(low, high, inputs, model.get_submodule(first))
    rules = {name: settings.rule(rule, low, high) for name, rule in names.items()}
    by_module = {model.get_submodule(name): rule for name, rule in rules.items()}

    def rule_of(ctx, name: str, module: nn.Module):
        return Norm() if isinstance(module, Sum) else by_module.get(module)  # Sum: added by ResidualSums

    canonizers = [ResidualSums(), BatchNormFolding(inputs[:1].detach())]
    return Composite(module_map=rule_of, canonizers=canonizers), unexplained


def rule_names(
    model: nn.Module, called: list[tuple[str, nn.Module]], first: str | None, settings: RuleSettings
) -> tuple[dict[str, str], list[str]]:
    """Layer name -> rule name, for every layer the forward pass runs that gets a rule; and the layers
    that run without one."""
    first_rule, conv_rule, dense_rule = COMPOSITES[settings.composite]
    configured = settings.rules or {}
    unused = set(configured)
    names, by_gradient = {}, []
    for name, module in called:
        key = next((k for k in configured if fnmatchcase(name, k)), None)
        key = key or next((k for k in configured if k == type(module).__name__), None)
        if key is not None:
            unused.discard(key)
            if configured[key] != "identity" and not isinstance(module, Linear):
                raise UserInputError(
                    f"LRP rules: {key}: {configured[key]} applies to convolution and linear layers, not to "
                    f"{name} ({type(module).__name__}); give it 'identity' or leave it out"
                )
            names[name] = configured[key]
        elif name == first:
            names[name] = first_rule
        elif isinstance(module, Convolution):
            names[name] = conv_rule
        elif isinstance(module, nn.Linear):
            names[name] = dense_rule
        elif not has_rule(module):
            by_gradient.append(f"{type(module).__name__} ({name})")
        elif isinstance(module, Activation):
            names[name] = "identity"
        elif isinstance(module, (AvgPool, Sum)):
            names[name] = "norm"
    if unused:
        raise UserInputError(
            f"LRP rules: {', '.join(sorted(unused))} match no layer that runs; the layers are: "
            f"{', '.join(name for name, _ in called)}"
        )
    return names, by_gradient


def called_leaves(model: nn.Module, example: torch.Tensor) -> list[tuple[str, nn.Module]]:
    """(name, module) of the leaf modules one forward pass runs, in the order it first runs them."""
    order: dict[str, nn.Module] = {}

    forward_with_leaf_hook(
        model, example, lambda name, module, inputs, output: order.setdefault(name, module)
    )
    return list(order.items())


def box(inputs: torch.Tensor, bounds: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The z^B bounds (1, C, 1, 1): the configured numbers, or each channel's range over ``inputs``."""
    if bounds is not None:
        low, high = (torch.full((1, inputs.shape[1], 1, 1), float(b)).to(inputs) for b in bounds)
        return low, high
    return inputs.detach().amin(dim=(0, 2, 3), keepdim=True), inputs.detach().amax(
        dim=(0, 2, 3), keepdim=True
    )


def flat_box(low, high, inputs: torch.Tensor, first: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """The bounds of a first layer that is linear: one per input feature of the flattened image."""
    if first.in_features != inputs[0].numel():
        raise UserInputError(
            f"LRP: the first layer ({type(first).__name__}, {first.in_features} inputs) does not read the "
            f"flattened image ({inputs[0].numel()} values); z^B needs it to: choose the composite "
            "'epsilon_plus' or give the first layer another rule"
        )
    shape = (1, first.in_features)
    return low.expand_as(inputs[:1]).reshape(shape), high.expand_as(inputs[:1]).reshape(shape)
