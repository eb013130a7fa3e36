"""Captum attribution maps and their sanity checks as a training callback: :class:`AttributionCallback`."""

from callbacks.attribution.callback import AttributionCallback

__all__ = ["AttributionCallback"]
