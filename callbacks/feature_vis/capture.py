"""The outputs of named layers during a forward pass, with their autograd graph (objectives read them).

A pass whose objectives read no logits stops as soon as every named layer has produced its output:
rendering a ResNet's layer3 does not pay for layer4 and the head.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress

import torch
from torch import nn

from callbacks.model_copy import find_layer

OUTPUT = "output"  # the name under which objectives read the model's output (logits)


class ForwardStopped(Exception):
    """Raised by a hook once every layer an objective reads has produced its output."""


@contextmanager
def captured_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While open, :func:`forward` fills ``outputs[layer]`` with each named layer's output (and
    ``outputs[OUTPUT]`` with the model's output when it is among ``layers``)."""
    wanted = set(layers) - {OUTPUT}
    stop_early = OUTPUT not in layers
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str, output: torch.Tensor) -> None:
        outputs[name] = output
        if stop_early and wanted <= outputs.keys():
            raise ForwardStopped

    handles = [
        find_layer(model, name).register_forward_hook(lambda _m, _i, output, name=name: keep(name, output))
        for name in sorted(wanted)
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def forward(model: nn.Module, inputs: torch.Tensor, outputs: dict[str, torch.Tensor]) -> None:
    """One forward pass of ``inputs`` into ``outputs`` (opened by :func:`captured_outputs`)."""
    outputs.clear()
    with suppress(ForwardStopped):
        outputs[OUTPUT] = model(inputs)
