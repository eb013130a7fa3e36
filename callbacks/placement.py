"""Where a model's parameters are (device and floating-point dtype), read from the live module.

Lightning's strategy moves and converts the module after callbacks' ``setup`` (``.to(device)``, the
precision's dtype), so callbacks read the placement when they use the model, never in ``setup``.
"""

from dataclasses import dataclass

import torch
from torch import nn

from lightning_app.errors import UserInputError


@dataclass(frozen=True)
class Placement:
    """The device and floating-point dtype of a model's parameters."""

    device: torch.device
    dtype: torch.dtype

    @classmethod
    def of(cls, module: nn.Module) -> "Placement":
        """The placement of ``module``'s first floating-point parameter."""
        parameter = next((p for p in module.parameters() if p.is_floating_point()), None)
        if parameter is None:
            raise UserInputError(f"{type(module).__name__} has no floating-point parameter to inspect")
        return cls(parameter.device, parameter.dtype)

    def __str__(self) -> str:
        return f"{self.device} {str(self.dtype).removeprefix('torch.')}"

    def cast(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on this device, in this dtype if it is floating-point."""
        dtype = self.dtype if tensor.is_floating_point() else tensor.dtype
        return tensor.to(device=self.device, dtype=dtype)

    def check_unchanged(self, module: nn.Module, user: str, when: str) -> None:
        """Raise when ``module`` is no longer on this device and dtype."""
        now = Placement.of(module)
        if now != self:
            raise UserInputError(
                f"{user}: the model moved from {self} to {now} {when}; its state follows the device and "
                "dtype the model has when fit starts: set them with trainer.accelerator and "
                "trainer.precision instead of converting the model during training"
            )
