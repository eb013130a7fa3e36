"""Lucid's redirected ReLU gradient, for the first steps of a render (Olah et al., 2017).

An objective read after a ReLU (``net.relu2``), or through one, is often 0 on the start image: every unit
is off, the ReLU passes no gradient, and the image never moves. For the first ``REDIRECT_STEPS`` steps
each ``nn.ReLU`` of the model passes its gradient as Lucid's ``redirected_relu_grad`` does: an image
whose ReLU gradient is not all zero gets that gradient; an image whose is gets the incoming gradient
wherever it would not push an already negative input further down. After those steps the ReLUs are
ordinary again, so the render maximises the true objective. (ReLUs called as functions, ``F.relu``, are
not redirected.)
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

REDIRECT_STEPS = 16  # Lucid's: the gradient is redirected until the 16th step


class RedirectedReLU(torch.autograd.Function):
    """``relu(x)`` whose backward is Lucid's redirected gradient (module docstring)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        zero = torch.zeros_like(gradient)
        relu = torch.where(x < 0, zero, gradient)
        # a positive gradient of the loss pushes the input down, which an input below 0 must not get
        redirected = torch.where((x < 0) & (gradient > 0), zero, gradient)
        passes = relu.flatten(start_dim=1).norm(dim=1) > 0
        return torch.where(passes.view(-1, *([1] * (x.ndim - 1))), relu, redirected)


@contextmanager
def redirected_relus(model: nn.Module, active: Callable[[], bool]) -> Iterator[None]:
    """While ``active()`` is true, every ``nn.ReLU`` of ``model`` passes the redirected gradient."""

    def redirect(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
        return RedirectedReLU.apply(inputs[0]) if active() else None

    handles = [
        module.register_forward_hook(redirect) for module in model.modules() if isinstance(module, nn.ReLU)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
