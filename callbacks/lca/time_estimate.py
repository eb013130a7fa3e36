"""The projected time of a run with LCA, from its first steps."""

import time
from dataclasses import dataclass, field

WARMUP_STEPS = 1  # the first step builds caches and compiles kernels: not counted
MEASURED_STEPS = 5


@dataclass
class TimeEstimate:
    """Times the LCA work of each step and the wall time between step ends; after ``WARMUP_STEPS`` +
    ``MEASURED_STEPS`` steps, :meth:`message` projects both over the run's remaining steps once."""

    lca_seconds: list[float] = field(default_factory=list)
    step_ends: list[float] = field(default_factory=list)
    reported: bool = False

    def record(self, lca_seconds: float) -> None:
        self.lca_seconds.append(lca_seconds)
        self.step_ends.append(time.perf_counter())

    def message(self, planned_steps: int | float) -> str | None:
        """One line with the projection, the first time enough steps are measured; else None."""
        if self.reported or len(self.step_ends) < WARMUP_STEPS + MEASURED_STEPS + 1:
            return None
        self.reported = True
        measured = self.lca_seconds[WARMUP_STEPS + 1 :]
        lca_per_step = sum(measured) / len(measured)
        wall_per_step = (self.step_ends[-1] - self.step_ends[WARMUP_STEPS]) / len(measured)
        rate = f"LCA: {lca_per_step:.3g} s a step, of {wall_per_step:.3g} s in all"
        if planned_steps == float("inf"):
            return f"{rate} (the run has no set length to project)"
        steps = int(planned_steps)
        return (
            f"{rate}; projected for the {steps:,} steps: LCA {format_duration(lca_per_step * steps)}, "
            f"the whole run {format_duration(wall_per_step * steps)} (validation and checkpoints not counted)"
        )


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
