"""WeightHistory: the parameters after every optimizer step, so LCA can be recomputed offline."""

import math
from pathlib import Path

import h5py
import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.nn.utils import parameters_to_vector
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from callbacks.lca.records import value_dtype
from callbacks.lca.store import VALUE_FORMATS
from lightning_app.errors import UserInputError

HISTORY_FILE = "weights.h5"
VALUES_PER_CHUNK = 1 << 18
COMPRESSION = {"compression": "gzip", "compression_opts": 4}
CHECKSUM = {"fletcher32": True}  # HDF5 checks every chunk when it is read: damage is found, not replayed


def floating_buffers(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's floating-point buffers (batch-norm running statistics), by name."""
    return {name: buffer for name, buffer in module.named_buffers() if buffer.is_floating_point()}


class WeightHistory(pl.Callback):
    """Stores θ_t, the parameters (flattened in ``named_parameters`` order; float32, or float64 for a
    float64 model) before the first optimizer step and after every one, with the floating-point buffers
    (batch-norm statistics) and the global step and epoch, in ``<log_dir>/weights.h5`` (datasets
    ``theta`` and, for a model with such buffers, ``buffers``; chunked, gzip-compressed and
    Fletcher-32 checksummed; one row per step).
    ``python -m lightning_app.report lca-replay RUN_DIR`` recomputes LCA from it, with any integrator and
    evaluation set, without training again. The size before compression is logged at start. Rank 0
    writes; a resumed run is not supported (the history starts where the run starts).
    """

    def __init__(self) -> None:
        self.file: h5py.File | None = None
        self.parameters: list[torch.nn.Parameter] = []
        self.buffers: dict[str, torch.Tensor] = {}
        self.dtype = torch.float32  # the model's, when it is float64: set with the model in place
        self._hook: RemovableHandle | None = None
        self._trainer: pl.Trainer | None = None

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        if len(trainer.optimizers) != 1:
            raise UserInputError(
                f"WeightHistory follows one optimizer; this model has {len(trainer.optimizers)}"
            )
        path = Path(trainer.log_dir or ".") / HISTORY_FILE
        if path.exists():
            raise UserInputError(
                f"{path} already exists (another run's weight history): give this run its own folder"
            )
        self.parameters = list(pl_module.parameters())
        self.buffers = floating_buffers(pl_module)
        self.dtype = value_dtype(self.parameters[0].dtype)
        k = sum(p.numel() for p in self.parameters)
        b = sum(buffer.numel() for buffer in self.buffers.values())
        self.file = h5py.File(path, "w")
        self.file.attrs["names"] = [name for name, _ in pl_module.named_parameters()]
        self.file.attrs["buffer_names"] = list(self.buffers)
        for name, width in (("theta", k), ("buffers", b)) if b else (("theta", k),):
            self.file.create_dataset(
                name, shape=(0, width), maxshape=(None, width), dtype=VALUE_FORMATS[self.dtype],
                chunks=(1, max(1, min(width, VALUES_PER_CHUNK))), **COMPRESSION, **CHECKSUM,
            )  # fmt: skip
        for name in ("global_step", "epoch"):
            self.file.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype="i8", chunks=(256,), **CHECKSUM
            )
        steps = trainer.estimated_stepping_batches
        if math.isfinite(steps):
            mib = (int(steps) + 1) * (k + b) * self.dtype.itemsize / 2**20
            rank_zero_info(
                f"WeightHistory: {k:,} parameters a step, {mib:,.1f} MiB for {int(steps):,} steps before "
                f"compression, at {path}"
            )
        self._trainer = trainer
        self._append(steps_done=trainer.global_step)
        self._hook = trainer.optimizers[0].register_step_post_hook(
            lambda *_: self._append(steps_done=trainer.global_step + 1)  # Lightning counts it after the hook
        )

    def _append(self, steps_done: int) -> None:
        row = self.file["theta"].shape[0]
        theta = parameters_to_vector(self.parameters).detach().to(self.dtype).cpu().numpy()
        values = {"theta": theta, "global_step": steps_done, "epoch": self._trainer.current_epoch}
        if self.buffers:
            buffers = [b.detach().flatten().to(self.dtype).cpu() for b in self.buffers.values()]
            values["buffers"] = torch.cat(buffers)
        for name, value in values.items():
            dataset = self.file[name]
            dataset.resize(row + 1, axis=0)
            dataset[row] = value

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self.file is not None:
            self.file.close()
            self.file = None
