"""Lim et al.'s decoder and encoder options that segmentation-models-pytorch does not offer, applied to a
built SMP model: group norm, dropout between norm and ReLU, U-Net's transposed-convolution block, and
other activations inside the encoder's residual blocks."""

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import modules as smp_modules
from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoderBlock
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck

from lightning_app.errors import UserInputError

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}


class TransposedUnetBlock(nn.Module):
    """Lim et al.'s 'transpose' U-Net block: a 4x4 stride-2 transposed convolution, norm, ReLU, the skip
    concatenated, then one 3x3 conv-norm-ReLU (the up-sampling block has two)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, use_norm: str | bool) -> None:
        super().__init__()
        norm = smp_modules.get_norm_layer(use_norm, out_channels)
        transposed = nn.ConvTranspose2d(
            in_channels, out_channels, 4, stride=2, padding=1, bias=isinstance(norm, nn.Identity)
        )
        self.up = nn.Sequential(transposed, norm, nn.ReLU(inplace=True))
        self.conv = smp_modules.Conv2dReLU(
            out_channels + skip_channels, out_channels, kernel_size=3, padding=1, use_norm=use_norm
        )

    def forward(
        self,
        feature_map: torch.Tensor,
        target_height: int,
        target_width: int,
        skip_connection: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.up(feature_map)
        if x.shape[-2:] != (target_height, target_width):
            x = F.interpolate(x, size=(target_height, target_width), mode="nearest")
        if skip_connection is not None:
            x = torch.cat([x, skip_connection], dim=1)
        return self.conv(x)


def use_transposed_blocks(
    decoder: nn.Module, encoder_channels: list[int], decoder_channels: list[int], use_norm: str | bool
) -> None:
    """Replace the up-sampling blocks of a U-Net decoder by :class:`TransposedUnetBlock` s with the same
    channels (computed as smp's UnetDecoder does: deepest encoder feature first, skips from above)."""
    blocks = getattr(decoder, "blocks", None)
    if not isinstance(blocks, nn.ModuleList) or not all(isinstance(b, UnetDecoderBlock) for b in blocks):
        raise UserInputError("upsampling='transposed' is available for arch 'Unet' only")
    features = list(encoder_channels[1:])[::-1]
    in_channels = [features[0], *decoder_channels[:-1]]
    skip_channels = [*features[1:], 0]
    for index, channels in enumerate(zip(in_channels, skip_channels, decoder_channels, strict=False)):
        blocks[index] = TransposedUnetBlock(*channels, use_norm)


def use_group_norm(decoder: nn.Module, groups: int) -> None:
    """Replace every BatchNorm2d of ``decoder`` by GroupNorm with ``groups`` groups."""
    for name, module in list(decoder.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.BatchNorm2d):
                if child.num_features % groups:
                    raise UserInputError(
                        f"decoder_norm groupnorm: {child.num_features} channels of decoder layer "
                        f"{name or 'decoder'} cannot be split into norm_groups={groups} groups"
                    )
                setattr(module, child_name, nn.GroupNorm(groups, child.num_features))


def add_dropout(decoder: nn.Module, rate: float) -> None:
    """Insert ``Dropout(rate)`` between the norm and the ReLU of every conv-norm-ReLU of ``decoder``."""
    layers = [m for m in decoder.modules() if isinstance(m, smp_modules.Conv2dReLU)]
    if not layers:
        raise UserInputError(
            "decoder_dropout needs a decoder of conv-norm-ReLU layers (Unet, UnetPlusPlus, Linknet, PSPNet)"
        )
    for layer in layers:
        conv, norm, activation = list(layer)
        for index, module in enumerate((conv, norm, nn.Dropout(rate), activation)):
            layer.add_module(str(index), module)


def swap_encoder_activation(encoder: nn.Module, name: str) -> None:
    """Replace the activation inside every residual block of a ResNet-style encoder (the stem's stays
    ReLU, as in Lim et al.)."""
    if name not in ACTIVATIONS:
        raise UserInputError(f"encoder_activation {name!r} is not one of {sorted(ACTIVATIONS)}")
    blocks = [m for m in encoder.modules() if isinstance(m, (BasicBlock, Bottleneck))]
    if not blocks:
        raise UserInputError("encoder_activation applies to ResNet-style encoders (resnet*, resnext*) only")
    for block in blocks:
        block.relu = ACTIVATIONS[name]()
