"""The 3-layer fully connected network of the LCA paper (MNIST, 784-100-50-10, 84,060 parameters)."""

from collections import OrderedDict

from torch import nn

from models.nets.init import he_normal_


class FullyConnected(nn.Sequential):
    """Flatten, then dense layers with ReLU between them; He-normal initialised as the LCA reference.

    Args:
        input_size: number of input values per example (784 for MNIST's 28x28 images).
        hidden_sizes: widths of the hidden layers.
        num_classes: number of output logits.
    """

    def __init__(
        self,
        input_size: int = 784,
        hidden_sizes: tuple[int, ...] = (100, 50),
        num_classes: int = 10,
    ) -> None:
        layers: list[tuple[str, nn.Module]] = [("flatten", nn.Flatten())]
        widths = [input_size, *hidden_sizes]
        for index, (width_in, width_out) in enumerate(zip(widths, widths[1:], strict=False), start=1):
            layers += [(f"fc{index}", nn.Linear(width_in, width_out)), (f"relu{index}", nn.ReLU())]
        layers.append((f"fc{len(widths)}", nn.Linear(widths[-1], num_classes)))
        super().__init__(OrderedDict(layers))
        he_normal_(self)
