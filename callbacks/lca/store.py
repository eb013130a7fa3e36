"""The LCA store: one HDF5 file per run, written while training and readable at any time.

Layout (T = steps recorded, L = parameter tensors, C = classes, N = neurons, K = parameters)::

    attrs                      integrator, tolerance, bn_mode, eval set, config, versions, ...
    parameters/names|modules   per tensor; parameters/shapes, offsets, is_weight
    neurons/modules            the module of each output unit
    trajectories/random_index, layers, widths   the tracked random parameters, per layer
    eval/train_indices         source indices of the evaluation set (and eval/val_indices)
    classes/names
    steps/step, global_step, epoch, valid, splits          (T,) step: the update's index from 0
    steps/loss_start, loss_end, lca_sum                    (T,) float64, on the LCA evaluation set
    steps/layer_lca (T, L) float64, layer_counts (T, L, 3) helped/hurt/zero, neuron_lca (T, N)
    steps/class_layer_lca (T, C, L), class_loss_start|end (T, C)          with per-class LCA
    steps/trajectory_random, trajectory_leaders (T, M) cumulative LCA, leader_index (T, M)
    val/loss_start, loss_end, lca_sum, layer_lca, class_*                  with the val set
    totals/lca, helped, hurt, zero (K,), histogram (2, bins), steps ()     as of the last flush
    dense/step (n,), dense/<field> (n, K) for each of lca, gradient, delta, val_lca,
        val_gradient chosen                                                every k-th step, opt-in
    checks/flushes (F, 3 + datasets)     rows and CRC-32 checksums at each flush (``integrity``)

neuron_lca, class_layer_lca, the trajectories and the dense values are float32, or float64 when the
model is (``precision: 64-true``).

The file is written in HDF5's single-writer/multiple-reader mode: :class:`LCARun` reads it during
training, and after the writer was killed, up to the last flush; it refuses a store that fails its
checksums. Each store has a ``run_id``; a store is only continued by the run that wrote it.
"""

import json
import os
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from callbacks.lca.integrity import TOTALS, DamagedStore, RunningChecksums, check_length, verify
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.records import HISTOGRAM_BINS, RunningTotals, SetRecord, StepRecord
from callbacks.lca.trajectories import TrajectorySelection
from lightning_app.errors import UserInputError, describe

# Per-step rows are stored uncompressed: a flush rewrites the last, partly filled chunk, and in SWMR mode
# HDF5 never reuses the space of a rewritten chunk, so a compressed chunk (whose size changes) would leak
# its old copy at every flush. Dense rows are written once, so they are compressed.
STEP_ROWS_PER_CHUNK = 64
DENSE_COMPRESSION = {"compression": "gzip", "compression_opts": 4}
DENSE_VALUES_PER_CHUNK = 1 << 18
DENSE_FIELDS = ("lca", "gradient", "delta")


VALUE_FORMATS = {torch.float32: "f4", torch.float64: "f8"}  # the stored values' dtype -> HDF5's


def _set_columns(
    prefix: str, layout: ParameterLayout, classes: int | None, values: str
) -> dict[str, tuple[tuple, str]]:
    columns = {
        f"{prefix}/loss_start": ((), "f8"),
        f"{prefix}/loss_end": ((), "f8"),
        f"{prefix}/lca_sum": ((), "f8"),
        f"{prefix}/layer_lca": ((layout.num_tensors,), "f8"),
    }
    if classes is not None:
        columns[f"{prefix}/class_layer_lca"] = ((classes, layout.num_tensors), values)
        columns[f"{prefix}/class_loss_start"] = ((classes,), "f8")
        columns[f"{prefix}/class_loss_end"] = ((classes,), "f8")
    return columns


