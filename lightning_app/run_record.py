"""Saves what a run needs to be reproduced: the resolved config and the versions of everything it ran on."""

import platform
import subprocess
from importlib import metadata
from pathlib import Path

import lightning.pytorch as pl
import yaml
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.utilities import rank_zero_info

PACKAGES = (
    "torch", "torchvision", "lightning", "torchmetrics", "jsonargparse", "captum",
    "segmentation-models-pytorch", "rasterio", "albumentations", "numpy", "scikit-learn",
)  # fmt: skip


class SaveConfigAndVersions(SaveConfigCallback):
    """Writes ``config.yaml`` (Lightning's resolved config) and ``versions.yaml`` (Python, packages,
    git commit of the working directory) into the run's log dir, on rank 0."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        log_dir = trainer.log_dir  # a collective call under DDP: every rank makes it
        if trainer.is_global_zero:
            path = Path(log_dir) / "versions.yaml"
            path.write_text(yaml.safe_dump(environment_versions(), sort_keys=False))
            rank_zero_info(f"Run folder: {log_dir} (view it with: tensorboard --logdir {path.parent.parent})")


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
