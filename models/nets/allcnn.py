"""AllCNN with batch norm as in the LCA paper (after Springenberg et al.; CIFAR-10, 1,371,658 parameters)."""

from collections import OrderedDict

from torch import nn

from models.nets.init import he_normal_


class AllCNN(nn.Sequential):
    """Three stages of all-convolutional layers, global average pooling, no dense layer.

    Stage 1: conv 96, BN, ReLU, conv 96, BN, ReLU, conv 96 stride 2 (no BN, no ReLU), dropout 0.5.
    Stage 2: the same with 192 channels. Head: conv 192 3x3, BN, ReLU, conv 192 1x1, BN, ReLU,
    conv 1x1 to the classes, global average pooling. He-normal initialised as the LCA reference.

    Args:
        in_channels: image channels (3 for CIFAR-10).
        num_classes: number of output logits.
        bn_momentum: PyTorch batch-norm momentum. The reference builds its BN layers with Keras
            ``momentum=0.0`` (running statistics = the last batch's), which is PyTorch ``1.0``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, bn_momentum: float = 0.1) -> None:
        layers: list[tuple[str, nn.Module]] = []

        def conv_bn_relu(name: str, width_in: int, width_out: int, kernel: int) -> None:
            layers.extend(
                [
                    (f"conv{name}", nn.Conv2d(width_in, width_out, kernel, padding=kernel // 2)),
                    (f"bn{name}", nn.BatchNorm2d(width_out, momentum=bn_momentum)),
                    (f"relu{name}", nn.ReLU()),
                ]
            )

        width_in = in_channels
        for stage, width in enumerate((96, 192), start=1):
            conv_bn_relu(f"{stage}_1", width_in, width, 3)
            conv_bn_relu(f"{stage}_2", width, width, 3)
            layers.append((f"conv{stage}_3", nn.Conv2d(width, width, 3, stride=2, padding=1)))
            layers.append((f"dropout{stage}", nn.Dropout(0.5)))
            width_in = width
        conv_bn_relu("3_1", 192, 192, 3)
        conv_bn_relu("3_2", 192, 192, 1)
        layers += [
            ("conv3_3", nn.Conv2d(192, num_classes, 1)),
            ("pool", nn.AdaptiveAvgPool2d(1)),
            ("flatten", nn.Flatten()),
        ]
        super().__init__(OrderedDict(layers))
        he_normal_(self)
