"""Saves what a run needs to be reproduced: the resolved config and the versions of everything it ran on."""

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import lightning.pytorch as pl
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info

HPARAMS_METRICS = ("val/acc", "val/soft_iou", "val/loss")  # the first one logged is the HParams metric
START_FILES = {"config.yaml", "versions.yaml", "hparams.yaml"}
PACKAGES = (
    "torch", "torchvision", "lightning", "torchmetrics", "jsonargparse", "captum",
    "segmentation-models-pytorch", "rasterio", "albumentations", "numpy", "scikit-learn",
)  # fmt: skip


class SaveConfigAndVersions(SaveConfigCallback):
    """Writes ``config.yaml`` (Lightning's resolved config) and ``versions.yaml`` (Python, packages,
    git commit of the working directory) into the run's log dir, on rank 0; a run without a logger has
    no run folder and writes neither. A run that fails before its
    first optimizer step leaves no run folder behind. TensorBoard's HParams tab gets the settings that
    tell runs apart (:func:`curated_hparams`) against the validation metric, logged every validation."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hparams_logged = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if trainer.logger is None:  # no run folder: writing into the working directory would mix runs
            rank_zero_info(
                "No logger (trainer.logger: false): this run has no run folder, so config.yaml and "
                "versions.yaml are not written; keep the default logger to record the run"
            )
            return
        super().setup(trainer, pl_module, stage)
        log_dir = trainer.log_dir  # a collective call under DDP: every rank makes it
        if trainer.is_global_zero:
            path = Path(log_dir) / "versions.yaml"
            path.write_text(yaml.safe_dump(environment_versions(), sort_keys=False))
            rank_zero_info(f"Run folder: {log_dir} (view it with: tensorboard --logdir {path.parent.parent})")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        run_dir = _run_dir(trainer)
        if trainer.is_global_zero and run_dir is not None:
            rank_zero_info(
                f"Run folder: {run_dir}; look at it with: tensorboard --logdir {run_dir.parent} "
                "(the Interpretability tab: LCA, attributions, feature visualisation, live explorer)"
            )

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            trainer.sanity_checking
            or not trainer.is_global_zero
            or not isinstance(trainer.logger, TensorBoardLogger)
        ):
            return
        name = next((name for name in HPARAMS_METRICS if name in trainer.callback_metrics), None)
        if name is None:
            return
        metric = {f"hp/{name.replace('/', '_')}": float(trainer.callback_metrics[name])}
        if self.hparams_logged:
            trainer.logger.log_metrics(metric, step=trainer.global_step)
        else:
            trainer.logger.log_hyperparams(curated_hparams(self.config), metric, step=trainer.global_step)
            self.hparams_logged = True

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Remove the run folder of a fit that failed before its first step, if it holds only what the
        start wrote (the event file, config.yaml, versions.yaml, hparams.yaml)."""
        if not (trainer.is_global_zero and trainer.state.fn == "fit" and trainer.global_step == 0):
            return
        run_dir = _run_dir(trainer)
        if run_dir is not None and run_dir.is_dir() and _only_start_files(run_dir):
            shutil.rmtree(run_dir)
            rank_zero_info(f"Removed the run folder {run_dir}: the run failed before its first step")


def curated_hparams(config: Namespace) -> dict[str, str | int | float]:
    """The settings that tell runs apart: batch size, data (and its source), epochs or steps, learning
    rate, network, optimizer and seed (set ones only; class paths shortened to the class name). Few and
    named so that the five TensorBoard shows by default (in name order) include the network."""
    wanted = {
        "network": "model.init_args.net.class_path",
        "optimizer": "model.init_args.optimizer.class_path",
        "lr": "model.init_args.optimizer.init_args.lr",
        "batch_size": "data.init_args.batch_size",
        "max_epochs": "trainer.max_epochs",
        "max_steps": "trainer.max_steps",
        "seed": "seed_everything",
        "data": "data.class_path",
    }
    values = {name: config.get(key) for name, key in wanted.items()}
    hparams = {
        name: value.rsplit(".", 1)[-1] if wanted[name].endswith("class_path") else value
        for name, value in values.items()
        if value is not None and value != -1
    }
    source = config.get("data.init_args.source")
    if "data" in hparams and source is not None:
        hparams["data"] = f"{hparams['data']} ({source})"
    return hparams


def _run_dir(trainer: pl.Trainer) -> Path | None:
    """The logger's run folder, read without ``trainer.log_dir``'s collective call (safe on one rank)."""
    log_dir = trainer.logger.log_dir if trainer.logger is not None else None
    return Path(log_dir) if log_dir is not None else None


def _only_start_files(path: Path) -> bool:
    return all(
        item.is_file() and (item.name in START_FILES or item.name.startswith("events.out.tfevents."))
        for item in path.iterdir()
    )


def environment_versions() -> dict[str, str | None]:
    """Python, platform, package versions (None when not installed) and the git commit, if any."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    versions["git_commit"] = _git_commit()
    return versions


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip()
