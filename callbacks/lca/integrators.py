"""The gradient averaged along the straight segment from θ_t to θ_{t+1}, by one of three rules.

- ``first_order``: the gradient at θ_t.
- ``rk4``: fourth-order Runge-Kutta, which for a path integral of a gradient is Simpson's rule:
  (∇L(θ_t) + 4 ∇L(midpoint) + ∇L(θ_{t+1})) / 6.
- ``adaptive``: composite Simpson over n = 2, 4, ..., ``max_splits`` sub-intervals (weights
  1, 4, 2, 4, ..., 4, 1 over 3n), doubling n until |ΔL − Σ LCA| <= ``tolerance`` on every evaluation set,
  as the reference implementation. Only three running sums are kept, not every point's gradient.

The end point is always evaluated: it gives L(θ_{t+1}) for the conservation check and is the start
gradient of the next step.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from callbacks.lca.evaluation import Evaluation

Method = Literal["first_order", "rk4", "adaptive"]


@dataclass
class PathIntegral:
    """One evaluation set's result for one step."""

    start: Evaluation
    end: Evaluation
    grad: torch.Tensor  # (K,) mean gradient along the segment
    class_grad: torch.Tensor | None  # (C, K)

    def lca_sum(self, delta: torch.Tensor) -> torch.Tensor:
        return torch.dot(self.grad.double(), delta)

    def error(self, delta: torch.Tensor) -> torch.Tensor:
        """(L(θ_{t+1}) − L(θ_t)) − Σ_i LCA_i: what the rule missed."""
        return (self.end.loss - self.start.loss) - self.lca_sum(delta)


def _gradients(evaluation: Evaluation) -> torch.Tensor:
    """What is integrated: the per-class gradients when there are any (their sum is the gradient)."""
    return evaluation.class_grad if evaluation.class_grad is not None else evaluation.grad


class _SimpsonSums:
    """Running sums of the gradients at the end points, at the points of the latest level (odd) and at
    those of earlier levels (even): the composite rule needs O(1) gradients in memory."""

    def __init__(self, start: Evaluation, end: Evaluation) -> None:
        self.per_class = start.class_grad is not None
        self.ends = _gradients(start) + _gradients(end)
        self.odd: torch.Tensor | None = None
        self.even: torch.Tensor | None = None

    def add_level(self, points: list[Evaluation]) -> None:
        if self.odd is not None:
            self.even = self.odd if self.even is None else self.even + self.odd
        self.odd = sum(_gradients(point) for point in points)

    def mean(self, splits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        mean = torch.add(self.ends, self.odd, alpha=4)
        if self.even is not None:
            mean.add_(self.even, alpha=2)
        mean.div_(3 * splits)
        return (mean.sum(0), mean) if self.per_class else (mean, None)


def integrate(
    evaluators: Sequence[Callable[[torch.Tensor], Evaluation]],
    theta_start: torch.Tensor,
    theta_end: torch.Tensor,
    delta: torch.Tensor,
    starts: Sequence[Evaluation],
    method: Method,
    tolerance: float = 1e-3,
    max_splits: int = 32,
) -> tuple[list[PathIntegral], int]:
    """Integrate the gradient of every evaluation set along the step from ``theta_start`` to ``theta_end``
    (``delta`` = their float64 difference); returns the results and the number of sub-intervals used
    (1 for first_order, 2 for rk4)."""

    def evaluate_at(fraction: float) -> list[Evaluation]:
        point = torch.lerp(theta_start, theta_end, fraction)
        return [evaluate(point) for evaluate in evaluators]

    ends = [evaluate(theta_end) for evaluate in evaluators]
    if method == "first_order" or not all(e.finite for e in (*starts, *ends)):
        results = [PathIntegral(s, e, s.grad, s.class_grad) for s, e in zip(starts, ends, strict=True)]
        return results, 1
    sums = [_SimpsonSums(s, e) for s, e in zip(starts, ends, strict=True)]
    splits = 1
    while True:
        splits *= 2
        new_points = [evaluate_at(k / splits) for k in range(1, splits, 2)]
        for index, set_sums in enumerate(sums):
            set_sums.add_level([point[index] for point in new_points])
        results = [
            PathIntegral(s, e, *set_sums.mean(splits))
            for s, e, set_sums in zip(starts, ends, sums, strict=True)
        ]
        finite = all(p.finite for point in new_points for p in point)
        if method == "rk4" or splits >= max_splits or not finite:
            return results, splits
        if max(abs(float(r.error(delta))) for r in results) <= tolerance:
            return results, splits
