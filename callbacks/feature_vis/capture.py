"""The outputs of named layers during a forward pass, with their autograd graph (objectives read them)."""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from callbacks.model_copy import find_layer

OUTPUT = "output"  # the name under which objectives read the model's output (logits)


@contextmanager
def captured_outputs(model: nn.Module, layers: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """While open, ``outputs[layer]`` holds each named layer's output of the last forward pass."""
    outputs: dict[str, torch.Tensor] = {}
    handles = [
        find_layer(model, name).register_forward_hook(
            lambda _m, _i, output, name=name: outputs.__setitem__(name, output)
        )
        for name in dict.fromkeys(layers)
        if name != OUTPUT
    ]
    try:
        yield outputs
    finally:
        for handle in handles:
            handle.remove()
