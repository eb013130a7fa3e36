"""The LinkNet of selim_sef's SpaceNet 3 roads solution, the network Macura (2020) ran LCA on.

Stem of two 3x3 convolutions (32) and a max-pool; five residual encoders (64, 128, 256, 512, 512
filters, two blocks each); five decoders (1x1 to a quarter of the channels, x2 up-sampling and a 3x3
convolution, 1x1 to the output channels) whose outputs are added to the encoder outputs of the same
depth; a 3x3 convolution to 32, spatial dropout 0.5 and a 1x1 convolution to the logits. Convolutions
keep their bias, as in Keras. With 8 input bands: 21,485,089 parameters without batch norm (Macura's
run), 21,503,521 with it.
"""

import torch
from torch import nn

ENCODER_FILTERS = (64, 128, 256, 512, 512)
ENCODER_STRIDES = (1, 2, 2, 2, 2)
BLOCKS_PER_ENCODER = 2
FEATURE_SCALE = 4
STEM_FILTERS = 32


def conv_norm(in_channels: int, out_channels: int, kernel: int, stride: int, batch_norm: bool) -> list:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2)
    return [conv, nn.BatchNorm2d(out_channels)] if batch_norm else [conv]


def conv_norm_relu(in_channels: int, out_channels: int, kernel: int, batch_norm: bool, stride: int = 1):
    return nn.Sequential(*conv_norm(in_channels, out_channels, kernel, stride, batch_norm), nn.ReLU())


class ResidualBlock(nn.Module):
    """conv-(BN)-ReLU, conv-(BN), plus the shortcut (a strided 1x1 conv-(BN) when the shape changes), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv1 = conv_norm_relu(in_channels, out_channels, 3, batch_norm, stride)
        self.conv2 = nn.Sequential(*conv_norm(out_channels, out_channels, 3, 1, batch_norm))
        reshaped = stride != 1 or in_channels != out_channels
        shortcut = conv_norm(in_channels, out_channels, 1, stride, batch_norm) if reshaped else []
        self.shortcut = nn.Sequential(*shortcut)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv2(self.conv1(x)) + self.shortcut(x))


class Decoder(nn.Sequential):
    """1x1 to in/4, x2 up-sampling (or a 4x4 stride-2 transposed convolution) with a 3x3 convolution,
    1x1 to ``out_channels``; each followed by (BN and) ReLU."""

    def __init__(self, in_channels: int, out_channels: int, batch_norm: bool, transposed: bool) -> None:
        middle = in_channels // FEATURE_SCALE
        if transposed:
            up = [nn.ConvTranspose2d(middle, middle, 4, stride=2, padding=1)]
            up += [nn.BatchNorm2d(middle)] if batch_norm else []
            upsample = nn.Sequential(*up, nn.ReLU())
        else:
            conv = conv_norm_relu(middle, middle, 3, batch_norm)
            upsample = nn.Sequential(nn.Upsample(scale_factor=2), conv)
        super().__init__(
            conv_norm_relu(in_channels, middle, 1, batch_norm),
            upsample,
            conv_norm_relu(middle, out_channels, 1, batch_norm),
        )


class LinkNetSelim(nn.Module):
    """selim_sef's LinkNet: logits (N, classes, H, W) for inputs (N, in_channels, H, W), H and W
    multiples of 32.

    Args:
        in_channels: input bands (8 for SpaceNet 3's PS-MS, 12 with selim's one-hot city).
        classes: output channels (1 for binary masks).
        batch_norm: batch norm after every convolution (Macura, 2020, trained without: with it the network
            predicted road almost everywhere).
        transposed: transposed convolutions in the decoders instead of up-sampling + 3x3 convolution.
        dropout: spatial dropout before the last convolution.
    """

    def __init__(
        self,
        in_channels: int = 8,
        classes: int = 1,
        batch_norm: bool = False,
        transposed: bool = False,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            conv_norm_relu(in_channels, STEM_FILTERS, 3, batch_norm),
            conv_norm_relu(STEM_FILTERS, STEM_FILTERS, 3, batch_norm),
            nn.MaxPool2d(2),
        )
        encoders, channels = [], STEM_FILTERS
        for filters, stride in zip(ENCODER_FILTERS, ENCODER_STRIDES, strict=True):
            blocks = [
                ResidualBlock(channels if b == 0 else filters, filters, stride if b == 0 else 1, batch_norm)
                for b in range(BLOCKS_PER_ENCODER)
            ]
            encoders.append(nn.Sequential(*blocks))
            channels = filters
        self.encoders = nn.ModuleList(encoders)
        decoder_out = (ENCODER_FILTERS[0], *ENCODER_FILTERS[:-1])  # decoder k outputs encoder k-1's channels
        self.decoders = nn.ModuleList(
            Decoder(i, o, batch_norm, transposed) for i, o in zip(ENCODER_FILTERS, decoder_out, strict=True)
        )
        self.head = nn.Sequential(
            conv_norm_relu(ENCODER_FILTERS[0], STEM_FILTERS, 3, batch_norm),
            nn.Dropout2d(dropout),
            nn.Conv2d(STEM_FILTERS, classes, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        x = self.stem(x)
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        # decoder k (deepest first) is added to the encoder output one level up; the last one to nothing
        for decoder, skip in zip(reversed(self.decoders), [*reversed(skips[:-1]), None], strict=True):
            x = decoder(x)
            if skip is not None:
                x = x + skip
        return self.head(x)
