"""The LCA evaluation set cut into chunks, and where it lives between evaluations.

Every LCA step evaluates the loss over the whole set, chunk by chunk, at least twice. Where the set is
kept is ``storage``:

- ``device``: loaded once, cast to the model's dtype and kept on its device. Fastest; the set must fit.
- ``host``: kept in host memory (page-locked on CUDA) and copied to the GPU chunk by chunk, the next chunk
  on a side stream while the current one is evaluated: sets larger than GPU memory. On CPU it is
  ``device``.
- ``dataset``: not kept: the data module's dataset is read by a DataLoader (``workers`` processes, one
  chunk ahead) at every evaluation: sets larger than host memory, such as a whole SpaceNet train split.
  Memory does not grow with the set: one chunk in use, one on its way.
- ``auto``: the first of device, host, dataset whose copy of the set fits its budget: half the memory
  free on the device (or the host) when fit starts, or ``memory_cap`` if that is smaller.

The chunks are built when the model is in place (its final device and dtype) and dealt round-robin to
the DDP ranks, so every chunk is the same whatever the number of processes. With per-class LCA on class
labels, a chunk holds one row per class (examples of that class only, padded with zero-weight copies of
one of them), so that the per-class terms take one vectorised pass.
"""

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.data import DataLoader, Dataset

from callbacks.lca.loss import ElementwiseLoss
from lightning_app.errors import UserInputError

Storage = Literal["auto", "device", "host", "dataset"]
STORAGES = ("auto", "device", "host", "dataset")
BUDGET_FRACTION = 0.5


@dataclass
class Chunk:
    """Inputs and targets evaluated together, and the weight of each element in the loss (its share of
    the whole set's mean; 0 for ignored elements and padding)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.inputs, self.targets, self.weights

    def to(self, device: torch.device, dtype: torch.dtype, non_blocking: bool = False) -> "Chunk":
        """On ``device``, floating-point tensors in ``dtype`` (integer targets stay integers)."""
        return Chunk(*(_placed(t, device, dtype, non_blocking) for t in self.tensors))

    def pin_memory(self) -> "Chunk":
        return Chunk(*(t.pin_memory() for t in self.tensors))

    def record_stream(self, stream: torch.cuda.Stream) -> None:
        for tensor in self.tensors:
            tensor.record_stream(stream)


def _placed(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype, non_blocking: bool):
    target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
    return tensor.to(device=device, dtype=target_dtype, non_blocking=non_blocking)


@dataclass(frozen=True)
class ChunkSpec:
    """The items of one chunk: their positions in the set, (n,) or (classes, width) for class rows, and
    which of them are padding copies (class rows only)."""

    positions: torch.Tensor
    padding: torch.Tensor | None = None

    def chunk(
        self, inputs: torch.Tensor, targets: torch.Tensor, loss: ElementwiseLoss, scale: float
    ) -> Chunk:
        """The chunk of these items, given their inputs and targets in ``positions.flatten()`` order."""
        shape = self.positions.shape
        inputs = inputs.view(*shape, *inputs.shape[1:])
        targets = targets.view(*shape, *targets.shape[1:])
        counted = loss.counted(targets)
        if self.padding is not None:
            counted = counted * ~self.padding
        return Chunk(inputs, targets, counted * scale)

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        """This chunk's items of a tensor holding the whole set: a view for consecutive items."""
        first, count = int(self.positions.min()), self.positions.numel()
        if self.positions.dim() == 1 and int(self.positions[-1]) == first + count - 1:
            return tensor[first : first + count]
        return tensor[self.positions.flatten()]


@dataclass
class SetSummary:
    """What one pass over the set tells: the inputs and targets (when kept), the class labels (when the
    targets are labels), and the denominator of the criterion's mean over the whole set."""

    inputs: torch.Tensor | None
    targets: torch.Tensor | None
    labels: torch.Tensor | None
    total: float


@dataclass
class ChunkPlan:
    """This rank's chunks, whether they are class rows, the denominator of the mean over the whole set,
    and the bytes the whole set takes as chunks."""

    specs: list[ChunkSpec]
    grouped: bool
    total: float
    nbytes: int


class EvaluationChunks(ABC):
    """This rank's chunks of the evaluation set, on the model's device and in its dtype, in a fixed
    order; iterate to evaluate. ``grouped``: chunks are class rows."""

    storage: str

    def __init__(self, plan: ChunkPlan) -> None:
        self.specs = plan.specs
        self.grouped = plan.grouped
        self.total = plan.total
        self.nbytes = plan.nbytes

    @abstractmethod
    def __iter__(self) -> Iterator[Chunk]: ...


