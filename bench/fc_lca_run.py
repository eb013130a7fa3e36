"""The online LCA run the LCA replay and trajectory benchmarks measure against: the LCA paper's FC network
(configs/mnist_fc_sample.yaml, the offline MNIST sample) with LossChangeAllocation, rk4 on the 4,000
training digits."""

from pathlib import Path

import lightning.pytorch as pl

from callbacks.lca import LossChangeAllocation
from lightning_app.cli import InterpretabilityCLI, cli_main

ROOT = Path(__file__).resolve().parents[1]


def fc_lca_run(steps: int, root: Path, *callbacks: pl.Callback) -> tuple[InterpretabilityCLI, float]:
    """Train ``steps`` steps under ``root`` with LCA and ``callbacks``; returns the CLI and the LCA
    callback's own mean time per step (its clock; the first step left out)."""
    cli = cli_main([
        "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), f"--trainer.default_root_dir={root}",
        f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false",
    ], run=False)  # fmt: skip
    lca = LossChangeAllocation(chunk_size=4000, report=False)
    cli.trainer.callbacks += [lca, *callbacks]
    cli.trainer.fit(cli.model, cli.datamodule)
    return cli, sum(lca.clock.lca_seconds[1:]) / (steps - 1)
