"""Dataset examples (Olah et al., 2017): the probe images that activate a channel most, each cropped to
the patch that the channel's strongest position sees."""

from dataclasses import dataclass

import torch
from torch import nn

from callbacks.feature_vis.capture import captured_outputs, forward
from callbacks.feature_vis.objectives import Channel
from callbacks.feature_vis.render import scores


@dataclass(frozen=True)
class DatasetExample:
    """Probe image ``position`` (its index in the probe set), the channel's mean activation on it, and
    the crop box (top, left, bottom, right) of the input its strongest position depends on."""

    position: int
    value: float
    box: tuple[int, int, int, int]


def top_examples(model: nn.Module, channel: Channel, inputs: torch.Tensor, k: int) -> list[DatasetExample]:
    """The ``k`` inputs (model space, (N, bands, H, W)) with the highest mean activation of ``channel``."""
    with torch.no_grad():
        values = scores(model, [channel] * len(inputs), inputs)
    top = values.topk(min(k, len(values)))
    return [
        DatasetExample(int(i), float(v), receptive_box(model, channel, inputs[int(i) : int(i) + 1]))
        for v, i in zip(top.values, top.indices, strict=True)
    ]


def receptive_box(model: nn.Module, channel: Channel, image: torch.Tensor) -> tuple[int, int, int, int]:
    """The bounding box of the input pixels that the channel's strongest position depends on: where the
    gradient of that one activation with respect to the image is not zero (the whole image for a dense
    unit, or when the gradient vanishes)."""
    height, width = image.shape[-2:]
    image = image.detach().clone().requires_grad_()
    with torch.enable_grad(), captured_outputs(model, [channel.layer]) as outputs:
        forward(model, image, outputs)
        activation = outputs[channel.layer][0, channel.channel]
        if activation.ndim == 0:
            return (0, 0, height, width)
        strongest = activation.flatten().argmax()
        (gradient,) = torch.autograd.grad(activation.flatten()[strongest], image)
    rows, columns = gradient[0].abs().sum(dim=0).nonzero(as_tuple=True)
    if len(rows) == 0:
        return (0, 0, height, width)
    return (int(rows.min()), int(columns.min()), int(rows.max()) + 1, int(columns.max()) + 1)
