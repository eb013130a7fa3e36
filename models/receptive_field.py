"""Receptive fields of a network's layers, from its module graph (torch.fx) or measured by gradients.

Theoretical, per axis, through each layer with kernel k, stride s, padding p and dilation d
(k' = d (k - 1) + 1), from the input (size 1, stride 1, padding 0):

    size' = size + (k' - 1) stride,   stride' = stride s,   padding' = padding + p stride

A unit at position i of a layer sees input pixels ``i * stride - padding`` to that plus ``size - 1``.
Where branches meet (a residual addition, a concatenation) the field is the maximum over them: the
largest size, stride and padding. Global pooling, flattening and linear layers see the whole input
(``whole``). Up-sampling (transposed convolutions, ``nn.Upsample``) is not followed: the layers after it
have no computed field (``upsampled``).

Empirical: the gradient of one unit at the centre of a layer's output with respect to the input, summed
in absolute value over random inputs; the field is the extent of the pixels it reaches.
"""

from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from lightning_app.errors import UserInputError

Pair = tuple[int, int]


@dataclass(frozen=True)
class Field:
    """A receptive field per axis (height, width): its size, effective stride and effective padding in
    input pixels; ``whole`` when it covers the whole input (after global pooling or a linear layer);
    ``upsampled`` when an up-sampling layer lies between it and the input (not computed)."""

    size: Pair = (1, 1)
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    whole: bool = False
    upsampled: bool = False

    def through(self, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair = (1, 1)) -> "Field":
        if self.whole or self.upsampled:
            return self
        extent = [d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True)]
        return Field(
            tuple(r + (e - 1) * j for r, e, j in zip(self.size, extent, self.stride, strict=True)),
            tuple(j * s for j, s in zip(self.stride, stride, strict=True)),
            tuple(q + p * j for q, p, j in zip(self.padding, padding, self.stride, strict=True)),
        )


WHOLE = Field(whole=True)
UPSAMPLED = Field(upsampled=True)


def _pair(value) -> Pair:
    return (value, value) if isinstance(value, int) else tuple(value)


def _conv_padding(module: nn.Module) -> Pair:
    if module.padding == "valid":
        return (0, 0)
    if module.padding == "same":
        return tuple((d * (k - 1)) // 2 for k, d in zip(module.kernel_size, module.dilation, strict=True))
    return _pair(module.padding)


def _through_module(module: nn.Module, field: Field) -> Field:
    if isinstance(module, nn.Conv2d):
        return field.through(module.kernel_size, module.stride, _conv_padding(module), module.dilation)
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        dilation = _pair(getattr(module, "dilation", 1))
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        return field.through(_pair(module.kernel_size), stride, _pair(module.padding), dilation)
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d | nn.Linear | nn.Flatten):
        return WHOLE
    if isinstance(module, nn.ConvTranspose2d | nn.Upsample):
        return UPSAMPLED
    return field  # element-wise: activations, normalisation, dropout


def _merged(fields: list[Field]) -> Field:
    if any(field.upsampled for field in fields):
        return UPSAMPLED
    if any(field.whole for field in fields):
        return WHOLE
    size, stride, padding = (
        tuple(max(axis) for axis in zip(*(getattr(field, part) for field in fields), strict=True))
        for part in ("size", "stride", "padding")
    )
    return Field(size, stride, padding)


GLOBAL_FUNCTIONS = {torch.flatten, torch.nn.functional.adaptive_avg_pool2d, torch.nn.functional.linear}
GLOBAL_METHODS = {"flatten", "view", "reshape", "mean"}


def _is_global(node: torch.fx.Node) -> bool:
    return (node.op == "call_function" and node.target in GLOBAL_FUNCTIONS) or (
        node.op == "call_method" and node.target in GLOBAL_METHODS
    )


def theoretical_fields(model: nn.Module) -> dict[str, Field]:
    """The receptive field of every leaf module's output, by module name, in forward order."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as error:  # fx raises many kinds for code it cannot trace
        raise UserInputError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(error).__name__}): use --empirical"
        ) from error
    modules = dict(model.named_modules())
    fields: dict[str, Field] = {}
    at: dict[torch.fx.Node, Field] = {}
    for node in graph.nodes:
        inputs = [at[arg] for arg in node.all_input_nodes if arg in at]
        field = _merged(inputs) if inputs else Field()
        if node.op == "call_module":
            field = _through_module(modules[node.target], field)
            fields[node.target] = field
        elif _is_global(node):
            field = WHOLE
        at[node] = field
    return fields


def empirical_size(
    model: nn.Module, layer: nn.Module, example: torch.Tensor, samples: int = 8
) -> Pair | None:
    """The extent (height, width) of input pixels the gradient of ``layer``'s centre unit reaches,
    over ``samples`` random inputs shaped like ``example``; None when the layer's output is not spatial."""
    captured = {}
    handle = layer.register_forward_hook(lambda _m, _i, output: captured.__setitem__("out", output))
    reach = torch.zeros(example.shape[-2:])
    try:
        for seed in range(samples):
            generator = torch.Generator().manual_seed(seed)
            inputs = torch.randn(example.shape, generator=generator).requires_grad_(True)
            model(inputs)
            output = captured["out"]
            if not isinstance(output, torch.Tensor) or output.dim() != 4:
                return None
            output[:, :, output.shape[2] // 2, output.shape[3] // 2].sum().backward()
            reach += inputs.grad.abs().sum(dim=(0, 1))
    finally:
        handle.remove()
    rows, cols = torch.nonzero(reach, as_tuple=True)
    if len(rows) == 0:
        return (0, 0)
    return (int(rows.max() - rows.min()) + 1, int(cols.max() - cols.min()) + 1)
