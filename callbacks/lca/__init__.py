"""Loss Change Allocation as a training callback; see :class:`LossChangeAllocation`."""

from callbacks.lca.callback import LossChangeAllocation

__all__ = ["LossChangeAllocation"]
