"""Small models and a model-blind attribution method for the interpretability tests."""

import torch
from captum.attr import Attribution
from torch import nn


class TinyCNN(nn.Module):
    """conv, ReLU, conv, ReLU (the same ReLU module twice, as torchvision's ResNet blocks), pool, linear."""

    def __init__(self, channels: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(4 * 4 * 4, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv2(self.relu(self.conv1(x))))
        return self.fc(self.flatten(self.pool(x)))


class PixelSegmenter(nn.Module):
    """A 1x1 convolution: the logits of a pixel depend on that pixel only."""

    def __init__(self, channels: int = 1, classes: int = 2) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class InputAsAttribution(Attribution):
    """Returns the input itself, whatever the model: what a method that ignores the model does."""

    def attribute(self, inputs: torch.Tensor, target=None, additional_forward_args=None) -> torch.Tensor:
        return inputs.detach().clone()
