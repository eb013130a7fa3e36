"""What streaming parameter trajectories adds to an LCA step.

Trains the LCA paper's FC network (configs/mnist_fc_sample.yaml, the cheapest LCA step, so the worst
case) for ``--steps`` steps with LossChangeAllocation (rk4 on the 4,000 training digits) and takes the
callback's own time per step from its clock, then times the trajectory work of a step alone (choosing
each layer's 50 leaders by |cumulative LCA| and gathering the tracked values to the host) on the same
layout, ``--steps`` times, and prints the ratio.

    python bench/lca_trajectory_cost.py [--steps 100]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fc_lca_run import fc_lca_run  # noqa: E402
from callbacks.lca.layout import ParameterLayout  # noqa: E402
from callbacks.lca.trajectories import TrajectorySelection  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    cli, step = fc_lca_run(args.steps, Path(tempfile.mkdtemp()))
    selection = TrajectorySelection.of(ParameterLayout.of(cli.model))
    totals = torch.randn(sum(len(m) for m in selection.members), dtype=torch.float64)
    start = time.perf_counter()
    for _ in range(args.steps):
        leaders = selection.leaders(totals)
        totals[selection.random].float().cpu(), totals[leaders].float().cpu(), leaders.int().cpu()
    trajectories = (time.perf_counter() - start) / args.steps
    share = 100 * trajectories / step
    print(f"FC network, {args.steps} steps: LCA step {1000 * step:.1f} ms (trajectories included), "
          f"trajectory work {1000 * trajectories:.3f} ms = {share:.2f}% of it")  # fmt: skip


if __name__ == "__main__":
    main()
