"""LCA replay against online LCA: the same steps' LCA work, online during training and offline from the
weight history.

Trains configs/mnist_fc_sample.yaml (the LCA paper's FC network on the offline MNIST sample) for
``--steps`` steps with LossChangeAllocation (rk4, the 4,000 training digits) and WeightHistory, summing
the LCA callback's own time per step (its clock, the first step left out), then replays the run with
the same settings (python -m lightning_app.report lca-replay) and times the whole replay, set-up
included (the history is read through once before the replay starts). Prints both per step, their
ratio, and the time of that first reading.

    python bench/lca_replay_speed.py [--steps 200]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fc_lca_run import fc_lca_run  # noqa: E402
from callbacks.lca.replay import check_history, replay  # noqa: E402
from callbacks.lca.weight_history import HISTORY_FILE, WeightHistory  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp())
    cli, online = fc_lca_run(args.steps, root, WeightHistory())
    start = time.perf_counter()
    replay(Path(cli.trainer.log_dir), root / "replayed")
    offline = (time.perf_counter() - start) / args.steps
    print(f"{args.steps} steps of the FC network, rk4 on 4,000 digits:")
    print(f"  online LCA work per step:           {1000 * online:7.1f} ms")
    ratio = offline / online
    print(
        f"  replay per step, set-up included:   {1000 * offline:7.1f} ms   (replay / online = {ratio:.2f}x)"
    )
    start = time.perf_counter()
    check_history(Path(cli.trainer.log_dir) / HISTORY_FILE)
    reading = (time.perf_counter() - start) / args.steps
    print(f"  of which reading the history through first: {1000 * reading:.1f} ms a step")


if __name__ == "__main__":
    main()
