"""SpaceNet imagery and labels for segmentation; see :class:`SpaceNetDataModule`."""

from datamodules.spacenet.datamodule import SpaceNetDataModule

__all__ = ["SpaceNetDataModule"]
