"""Loss Change Allocation as a training callback; see :class:`LossChangeAllocation`. With
:class:`WeightHistory` a run's LCA can be recomputed offline (``python -m lightning_app.report
lca-replay``)."""

from callbacks.lca.callback import LossChangeAllocation
from callbacks.lca.weight_history import WeightHistory

__all__ = ["LossChangeAllocation", "WeightHistory"]
