"""ResNet for CIFAR as in the LCA paper: ResNet-20 (16/32/64 channels, 3 blocks a stage, 273,066 params)."""

from collections import OrderedDict

import torch
from torch import nn

from models.nets.init import he_normal_


class ResidualBlock(nn.Module):
    """conv 3x3, BN, ReLU, conv 3x3, BN, add the shortcut, ReLU; convolutions keep their biases.

    The shortcut is a 1x1 convolution (no BN) when the block changes stride or width, else the identity.
    """

    def __init__(self, width_in: int, width_out: int, stride: int, bn_momentum: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width_in, width_out, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm2d(width_out, momentum=bn_momentum)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(width_out, width_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width_out, momentum=bn_momentum)
        self.shortcut = (
            nn.Conv2d(width_in, width_out, 1, stride=stride)
            if stride != 1 or width_in != width_out
            else nn.Identity()
        )
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(residual + self.shortcut(x))


class ResNetCIFAR(nn.Sequential):
    """Stem conv 16 + BN + ReLU, three stages of residual blocks (16, 32, 64 channels; stages 2 and 3
    halve the resolution), global average pooling, dense layer. He-normal initialised as the LCA reference.

    Args:
        blocks_per_stage: residual blocks in each stage (3 gives ResNet-20).
        in_channels: image channels (3 for CIFAR-10).
        num_classes: number of output logits.
        bn_momentum: PyTorch batch-norm momentum. The reference builds its BN layers with Keras
            ``momentum=0.0`` (running statistics = the last batch's), which is PyTorch ``1.0``.
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        in_channels: int = 3,
        num_classes: int = 10,
        bn_momentum: float = 0.1,
    ) -> None:
        layers: list[tuple[str, nn.Module]] = [
            ("conv", nn.Conv2d(in_channels, 16, 3, padding=1)),
            ("bn", nn.BatchNorm2d(16, momentum=bn_momentum)),
            ("relu", nn.ReLU()),
        ]
        width_in = 16
        for stage, width in enumerate((16, 32, 64), start=1):
            blocks = []
            for block in range(blocks_per_stage):
                stride = 2 if stage > 1 and block == 0 else 1
                blocks.append(ResidualBlock(width_in, width, stride, bn_momentum))
                width_in = width
            layers.append((f"stage{stage}", nn.Sequential(*blocks)))
        layers += [
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(64, num_classes)),
        ]
        super().__init__(OrderedDict(layers))
        he_normal_(self)
