"""Per-step LCA records and per-parameter running totals, computed from one step's LCA vectors.

Memory is O(parameters): one step's vectors, the totals (Σ LCA and the counts of iterations each
parameter helped, hurt or did neither) and a fixed-bin histogram of every LCA value seen. Every reduction
is one vectorised pass over the step's vectors: this work is on the training's critical path.
"""

import math
from dataclasses import dataclass, field

import torch

from callbacks.lca.integrators import PathIntegral
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.trajectories import TrajectorySelection

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
    trajectory_random: torch.Tensor  # (tracked,) cumulative LCA of the fixed random parameters
    trajectory_leaders: torch.Tensor  # (tracked,) cumulative LCA of the current leaders
    leader_index: torch.Tensor  # (tracked,) their flat parameter indices
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
    histogram: torch.Tensor = field(default_factory=lambda: torch.zeros(2, HISTOGRAM_BINS, dtype=torch.int64))
    steps: int = 0

    @classmethod
    def zeros(cls, num_parameters: int, device: torch.device) -> "RunningTotals":
        def counts() -> torch.Tensor:
            return torch.zeros(num_parameters, dtype=torch.int32, device=device)

        return cls(torch.zeros(num_parameters, dtype=torch.float64, device=device), counts(), counts())

    @property
    def zero(self) -> torch.Tensor:
        """Iterations each parameter neither helped nor hurt."""
        return self.steps - self.helped - self.hurt

    def add(self, lca: torch.Tensor, helped: torch.Tensor, hurt: torch.Tensor) -> None:
        """Add one step's LCA; ``helped`` and ``hurt`` are its masks ``lca < 0`` and ``lca > 0``."""
        self.lca += lca
        self.helped += helped
        self.hurt += hurt
        self.histogram += value_histogram(lca)
        self.steps += 1

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("lca", "helped", "hurt", "histogram", "steps")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            current = getattr(self, name)
            setattr(self, name, value.to(current.device) if isinstance(value, torch.Tensor) else value)


def value_histogram(lca: torch.Tensor) -> torch.Tensor:
    """Counts of the negative (row 0) and positive (row 1) values of the float64 ``lca`` on the fixed
    octave bins, read from their sign and exponent bits (one count over 4,096 sign-exponent pairs, then
    folded into the bins). Zeros are not counted (the totals count them), nor values below 2^-1022."""
    biased = (lca.view(torch.int64) >> 52) + 2048  # sign and biased exponent E: negative E, positive 2048 + E
    by_exponent = torch.bincount(biased, minlength=4096).cpu().view(2, 2048)[:, 1:]  # E = 1..2047
    first = 1023 + EXPONENT_MIN  # E of 2^EXPONENT_MIN: bin 0 holds E <= first, bin k holds E = first + k
    return torch.cat(
        [
            by_exponent[:, :first].sum(1, keepdim=True),
            by_exponent[:, first : first + HISTOGRAM_BINS - 2],
            by_exponent[:, first + HISTOGRAM_BINS - 2 :].sum(1, keepdim=True),
        ],
        dim=1,
    )


def value_dtype(model_dtype: torch.dtype) -> torch.dtype:
    """The dtype of the stored per-neuron, per-class, trajectory and dense values for a model in
    ``model_dtype``: float64 for a float64 model (``precision: 64-true``), float32 otherwise."""
    return torch.float64 if model_dtype == torch.float64 else torch.float32


class RecordBuilder:
    """Reduces one step's integrals to a :class:`StepRecord` and updates the running totals; the
    per-neuron and trajectory values of the records are in ``values`` (:func:`value_dtype`)."""

    def __init__(
        self, layout: ParameterLayout, device: torch.device, values: torch.dtype = torch.float32
    ) -> None:
        self.layout = layout
        self.values = values
        self.totals = RunningTotals.zeros(layout.num_parameters, device)
        self.trajectories = TrajectorySelection.of(layout, device)
        self.random_index = self.trajectories.random.to(device)

    def per_tensor(self, values: torch.Tensor) -> torch.Tensor:
        """Sums over each parameter tensor of the last dimension, in float64."""
        parts = values.split(self.layout.sizes, dim=-1)
        return torch.stack([part.sum(-1, dtype=torch.float64) for part in parts], dim=-1)

    def per_tensor_dot(self, grads: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Σ grads * delta over each parameter tensor, for every row of ``grads`` (C, K): one
        matrix-vector product per tensor, in the gradients' precision, as float64 (C, tensors)."""
        sizes = self.layout.sizes
        pieces = zip(grads.split(sizes, dim=-1), delta.to(grads.dtype).split(sizes), strict=True)
        return torch.stack([g @ d for g, d in pieces], dim=-1).double()

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
        train_record = self._set_record(train, delta, lca)
        valid = train.start.finite and train.end.finite and math.isfinite(train_record.lca_sum)
        helped, hurt = lca < 0, lca > 0
        if valid:
            self.totals.add(lca, helped, hurt)
        counts = torch.stack([self.count_per_tensor(helped), self.count_per_tensor(hurt)], dim=1)
        sizes = torch.tensor(self.layout.sizes, device=counts.device)
        layer_counts = torch.cat([counts, (sizes - counts.sum(1)).unsqueeze(1)], dim=1)
        leaders = self.trajectories.leaders(self.totals.lca)
        return StepRecord(
            step=step,
            global_step=global_step,
            epoch=epoch,
            valid=valid,
            splits=splits,
            train=train_record,
            layer_counts=layer_counts.cpu(),
            neuron_lca=self.per_neuron(lca).to(self.values).cpu(),
            trajectory_random=self.totals.lca[self.random_index].to(self.values).cpu(),
            trajectory_leaders=self.totals.lca[leaders].to(self.values).cpu(),
            leader_index=leaders.int().cpu(),
            val=self._set_record(val, delta, val.grad.double() * delta) if val is not None else None,
        )

    def _set_record(self, integral: PathIntegral, delta: torch.Tensor, lca: torch.Tensor) -> SetRecord:
        class_layer = None
        if integral.class_grad is not None:
            class_layer = self.per_tensor_dot(integral.class_grad, delta).cpu()
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
