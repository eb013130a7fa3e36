"""What one evaluation of the faithfulness callback costs, against a training epoch.

Trains configs/mnist_lenet_explain.yaml's network on the offline MNIST sample for a few epochs without
callbacks (the epoch time is the mean of the epochs after the first), then times
FaithfulnessCallback's evaluation of the trained model on 10 probe images with 4 methods (Saliency,
IntegratedGradients with 16 steps, LayerGradCam, Deep Taylor LRP) and the random map, deletion and
insertion with 20 steps: batched (256 perturbed images per forward pass, the default) and one perturbed
image at a time. Prints the cost as a share of an epoch at the every-5-epochs default (target <= 10 %)
and the batched speed-up.

    python bench/faithfulness_cost.py [--epochs 3] [--repeats 3]
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.inspection_overhead import EpochClock, explain_cli  # noqa: E402
from callbacks.attribution import FaithfulnessCallback  # noqa: E402
from callbacks.inspection import inspected_copy, load_probe_set  # noqa: E402

METHODS = {
    "Saliency": {},
    "IntegratedGradients": {"n_steps": 16},
    "LayerGradCam": {"layer": "net.conv2"},
    "LRP": {"composite": "deep_taylor"},
}


def trained(epochs: int, root: str):
    """The trained CLI and its mean epoch time (epochs after the first)."""
    clock = EpochClock()
    cli = explain_cli(epochs, f"--trainer.default_root_dir={root}")
    cli.trainer.callbacks.append(clock)
    cli.trainer.fit(cli.model, cli.datamodule)
    starts = [*clock.epoch_starts, clock.marks["last_epoch_end"]]
    return cli, statistics.mean(b - a for a, b in zip(starts[1:], starts[2:], strict=False))


def evaluation_seconds(cli, batch_size: int, repeats: int, root: str) -> tuple[float, float]:
    """The median time of one evaluation (maps, curves, logging) with ``batch_size``, and of its
    deletion and insertion curves alone."""
    callback = FaithfulnessCallback(methods=METHODS, metrics=["deletion", "insertion"], batch_size=batch_size)
    probe = load_probe_set(cli.datamodule, "val", None, callback.size, callback.seed)
    writer = SummaryWriter(root)
    times, curve_times = [], []
    measure = callback.measure

    def timed_measure(*args):
        start = time.perf_counter()
        result = measure(*args)
        curve_times[-1] += time.perf_counter() - start
        return result

    callback.measure = timed_measure
    for step in range(repeats):
        curve_times.append(0.0)
        start = time.perf_counter()
        with inspected_copy(cli.model, probe.inputs, callback.seed) as model:
            callback.inspect(model, probe, writer, step, final=False)
        times.append(time.perf_counter() - start)
    callback.writer.close()
    writer.close()
    return statistics.median(times), statistics.median(curve_times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=3, help="training epochs; the first is not timed")
    parser.add_argument("--repeats", type=int, default=3, help="evaluations timed, the median reported")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as root:
        cli, epoch = trained(args.epochs, root)
        batched, batched_curves = evaluation_seconds(cli, 256, args.repeats, f"{root}/batched")
        single, single_curves = evaluation_seconds(cli, 1, args.repeats, f"{root}/single")
    period = FaithfulnessCallback().every_n_epochs
    print(f"training epoch (offline sample, LeNet): {epoch:.2f} s")
    print(f"one evaluation, 10 images, 4 methods + random, deletion and insertion, 20 steps: "
          f"batched {batched:.2f} s = {batched / epoch:.1%} of an epoch, "
          f"{batched / (period * epoch):.1%} per epoch every {period} epochs (target <= 10 %)")  # fmt: skip
    print(f"one perturbed image at a time: {single:.2f} s; batched is {single / batched:.1f}x faster")
    print(f"the deletion and insertion curves alone: batched {batched_curves:.2f} s, one at a time "
          f"{single_curves:.2f} s: {single_curves / batched_curves:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