def step_columns(
    layout: ParameterLayout, classes: int | None, with_val: bool, values: str = "f4"
) -> dict[str, tuple[tuple, str]]:
    """Name -> (shape of one step's row, dtype) of every per-step dataset; ``values`` is the dtype of the
    per-class, per-neuron and trajectory values."""
    tracked = TrajectorySelection.of(layout).size
    columns = {
        "steps/step": ((), "i8"),
        "steps/global_step": ((), "i8"),
        "steps/epoch": ((), "i4"),
        "steps/valid": ((), "u1"),
        "steps/splits": ((), "i2"),
        **_set_columns("steps", layout, classes, values),
        "steps/layer_counts": ((layout.num_tensors, 3), "i4"),
        "steps/neuron_lca": ((layout.num_neurons,), values),
        "steps/trajectory_random": ((tracked,), values),
        "steps/trajectory_leaders": ((tracked,), values),
        "steps/leader_index": ((tracked,), "i4"),
    }
    if with_val:
        columns.update(_set_columns("val", layout, classes, values))
    return columns


def _set_values(prefix: str, record: SetRecord) -> dict[str, object]:
    values = {
        f"{prefix}/loss_start": record.loss_start,
        f"{prefix}/loss_end": record.loss_end,
        f"{prefix}/lca_sum": record.lca_sum,
        f"{prefix}/layer_lca": record.layer_lca.numpy(),
    }
    if record.class_layer_lca is not None:
        values[f"{prefix}/class_layer_lca"] = record.class_layer_lca.numpy()
        values[f"{prefix}/class_loss_start"] = record.class_loss_start.numpy()
        values[f"{prefix}/class_loss_end"] = record.class_loss_end.numpy()
    return values


def row_values(record: StepRecord) -> dict[str, object]:
    values = {
        "steps/step": record.step,
        "steps/global_step": record.global_step,
        "steps/epoch": record.epoch,
        "steps/valid": int(record.valid),
        "steps/splits": record.splits,
        **_set_values("steps", record.train),
        "steps/layer_counts": record.layer_counts.numpy(),
        "steps/neuron_lca": record.neuron_lca.numpy(),
        "steps/trajectory_random": record.trajectory_random.numpy(),
        "steps/trajectory_leaders": record.trajectory_leaders.numpy(),
        "steps/leader_index": record.leader_index.numpy(),
    }
    if record.val is not None:
        values.update(_set_values("val", record.val))
    return values


