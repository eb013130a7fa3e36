"""The LeNet variant of the LCA paper (MNIST, 808,970 parameters)."""

from collections import OrderedDict

from torch import nn

from models.nets.init import he_normal_


class LeNetLCA(nn.Sequential):
    """Conv 20 5x5 same, ReLU, max-pool 2, conv 40 5x5 same, ReLU, max-pool 2, dropout 0.25,
    dense 400, ReLU, dropout 0.5, dense; He-normal initialised as the LCA reference.

    Args:
        in_channels: image channels (1 for MNIST).
        image_size: image height and width (28 for MNIST); fixes the size of the first dense layer.
        num_classes: number of output logits.
    """

    def __init__(self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10) -> None:
        pooled = image_size // 4
        super().__init__(
            OrderedDict(
                [
                    ("conv1", nn.Conv2d(in_channels, 20, 5, padding="same")),
                    ("relu1", nn.ReLU()),
                    ("pool1", nn.MaxPool2d(2)),
                    ("conv2", nn.Conv2d(20, 40, 5, padding="same")),
                    ("relu2", nn.ReLU()),
                    ("pool2", nn.MaxPool2d(2)),
                    ("flatten", nn.Flatten()),
                    ("dropout1", nn.Dropout(0.25)),
                    ("fc1", nn.Linear(40 * pooled * pooled, 400)),
                    ("relu3", nn.ReLU()),
                    ("dropout2", nn.Dropout(0.5)),
                    ("fc2", nn.Linear(400, num_classes)),
                ]
            )
        )
        he_normal_(self)
