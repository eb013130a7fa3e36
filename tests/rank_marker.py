"""A test-only callback: each rank writes what it saw at the end of fit, to check DDP runs."""

import json
from pathlib import Path

import lightning.pytorch as pl
import torch


class RankMarker(pl.Callback):
    """Writes ``<out_dir>/rank_<global rank>.json``: world size, optimizer steps, a weight checksum."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        checksum = sum(p.detach().double().sum().item() for p in pl_module.parameters())
        record = {
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "train_batches": trainer.num_training_batches,
            "weight_checksum": checksum,
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank_{trainer.global_rank}.json").write_text(json.dumps(record))