class LCAStore:
    """Appends step records (buffered, written every ``flush``) and keeps the running totals on disk."""

    def __init__(self, path: Path, file: h5py.File, checks: RunningChecksums) -> None:
        self.path = path
        self.file = file
        self.checks = checks
        self.columns = [name for group in ("steps", "val") for name in _dataset_names(file, group)]
        self.buffer: list[StepRecord] = []
        self.dense_buffer: list[tuple[int, dict[str, np.ndarray]]] = []
        self.written = file["steps/step"].shape[0]

    @property
    def position(self) -> int:
        """Steps written to the file plus steps waiting in the buffer."""
        return self.written + len(self.buffer)

    @classmethod
    def create(
        cls,
        path: Path,
        layout: ParameterLayout,
        metadata: dict,
        class_names: list[str] | None,
        eval_indices: dict[str, np.ndarray],
        dense: tuple[str, ...],
        values: torch.dtype = torch.float32,
    ) -> "LCAStore":
        """A new store at ``path``, its per-class, per-neuron, trajectory and dense values in ``values``
        (:func:`~callbacks.lca.records.value_dtype`); a file already there (another run's) is refused,
        never replaced."""
        if path.exists():
            raise UserInputError(
                f"the LCA store {path} already exists and belongs to another run: move it away, or give "
                "this run its own folder (a logger, or the callback's store_path)"
            )
        classes = len(class_names) if class_names is not None else None
        columns = step_columns(layout, classes, with_val="val" in eval_indices, values=VALUE_FORMATS[values])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = h5py.File(path, "w", libver="latest")
        except OSError as error:
            raise UserInputError(f"cannot write the LCA store {path}: {describe(error)}") from error
        _write_metadata(file, layout, metadata, class_names, eval_indices)
        for name, (shape, dtype) in columns.items():
            file.create_dataset(
                name,
                shape=(0, *shape),
                maxshape=(None, *shape),
                dtype=dtype,
                chunks=(STEP_ROWS_PER_CHUNK, *shape),
            )
        _create_totals(file, layout.num_parameters)
        if dense:
            file.create_dataset("dense/step", shape=(0,), maxshape=(None,), dtype="i8", chunks=(64,))
            k = layout.num_parameters
            for name in dense:
                file.create_dataset(
                    f"dense/{name}", shape=(0, k), maxshape=(None, k), dtype=VALUE_FORMATS[values],
                    chunks=(1, min(k, DENSE_VALUES_PER_CHUNK)), **DENSE_COMPRESSION,
                )  # fmt: skip
        checks = RunningChecksums.create(file, [*columns, *_dataset_names(file, "dense")])
        file.swmr_mode = True
        return cls(path, file, checks)

    @classmethod
    def resume(cls, source: Path, position: int, path: Path, metadata: dict) -> "LCAStore":
        """A store at ``path`` holding ``source``'s first ``position`` step rows (the checkpoint's) and
        ``metadata``; ``source`` is only read, unless it is ``path`` (the same run continuing in its own
        folder), which is then replaced. HDF5 cannot reopen a file a killed writer left in SWMR mode for
        writing, so the kept content is copied into a new file."""
        fresh = path.with_suffix(".resuming.h5")
        with (
            h5py.File(source, "r", libver="latest", swmr=True) as old,
            h5py.File(fresh, "w", libver="latest") as new,
        ):
            last_step = int(old["steps/step"][position - 1]) if position else -1
            old.visititems(lambda name, item: _copy(name, item, new, position, last_step))
            for key, value in metadata.items():
                new.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
        os.replace(fresh, path)
        file = h5py.File(path, "a", libver="latest")
        checks = RunningChecksums.of(file)
        file.swmr_mode = True
        return cls(path, file, checks)

    def append(self, record: StepRecord) -> None:
        self.buffer.append(record)

    def append_dense(self, step: int, vectors: dict[str, torch.Tensor]) -> None:
        """A step's per-parameter vectors, one per dense dataset of the store (name -> (K,))."""
        values = {name: v.to(self._dense_dtype(name)).cpu().numpy() for name, v in vectors.items()}
        self.dense_buffer.append((step, values))

    def _dense_dtype(self, name: str) -> torch.dtype:
        return torch.float64 if self.file[f"dense/{name}"].dtype == np.float64 else torch.float32

    def flush(self, totals: RunningTotals) -> None:
        """Write the buffered rows and the totals, then make them visible to readers."""
        try:
            self._write(totals)
        except OSError as error:
            raise UserInputError(
                f"cannot write the LCA store {self.path}: {describe(error)}; it holds the records of the "
                f"first {self.written} steps. Free space (or make the folder writable), then resume from the "
                "last checkpoint"
            ) from error

    def _write(self, totals: RunningTotals) -> None:
        if self.buffer:
            rows = [row_values(record) for record in self.buffer]
            for name in self.columns:
                self._append(name, np.stack([np.asarray(row[name]) for row in rows]))
            self.written += len(rows)
            self.buffer = []
        if self.dense_buffer:
            self._append("dense/step", np.array([step for step, _ in self.dense_buffer]))
            for name in self.dense_buffer[0][1]:
                self._append(f"dense/{name}", np.stack([vectors[name] for _, vectors in self.dense_buffer]))
            self.dense_buffer = []
        values = {}
        for name in TOTALS:
            dataset = self.file[f"totals/{name}"]
            values[name] = np.asarray(torch.as_tensor(getattr(totals, name)).cpu().numpy(), dataset.dtype)
            dataset[()] = values[name]
        dense_rows = self.file["dense/step"].shape[0] if "dense" in self.file else 0
        self.checks.record(self.file, self.written, dense_rows, values)
        self.file.flush()

    def close(self, totals: RunningTotals) -> None:
        try:
            self.flush(totals)
        finally:
            self.file.close()

    def _append(self, name: str, rows: np.ndarray) -> None:
        dataset = self.file[name]
        rows = np.asarray(rows, dtype=dataset.dtype)
        start = dataset.shape[0]
        dataset.resize(start + len(rows), axis=0)
        dataset[start:] = rows
        self.checks.add(name, rows)


