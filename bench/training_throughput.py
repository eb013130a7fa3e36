"""Training throughput of ``python train.py fit`` against a plain PyTorch loop, in one process.

Both train the LCA paper's LeNet (configs/mnist_lenet.yaml: SGD momentum 0.9, batch 250) on the same
DataLoader of the offline MNIST sample (4,000 training digits), for the same epochs; the first epoch of
each is warm-up. Throughput = training samples / time between epoch start and end (data loading,
forward, backward, step, and for Lightning its logging and metrics). Prints both and the ratio, and
the loading rate alone of the resumable train loader (torchdata's StatefulDataLoader, see
``datamodules/resumable.py``) against a plain shuffling DataLoader.

    python bench/training_throughput.py [--epochs 4] [--rounds 2]
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lightning_app.cli import cli_main  # noqa: E402

CONFIG = str(ROOT / "configs" / "mnist_lenet.yaml")


class EpochTimer(pl.Callback):
    """Samples per second of each training epoch."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.samples = 0
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[0])

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rates.append(self.samples / (time.perf_counter() - self.start))


def lightning_rates(epochs: int) -> list[float]:
    timer = EpochTimer()
    cli = cli_main(
        ["--config", CONFIG, "--data.source=sample", "--data.val_size=500",
         f"--trainer.max_epochs={epochs}", "--trainer.limit_val_batches=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"],
        run=False,
    )  # fmt: skip
    cli.trainer.callbacks.append(timer)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return timer.rates[1:]


def plain_rates(epochs: int) -> list[float]:
    cli = cli_main(["--config", CONFIG, "--data.source=sample", "--data.val_size=500"], run=False)
    model, data = cli.model.net, cli.datamodule
    data.setup("fit")
    loader = data.train_dataloader()
    optimizer = cli.model.configure_optimizers()  # the config's SGD, built the same way
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    rates = []
    for _ in range(epochs):
        samples, start = 0, time.perf_counter()
        for x, y in loader:
            optimizer.zero_grad()
            criterion(model(x), y).backward()
            optimizer.step()
            samples += len(x)
        rates.append(samples / (time.perf_counter() - start))
    return rates[1:]


def loading_rate(loader, epochs: int) -> float:
    """Median samples/s of reading ``loader`` alone (first epoch: warm-up)."""
    rates = []
    for _ in range(epochs):
        samples, start = 0, time.perf_counter()
        for x, _ in loader:
            samples += len(x)
        rates.append(samples / (time.perf_counter() - start))
    return statistics.median(rates[1:])


def loader_rates(epochs: int) -> tuple[float, float]:
    """(plain shuffling DataLoader, the data module's resumable train loader) loading rates."""
    data = cli_main(["--config", CONFIG, "--data.source=sample", "--data.val_size=500"], run=False).datamodule
    data.setup("fit")
    plain = torch.utils.data.DataLoader(data.dataset("train"), batch_size=data.batch_size, shuffle=True)
    return loading_rate(plain, epochs), loading_rate(data.train_dataloader(), epochs)


def cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run, the first is warm-up")
    parser.add_argument("--rounds", type=int, default=2, help="alternating Lightning/plain rounds")
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="bench-"))  # the Lightning run's logs land there
    lightning, plain = [], []
    for _ in range(args.rounds):
        lightning += lightning_rates(args.epochs)
        plain += plain_rates(args.epochs)
    lightning_rate, plain_rate = statistics.median(lightning), statistics.median(plain)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads")  # fmt: skip
    print(f"LeNet (808,970 parameters), batch 250, offline MNIST sample, median of {len(plain)} epochs")
    print(f"plain PyTorch loop : {plain_rate:8.0f} samples/s")
    print(f"python train.py fit: {lightning_rate:8.0f} samples/s")
    print(f"ratio Lightning / plain: {lightning_rate / plain_rate:.2f}x")
    plain_loading, resumable_loading = loader_rates(4 * args.epochs)
    print(f"loading only: plain DataLoader {plain_loading:.0f} samples/s, resumable train loader "
          f"{resumable_loading:.0f} samples/s, ratio {resumable_loading / plain_loading:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
