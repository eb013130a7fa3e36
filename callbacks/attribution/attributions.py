"""Attributions: what an attribution method returns for a batch of probe images."""

from dataclasses import dataclass

import torch


@dataclass
class Attributions:
    """``values`` of the input's shape; for Lime also the superpixels (N, H, W) and their weights; for
    LRP with ``layers`` also the relevance at each named layer's output (N, C, h, w), and for LRP each
    image's conservation (N,), the relevance reaching the input over the explained score, and what
    relevance passed by its gradient (``gradient_fallback``)."""

    values: torch.Tensor
    superpixels: torch.Tensor | None = None
    weights: list[torch.Tensor] | None = None
    layer_relevance: dict[str, torch.Tensor] | None = None
    conservation: torch.Tensor | None = None
    unexplained: list[str] | None = None

    def rows(self, start: int, stop: int) -> "Attributions":
        """The attributions of examples ``start`` to ``stop`` (exclusive)."""
        return Attributions(
            self.values[start:stop],
            None if self.superpixels is None else self.superpixels[start:stop],
            None if self.weights is None else self.weights[start:stop],
            None
            if self.layer_relevance is None
            else {name: values[start:stop] for name, values in self.layer_relevance.items()},
            None if self.conservation is None else self.conservation[start:stop],
            self.unexplained,
        )