def _dataset_names(file: h5py.File, group: str) -> list[str]:
    return [f"{group}/{name}" for name in file[group]] if group in file else []


def _write_metadata(file, layout, metadata, class_names, eval_indices) -> None:
    for key, value in metadata.items():
        file.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
    strings = h5py.string_dtype()
    file.create_dataset("parameters/names", data=np.array(layout.names, dtype=object), dtype=strings)
    file.create_dataset("parameters/modules", data=np.array(layout.modules, dtype=object), dtype=strings)
    file.create_dataset("parameters/offsets", data=np.array(layout.offsets, dtype="i8"))
    file.create_dataset("parameters/sizes", data=np.array(layout.sizes, dtype="i8"))
    file.create_dataset("parameters/is_weight", data=np.array(layout.is_weight, dtype="u1"))
    file["parameters"].attrs["shapes"] = json.dumps(layout.shapes)
    file.create_dataset("neurons/modules", data=np.array(layout.neuron_modules, dtype=object), dtype=strings)
    trajectories = TrajectorySelection.of(layout)
    file.create_dataset("trajectories/random_index", data=trajectories.random.numpy().astype("i4"))
    file.create_dataset(
        "trajectories/layers", data=np.array(trajectories.layers, dtype=object), dtype=strings
    )
    file.create_dataset("trajectories/widths", data=np.array(trajectories.widths, dtype="i8"))
    for name, indices in eval_indices.items():
        file.create_dataset(f"eval/{name}_indices", data=np.asarray(indices, dtype="i8"))
    if class_names is not None:
        file.create_dataset("classes/names", data=np.array(class_names, dtype=object), dtype=strings)


def _create_totals(file: h5py.File, num_parameters: int) -> None:
    file.create_dataset("totals/lca", shape=(num_parameters,), dtype="f8")
    for name in ("helped", "hurt", "zero"):
        file.create_dataset(f"totals/{name}", shape=(num_parameters,), dtype="i4")
    file.create_dataset("totals/histogram", shape=(2, HISTOGRAM_BINS), dtype="i8")
    file.create_dataset("totals/steps", shape=(), dtype="i8")


def _copy(name: str, item, new: h5py.File, position: int, last_step: int) -> None:
    """Copy one object of an old store, keeping the first ``position`` step rows."""
    if isinstance(item, h5py.Group):
        new.require_group(name).attrs.update(item.attrs)
        return
    data = item[()]
    if name.startswith(("steps/", "val/")):
        data = data[:position]
    elif name.startswith("dense/"):
        data = data[item.parent["step"][()] <= last_step]
    elif name == "checks/flushes":
        data = data[data[:, 0] <= position]
    growable = bool(item.maxshape) and item.maxshape[0] is None
    new.create_dataset(
        name, data=data, maxshape=(None, *item.shape[1:]) if growable else None, chunks=item.chunks,
        dtype=item.dtype, compression=item.compression, compression_opts=item.compression_opts,
    ).attrs.update(item.attrs)  # fmt: skip


