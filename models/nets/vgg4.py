"""VGG4 of Lees (2017): a cut-down VGG for CIFAR-10 (1,080,470 parameters)."""

from collections import OrderedDict

from torch import nn

from models.nets.init import glorot_uniform_


class VGG4(nn.Sequential):
    """Conv 64, 64, max-pool, conv 128, 128, max-pool (3x3, padding 1, ReLU), dense 100, ReLU,
    dropout 0.5, dense; Keras default (Glorot uniform) initialisation.

    Args:
        in_channels: image channels (3 for CIFAR-10).
        image_size: image height and width (32 for CIFAR-10); fixes the size of the first dense layer.
        num_classes: number of output logits.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10) -> None:
        pooled = image_size // 4
        layers: list[tuple[str, nn.Module]] = []
        widths = [in_channels, 64, 64, 128, 128]
        for index, (width_in, width_out) in enumerate(zip(widths, widths[1:], strict=False), start=1):
            layers += [
                (f"conv{index}", nn.Conv2d(width_in, width_out, 3, padding=1)),
                (f"relu{index}", nn.ReLU()),
            ]
            if index % 2 == 0:
                layers.append((f"pool{index // 2}", nn.MaxPool2d(2)))
        layers += [
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(128 * pooled * pooled, 100)),
            ("relu5", nn.ReLU()),
            ("dropout", nn.Dropout(0.5)),
            ("fc2", nn.Linear(100, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        glorot_uniform_(self)
