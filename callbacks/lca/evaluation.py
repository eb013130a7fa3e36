"""The LCA loss and its gradient at any point of parameter space, on a fixed evaluation set.

The loss is the module's criterion made element-wise (:class:`~callbacks.lca.loss.ElementwiseLoss`) and
summed over the chunks of the evaluation set with each element's share of the criterion's mean, so chunks
of any size, a partial last chunk and a set sharded over DDP ranks all give the same mean. The model itself
is never changed: parameters are substituted with ``torch.func.functional_call``, dropout is off, and batch
norm either normalises with the chunk's own statistics (``batch_stats``, the reference, running
statistics left untouched) or with the running statistics (``eval``).

The evaluator reads the module's buffers and submodules at every evaluation, never a copy taken earlier:
Lightning's strategy moves and converts the module after callbacks' ``setup`` (``.to(device)``, the
precision's dtype, SyncBatchNorm), which replaces buffer tensors and batch-norm modules.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from callbacks.lca.eval_chunks import EvaluationChunks
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.loss import ElementwiseLoss

BatchNormMode = Literal["batch_stats", "eval"]


@dataclass
class Evaluation:
    """The LCA loss and its gradient at one point; per class when the evaluator splits by class."""

    loss: torch.Tensor  # float64 scalar
    grad: torch.Tensor  # (K,)
    class_loss: torch.Tensor | None = None  # (C,), sums to loss
    class_grad: torch.Tensor | None = None  # (C, K), sums to grad

    @cached_property
    def finite(self) -> bool:
        # one reduction: a sum is NaN or infinite if any of its terms is
        return bool(torch.isfinite(self.loss + self.grad.sum(dtype=torch.float64)))


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def has_tied_tensors(module: nn.Module) -> bool:
    """Whether a parameter or buffer is reachable under two names."""
    named = [*module.named_parameters(remove_duplicate=False), *module.named_buffers(remove_duplicate=False)]
    return len({id(tensor) for _, tensor in named}) < len(named)


def local_sync_batch_norm_group(module: nn.Module, bn_mode: BatchNormMode) -> dist.ProcessGroup | None:
    """A process group of this rank alone, for SyncBatchNorm under DDP in 'batch_stats' mode: the LCA
    loss normalises each chunk with its own statistics, whatever the number of processes, so SyncBatchNorm
    must not synchronise during LCA. A collective call: every rank makes it (None where not needed)."""
    synced = any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
    if bn_mode != "batch_stats" or not synced or not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    group, _ = dist.new_subgroups(group_size=1)
    return group


class LossEvaluator:
    """Evaluates the LCA loss of ``module`` on this rank's chunks of an evaluation set.

    Args:
        module: the LightningModule (its ``forward`` gives the outputs the criterion scores), in place on
            its device and in its dtype.
        layout: the parameters LCA tracks, flattened.
        loss: the module's criterion, element-wise.
        chunks: this rank's chunks of the evaluation set (class rows when ``chunks.grouped``).
        bn_mode: 'batch_stats' or 'eval' (see the module docstring).
        num_classes: split the loss and gradient by target class (None: do not).
        reduce: sums a tensor over all ranks (identity on one process).
        local_group: this rank's own process group, given to SyncBatchNorm modules during LCA (see
            :func:`local_sync_batch_norm_group`).
    """

    def __init__(
        self,
        module: nn.Module,
        layout: ParameterLayout,
        loss: ElementwiseLoss,
        chunks: EvaluationChunks,
        bn_mode: BatchNormMode,
        num_classes: int | None,
        reduce: Callable[[torch.Tensor], torch.Tensor],
        local_group: dist.ProcessGroup | None = None,
    ) -> None:
        self.module = module
        self.layout = layout
        self.loss_fn = loss.fn
        self.chunks = chunks
        self.bn_mode = bn_mode
        self.num_classes = num_classes
        self.reduce = reduce
        self.local_group = local_group
        self.batch_coupled = bn_mode == "batch_stats" and has_batch_norm(module)
        self.grouped = chunks.grouped
        # functional_call unties shared tensors by walking the whole module at every call: only when needed
        self.tied = has_tied_tensors(module)
        self._buffers: dict[str, torch.Tensor] | None = None  # the live buffers, inside a session

    def __call__(self, theta: torch.Tensor) -> Evaluation:
        """The loss (and gradient) at the flat parameter vector ``theta``, summed over all ranks."""
        with self.session() as buffers:
            if self.num_classes is None:
                evaluation = self._class_free(theta, buffers)
            elif self.grouped:
                evaluation = self._grouped(theta, buffers)
            else:
                evaluation = self._masked(theta, buffers)
        return self._reduced(evaluation)

    @contextmanager
    def session(self) -> Iterator[dict[str, torch.Tensor]]:
        """The module in LCA mode and its buffers as they are now, for every evaluation inside (the
        evaluations of one step): dropout off, batch norm in training mode only for 'batch_stats',
        SyncBatchNorm on this rank's own group. Restores every module's mode and group."""
        if self._buffers is not None:
            yield self._buffers
            return
        modules = list(self.module.modules())
        modes = [m.training for m in modules]
        synced = [m for m in modules if isinstance(m, nn.SyncBatchNorm)] if self.local_group else []
        groups = [m.process_group for m in synced]
        for module in modules:
            module.training = self.batch_coupled and isinstance(module, nn.modules.batchnorm._BatchNorm)
        for module in synced:
            module.process_group = self.local_group
        self._buffers = dict(self.module.named_buffers())
        try:
            yield self._buffers
        finally:
            self._buffers = None
            for module, training in zip(modules, modes, strict=True):
                module.training = training
            for module, group in zip(synced, groups, strict=True):
                module.process_group = group

    def buffers_snapshot(self) -> dict[str, torch.Tensor]:
        """The buffers the loss depends on: in 'eval' mode the running statistics (not the batch counter,
        which eval mode does not read); none otherwise."""
        if self.bn_mode != "eval":
            return {}
        return {
            name: b.detach().clone()
            for name, b in self.module.named_buffers()
            if not name.endswith("num_batches_tracked")
        }

    def _forward(self, parameters: dict, buffers: dict, inputs: torch.Tensor) -> torch.Tensor:
        """The module's outputs for ``inputs`` with ``parameters`` and (copies of, when batch norm in
        training mode would update them) ``buffers``."""
        if self.batch_coupled:
            buffers = {name: b.clone() for name, b in buffers.items()}
        return functional_call(self.module, {**buffers, **parameters}, (inputs,), tie_weights=self.tied)

    def _leaves(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """One leaf tensor per parameter: differentiating through slices of the flat vector instead would
        write a zero tensor of the vector's full size per parameter in the backward pass."""
        return {
            name: view.detach().requires_grad_(True) for name, view in self.layout.unflatten(theta).items()
        }

    @staticmethod
    def _flat(gradients, batch_dims: int = 0) -> torch.Tensor:
        return torch.cat([g.flatten(batch_dims) for g in gradients], dim=batch_dims)

    def _class_free(self, theta: torch.Tensor, buffers: dict) -> Evaluation:
        parameters = self._leaves(theta)
        loss = torch.zeros((), dtype=torch.float64, device=theta.device)
        with torch.enable_grad():
            for chunk in self.chunks:
                outputs = self._forward(parameters, buffers, chunk.inputs)
                chunk_loss = (self.loss_fn(outputs, chunk.targets) * chunk.weights).sum()
                chunk_loss.backward()
                loss += chunk_loss.detach().double()
        # a rank holding no chunk (a set smaller than the number of processes) contributes zeros
        grads = (p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters.values())
        return Evaluation(loss, self._flat(grads))

    def _masked(self, theta: torch.Tensor, buffers: dict) -> Evaluation:
        """Per-class terms from one forward pass and one backward batched over the class masks: exact
        when examples interact (batch statistics) and when one example holds several classes (pixels)."""
        parameters = self._leaves(theta)
        classes = torch.arange(self.num_classes, device=theta.device)
        class_loss = torch.zeros(self.num_classes, dtype=torch.float64, device=theta.device)
        class_grad = torch.zeros(self.num_classes, theta.numel(), dtype=theta.dtype, device=theta.device)
        with torch.enable_grad():
            for chunk in self.chunks:
                outputs = self._forward(parameters, buffers, chunk.inputs)
                losses = self.loss_fn(outputs, chunk.targets)
                is_class = chunk.targets.long() == classes.view(-1, *[1] * chunk.targets.dim())
                masks = is_class * chunk.weights  # (C, *targets.shape), the shape of the element losses
                class_loss += (masks * losses).flatten(1).sum(1).detach().double()
                grads = torch.autograd.grad(
                    losses,
                    list(parameters.values()),
                    grad_outputs=masks.to(losses.dtype),
                    is_grads_batched=True,
                )
                class_grad += self._flat(grads, batch_dims=1)
        return Evaluation(class_loss.sum(), class_grad.sum(0), class_loss, class_grad)

    def _grouped(self, theta: torch.Tensor, buffers: dict) -> Evaluation:
        """Per-class terms in one vectorised pass: ``vmap`` over rows holding one class each, so the
        cost is that of a single class-free pass (plus padding)."""
        parameters = {name: view.detach() for name, view in self.layout.unflatten(theta).items()}

        def row_loss(parameters: dict, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
            outputs = self._forward(parameters, buffers, inputs)
            return (self.loss_fn(outputs, targets) * weights).sum()

        class_loss = torch.zeros(self.num_classes, dtype=torch.float64, device=theta.device)
        class_grad = torch.zeros(self.num_classes, theta.numel(), dtype=theta.dtype, device=theta.device)
        for chunk in self.chunks:
            grads, losses = vmap(grad_and_value(row_loss), in_dims=(None, 0, 0, 0))(
                parameters, chunk.inputs, chunk.targets, chunk.weights
            )
            class_loss += losses.double()
            class_grad += self._flat((grads[name] for name in parameters), batch_dims=1)
        return Evaluation(class_loss.sum(), class_grad.sum(0), class_loss, class_grad)

    def _reduced(self, evaluation: Evaluation) -> Evaluation:
        return Evaluation(
            *(
                self.reduce(value) if value is not None else None
                for value in (evaluation.loss, evaluation.grad, evaluation.class_loss, evaluation.class_grad)
            )  # fmt: skip
        )
