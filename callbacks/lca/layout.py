"""Where each parameter lives in the flat parameter vector that LCA works on, and how parameters group
into layers (the module owning them) and neurons (the output units of that module)."""

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ParameterLayout:
    """Every parameter of a model, flattened in ``named_parameters`` order (a frozen one has LCA 0).

    ``names``, ``shapes``, ``offsets`` describe each parameter tensor (the per-"layer" records of the
    store are per tensor, as in the LCA reference). ``modules`` names the module owning each tensor;
    tensors of one module form a layer of the peak-moment analysis. Neurons are the output units of a
    module: an output channel or feature, all its inputs summed, with the matching entry of its bias.
    That is dimension 0 of most weights and dimension 1 of a transposed convolution's, whose weight is
    (in, out / groups, *kernel). ``units[i]`` = (first neuron, neurons) of tensor i, and ``unit_views[i]``
    = (groups, inputs per group, units per group, values per unit and input) the shape under which its
    neuron sums are ``values.view(unit_view).sum((1, 3)).flatten()``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    modules: tuple[str, ...]
    units: tuple[tuple[int, int], ...]
    unit_views: tuple[tuple[int, int, int, int], ...]
    neuron_modules: tuple[str, ...]

    @classmethod
    def of(cls, model: nn.Module) -> "ParameterLayout":
        named = list(model.named_parameters())
        names = tuple(name for name, _ in named)
        shapes = tuple(tuple(p.shape) for _, p in named)
        sizes = [math.prod(shape) for shape in shapes]
        offsets = tuple(sum(sizes[:i]) for i in range(len(sizes)))
        modules = tuple(name.rpartition(".")[0] for name in names)
        first_unit: dict[str, int] = {}
        neuron_modules: list[str] = []
        units, unit_views = [], []
        for shape, size, module in zip(shapes, sizes, modules, strict=True):
            owner = model.get_submodule(module)
            count = _output_units(shapes, modules, module, owner)
            view = _unit_view(shape, size, count, owner)
            if view is None:  # not shaped by the module's outputs: a unit of its own
                units.append((len(neuron_modules), 1))
                unit_views.append((1, 1, 1, size))
                neuron_modules.append(module)
                continue
            if module not in first_unit:
                first_unit[module] = len(neuron_modules)
                neuron_modules += [module] * count
            units.append((first_unit[module], count))
            unit_views.append(view)
        return cls(names, shapes, offsets, modules, tuple(units), tuple(unit_views), tuple(neuron_modules))

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(math.prod(shape) for shape in self.shapes)

    @property
    def num_parameters(self) -> int:
        return sum(self.sizes)

    @property
    def num_tensors(self) -> int:
        return len(self.names)

    @property
    def num_neurons(self) -> int:
        return len(self.neuron_modules)

    @property
    def is_weight(self) -> tuple[bool, ...]:
        """Tensors with more than one dimension (kernels), as opposed to biases and norm scales."""
        return tuple(len(shape) > 1 for shape in self.shapes)

    @property
    def layers(self) -> tuple[str, ...]:
        """The modules owning tensors, in order of first appearance: the layers of per-layer figures."""
        return tuple(dict.fromkeys(self.modules))

    def layer_indices(self) -> tuple[torch.Tensor, ...]:
        """Per layer, the flat indices of all its parameters."""
        return tuple(
            torch.cat([
                torch.arange(offset, offset + size)
                for offset, size, module in zip(self.offsets, self.sizes, self.modules, strict=True)
                if module == layer
            ])
            for layer in self.layers
        )  # fmt: skip

    def per_layer(self, per_tensor: torch.Tensor) -> torch.Tensor:
        """Per-tensor values (tensors,) summed per layer, float64 on the host."""
        owner = torch.tensor([self.layers.index(module) for module in self.modules])
        summed = torch.zeros(len(self.layers), dtype=torch.float64)
        return summed.index_add_(0, owner, per_tensor.double().cpu())

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (the last dimension) shaped as the named parameters."""
        return {
            name: flat[..., offset : offset + size].unflatten(-1, shape) if shape else flat[..., offset]
            for name, shape, offset, size in zip(
                self.names, self.shapes, self.offsets, self.sizes, strict=True
            )
        }


def _output_units(shapes, modules, module: str, owner: nn.Module) -> int:
    """Output units of a module: a transposed convolution's output channels; otherwise dimension 0 of
    its first multi-dimensional tensor, else of its first."""
    if isinstance(owner, nn.modules.conv._ConvTransposeNd):
        return owner.out_channels
    owned = [shape for shape, name in zip(shapes, modules, strict=True) if name == module]
    shaped = [shape for shape in owned if len(shape) > 1] or owned
    return shaped[0][0] if shaped[0] else 1


def _unit_view(shape, size: int, count: int, owner: nn.Module) -> tuple[int, int, int, int] | None:
    """The (groups, inputs per group, units per group, rest) view of a tensor whose values belong to the
    module's ``count`` output units; None when the tensor is not shaped by them."""
    transposed_weight = isinstance(owner, nn.modules.conv._ConvTransposeNd) and len(shape) > 1
    if transposed_weight:  # (in, out / groups, *kernel): group g's inputs feed group g's outputs
        groups = owner.groups
        return groups, shape[0] // groups, shape[1], size // (shape[0] * shape[1])
    if shape and shape[0] == count:
        return 1, 1, count, size // count
    return None
