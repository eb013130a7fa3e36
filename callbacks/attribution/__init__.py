"""Attribution maps, their sanity checks and their faithfulness over training as callbacks:
:class:`AttributionCallback` and :class:`FaithfulnessCallback`."""

from callbacks.attribution.callback import AttributionCallback
from callbacks.attribution.faithfulness_callback import FaithfulnessCallback

__all__ = ["AttributionCallback", "FaithfulnessCallback"]
