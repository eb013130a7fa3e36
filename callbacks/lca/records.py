"""Per-step LCA records and per-parameter running totals, computed from one step's LCA vectors.

Memory is O(parameters): one step's vectors, the totals (Σ LCA and the counts of iterations each
parameter helped, hurt or did neither) and a fixed-bin histogram of every LCA value seen.
"""

from dataclasses import dataclass, field

import torch

from callbacks.lca.integrators import PathIntegral
from callbacks.lca.layout import ParameterLayout

# Histogram of all LCA values: |value| in octave bins [2^k, 2^(k+1)) for k from EXPONENT_MIN to
# EXPONENT_MAX - 1 (about 1e-15 to 1e2), one row for negative (helped) and one for positive (hurt) values;
# values outside the range fall in the edge bins.
EXPONENT_MIN, EXPONENT_MAX = -50, 7
HISTOGRAM_BINS = EXPONENT_MAX - EXPONENT_MIN


def histogram_edges() -> torch.Tensor:
    """The bin edges of the value histogram (magnitudes)."""
    return 2.0 ** torch.arange(EXPONENT_MIN, EXPONENT_MAX + 1, dtype=torch.float64)


@dataclass
class SetRecord:
    """One evaluation set's numbers for one step (float64 unless said)."""

    loss_start: float
    loss_end: float
    lca_sum: float
    layer_lca: torch.Tensor  # (tensors,)
    class_layer_lca: torch.Tensor | None  # (classes, tensors)
    class_loss_start: torch.Tensor | None  # (classes,)
    class_loss_end: torch.Tensor | None

    @property
    def loss_change(self) -> float:
        return self.loss_end - self.loss_start

    @property
    def error(self) -> float:
        return self.loss_change - self.lca_sum


@dataclass
class StepRecord:
    """Everything streamed for one optimizer step."""

    step: int  # the parameter update's index, from 0
    global_step: int  # the trainer's global_step after it
    epoch: int
    valid: bool
    splits: int
    train: SetRecord
    layer_counts: torch.Tensor  # (tensors, 3): parameters that helped, hurt, did neither
    neuron_lca: torch.Tensor  # (neurons,)
    val: SetRecord | None = None

    @property
    def counts(self) -> torch.Tensor:
        return self.layer_counts.sum(0)


@dataclass
class RunningTotals:
    """Per parameter, over all valid steps: Σ LCA and the iterations it helped, hurt, did neither."""

    lca: torch.Tensor
    helped: torch.Tensor
    hurt: torch.Tensor
    zero: torch.Tensor
    histogram: torch.Tensor = field(default_factory=lambda: torch.zeros(2, HISTOGRAM_BINS, dtype=torch.int64))
    steps: int = 0

    @classmethod
    def zeros(cls, num_parameters: int, device: torch.device) -> "RunningTotals":
        def counts() -> torch.Tensor:
            return torch.zeros(num_parameters, dtype=torch.int32, device=device)

        return cls(
            torch.zeros(num_parameters, dtype=torch.float64, device=device), counts(), counts(), counts()
        )

    def add(self, lca: torch.Tensor, helped: torch.Tensor, hurt: torch.Tensor) -> None:
        """Add one step's LCA; ``helped`` and ``hurt`` are its masks ``lca < 0`` and ``lca > 0``."""
        self.lca += lca
        self.helped += helped
        self.hurt += hurt
        self.zero += ~(helped | hurt)
        self.histogram += value_histogram(lca, helped, hurt)
        self.steps += 1

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("lca", "helped", "hurt", "zero", "histogram", "steps")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            current = getattr(self, name)
            setattr(self, name, value.to(current.device) if isinstance(value, torch.Tensor) else value)


def value_histogram(lca: torch.Tensor, helped: torch.Tensor, hurt: torch.Tensor) -> torch.Tensor:
    """Counts of negative (row 0) and positive (row 1) values on the fixed octave bins, from the binary
    exponents (no logarithm); zeros go to a spare bin that is dropped (the totals count them)."""
    _, exponent = torch.frexp(lca)  # |lca| = |mantissa| * 2^exponent with |mantissa| in [0.5, 1)
    index = exponent.sub_(1 + EXPONENT_MIN).clamp_(0, HISTOGRAM_BINS - 1)
    index = torch.where(hurt, index + HISTOGRAM_BINS, index)
    index = torch.where(helped | hurt, index, 2 * HISTOGRAM_BINS)
    counts = torch.bincount(index, minlength=2 * HISTOGRAM_BINS + 1)
    return counts[: 2 * HISTOGRAM_BINS].view(2, HISTOGRAM_BINS).cpu()


class RecordBuilder:
    """Reduces one step's integrals to a :class:`StepRecord` and updates the running totals."""

    def __init__(self, layout: ParameterLayout, device: torch.device) -> None:
        self.layout = layout
        self.totals = RunningTotals.zeros(layout.num_parameters, device)

    def per_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """Sums over each parameter tensor of the last dimension, in float64."""
        parts = values.split(self.layout.sizes, dim=-1)
        return torch.stack([part.sum(-1, dtype=torch.float64) for part in parts], dim=-1)

    def count_per_tensor(self, mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([part.count_nonzero() for part in mask.split(self.layout.sizes)])

    def per_neuron(self, lca: torch.Tensor) -> torch.Tensor:
        neurons = torch.zeros(self.layout.num_neurons, dtype=torch.float64, device=lca.device)
        pieces = zip(lca.split(self.layout.sizes), self.layout.units, self.layout.unit_views, strict=True)
        for part, (first, count), view in pieces:
            neurons[first : first + count] += part.view(view).sum((1, 3)).flatten()
        return neurons

    def build(
        self,
        step: int,
        global_step: int,
        epoch: int,
        splits: int,
        delta: torch.Tensor,
        lca: torch.Tensor,
        train: PathIntegral,
        val: PathIntegral | None,
    ) -> StepRecord:
        """The record of a step; ``lca`` = ``train.grad`` * ``delta``, the per-parameter LCA in float64."""
        valid = train.start.finite and train.end.finite and bool(torch.isfinite(lca).all())
        helped, hurt = lca < 0, lca > 0
        if valid:
            self.totals.add(lca, helped, hurt)
        counts = torch.stack([self.count_per_tensor(helped), self.count_per_tensor(hurt)], dim=1)
        sizes = torch.tensor(self.layout.sizes, device=counts.device)
        layer_counts = torch.cat([counts, (sizes - counts.sum(1)).unsqueeze(1)], dim=1)
        return StepRecord(
            step=step,
            global_step=global_step,
            epoch=epoch,
            valid=valid,
            splits=splits,
            train=self._set_record(train, delta, lca),
            layer_counts=layer_counts.cpu(),
            neuron_lca=self.per_neuron(lca).float().cpu(),
            val=self._set_record(val, delta, val.grad.double() * delta) if val is not None else None,
        )

    def _set_record(self, integral: PathIntegral, delta: torch.Tensor, lca: torch.Tensor) -> SetRecord:
        class_layer = None
        if integral.class_grad is not None:
            class_layer = self.per_tensor(integral.class_grad * delta).cpu()
        return SetRecord(
            loss_start=float(integral.start.loss),
            loss_end=float(integral.end.loss),
            lca_sum=float(lca.sum()),
            layer_lca=self.per_tensor(lca).cpu(),
            class_layer_lca=class_layer,
            class_loss_start=integral.start.class_loss.cpu()
            if integral.start.class_loss is not None
            else None,
            class_loss_end=integral.end.class_loss.cpu() if integral.end.class_loss is not None else None,
        )
