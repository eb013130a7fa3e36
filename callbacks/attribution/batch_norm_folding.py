"""Batch norm folded into the convolution or linear layer before it, for LRP (a Zennit canonizer).

LRP's rules are defined for convolutions and linear layers; a batch norm in eval mode is an affine map
per channel, so it is merged into the layer whose output it normalises. Which layer that is comes from
tracing one forward pass (the batch norm's input is that layer's output, used by nothing else), not
from the order of registration that Zennit's ``SequentialMergeBatchNorm`` relies on, so residual
networks whose shortcut is registered after the block (ResNet-20) are folded right. After folding the
model's output is compared with the original's; a mismatch is an error, never a silent difference.
"""

from collections import Counter
from functools import partial

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn
from zennit.canonizers import Canonizer, MergeBatchNorm
from zennit.types import BatchNorm, Linear

from lightning_app.errors import UserInputError

FOLDED_TOLERANCE = 1e-4  # relative change of the output that folding may cause (float32 rounding)


class ExactMergeBatchNorm(MergeBatchNorm):
    """Zennit's merge, with the batch norm left as the exact identity (its running variance set to
    1 - eps, so that dividing by sqrt(var + eps) divides by 1)."""

    @staticmethod
    def merge_batch_norm(modules, batch_norm) -> None:
        MergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.running_var.data.fill_(1 - batch_norm.eps)

    def apply(self, root_module: nn.Module) -> list:
        """Not used: :class:`BatchNormFolding` registers each merge itself."""
        raise NotImplementedError


class BatchNormFolding(Canonizer):
    """Folds every batch norm of a model (eval mode, affine) into the layer that produced its input,
    found by running ``example`` through the model; warns with the names of batch norms it cannot fold
    (their relevance then passes by their gradient)."""

    def __init__(self, example: torch.Tensor) -> None:
        super().__init__()
        self.example = example

    def apply(self, root_module: nn.Module) -> list[ExactMergeBatchNorm]:
        pairs, unfolded = producer_pairs(root_module, self.example)
        if unfolded:
            rank_zero_warn(
                f"LRP cannot fold batch norm {', '.join(unfolded)} into a convolution or linear layer (its "
                "input is not one such layer's output alone): relevance passes through it by its gradient"
            )
        with torch.no_grad():
            before = root_module(self.example)
        instances = []
        for layer, batch_norm in pairs:
            instance = ExactMergeBatchNorm()
            instance.register([layer], batch_norm)
            instances.append(instance)
        with torch.no_grad():
            after = root_module(self.example)
        change = (after - before).abs().max() / before.abs().max().clamp(min=1e-12)
        if change > FOLDED_TOLERANCE:
            for instance in instances:
                instance.remove()
            raise UserInputError(
                f"LRP: folding the batch norms into their layers changed the model's output by {change:.2g} "
                "(relative); the model reuses a normalised layer's output elsewhere. Use a composite "
                "without batch norm or leave LRP out for this model"
            )
        return instances

    def register(self) -> None:
        """Nothing to do: :meth:`apply` registers one merge per batch norm."""

    def remove(self) -> None:
        """Nothing to do: each merge is removed on its own."""


def producer_pairs(
    model: nn.Module, example: torch.Tensor
) -> tuple[list[tuple[nn.Module, nn.Module]], list[str]]:
    """(layer, batch norm) for every batch norm whose input is the output of one convolution or linear
    layer that nothing else reads; and the names of the batch norms that are not."""
    producers: dict[int, nn.Module] = {}
    readers: Counter[int] = Counter()
    batch_norm_inputs: dict[str, int] = {}
    kept = []  # the traced tensors stay alive so that no id is reused

    def record(name: str, module: nn.Module, inputs, output) -> None:
        kept.append((inputs, output))
        for tensor in inputs:
            if isinstance(tensor, torch.Tensor):
                readers[id(tensor)] += 1
        if isinstance(module, BatchNorm):
            batch_norm_inputs[name] = id(inputs[0])
        if isinstance(module, Linear):
            producers[id(output)] = module

    forward_with_leaf_hook(model, example, record)
    pairs, unfolded = [], []
    for name, tensor in batch_norm_inputs.items():
        batch_norm = model.get_submodule(name)
        if (
            tensor in producers
            and readers[tensor] == 1
            and batch_norm.affine
            and batch_norm.track_running_stats
        ):
            pairs.append((producers[tensor], batch_norm))
        else:
            unfolded.append(name)
    return pairs, unfolded


def forward_with_leaf_hook(model: nn.Module, example: torch.Tensor, hook) -> None:
    """One forward pass of ``example`` without gradients, calling ``hook(name, module, inputs, output)``
    after every leaf module runs (what it returns is ignored)."""

    def observe(name: str, module: nn.Module, inputs, output) -> None:
        hook(name, module, inputs, output)

    handles = [
        module.register_forward_hook(partial(observe, name))
        for name, module in model.named_modules()
        if not any(module.children())
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
