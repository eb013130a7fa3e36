"""Parameter trajectories: the cumulative LCA of a few parameters per layer over the run, streamed with
the step records instead of a dense matrix (the LCA reference draws them from its dense files).

Per layer (the module owning parameter tensors): ``TRACKED`` random parameters, fixed at the start (the
same for every run of a model), and the ``TRACKED`` with the largest |cumulative LCA| so far, chosen again
at every step from the running totals. A parameter that joins the leaders late has no trajectory from
before it joined; the report says so.
"""

from dataclasses import dataclass

import torch

from callbacks.lca.layout import ParameterLayout

TRACKED = 50
SEED = 0


@dataclass(frozen=True)
class TrajectorySelection:
    """The flat parameter indices of each layer (``members``), the random ones (``random``, layer by
    layer) and how many each layer contributes to either selection (``widths``)."""

    layers: tuple[str, ...]
    members: tuple[torch.Tensor, ...]
    random: torch.Tensor
    widths: tuple[int, ...]

    @classmethod
    def of(cls, layout: ParameterLayout, device: torch.device | None = None) -> "TrajectorySelection":
        """The selection of ``layout``'s parameters; ``members`` on ``device`` (the totals' device)."""
        members = layout.layer_indices()
        generator = torch.Generator().manual_seed(SEED)
        widths = tuple(min(TRACKED, len(m)) for m in members)
        random = torch.cat([m[torch.randperm(len(m), generator=generator)[:w]].sort().values
                            for m, w in zip(members, widths, strict=True)])  # fmt: skip
        return cls(layout.layers, tuple(m.to(device) for m in members), random, widths)

    @property
    def size(self) -> int:
        return sum(self.widths)

    def leaders(self, totals: torch.Tensor) -> torch.Tensor:
        """Per layer, the flat indices of the ``TRACKED`` parameters with the largest |cumulative LCA|
        in ``totals`` (K,), largest first."""
        chosen = []
        for members, width in zip(self.members, self.widths, strict=True):
            chosen.append(members[totals[members].abs().topk(width).indices])
        return torch.cat(chosen)