class DeviceChunks(EvaluationChunks):
    """Chunks kept on the model's device."""

    storage = "device"

    def __init__(self, plan: ChunkPlan, chunks: list[Chunk]) -> None:
        super().__init__(plan)
        self.chunks = chunks

    def __iter__(self) -> Iterator[Chunk]:
        return iter(self.chunks)


class HostChunks(EvaluationChunks):
    """Chunks kept in page-locked host memory and copied to the GPU one chunk ahead on a side stream."""

    storage = "host"

    def __init__(self, plan: ChunkPlan, chunks: list[Chunk], device: torch.device) -> None:
        super().__init__(plan)
        self.chunks = [chunk.pin_memory() for chunk in chunks]
        self.device = device
        self.copy_stream = torch.cuda.Stream(device)

    def _copy(self, chunk: Chunk) -> Chunk:
        with torch.cuda.stream(self.copy_stream):
            return chunk.to(self.device, chunk.inputs.dtype, non_blocking=True)

    def __iter__(self) -> Iterator[Chunk]:
        compute = torch.cuda.current_stream(self.device)
        upcoming = self._copy(self.chunks[0]) if self.chunks else None
        for index in range(len(self.chunks)):
            compute.wait_stream(self.copy_stream)
            chunk = upcoming
            chunk.record_stream(compute)  # its memory is reused only once the compute stream is done with it
            if index + 1 < len(self.chunks):
                upcoming = self._copy(self.chunks[index + 1])
            yield chunk


class DatasetChunks(EvaluationChunks):
    """Chunks read from the dataset at every evaluation by a DataLoader with ``workers`` processes, each
    prefetching one chunk."""

    storage = "dataset"

    def __init__(
        self,
        plan: ChunkPlan,
        dataset: Dataset,
        loss: ElementwiseLoss,
        device: torch.device,
        dtype: torch.dtype,
        workers: int,
    ) -> None:
        super().__init__(plan)
        self.loss = loss
        self.device = device
        self.dtype = dtype
        batches = [spec.positions.flatten().tolist() for spec in self.specs]
        self.loader = _loader(dataset, batches, workers, pin_memory=device.type == "cuda")

    def __iter__(self) -> Iterator[Chunk]:
        if not self.specs:
            return
        for spec, (inputs, targets) in zip(self.specs, self.loader, strict=True):
            yield spec.chunk(inputs, targets, self.loss, 1 / self.total).to(
                self.device, self.dtype, non_blocking=True
            )


def _loader(dataset: Dataset, batches: list[list[int]], workers: int, pin_memory: bool) -> DataLoader:
    # A generator of its own: a DataLoader iterator otherwise draws its base seed from the global RNG,
    # which would change the training run's data order.
    return DataLoader(
        dataset,
        batch_sampler=batches,
        num_workers=workers,
        prefetch_factor=1 if workers else None,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        generator=torch.Generator(),
    )


def evaluation_chunks(
    dataset: Dataset,
    loss: ElementwiseLoss,
    chunk_size: int,
    class_rows: int | None,
    rank: int,
    world_size: int,
    device: torch.device,
    dtype: torch.dtype,
    storage: Storage = "auto",
    memory_cap: float | None = None,
    workers: int = 1,
) -> EvaluationChunks:
    """This rank's chunks of ``dataset``, kept as ``storage`` says (``memory_cap`` in bytes).

    ``class_rows``: the number of classes when the chunks are to be class rows (taken only when the
    targets are class labels). One pass reads the set to find the denominator of the mean (and, unless
    the set is streamed, to keep it).
    """
    if len(dataset) == 0:
        raise UserInputError("the LCA evaluation set is empty")
    nbytes = estimated_bytes(dataset, dtype)
    place = chosen_storage(storage, nbytes, device, dtype, memory_cap)
    summary = read_set(dataset, loss, chunk_size, keep=place != "dataset", workers=workers)
    if summary.total <= 0:
        raise UserInputError("the LCA evaluation set has no element to score (all targets ignored)")
    specs = plan(len(dataset), chunk_size, summary.labels if class_rows else None, class_rows)
    grouped = specs[0].positions.dim() == 2
    mine = ChunkPlan(specs[rank::world_size], grouped, summary.total, nbytes)
    if place == "dataset":
        return DatasetChunks(mine, dataset, loss, device, dtype, workers)
    chunks = [
        spec.chunk(spec.take(summary.inputs), spec.take(summary.targets), loss, 1 / summary.total)
        for spec in mine.specs
    ]
    if place == "host":
        return HostChunks(mine, [c.to(torch.device("cpu"), dtype) for c in chunks], device)
    return DeviceChunks(mine, [c.to(device, dtype) for c in chunks])


