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
    module: dimension 0 of its weight (an output channel or feature, all its inputs summed) and the
    matching entries of its bias. ``units[i]`` = (first neuron, neurons) of tensor i; the values of a
    tensor are laid out neuron after neuron, so its neuron sums are ``values.view(neurons, -1).sum(1)``.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]
    modules: tuple[str, ...]
    units: tuple[tuple[int, int], ...]
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
        units = []
        for shape, module in zip(shapes, modules, strict=True):
            count = _output_units(shapes, modules, module)
            if shape and shape[0] == count:
                if module not in first_unit:
                    first_unit[module] = len(neuron_modules)
                    neuron_modules += [module] * count
                units.append((first_unit[module], count))
            else:  # not shaped by the module's outputs: a unit of its own
                units.append((len(neuron_modules), 1))
                neuron_modules.append(module)
        return cls(names, shapes, offsets, modules, tuple(units), tuple(neuron_modules))

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

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (the last dimension) shaped as the named parameters."""
        return {
            name: flat[..., offset : offset + size].unflatten(-1, shape) if shape else flat[..., offset]
            for name, shape, offset, size in zip(
                self.names, self.shapes, self.offsets, self.sizes, strict=True
            )
        }


def _output_units(shapes, modules, module: str) -> int:
    """Output units of a module: dimension 0 of its first multi-dimensional tensor, else of its first."""
    owned = [shape for shape, owner in zip(shapes, modules, strict=True) if owner == module]
    shaped = [shape for shape in owned if len(shape) > 1] or owned
    return shaped[0][0] if shaped[0] else 1
