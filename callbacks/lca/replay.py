"""Loss Change Allocation recomputed offline from a run's weight history, without training again.

The run's own LightningModule and data module are built from its ``config.yaml`` and driven by a Lightning
Trainer whose "optimizer" moves the parameters (and batch-norm statistics) to the next row of
``weights.h5`` at every step, while a :class:`~callbacks.lca.LossChangeAllocation` callback records the
steps exactly as it would online: with the run's settings by default, or with another integrator or
evaluation set. Runs on a GPU when there is one.
"""

import os
from pathlib import Path

import h5py
import lightning.pytorch as pl
import torch
import yaml
from torch.nn.utils import vector_to_parameters

from callbacks.lca.callback import LossChangeAllocation
from callbacks.lca.store import LCARun
from callbacks.lca.weight_history import HISTORY_FILE, floating_buffers
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError, describe

CONFIG_KEYS = ("seed_everything", "trainer", "model", "data")
HISTORY_DATASETS = ("theta", "buffers", "global_step", "epoch")
PARTIAL_STORE = "lca.partial.h5"  # the store while a replay writes it
SETTINGS = ("integrator", "tolerance", "max_splits", "bn_mode", "chunk_size", "eval_seed", "eval_split")


class HistoryOptimizer(torch.optim.Optimizer):
    """Each step sets the parameters and floating buffers of ``module`` to the next row of a weight
    history (after running Lightning's closure, the replayed training step)."""

    def __init__(self, module: torch.nn.Module, history: h5py.File) -> None:
        super().__init__(module.parameters(), {"lr": 0.0})
        self.module = module
        self.history = history
        self.row = 0

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            with torch.enable_grad():
                closure()
        self.row += 1
        load_row(self.module, self.history, self.row)


def load_row(module: torch.nn.Module, history: h5py.File, row: int) -> None:
    """Parameters and floating buffers of ``module`` from row ``row`` of the history."""
    parameter = next(module.parameters())
    vector_to_parameters(torch.from_numpy(history["theta"][row]).to(parameter), module.parameters())
    if "buffers" not in history:
        return
    flat = torch.from_numpy(history["buffers"][row])
    offset = 0
    for buffer in floating_buffers(module).values():
        buffer.copy_(flat[offset : offset + buffer.numel()].view_as(buffer).to(buffer))
        offset += buffer.numel()


def replayed_step(module: pl.LightningModule):
    """A training step that trains nothing: the history optimizer moves the parameters."""

    def step(batch, batch_idx):
        return torch.zeros((), device=module.device, requires_grad=True)

    return step


def online_settings(run_dir: Path) -> dict:
    """The LossChangeAllocation settings the run recorded in its store (none without one)."""
    store = run_dir / "lca.h5"
    if not store.is_file():
        return {}
    attrs = LCARun(store).attrs
    settings = {key: attrs[key] for key in SETTINGS if key in attrs}
    settings["per_class"] = bool(attrs.get("per_class", 1))
    sizes = attrs.get("eval_sizes", {})
    settings["eval_size"] = attrs.get("eval_size", sizes.get("train"))
    settings["with_val"] = "val" in sizes
    settings["val_size"] = attrs.get("val_size", sizes.get("val"))
    settings["dense_every"] = attrs.get("dense_every", 0)
    if settings["dense_every"]:  # the val set's datasets follow from with_val
        settings["dense_fields"] = [f for f in attrs["dense_fields"] if not f.startswith("val_")]
    return settings


def model_config(config: Path, out: Path) -> Path:
    """The run's config without what only its subcommand took (``ckpt_path``, ``weights_only``), saved
    in ``out``."""
    values = {key: value for key, value in yaml.safe_load(config.read_text()).items() if key in CONFIG_KEYS}
    path = out / "replayed_config.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def check_history(path: Path) -> None:
    """Read every row of a weight history once: a truncated or damaged file is refused, naming the
    first row that cannot be read, before anything is written."""
    try:
        with h5py.File(path, "r") as history:
            rows = {name: history[name].shape[0] for name in HISTORY_DATASETS if name in history}
            if len(set(rows.values())) != 1:
                raise UserInputError(f"{path} is damaged: its datasets hold different numbers of rows {rows}")
            for name in rows:
                for row in range(rows[name]):
                    read_row(history, name, row, path)
    except OSError as error:
        raise UserInputError(
            f"{path} cannot be read ({describe(error)}): the weight history is damaged; nothing was replayed"
        ) from error


def read_row(history: h5py.File, name: str, row: int, path: Path) -> None:
    try:
        history[name][row]
    except OSError as error:
        raise UserInputError(
            f"{path} is damaged: row {row} of {name} ({history[name].shape[0]} rows) cannot be read "
            f"({describe(error)}); nothing was replayed"
        ) from error


def replay(run_dir: Path, out: Path, **changes) -> Path:
    """Recompute the LCA of the run in ``run_dir`` into ``out/lca.h5`` with the run's LCA settings
    (dense records included) updated by ``changes`` (integrator, eval_split, eval_size, dense_every,
    ...); returns the new store's path. The history is read through once first, and the store is
    written as ``lca.partial.h5``, renamed ``lca.h5`` only when every step is replayed."""
    history_path, config = run_dir / HISTORY_FILE, run_dir / "config.yaml"
    for path, needed in ((history_path, "the WeightHistory callback"), (config, "its config.yaml")):
        if not path.is_file():
            raise UserInputError(f"{run_dir} has no {path.name}: replay needs a run trained with {needed}")
    check_history(history_path)
    settings = {**online_settings(run_dir), **{k: v for k, v in changes.items() if v is not None}}
    if not settings.get("dense_every") and changes.get("dense_fields") is None:
        settings.pop("dense_fields", None)  # dense_every 0 asked for: the run's fields are not wanted
    store, partial = out / "lca.h5", out / PARTIAL_STORE
    if store.exists():
        raise UserInputError(f"{store} already exists (an earlier replay): move it away, or give --out")
    lca = LossChangeAllocation(**settings, store_path=str(partial), report=False)  # settings checked here
    out.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)  # an earlier replay that stopped
    cli = cli_main(
        ["--config", str(model_config(config, out)), f"--trainer.default_root_dir={out}"], run=False
    )
    module = cli.model
    with h5py.File(history_path, "r") as history:
        names = [name for name, _ in module.named_parameters()]
        if list(history.attrs["names"]) != names:
            raise UserInputError(f"{history_path} was written by another model than {config} builds")
        load_row(module, history, 0)
        module.training_step = replayed_step(module)
        module.configure_optimizers = lambda: HistoryOptimizer(module, history)
        trainer = pl.Trainer(
            max_steps=history["theta"].shape[0] - 1, callbacks=[lca], logger=False, devices=1,
            precision=cli.trainer.precision, enable_checkpointing=False, enable_progress_bar=False,
            limit_val_batches=0, num_sanity_val_steps=0, default_root_dir=str(out),
        )  # fmt: skip
        trainer.fit(module, datamodule=cli.datamodule)
    os.replace(partial, store)
    return store
