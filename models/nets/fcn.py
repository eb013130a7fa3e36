"""Fully convolutional networks: FCN-32s, FCN-16s and FCN-8s on VGG-16 (Long, Shelhamer and Darrell),
and torchvision's FCN-ResNet-50.

The VGG-16 FCNs follow the paper: VGG-16's fully connected layers become convolutions (fc6 a 7x7 conv,
fc7 a 1x1 conv: the same weights, reshaped), a 1x1 conv scores the classes at stride 32, and transposed
convolutions initialised to bilinear interpolation bring the scores back to the input size, FCN-16s and
FCN-8s first adding the scores of pool4 and pool3 (their 1x1 score layers start at zero, so training
starts from the coarser net's output). Pools round up (Caffe's rule) and every upsampled map is cropped
to the map it meets, so any input size works.
"""

from typing import Literal

import torch
import torchvision
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from lightning_app.errors import UserInputError, describe
from models.nets.zoo import read_weights

POOL_INDICES = {"pool3": 16, "pool4": 23}  # positions of those max-pools in torchvision's vgg16.features
SKIPS = {"32s": (), "16s": ("pool4",), "8s": ("pool4", "pool3")}
SKIP_CHANNELS = {"pool4": 512, "pool3": 256}
OUTPUT_STRIDE = {"32s": 32, "16s": 16, "8s": 8}


