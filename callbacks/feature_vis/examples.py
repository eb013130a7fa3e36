"""Dataset examples (Olah et al., 2017): the probe images that activate a channel most, each cropped to
the patch that the channel's strongest position sees: its receptive field (:mod:`models.receptive_field`)."""

from dataclasses import dataclass

import torch
from torch import nn

from callbacks.feature_vis.capture import captured_outputs, forward
from callbacks.feature_vis.objectives import Channel
from callbacks.feature_vis.render import scores
from models.receptive_field import Field

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class DatasetExample:
    """Probe image ``position`` (its index in the probe set), the channel's mean activation on it, and
    the crop box (top, left, bottom, right) of the input its strongest position depends on."""

    position: int
    value: float
    box: tuple[int, int, int, int]


def top_examples(
    model: nn.Module, channel: Channel, inputs: torch.Tensor, k: int, field: Field | None
) -> list[DatasetExample]:
    """The ``k`` inputs (model space, (N, bands, H, W)) with the highest mean activation of ``channel``,
    each with the box :func:`receptive_box` gives for the layer's ``field``."""
    with torch.no_grad():
        values = scores(model, [channel] * len(inputs), inputs)
    top = values.topk(min(k, len(values)))
    return [
        DatasetExample(int(i), float(v), receptive_box(model, channel, inputs[int(i) : int(i) + 1], field))
        for v, i in zip(top.values, top.indices, strict=True)
    ]


def field_box(field: Field, row: int, column: int, height: int, width: int) -> Box:
    """The input window (top, left, bottom, right) of the unit at (``row``, ``column``) of a layer with
    receptive ``field``, clipped to the image: it starts at position x stride - padding."""
    top, left = (p * s - q for p, s, q in zip((row, column), field.stride, field.padding, strict=True))
    return (max(top, 0), max(left, 0), min(top + field.size[0], height), min(left + field.size[1], width))


def receptive_box(model: nn.Module, channel: Channel, image: torch.Tensor, field: Field | None) -> Box:
    """The input window that the channel's strongest position sees: its theoretical receptive ``field``;
    where that is unknown (None: a network torch.fx cannot trace; a layer after up-sampling), the bounding
    box of the pixels its gradient reaches. The whole image for a dense unit or a vanishing gradient."""
    height, width = image.shape[-2:]
    image = image.detach().clone().requires_grad_()
    with torch.enable_grad(), captured_outputs(model, [channel.layer]) as outputs:
        forward(model, image, outputs)
        activation = outputs[channel.layer][0, channel.channel]
        if activation.ndim == 0 or (field is not None and field.whole):
            return (0, 0, height, width)
        strongest = int(activation.flatten().argmax())
        if field is not None and not field.upsampled:
            return field_box(field, *divmod(strongest, activation.shape[-1]), height, width)
        (gradient,) = torch.autograd.grad(activation.flatten()[strongest], image)
    rows, columns = gradient[0].abs().sum(dim=0).nonzero(as_tuple=True)
    if len(rows) == 0:
        return (0, 0, height, width)
    return (int(rows.min()), int(columns.min()), int(rows.max()) + 1, int(columns.max()) + 1)