def estimated_bytes(dataset: Dataset, dtype: torch.dtype) -> int:
    """Bytes of the whole set held as chunks: inputs in ``dtype``, targets, element weights."""
    inputs, targets = dataset[0]
    item_size = dtype.itemsize
    per_item = inputs.numel() * item_size + targets.numel() * (targets.element_size() + item_size)
    return len(dataset) * per_item


def chosen_storage(
    storage: Storage, nbytes: int, device: torch.device, dtype: torch.dtype, memory_cap: float | None
) -> str:
    """Where the set is kept: 'auto' resolved to the first place whose budget holds ``nbytes``, or the
    place asked for, refused when the set exceeds ``memory_cap`` or the memory free there."""
    if storage == "dataset":
        return storage
    places = ("device", "host") if device.type == "cuda" else ("device",)  # on CPU, the host is the device
    if storage == "auto":
        budgets = {place: _limits(place, device, memory_cap, BUDGET_FRACTION) for place in places}
        return next((place for place in places if nbytes <= min(budgets[place].values())), "dataset")
    place = storage if storage in places else "device"
    limits = _limits(place, device, memory_cap, 1.0)
    which = min(limits, key=limits.get)
    if nbytes > limits[which]:
        raise UserInputError(
            f"the LCA evaluation set needs {nbytes / 2**20:,.0f} MiB in {dtype} but {which} allows "
            f"{limits[which] / 2**20:,.0f} MiB on {place} ({device}): set eval_storage to dataset or auto "
            "to stream it, or choose a smaller eval_size"
        )
    return place


def _limits(place: str, device: torch.device, memory_cap: float | None, fraction: float) -> dict[str, float]:
    """The memory a set kept on ``place`` may take: ``fraction`` of the free memory there (when known) and
    the cap (when given), by name; infinite when neither is known."""
    free = free_memory(device if place == "device" else torch.device("cpu"))
    limits = {"eval_memory_cap_mib": memory_cap, "free memory": None if free is None else fraction * free}
    return {name: value for name, value in limits.items() if value is not None} or {"nothing": float("inf")}


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device``: the GPU's, or the host's available memory (None when unknown)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if not meminfo.is_file():
        return None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def read_set(
    dataset: Dataset, loss: ElementwiseLoss, chunk_size: int, keep: bool, workers: int
) -> SetSummary:
    """One pass over the set in chunks: the denominator of the mean, the class labels when the targets
    are labels, and (``keep``) every input and target."""
    batches = [
        list(range(start, min(start + chunk_size, len(dataset))))
        for start in range(0, len(dataset), chunk_size)
    ]
    loader = _loader(dataset, batches, 0 if keep else workers, pin_memory=False)
    inputs = targets = None
    labels, total = [], 0.0
    for batch, (x, y) in zip(batches, loader, strict=True):
        total += loss.total(y)
        if keep:  # filled in place: a list of batches concatenated at the end would need twice the memory
            if inputs is None:
                inputs = x.new_empty((len(dataset), *x.shape[1:]))
                targets = y.new_empty((len(dataset), *y.shape[1:]))
            inputs[batch[0] : batch[-1] + 1] = x
            targets[batch[0] : batch[-1] + 1] = y
        elif y.dim() == 1:
            labels.append(y)
    if keep:
        return SetSummary(inputs, targets, targets if targets.dim() == 1 else None, total)
    return SetSummary(None, None, torch.cat(labels) if labels else None, total)


def plan(size: int, chunk_size: int, labels: torch.Tensor | None, num_classes: int | None) -> list[ChunkSpec]:
    """Chunks of ``chunk_size`` consecutive items, or class rows when ``labels`` are given."""
    if labels is None:
        return [
            ChunkSpec(torch.arange(start, min(start + chunk_size, size)))
            for start in range(0, size, chunk_size)
        ]
    return class_rows(labels, num_classes, max(1, chunk_size // num_classes))


def class_rows(labels: torch.Tensor, num_classes: int, width: int) -> list[ChunkSpec]:
    """Chunks of shape (classes, width), the last possibly narrower: row c holds examples of class c only.
    Each class is padded to the largest class with zero-weight copies of one of its examples, so padding
    depends only on how unbalanced the whole set is, not on the order of its examples."""
    if int(labels.max()) >= num_classes or int(labels.min()) < 0:
        raise UserInputError(f"the LCA evaluation set has targets outside 0..{num_classes - 1}")
    members = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    length = max(len(m) for m in members)
    positions = torch.zeros(num_classes, length, dtype=torch.long)
    padding = torch.ones(num_classes, length, dtype=torch.bool)
    for c, index in enumerate(members):
        positions[c, : len(index)] = index
        positions[c, len(index) :] = index[0] if len(index) else 0
        padding[c, : len(index)] = False
    return [
        ChunkSpec(positions[:, start : start + width], padding[:, start : start + width])
        for start in range(0, length, width)
    ]
