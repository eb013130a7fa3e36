"""What the callbacks need from the LightningModule and the LightningDataModule they observe.

Every callback here (Loss Change Allocation, attribution, activations, embeddings, the explanation
writer) talks to the model and the data only through these protocols. Each callback checks them once,
when ``fit``, ``validate``, ``test`` or ``predict`` starts, with one message listing every member that is
missing. Any LightningModule and LightningDataModule providing them works with every callback; see the
README's "Bring your own LightningModule".
"""

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import Dataset

from lightning_app.errors import UserInputError


@runtime_checkable
class EvaluationSet(Protocol):
    """A fixed, recorded set of ``(input, target)`` items without augmentation."""

    source: str
    """Where the items come from (a file or folder), for the records."""
    source_indices: torch.Tensor
    """The index of each item in its source, so that the set is recorded exactly."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]: ...


@runtime_checkable
class InspectableDataModule(Protocol):
    """What the callbacks need from the data module."""

    class_names: Sequence[str]
    """The name of each class index (the model's outputs)."""

    def evaluation_subset(
        self, split: str, size: int | None = None, per_class: int | None = None, seed: int = 0
    ) -> EvaluationSet:
        """A fixed subset of ``split`` ('train', 'val', 'test'): ``size`` items drawn with ``seed``, or the
        first ``per_class`` items of each class in a seeded order, or (both None) the whole split."""
        ...

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images as the model sees them, back in [0, 1] for display."""
        ...


@runtime_checkable
class VisualisableDataModule(InspectableDataModule, Protocol):
    """What feature visualisation needs on top: the way from display space back to model inputs."""

    def from_display(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (display space) as the model sees them: the inverse of ``denormalize``,
        differentiable."""
        ...


@runtime_checkable
class FileReadingDataModule(VisualisableDataModule, Protocol):
    """What the Interpretability tab's explorer needs to read an uploaded image exactly as the data's
    own images are read (size, bands, normalisation): the ``predict_files`` route of ``predict``."""

    predict_files: list[str] | None
    """Image files ``predict_dataset`` reads instead of the test split."""

    def predict_dataset(self) -> Dataset:
        """``predict_files`` prepared as the data's images; item 0 is (image, label) of the first."""
        ...


@runtime_checkable
class InspectableModule(Protocol):
    """What the callbacks need from the LightningModule."""

    criterion: nn.Module
    """The training loss, a torch loss averaged over elements (``reduction='mean'``); LCA evaluates it."""
    num_classes: int
    """Classes of the outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (N, classes) for a classifier, (N, channels, H, W) for segmentation."""
        ...


def protocol_members(protocol: type) -> list[str]:
    """The attributes and methods a protocol declares, in declaration order."""
    methods = [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]
    return [*protocol.__annotations__, *methods]


def check_contract(user: str, role: str, value: object, protocol: type) -> None:
    """Raise one :class:`UserInputError` naming every member of ``protocol`` that ``value`` lacks."""
    if value is None:
        raise UserInputError(
            f"{user} needs a {role}; none was given (pass a LightningDataModule, not bare dataloaders)"
        )
    missing = [name for name in protocol_members(protocol) if not hasattr(value, name)]
    if missing:
        raise UserInputError(
            f"{user} needs the {role} to provide {', '.join(protocol_members(protocol))}; "
            f"{type(value).__name__} lacks {', '.join(missing)} "
            f"(see {protocol.__module__}.{protocol.__name__})"
        )


def check_contracts(user: str, module: object, datamodule: object) -> None:
    """Check both contracts: the LightningModule's, then the data module's."""
    check_contract(user, "LightningModule", module, InspectableModule)
    check_contract(user, "data module", datamodule, InspectableDataModule)
