"""The LCA loss and its gradient at any point of parameter space, on a fixed evaluation set.

The loss is the module's criterion made element-wise (``reduction='none'``) and averaged over every
element of the evaluation set (examples for classification, pixels for segmentation), so chunks of any
size, a partial last chunk and a set sharded over DDP ranks all give the same mean. The model itself is
never changed: parameters are substituted with ``torch.func.functional_call``, dropout is off, and batch
norm either normalises with the chunk's own statistics (``batch_stats``, the reference, running
statistics left untouched) or with the running statistics (``eval``).
"""

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from torch.utils.data import DataLoader, Dataset

from callbacks.lca.layout import ParameterLayout
from lightning_app.errors import UserInputError

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


@dataclass
class Chunk:
    """Inputs and targets evaluated together, and the weight (1 / elements of the whole set) of each
    element. Class-grouped chunks hold one row per class, padded with zero-weight copies."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor

    def to(self, device: torch.device) -> "Chunk":
        return Chunk(self.inputs.to(device), self.targets.to(device), self.weights.to(device))


def elementwise(criterion: nn.Module) -> tuple[nn.Module, int | None]:
    """A copy of ``criterion`` returning per-element losses, and its ignore index (None if it has none)."""
    if not hasattr(criterion, "reduction") or getattr(criterion, "reduction", None) != "mean":
        raise UserInputError(
            f"LCA needs the module's criterion to be a torch loss averaged over elements (reduction='mean'), "
            f"such as CrossEntropyLoss or BCEWithLogitsLoss; got {type(criterion).__name__}"
        )
    per_element = copy.copy(criterion)
    per_element.reduction = "none"
    ignore_index = getattr(criterion, "ignore_index", None)
    return per_element, ignore_index if isinstance(ignore_index, int) and ignore_index >= 0 else None


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class LossEvaluator:
    """Evaluates the LCA loss of ``module`` on this rank's chunks of an evaluation set.

    Args:
        module: the LightningModule (its ``forward`` gives the outputs the criterion scores).
        layout: the parameters LCA tracks, flattened.
        criterion: the module's loss, averaged over elements.
        dataset: the evaluation set, items ``(input, target)``.
        chunk_size: examples evaluated together (the last chunk may be smaller).
        bn_mode: 'batch_stats' or 'eval' (see the module docstring).
        num_classes: split the loss and gradient by target class (None: do not).
        rank, world_size: the set's chunks are dealt out round-robin, so every chunk is the same
            whatever the number of processes.
        reduce: sums a tensor over all ranks (identity on one process).
    """

    def __init__(
        self,
        module: nn.Module,
        layout: ParameterLayout,
        criterion: nn.Module,
        dataset: Dataset,
        chunk_size: int,
        bn_mode: BatchNormMode,
        num_classes: int | None,
        rank: int,
        world_size: int,
        reduce: Callable[[torch.Tensor], torch.Tensor],
        device: torch.device,
    ) -> None:
        self.module = module
        self.layout = layout
        self.loss_fn, ignore_index = elementwise(criterion)
        self.bn_mode = bn_mode
        self.num_classes = num_classes
        self.reduce = reduce
        self.batch_coupled = bn_mode == "batch_stats" and has_batch_norm(module)
        self._modules = list(module.modules())
        self._buffers = dict(module.named_buffers())  # updated in place by training: the same tensors
        self._lca_modes = [
            self.batch_coupled and isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self._modules
        ]
        inputs, targets = _load(dataset, chunk_size)
        valid = (
            targets != ignore_index
            if ignore_index is not None
            else torch.ones_like(targets, dtype=torch.bool)
        )
        if not valid.any():
            raise UserInputError("the LCA evaluation set has no element to score (all targets ignored)")
        self.num_elements = int(valid.sum())
        # in the model's precision (float64 models keep float64); chunk losses are summed in float64
        dtype = next(module.parameters()).dtype
        weights = (valid.double() / self.num_elements).to(dtype)
        self.grouped = num_classes is not None and targets.dim() == 1 and not self.batch_coupled
        if self.grouped:
            chunks = _class_rows(inputs, targets, weights, num_classes, max(1, chunk_size // num_classes))
        else:
            parts = (t.split(chunk_size) for t in (inputs, targets, weights))
            chunks = [Chunk(*chunk) for chunk in zip(*parts, strict=True)]
        self.chunks = [chunk.to(device) for index, chunk in enumerate(chunks) if index % world_size == rank]

    def __call__(self, theta: torch.Tensor) -> Evaluation:
        """The loss (and gradient) at the flat parameter vector ``theta``, summed over all ranks."""
        with self._lca_mode():
            if self.num_classes is None:
                evaluation = self._class_free(theta)
            elif self.grouped:
                evaluation = self._grouped(theta)
            else:
                evaluation = self._masked(theta)
        return self._reduced(evaluation)

    def buffers_snapshot(self) -> dict[str, torch.Tensor]:
        """The buffers the loss depends on (running statistics in 'eval' mode; none otherwise)."""
        if self.bn_mode != "eval":
            return {}
        return {name: b.detach().clone() for name, b in self._buffers.items()}

    def _state(self, parameters: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        buffers = self._buffers
        if self.batch_coupled:  # batch norm in training mode writes its running statistics: give it copies
            buffers = {name: b.clone() for name, b in buffers.items()}
        return {**buffers, **parameters}

    def _leaves(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """One leaf tensor per parameter: differentiating through slices of the flat vector instead would
        write a zero tensor of the vector's full size per parameter in the backward pass."""
        return {
            name: view.detach().requires_grad_(True) for name, view in self.layout.unflatten(theta).items()
        }

    @staticmethod
    def _flat(gradients, batch_dims: int = 0) -> torch.Tensor:
        return torch.cat([g.flatten(batch_dims) for g in gradients], dim=batch_dims)

    def _class_free(self, theta: torch.Tensor) -> Evaluation:
        parameters = self._leaves(theta)
        loss = torch.zeros((), dtype=torch.float64, device=theta.device)
        with torch.enable_grad():
            for chunk in self.chunks:
                outputs = functional_call(self.module, self._state(parameters), (chunk.inputs,))
                chunk_loss = (self.loss_fn(outputs, chunk.targets) * chunk.weights).sum()
                chunk_loss.backward()
                loss += chunk_loss.detach().double()
        # a rank holding no chunk (a set smaller than the number of processes) contributes zeros
        grads = (p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters.values())
        return Evaluation(loss, self._flat(grads))

    def _masked(self, theta: torch.Tensor) -> Evaluation:
        """Per-class terms from one forward pass and one backward batched over the class masks: exact
        when examples interact (batch statistics) and when one example holds several classes (pixels)."""
        parameters = self._leaves(theta)
        classes = torch.arange(self.num_classes, device=theta.device)
        class_loss = torch.zeros(self.num_classes, dtype=torch.float64, device=theta.device)
        class_grad = torch.zeros(self.num_classes, theta.numel(), device=theta.device)
        with torch.enable_grad():
            for chunk in self.chunks:
                outputs = functional_call(self.module, self._state(parameters), (chunk.inputs,))
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

    def _grouped(self, theta: torch.Tensor) -> Evaluation:
        """Per-class terms in one vectorised pass: ``vmap`` over rows holding one class each, so the
        cost is that of a single class-free pass (plus padding)."""
        parameters = {name: view.detach() for name, view in self.layout.unflatten(theta).items()}

        def row_loss(parameters: dict, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
            outputs = functional_call(self.module, self._state(parameters), (inputs,))
            return (self.loss_fn(outputs, targets) * weights).sum()

        class_loss = torch.zeros(self.num_classes, dtype=torch.float64, device=theta.device)
        class_grad = torch.zeros(self.num_classes, theta.numel(), device=theta.device)
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

    @contextmanager
    def _lca_mode(self) -> Iterator[None]:
        """Dropout off; batch norm in training mode only for 'batch_stats'. Restores every module's mode."""
        modes = [m.training for m in self._modules]
        for module, training in zip(self._modules, self._lca_modes, strict=True):
            module.training = training
        try:
            yield
        finally:
            for module, training in zip(self._modules, modes, strict=True):
                module.training = training


def _load(dataset: Dataset, chunk_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (input, target) of the set, stacked."""
    # A generator of its own: a DataLoader iterator otherwise draws its base seed from the global RNG,
    # which would change the training run's data order.
    loader = DataLoader(dataset, batch_size=chunk_size, shuffle=False, generator=torch.Generator())
    batches = list(loader)
    if not batches:
        raise UserInputError("the LCA evaluation set is empty")
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])


def _class_rows(
    inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, num_classes: int, width: int
) -> list[Chunk]:
    """Chunks of shape (classes, width), the last possibly narrower: row c holds examples of class c only.
    Each class is padded to the largest class with zero-weight copies of one of its examples, so padding
    depends only on how unbalanced the whole set is, not on the order of its examples."""
    if int(targets.max()) >= num_classes or int(targets.min()) < 0:
        raise UserInputError(f"the LCA evaluation set has targets outside 0..{num_classes - 1}")
    members = [torch.nonzero(targets == c).flatten() for c in range(num_classes)]
    length = max(len(m) for m in members)
    positions = torch.zeros(num_classes, length, dtype=torch.long)
    row_weights = torch.zeros(num_classes, length, dtype=weights.dtype)
    for c, index in enumerate(members):
        positions[c, : len(index)] = index
        positions[c, len(index) :] = index[0] if len(index) else 0
        row_weights[c, : len(index)] = weights[index]
    return [
        Chunk(inputs[columns], targets[columns], row_weights[:, start : start + width])
        for start in range(0, length, width)
        for columns in [positions[:, start : start + width]]
    ]
