"""Any segmentation-models-pytorch architecture and encoder, with Lim et al.'s decoder and encoder axes."""

import inspect
from typing import Literal

import segmentation_models_pytorch as smp
import torch
from torch import nn

from lightning_app.errors import UserInputError
from models.nets.decoder_options import (
    add_dropout,
    swap_encoder_activation,
    use_group_norm,
    use_transposed_blocks,
)

ARCHITECTURES = {cls.__name__: cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}
UNET_DECODER_CHANNELS = (256, 128, 64, 32, 16)


class SMPNet(nn.Module):
    """A segmentation network from segmentation-models-pytorch: logits (N, classes, H, W).

    SMP's own options are used where they exist (``decoder_channels``, ``decoder_interpolation``,
    ``decoder_use_norm``); group norm, dropout, the transposed U-Net block and the encoder activation swap
    are applied to the built model (:mod:`models.nets.decoder_options`). An option the architecture
    cannot take is an error, never ignored.

    Args:
        arch: Unet, UnetPlusPlus, Linknet, FPN, PSPNet, DeepLabV3Plus, MAnet, PAN, UPerNet, ...
        encoder_name: any SMP encoder (resnet18, resnet50, efficientnet-b0, ...).
        encoder_weights: pretrained encoder weights ('imagenet' downloads them); null trains from scratch.
        in_channels: input bands.
        classes: output channels: 1 for binary masks, else the number of classes.
        decoder_channels: U-Net / U-Net++ decoder widths (default 256, 128, 64, 32, 16).
        upsampling: 'nearest' or 'bilinear' interpolation, or 'transposed' (Unet only: Lim et al.'s block).
        decoder_norm: 'batchnorm', 'groupnorm' (``norm_groups`` groups) or 'none'.
        norm_groups: groups of the group norm.
        decoder_dropout: dropout rate in every decoder conv-norm-ReLU, placed conv -> norm -> dropout -> ReLU.
        encoder_activation: activation inside the encoder's residual blocks (relu, elu, selu, sigmoid, tanh,
            gelu, silu, leaky_relu); the stem keeps ReLU. Other than relu, train with encoder_weights null.
    """

    def __init__(
        self,
        arch: str = "Unet",
        encoder_name: str = "resnet18",
        encoder_weights: str | None = None,
        in_channels: int = 3,
        classes: int = 1,
        decoder_channels: list[int] | None = None,
        upsampling: Literal["nearest", "bilinear", "transposed"] = "nearest",
        decoder_norm: Literal["batchnorm", "groupnorm", "none"] = "batchnorm",
        norm_groups: int = 8,
        decoder_dropout: float = 0.0,
        encoder_activation: str = "relu",
    ) -> None:
        super().__init__()
        if arch not in ARCHITECTURES:
            raise UserInputError(
                f"arch {arch!r} is not an SMP architecture: choose from {sorted(ARCHITECTURES)}"
            )
        if not 0.0 <= decoder_dropout < 1.0:
            raise UserInputError(f"decoder_dropout={decoder_dropout} must be in [0, 1)")
        accepted = inspect.signature(ARCHITECTURES[arch]).parameters
        use_norm = "identity" if decoder_norm == "none" else "batchnorm"
        options = {
            "decoder_channels": decoder_channels,
            "decoder_interpolation": None if upsampling in ("nearest", "transposed") else upsampling,
            "decoder_use_norm": None if use_norm == "batchnorm" else use_norm,
        }
        for option, value in options.items():
            if value is not None and option not in accepted:
                raise UserInputError(f"arch {arch} has no {option} option (given {value!r})")
        options = {option: value for option, value in options.items() if value is not None}
        self.model = ARCHITECTURES[arch](
            encoder_name=encoder_name,
            encoder_weights=encoder_weights,
            in_channels=in_channels,
            classes=classes,
            **options,
        )
        if upsampling == "transposed":
            channels = decoder_channels or UNET_DECODER_CHANNELS
            use_transposed_blocks(self.model.decoder, self.model.encoder.out_channels, channels, use_norm)
        if decoder_norm == "groupnorm":
            use_group_norm(self.model.decoder, norm_groups)
        if decoder_dropout > 0:
            add_dropout(self.model.decoder, decoder_dropout)
        if encoder_activation != "relu":
            swap_encoder_activation(self.model.encoder, encoder_activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
