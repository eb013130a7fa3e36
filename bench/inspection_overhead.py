"""What the attribution, activation and embedding callbacks cost a training epoch, at their defaults.

Trains configs/mnist_lenet_explain.yaml's network and data (Lees's LeNet on the offline MNIST
sample) twice in one process, without the callbacks and with AttributionCallback(),
ActivationCallback() and EmbeddingCallback() at their default settings, and compares the mean epoch
time over the first ``every_n_epochs`` (10) epochs, which include one periodic attribution and
activation run. Runs alternate (after a warm-up) to spread drifts of the machine's speed over both.
The one-off work at the start (t-SNE) and the end of fit (attributions, sanity checks,
t-SNE) is reported separately.

    python bench/inspection_overhead.py [--epochs 11] [--repeats 2]
"""

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbacks.activations import ActivationCallback  # noqa: E402
from callbacks.attribution import AttributionCallback  # noqa: E402
from callbacks.embeddings import EmbeddingCallback  # noqa: E402
from lightning_app.cli import cli_main  # noqa: E402

CONFIG = str(ROOT / "configs" / "mnist_lenet_explain.yaml")


def timed_runs(callback, spent: list[float]):
    """Make ``callback.run`` add the seconds it takes, with the epoch it ran after, to ``spent``."""
    run = callback.run

    def timed(trainer, pl_module, final):
        start = time.perf_counter()
        run(trainer, pl_module, final)
        spent.append((trainer.current_epoch, final, time.perf_counter() - start))

    callback.run = timed
    return callback


class EpochClock(pl.Callback):
    """Timestamps of every epoch start, of the train start and of the fit end."""

    def __init__(self) -> None:
        self.marks: dict[str, float] = {}
        self.epoch_starts: list[float] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        self.marks["fit_start"] = time.perf_counter()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.epoch_starts.append(time.perf_counter())

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.marks["last_epoch_end"] = time.perf_counter()


def explain_cli(epochs: int, *extra: str):
    """The config's network, data and trainer for ``epochs`` epochs, quiet and without its callbacks."""
    args = ["--config", CONFIG, f"--trainer.max_epochs={epochs}", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", *extra]  # fmt: skip
    return cli_main(args, run=False)


def timed_fit(epochs: int, callbacks: list[pl.Callback]) -> tuple[list[float], float, float]:
    """Epoch durations (start to next start), time before the first epoch, time after the last."""
    clock = EpochClock()
    cli = explain_cli(epochs)
    cli.trainer.callbacks.extend([clock, *callbacks])
    cli.trainer.fit(cli.model, cli.datamodule)
    end = time.perf_counter()
    starts = clock.epoch_starts
    durations = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return durations, starts[0] - clock.marks["fit_start"], end - clock.marks["last_epoch_end"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=11, help="epochs per run; the first 10 are compared")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternated")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    period = AttributionCallback().every_n_epochs
    timed_fit(2, [])  # warm-up: first-call costs of the libraries land here
    runs = {"plain": [], "inspected": []}
    spent: list[tuple[int, bool, float]] = []
    for _ in range(args.repeats):
        runs["plain"].append(timed_fit(args.epochs, []))
        callbacks = [AttributionCallback(), ActivationCallback(), EmbeddingCallback()]
        runs["inspected"].append(timed_fit(args.epochs, [timed_runs(c, spent) for c in callbacks]))
    for name, results in runs.items():
        print(f"{name}: epoch times " + " | ".join(" ".join(f"{t:.2f}" for t in r[0]) for r in results))
    base = statistics.mean(t for r in runs["plain"] for t in r[0][:period])
    with_callbacks = statistics.mean(t for r in runs["inspected"] for t in r[0][:period])
    plain_start = statistics.mean(r[1] for r in runs["plain"])
    plain_end = statistics.mean(r[2] for r in runs["plain"])
    start = statistics.mean(r[1] for r in runs["inspected"])
    end = statistics.mean(r[2] for r in runs["inspected"])
    periodic = sum(t for epoch, final, t in spent if not final and epoch > 0) / args.repeats
    ratio = with_callbacks / base
    share = periodic / period / base
    print(f"epoch time without the callbacks {base:.2f} s, with them {with_callbacks:.2f} s "
          f"(mean of epochs 1-{period}, one periodic run included): ratio {ratio:.2f}")  # fmt: skip
    print(f"time inside the callbacks' periodic runs: {periodic:.2f} s per {period} epochs, "
          f"{periodic / period:.2f} s per epoch = {share:.1%} of a plain epoch")  # fmt: skip
    print(f"one-off: {start - plain_start:.1f} s before the first epoch (t-SNE), "
          f"{end - plain_end:.1f} s after the last (attributions, sanity checks, t-SNE)")  # fmt: skip


if __name__ == "__main__":
    main()