def bilinear_upsampling(channels: int, factor: int) -> nn.ConvTranspose2d:
    """A transposed convolution that upsamples each channel by ``factor`` with bilinear weights
    (kernel 2 factor, padding factor / 2: output = factor x input), learnable afterwards."""
    kernel = 2 * factor
    centre = (kernel - 1) / 2
    taps = 1 - (torch.arange(kernel) - centre).abs() / factor
    layer = nn.ConvTranspose2d(channels, channels, kernel, stride=factor, padding=factor // 2, bias=False)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[range(channels), range(channels)] = taps[:, None] * taps[None, :]
    return layer


def crop_to(scores: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """The top-left part of ``scores`` with ``reference``'s height and width (upsampling after rounded-up
    pools overshoots by less than one stride at the bottom and right)."""
    return scores[..., : reference.shape[-2], : reference.shape[-1]]


class VGG16FCN(nn.Module):
    """FCN-32s, FCN-16s or FCN-8s with a VGG-16 backbone: logits (N, classes, H, W) for any H, W.

    Layer names follow torchvision's VGG-16 (``features.28`` is conv5_3, ``classifier.0`` fc6,
    ``classifier.3`` fc7), then ``score_fr``, ``score_pool.pool4`` / ``score_pool.pool3``,
    ``upscore_to.pool4`` / ``upscore_to.pool3`` and ``upscore``.

    Args:
        variant: '32s' (no skips), '16s' (pool4) or '8s' (pool4 and pool3).
        classes: output channels: 1 for binary masks, else the number of classes.
        backbone_weights_path: a local torchvision VGG-16 classifier state dict (``.pth``, ``.safetensors``),
            e.g. ``torch.save(torchvision.models.vgg16(weights="DEFAULT").state_dict(), PATH)``: its
            convolutions, and fc6/fc7 reshaped into convolutions; its 1,000-class layer is left out. Null
            trains from scratch.
        dropout: dropout after fc6 and fc7 (0.5 as in VGG and the paper).
    """

    def __init__(
        self,
        variant: Literal["32s", "16s", "8s"] = "8s",
        classes: int = 21,
        backbone_weights_path: str | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if variant not in SKIPS:
            raise UserInputError(f"model.net.init_args.variant={variant!r}: choose 32s, 16s or 8s")
        self.variant = variant
        self.features = torchvision.models.vgg16(weights=None).features
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                layer.ceil_mode = True
        self.classifier = nn.Sequential(
            nn.Conv2d(512, 4096, 7, padding=3),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Conv2d(4096, 4096, 1),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.score_fr = nn.Conv2d(4096, classes, 1)
        skips = SKIPS[variant]
        self.score_pool = nn.ModuleDict({name: nn.Conv2d(SKIP_CHANNELS[name], classes, 1) for name in skips})
        for layer in self.score_pool.values():
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.upscore_to = nn.ModuleDict({name: bilinear_upsampling(classes, 2) for name in skips})
        self.upscore = bilinear_upsampling(classes, OUTPUT_STRIDE[variant])
        if backbone_weights_path is not None:
            self._load_vgg16(backbone_weights_path)

    def _load_vgg16(self, path: str) -> None:
        state = read_weights(path, "model.net.init_args.backbone_weights_path")
        fully_connected = {"classifier.0": (4096, 512, 7, 7), "classifier.3": (4096, 4096, 1, 1)}
        try:
            backbone = {key: value for key, value in state.items() if key.startswith("features.")}
            backbone |= {f"{name}.bias": state[f"{name}.bias"] for name in fully_connected}
            backbone |= {
                f"{name}.weight": state[f"{name}.weight"].reshape(shape)
                for name, shape in fully_connected.items()
            }
            missing = self.load_state_dict(backbone, strict=False).missing_keys
        except (KeyError, RuntimeError) as error:
            raise UserInputError(
                f"model.net.init_args.backbone_weights_path={path} is not a torchvision VGG-16 state dict: "
                f"{describe(error)}"
            ) from error
        unloaded = [key for key in missing if key.startswith(("features.", "classifier."))]
        if unloaded:
            raise UserInputError(
                f"model.net.init_args.backbone_weights_path={path} lacks {', '.join(unloaded[:4])}: "
                "not a torchvision VGG-16 state dict"
            )
        rank_zero_info(f"FCN-{self.variant}: VGG-16 convolutions and fc6/fc7 from {path}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pools = {}
        features = x
        for index, layer in enumerate(self.features):
            features = layer(features)
            if index in POOL_INDICES.values():
                pools[index] = features
        scores = self.score_fr(self.classifier(features))
        for name in self.score_pool:
            skip = pools[POOL_INDICES[name]]
            scores = crop_to(self.upscore_to[name](scores), skip) + self.score_pool[name](skip)
        return crop_to(self.upscore(scores), x)


class TorchvisionFCN(nn.Module):
    """torchvision's FCN-ResNet-50 (``fcn_resnet50``: a dilated ResNet-50 at stride 8 and a 3x3 conv
    head, no skips, bilinear upsampling; the auxiliary head left out): logits (N, classes, H, W).

    Args:
        classes: output channels: 1 for binary masks, else the number of classes.
        weights_path: a local state dict of the whole network (torchvision's COCO/VOC weights, 21 classes:
            ``torch.save(torchvision.models.segmentation.fcn_resnet50(weights="DEFAULT").state_dict(),
            PATH)``); its last layer is replaced (logged) when ``classes`` differs.
        backbone_weights_path: instead, a local ResNet-50 ImageNet classifier state dict for the backbone.
    """

    def __init__(
        self, classes: int = 21, weights_path: str | None = None, backbone_weights_path: str | None = None
    ) -> None:
        super().__init__()
        if weights_path is not None and backbone_weights_path is not None:
            raise UserInputError(
                "model.net.init_args: give weights_path (the whole FCN) or backbone_weights_path "
                "(ResNet-50), not both"
            )
        self.model = torchvision.models.segmentation.fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=21 if weights_path else classes, aux_loss=False
        )
        if weights_path is not None:
            state = read_weights(weights_path)
            self._load(self.model, {k: v for k, v in state.items() if not k.startswith("aux_classifier.")},
                       weights_path)  # fmt: skip
            self._replace_last_layer(classes)
        if backbone_weights_path is not None:
            state = read_weights(backbone_weights_path, "model.net.init_args.backbone_weights_path")
            self._load(self.model.backbone, {k: v for k, v in state.items() if not k.startswith("fc.")},
                       backbone_weights_path)  # fmt: skip

    @staticmethod
    def _load(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> None:
        try:
            module.load_state_dict(state)
        except RuntimeError as error:
            raise UserInputError(
                f"{path} does not fit torchvision's fcn_resnet50: {describe(error)}"
            ) from error

    def _replace_last_layer(self, classes: int) -> None:
        last = self.model.classifier[4]
        if last.out_channels == classes:
            return
        self.model.classifier[4] = nn.Conv2d(last.in_channels, classes, 1)
        rank_zero_info(f"fcn_resnet50: classifier.4 replaced, {last.out_channels} -> {classes} classes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]
