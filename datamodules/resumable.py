"""What a data module keeps so that a resumed run equals an uninterrupted one, shuffling on.

Two pieces of state decide what a run does next: the order of the remaining train batches, and the
global random generators (dropout, and augmentation drawn in the main process).

- The train loader is torchdata's ``StatefulDataLoader``: Lightning stores its ``state_dict`` (the
  sampler's generator and the batches already yielded in the epoch) in each checkpoint and restores it
  on resume, so the rest of the epoch and the following epochs come in the same order. Its sampler and
  its worker seeds have generators of their own, seeded from the run's seed, so that loading never
  draws from the global generators.
- :class:`ResumableData` puts the global generators' states into the data module's checkpoint entry and
  restores them on load.

An exact resume is not possible in two cases, said at resume time: under DDP (the checkpoint holds the
random state of rank 0 only) and with data workers (their generators are re-seeded, not restored).
"""

import random
from collections.abc import Callable

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler


class ResumableRandomSampler(RandomSampler, torch.utils.data.RandomSampler):
    """torchdata's resumable random sampler, also a torch ``RandomSampler``: Lightning tells a shuffled
    loader by that type, and under DDP replaces its sampler with a shuffling ``DistributedSampler``."""


def shuffled_loader(
    dataset: Dataset, batch_size: int, num_workers: int, collate_fn: Callable | None = None
) -> StatefulDataLoader:
    """A resumable loader drawing ``dataset`` in an order set by the run's seed (``seed_everything``),
    batched by ``collate_fn`` (PyTorch's default when None)."""
    seed = torch.initial_seed()
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableRandomSampler(dataset, generator=torch.Generator().manual_seed(seed)),
        generator=torch.Generator().manual_seed(seed + 1),
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        collate_fn=collate_fn,
    )


def random_states() -> dict:
    """The states of Python's, NumPy's and torch's global generators (CUDA's too, when present), in
    types a checkpoint loaded with ``weights_only=True`` accepts."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    numpy_state = {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": position,
                   "has_gauss": has_gauss, "gauss": gauss}  # fmt: skip
    states = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict) -> None:
    random.setstate(states["python"])
    numpy_state = states["numpy"]
    np.random.set_state((
        numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["position"],
        numpy_state["has_gauss"], numpy_state["gauss"],
    ))  # fmt: skip
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumableData:
    """Mixin for a LightningDataModule with a ``num_workers`` attribute: its checkpoint entry holds the
    global random states, restored on resume, with a warning where the resume cannot be exact."""

    num_workers: int
    trainer: "pl.Trainer | None"

    def state_dict(self) -> dict:
        return {"random_states": random_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        if "random_states" not in state_dict:
            rank_zero_warn(
                "resuming from a checkpoint without random states (written before they were saved): the "
                "resumed run's random draws differ from an uninterrupted run's"
            )
            return
        restore_random_states(state_dict["random_states"])
        if self.trainer is not None and self.trainer.world_size > 1:
            rank_zero_warn(
                f"resuming on {self.trainer.world_size} processes: the checkpoint holds rank 0's random "
                "state only, so dropout and augmentation draws differ from an uninterrupted run (batch "
                "order is restored)"
            )
        if self.num_workers > 0:
            rank_zero_warn(
                f"resuming with data.num_workers={self.num_workers}: the workers' random generators are "
                "re-seeded, not restored, so random augmentation differs from an uninterrupted run "
                "(batch order is restored; set data.num_workers=0 for an exact resume)"
            )