class LCARun:
    """Read-only view of a store, also while it is written or after its writer was killed.

    Small arrays are read at once (``steps``, ``val``, ``totals`` as dicts of NumPy arrays); the dense
    per-parameter records, if any, through :meth:`dense`. ``columns`` (names of per-step datasets,
    e.g. ``{"step", "valid", "lca_sum"}``) reads and checks only those, for a reader that needs a few
    of a long store's columns. A store that is cut short or fails its checksums is refused
    (:class:`~callbacks.lca.integrity.DamagedStore`).
    """

    def __init__(self, path: str | Path, columns: set[str] | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UserInputError(f"no LCA store at {self.path}")
        checked = (
            None if columns is None else {f"{group}/{name}" for group in ("steps", "val") for name in columns}
        )
        with _open_verified(self.path, columns=checked) as file:
            self.attrs = {key: _decoded(value) for key, value in file.attrs.items()}
            self.names = _strings(file["parameters/names"])
            self.modules = _strings(file["parameters/modules"])
            self.offsets = file["parameters/offsets"][()]
            self.sizes = file["parameters/sizes"][()]
            self.is_weight = file["parameters/is_weight"][()].astype(bool)
            self.shapes = [tuple(shape) for shape in json.loads(file["parameters"].attrs["shapes"])]
            self.neuron_modules = _strings(file["neurons/modules"])
            self.trajectory_layers = _strings(file["trajectories/layers"]) if "trajectories" in file else []
            self.trajectory_widths = file["trajectories/widths"][()] if "trajectories" in file else []
            self.random_index = file["trajectories/random_index"][()] if "trajectories" in file else None
            self.class_names = _strings(file["classes/names"]) if "classes" in file else None
            self.eval_indices = {
                name.removesuffix("_indices"): file[f"eval/{name}"][()] for name in file["eval"]
            }
            rows = file["steps/step"].shape[0]
            self.steps = {name: file[f"steps/{name}"][:rows] for name in _chosen(file["steps"], columns)}
            self.val = (
                {name: file[f"val/{name}"][:rows] for name in _chosen(file["val"], columns)}
                if "val" in file
                else None
            )
            self.totals = {name: file[f"totals/{name}"][()] for name in file["totals"]}
            self.has_dense = "dense" in file and file["dense/step"].shape[0] > 0

    @property
    def num_parameters(self) -> int:
        return int(self.sizes.sum())

    def dense(self, field: str = "lca") -> tuple[np.ndarray, np.ndarray]:
        """(steps, values (steps, parameters)) of one dense dataset: ``lca``, ``gradient``, ``delta``,
        ``val_lca`` or ``val_gradient``, as the run stored them."""
        with _open_verified(self.path, dense=True) as file:
            if f"dense/{field}" not in file:
                stored = sorted(name for name in file["dense"] if name != "step") if "dense" in file else []
                raise UserInputError(f"{self.path} holds no dense {field!r}; it holds {stored or 'none'}")
            steps = file["dense/step"][()]
            return steps, file[f"dense/{field}"][: len(steps)]


def _chosen(group: h5py.Group, columns: set[str] | None) -> list[str]:
    return [name for name in group if columns is None or name in columns]


def _open_verified(
    path: Path, dense: bool = False, attempts: int = 3, columns: set[str] | None = None
) -> h5py.File:
    """The store opened for reading after its length and checksums were checked. A store being written
    can show a flush half done: a failed check is retried before the store is called damaged."""
    check_length(path)
    for attempt in range(attempts):
        try:
            file = h5py.File(path, "r", libver="latest", swmr=True)
        except OSError as error:
            raise DamagedStore(f"{path} is not a readable LCA store ({describe(error)})") from error
        try:
            verify(file, path, dense, columns)
            return file
        except DamagedStore:
            file.close()
            if attempt == attempts - 1:
                raise
            time.sleep(0.5)


def _strings(dataset: h5py.Dataset) -> list[str]:
    return [value.decode() if isinstance(value, bytes) else value for value in dataset[()]]


def _decoded(value):
    if isinstance(value, str) and (value.startswith(("[", "{")) or value == "null"):
        return json.loads(value)
    return value.item() if isinstance(value, np.generic) else value
