"""A copy of the trained model that attribution and inspection may change, and lookup of its layers.

Captum's DeepLift, guided backprop, deconvolution and LRP hook activation modules; they break on
in-place activations and on an activation module called at several places of one forward pass (the
``self.relu`` of torchvision's and SMP's ResNet blocks). The copy fixes both, so the trained model, its
optimizer and its batch-norm statistics are never touched.
"""

import copy

import lightning.pytorch as pl
import torch
from torch import nn
from torchmetrics import Metric, MetricCollection

from lightning_app.errors import UserInputError


class CallSiteCopies(nn.Module):
    """Stands in for a parameter-free module that a forward pass calls ``calls`` times: the i-th call
    of a pass goes to the i-th of as many independent copies, so hooks see one call per module."""

    def __init__(self, module: nn.Module, calls: int) -> None:
        super().__init__()
        self.copies = nn.ModuleList(copy.deepcopy(module) for _ in range(calls))
        self.next_call = 0

    def forward(self, *args, **kwargs):
        module = self.copies[self.next_call]
        self.next_call = (self.next_call + 1) % len(self.copies)
        return module(*args, **kwargs)


def inspection_copy(pl_module: pl.LightningModule, example: torch.Tensor) -> nn.Module:
    """A deep copy of ``pl_module`` in eval mode, without its trainer, parameters frozen, activations
    not in place, and every parameter-free module that ``example``'s forward pass calls more than once
    split into one copy per call."""
    model = copy.deepcopy(pl_module, memo=shared_attributes(pl_module))
    model.eval().requires_grad_(False)
    for module in model.modules():
        if getattr(module, "inplace", False):
            module.inplace = False
    counts = call_counts(model, example)
    repeated = {
        name: calls
        for name, calls in counts.items()
        if calls > 1 and not any(model.get_submodule(name).parameters())
    }
    for name, calls in repeated.items():
        parent, _, child = name.rpartition(".")
        model.get_submodule(parent).register_module(child, CallSiteCopies(model.get_submodule(name), calls))
    model.register_forward_pre_hook(_restart_call_counts)
    return model


def shared_attributes(module: nn.Module) -> dict[int, object]:
    """``deepcopy`` memo entries for what a copy made for forward passes shares with ``module`` (and its
    submodules) instead of copying: a LightningModule's trainer (dropped), and plain objects such as the
    optimizer factory, which through its instantiators can reach the CLI, its callbacks and their open
    files."""
    containers = (dict, list, tuple, set, torch.Tensor, nn.Module, str, bytes, int, float, bool)
    shared: dict[int, object] = {}
    for part in module.modules():
        shared.update(
            (id(value), value) for value in vars(part).values() if not isinstance(value, containers)
        )
        if isinstance(part, pl.LightningModule):
            shared[id(part._trainer)] = None
    return shared


def call_counts(model: nn.Module, example: torch.Tensor, *forward_args) -> dict[str, int]:
    """How often the forward pass of ``example`` calls each leaf module, by name."""
    calls: dict[str, int] = {}
    leaves = [(name, module) for name, module in model.named_modules() if name and not any(module.children())]
    handles = [
        module.register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
        for name, module in leaves
    ]
    try:
        with torch.no_grad():
            model(example, *forward_args)
    finally:
        for handle in handles:
            handle.remove()
    return calls


def _restart_call_counts(model: nn.Module, _inputs) -> None:
    for module in model.modules():
        if isinstance(module, CallSiteCopies):
            module.next_call = 0


def network_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The model's submodules by name, without its metrics and loss modules."""
    skipped = tuple(
        name + "."
        for name, module in model.named_modules()
        if isinstance(module, Metric | MetricCollection | nn.modules.loss._Loss)
    )
    return {
        name: module
        for name, module in model.named_modules()
        if name and not (name + ".").startswith(skipped)
    }


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (as ``model.named_modules()`` spells it); a clear error otherwise."""
    layers = network_layers(model)
    if name not in layers:
        raise UserInputError(f"layer {name!r} is not in the model; its layers are: {', '.join(layers)}")
    return layers[name]


def conv_layer_names(model: nn.Module) -> list[str]:
    """Names of the model's 2-D convolutions, in definition order."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


def last_conv_layer_name(model: nn.Module) -> str:
    """The last 2-D convolution: the default layer of Grad-CAM."""
    names = conv_layer_names(model)
    if not names:
        raise UserInputError("the model has no Conv2d layer; name the layer for Grad-CAM with 'layer'")
    return names[-1]
