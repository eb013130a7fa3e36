"""The LeNet of Lees (2017): Keras ``mnist_cnn``-style, MNIST, 113,386 parameters."""

from collections import OrderedDict

from torch import nn

from models.nets.init import glorot_uniform_


def _conv_output_size(size: int) -> int:
    """Spatial size after a valid 3x3 convolution and a 2x2 max-pool."""
    return (size - 2) // 2


class LeNetKeras(nn.Sequential):
    """Conv 32 3x3, ReLU, max-pool 2, conv 32 3x3, ReLU, max-pool 2, dropout 0.25, dense 128, ReLU,
    dropout 0.5, dense; Keras default (Glorot uniform) initialisation. Spatial sizes 26, 13, 11, 5 on MNIST.

    Args:
        in_channels: image channels (1 for MNIST).
        image_size: image height and width (28 for MNIST); fixes the size of the first dense layer.
        num_classes: number of output logits.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        pooled = _conv_output_size(_conv_output_size(image_size))
        super().__init__(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, 32, 3)),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(32, 32, 3)),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("dropout1", nn.Dropout(0.25)),
                    ("flatten", nn.Flatten()),
                    ("fc1", nn.Linear(32 * pooled * pooled, 128)),
                    ("relu3", nn.ReLU()),
                    ("dropout2", nn.Dropout(0.5)),
                    ("fc2", nn.Linear(128, num_classes)),
                ]
            )
        )
        glorot_uniform_(self)
