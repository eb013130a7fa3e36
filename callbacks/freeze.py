"""Freeze named layers from a given optimizer step on (the LCA paper's freezing experiment)."""

import lightning.pytorch as pl
from torch import nn
from typing_extensions import override

from lightning_app.errors import UserInputError


class FreezeLayers(pl.Callback):
    """Stops the optimizer from moving the parameters of ``layers`` from step ``from_step`` on.

    A frozen parameter keeps its value (its gradient is never computed, so no optimizer updates it, momentum
    included); with :class:`~callbacks.lca.LossChangeAllocation` its LCA is zero from then on, so a frozen
    run and a normal run compare layer by layer (``python -m lightning_app.report lca RUN --compare OTHER``).

    Args:
        layers: module names as in ``model.named_modules()``, e.g. ``net.fc`` (the last layer of
            ResNetCIFAR); every parameter under the module is frozen.
        from_step: the first optimizer step that no longer moves them (0 = frozen at initialisation).
            Under DDP a later step needs ``strategy: ddp_find_unused_parameters_true``.
    """

    def __init__(self, layers: list[str], from_step: int = 0) -> None:
        self.layers = layers
        self.from_step = from_step
        self.parameters: list[nn.Parameter] = []  # found in setup; the strategy keeps Parameter objects
        self.frozen = False

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        modules = dict(pl_module.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            with_parameters = [
                n for n, m in modules.items() if n and any(True for _ in m.parameters(recurse=False))
            ]
            raise UserInputError(
                f"FreezeLayers: the model has no layer {', '.join(map(repr, unknown))}; "
                f"layers with parameters: {', '.join(with_parameters)}"
            )
        self.parameters = [p for name in self.layers for p in modules[name].parameters()]
        if self.from_step == 0:  # before DDP wraps the model, so it never expects their gradients
            self._freeze()

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        if trainer.global_step >= self.from_step:
            self._freeze()

    def _freeze(self) -> None:
        if self.frozen:
            return
        for parameter in self.parameters:
            parameter.requires_grad_(False)
            parameter.grad = None
        self.frozen = True
