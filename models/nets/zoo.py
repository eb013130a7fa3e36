"""Any torchvision or timm classifier by name, with weights only from local files.

Nothing downloads: the networks are built without weights (``weights=None``, ``pretrained=False``) and
``weights_path`` loads a ``.pth``/``.pt`` state dict or a ``.safetensors`` file you saved once on a machine
with network access, e.g. ``torch.save(torchvision.models.resnet18(weights="DEFAULT").state_dict(),
"weights/resnet18.pth")``. A head whose size differs from ``num_classes`` is replaced (logged).
"""

import difflib
from pathlib import Path

import timm
import torch
import torchvision
from lightning.pytorch.utilities import rank_zero_info
from safetensors.torch import load_file
from torch import nn

from lightning_app.errors import UserInputError, describe

AUXILIARY_HEADS = {"inception_v3": "AuxLogits.", "googlenet": "aux"}  # trained only in train mode: left out


def read_weights(path: str | Path, key: str = "model.net.init_args.weights_path") -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (``.safetensors``, or ``.pth``/``.pt`` read with ``weights_only``)."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(
            f"{key}={path}: no such file. Weights are never downloaded at run time: save them once where "
            "there is network access (torch.save(model.state_dict(), PATH), or timm's or torchvision's "
            "download into a file) and point weights_path at the file"
        )
    try:
        state = (
            load_file(path) if path.suffix == ".safetensors" else torch.load(path, "cpu", weights_only=True)
        )
    except Exception as error:  # torch and safetensors raise many kinds; all mean: not a weights file
        raise UserInputError(f"{key}={path}: cannot read weights ({describe(error)})") from error
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):  # a training checkpoint
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserInputError(f"{key}={path}: holds a {type(state).__name__}, not a state dict")
    return state


def _unknown(kind: str, name: str, names: list[str]) -> UserInputError:
    close = difflib.get_close_matches(name, names, n=5)
    hint = f"; close: {', '.join(close)}" if close else ""
    return UserInputError(f"model.net.init_args.name={name!r} is not a {kind} classifier{hint}")


def last_linear(model: nn.Module) -> tuple[str, nn.Linear]:
    """The name and module of the model's last ``nn.Linear`` (its classification head)."""
    linears = [(name, module) for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise UserInputError(f"{type(model).__name__} has no Linear head to size to num_classes")
    return linears[-1]


def replace_head(model: nn.Module, num_classes: int, name: str) -> None:
    """Swap the last Linear for a freshly initialised one with ``num_classes`` outputs, if it differs."""
    path, head = last_linear(model)
    if head.out_features == num_classes:
        return
    parent = model.get_submodule(path.rpartition(".")[0]) if "." in path else model
    setattr(
        parent, path.rpartition(".")[2], nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    )
    rank_zero_info(
        f"{name}: head {path} replaced, {head.out_features} -> {num_classes} classes (new weights)"
    )


class TorchvisionNet(nn.Module):
    """A torchvision classifier by name (``torchvision.models.list_models()``), e.g. ``resnet18``,
    ``vgg16``, ``densenet121``, ``efficientnet_b0``, ``convnext_tiny``, ``vit_b_16``.

    Args:
        name: the torchvision model name.
        num_classes: outputs; the head is replaced when the network (with its weights) has another size.
        weights_path: a local state dict of this network (``.pth``, ``.pt``, ``.safetensors``); null
            leaves it randomly initialised. Its head may have any size (replaced after loading).
    """

    def __init__(
        self, name: str = "resnet18", num_classes: int = 1000, weights_path: str | None = None
    ) -> None:
        super().__init__()
        names = torchvision.models.list_models(module=torchvision.models)
        if name not in names:
            raise _unknown("torchvision", name, names)
        options = {"aux_logits": False, "init_weights": True} if name in AUXILIARY_HEADS else {}
        self.model = torchvision.models.get_model(name, weights=None, **options)
        if weights_path is not None:
            state = read_weights(weights_path)
            if name in AUXILIARY_HEADS:
                state = {k: v for k, v in state.items() if not k.startswith(AUXILIARY_HEADS[name])}
            self._load(state, weights_path)
        replace_head(self.model, num_classes, f"torchvision {name}")

    def _load(self, state: dict[str, torch.Tensor], path: str) -> None:
        """Load ``state`` strictly, first sizing the head to the file's (a fine-tuned head of any size)."""
        head_name, head = last_linear(self.model)
        stored = state.get(f"{head_name}.weight")
        if stored is not None and stored.shape[0] != head.out_features:
            replace_head(self.model, stored.shape[0], f"{path} (its head)")
        try:
            self.model.load_state_dict(state)
        except RuntimeError as error:
            raise UserInputError(
                f"model.net.init_args.weights_path={path} does not fit this network: {describe(error)}"
            ) from error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class TimmNet(nn.Module):
    """A timm classifier by name (``timm.list_models()``), e.g. ``resnet50``, ``efficientnet_b0``,
    ``convnext_tiny``, ``vit_small_patch16_224``, with timm's own handling of the weights file: the first
    convolution adapted to ``in_chans`` bands (multi-band imagery) and the classifier left out of the load
    when ``num_classes`` differs from the file's.

    Args:
        name: the timm model name.
        num_classes: outputs.
        in_chans: input bands.
        weights_path: a local weights file of this network (``.pth``, ``.pt``, ``.safetensors``); null
            leaves it randomly initialised.
    """

    def __init__(
        self,
        name: str = "resnet18",
        num_classes: int = 1000,
        in_chans: int = 3,
        weights_path: str | None = None,
    ) -> None:
        super().__init__()
        if not timm.is_model(name):
            raise _unknown("timm", name, timm.list_models())
        if weights_path is None:
            self.model = timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_chans)
            return
        read_weights(weights_path)  # a clear error for a missing or unreadable file
        try:
            self.model = timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_chans,
                                           pretrained_cfg_overlay={"file": str(weights_path)})  # fmt: skip
        except RuntimeError as error:
            raise UserInputError(
                f"model.net.init_args.weights_path={weights_path} does not fit timm's {name}: "
                f"{describe(error)}"
            ) from error
        rank_zero_info(f"timm {name}: weights from {weights_path}, {in_chans} bands, {num_classes} classes")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
