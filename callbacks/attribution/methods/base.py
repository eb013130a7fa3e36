"""AttributionMethod: the base of every method adapter (one Captum attributor, its arguments, its figure)."""

import inspect
from typing import ClassVar

import torch
from matplotlib.figure import Figure
from torch import nn

from callbacks.attribution.attributions import Attributions
from callbacks.attribution.figures import attribution_figure
from callbacks.model_copy import find_layer
from callbacks.mosaic import Caption
from lightning_app.errors import UserInputError

PERTURBATIONS_PER_EVAL = 64  # perturbed copies evaluated in one forward pass (Lime, Occlusion, ablation)
SET_BY_US = frozenset({"self", "inputs", "target", "additional_forward_args", "kwargs"})


class AttributionMethod:
    """One attribution method with its YAML arguments, checked on creation.

    A subclass names the Captum class it wraps (``captum_class``), the keys it reads itself
    (``our_keys``) and the keys of Captum's ``attribute`` that it sets itself (``set_keys``); it
    overrides :meth:`attributor`, :meth:`captum_arguments` or :meth:`attribute` where the method needs
    more than ``captum_class(scores).attribute(inputs, target=..., **arguments)``, and :meth:`figure`
    when its result is not a heat map. Register it with
    :func:`~callbacks.attribution.methods.registry.register_method`.
    """

    name: ClassVar[str]
    captum_class: ClassVar[type | None] = None
    our_keys: ClassVar[frozenset[str]] = frozenset()
    set_keys: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, params: dict | None = None) -> None:
        self.params = dict(params or {})
        self.accepted = self.accepted_keys()
        unknown = sorted(set(self.params) - self.accepted)
        if unknown:
            raise UserInputError(
                f"attribution method {self.name} does not take {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(self.accepted))}"
            )
        self.check()

    def captum_keys(self) -> set[str]:
        """The arguments of the Captum attributor's ``attribute``."""
        return set(inspect.signature(self.captum_class.attribute).parameters) if self.captum_class else set()

    def accepted_keys(self) -> set[str]:
        """The YAML keys: Captum's ``attribute`` arguments (``baselines`` as ``baseline``) and ours."""
        keys = (self.captum_keys() - SET_BY_US - self.set_keys) | self.our_keys
        return (keys - {"baselines"}) | {"baseline"} if "baselines" in keys else keys

    def check(self) -> None:
        """Check the values of the arguments (names are checked already)."""

    def check_model(self, model: nn.Module) -> None:
        """Check, before any training, that the arguments fit ``model`` (layer names and the like)."""
        if self.layer_name is not None:
            find_layer(model, self.layer_name)

    @property
    def layer_name(self) -> str | None:
        """The layer the method reads, for methods that read one."""
        return None

    def attributor(self, scores: nn.Module, inputs: torch.Tensor, forward_args: tuple | None):
        """The Captum attributor of ``scores``."""
        return self.captum_class(scores)

    def captum_arguments(self, inputs: torch.Tensor, forward_args: tuple | None) -> dict:
        """The keyword arguments of the attributor's ``attribute``."""
        arguments = {k: v for k, v in self.params.items() if k not in self.our_keys}
        arguments["additional_forward_args"] = forward_args
        if "perturbations_per_eval" in self.accepted:
            arguments.setdefault("perturbations_per_eval", PERTURBATIONS_PER_EVAL)
        if "baseline" in self.accepted:
            arguments["baselines"] = baseline_image(arguments.pop("baseline", 0.0), inputs)
        return arguments

    def attribute(
        self,
        scores: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        forward_args: tuple | None = None,
    ) -> Attributions:
        """Attributions of ``scores(inputs, *forward_args)[i, targets[i]]`` to ``inputs``; ``scores`` is
        a :class:`~callbacks.attribution.targets.Scores` module."""
        attributor = self.attributor(scores, inputs, forward_args)
        values = attributor.attribute(inputs, target=targets, **self.captum_arguments(inputs, forward_args))
        return Attributions(values.detach())

    def figure(self, display: torch.Tensor, result: Attributions, captions: list[Caption]) -> Figure:
        """The figure of a result: per probe image, input | heat map | overlay."""
        return attribution_figure(self.name, display, result.values, captions)


def baseline_image(baseline, inputs: torch.Tensor) -> torch.Tensor:
    """One baseline image (1, C, H, W): the number everywhere, or the probe images' channel means."""
    if baseline == "mean":
        return inputs.mean(dim=(0, 2, 3), keepdim=True).expand_as(inputs[:1]).contiguous()
    if isinstance(baseline, int | float):
        return torch.full_like(inputs[:1], float(baseline))
    raise UserInputError(f"baseline must be a number or 'mean', not {baseline!r}")


def select_rows(forward_args: tuple | None, start: int, stop: int) -> tuple | None:
    """The additional forward arguments of examples ``start`` to ``stop``."""
    return None if forward_args is None else tuple(arg[start:stop] for arg in forward_args)
