"""What happens to a step's LCA after it is computed: records, store, TensorBoard.

The training thread hands each step's LCA vectors to a :class:`RecordWriter`, which reduces them to a
record (per tensor, per neuron, per class, counts, running totals, value histogram), appends it to the
store and writes its TensorBoard scalars. On a GPU it does so on a thread of its own, in order, while
the training thread goes on queuing GPU work: at most ``depth`` steps wait, and at every flush of the
store the training thread waits until the store holds every step so far, so that a reader (or a killed
run) sees the same rows as if the writing were inline. On CPU it writes inline: there a second thread only
competes with the evaluations for the same cores (measured: FC steps 17% slower on 2 cores).
"""

import queue
import threading
from collections import deque
from dataclasses import dataclass

import torch
from lightning.pytorch.utilities import rank_zero_warn
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.writer import FileWriter

from callbacks.lca.integrators import PathIntegral
from callbacks.lca.layer_runs import LayerRuns, layer_name
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.records import RecordBuilder, StepRecord
from callbacks.lca.store import LCAStore


@dataclass
class StepResult:
    """One optimizer step's LCA, as the training thread computed it."""

    step: int  # the update's index, from 0
    global_step: int
    epoch: int
    splits: int
    delta: torch.Tensor  # (K,) float64
    lca: torch.Tensor  # (K,) float64
    train: PathIntegral
    val: PathIntegral | None


@dataclass
class Outputs:
    """Where records go: the store, every ``dense_every``-th step's ``dense_fields`` vectors, TensorBoard
    scalars (its own event file in the logger's folder, or the ``metrics`` of another logger, which the
    training thread logs) and every ``histogram_every``-th step's histogram."""

    store: LCAStore
    dense_every: int
    dense_fields: tuple[str, ...]
    flush_every: int
    histogram_every: int
    tensorboard: SummaryWriter | None
    class_names: list[str] | None = None  # names of the per-class scalars


class RecordWriter:
    """Builds, stores and logs step records in the order they were submitted, on a thread of its own
    when ``background``."""

    def __init__(self, builder: RecordBuilder, outputs: Outputs, background: bool, depth: int = 2) -> None:
        self.builder = builder
        self.outputs = outputs
        self.layout: ParameterLayout = builder.layout
        self.scalar_writer = (
            FileWriter(outputs.tensorboard.get_logdir(), filename_suffix=".lca")
            if outputs.tensorboard is not None
            else None
        )
        self.layer_runs = (
            LayerRuns(self.layout, outputs.tensorboard.get_logdir())
            if outputs.tensorboard is not None
            else None
        )
        self.metrics: deque[tuple[dict[str, float], int]] = deque()  # for a logger other than TensorBoard
        # per tensor, over every step so far (a resumed run starts from the checkpoint's totals)
        self.cumulative = builder.per_tensor(builder.totals.lca.double()).cpu()
        self.error: BaseException | None = None
        self.closed = False
        self.queue: queue.Queue[StepResult | None] = queue.Queue(maxsize=depth)
        self.thread: threading.Thread | None = None
        if background:
            self.thread = threading.Thread(target=self._run, name="lca-record-writer", daemon=True)
            self.thread.start()

    def submit(self, result: StepResult) -> None:
        """Write a step, or queue it (waiting while ``depth`` steps wait) and wait for it when it
        completes a flush."""
        self.raise_error()
        if self.thread is None:
            self._write(result)
            return
        self.queue.put(result)
        if (result.step + 1) % self.outputs.flush_every == 0:
            self.wait()

    def wait(self) -> None:
        """Until every submitted step is written; raises what the writer thread raised."""
        self.queue.join()
        self.raise_error()

    def flush(self) -> None:
        """Every submitted step and the running totals in the store (nothing to do once closed)."""
        if not self.closed:
            self.wait()
            self.outputs.store.flush(self.builder.totals)

    def raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Write what is queued, then close the store and the event file; also after an error."""
        if self.closed:
            return
        self.closed = True
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
        self.outputs.store.close(self.builder.totals)
        if self.scalar_writer is not None:
            self.scalar_writer.close()
            self.layer_runs.close()

    def _run(self) -> None:
        while True:
            result = self.queue.get()
            try:
                if result is None:
                    return
                if self.error is None:  # after an error, the queue is drained without writing
                    self._write(result)
            except BaseException as error:  # re-raised on the training thread
                self.error = error
            finally:
                self.queue.task_done()

    def _write(self, result: StepResult) -> None:
        record = self.builder.build(
            result.step, result.global_step, result.epoch, result.splits, result.delta, result.lca,
            result.train, result.val,
        )  # fmt: skip
        if not record.valid:
            rank_zero_warn(
                f"LCA step {record.step}: the LCA loss or its gradient is not finite; the step is recorded "
                "as invalid and left out of the running totals"
            )
        store, outputs = self.outputs.store, self.outputs
        store.append(record)
        if outputs.dense_every and record.step % outputs.dense_every == 0:
            store.append_dense(record.step, dense_vectors(result, outputs.dense_fields))
        if store.position % outputs.flush_every == 0:
            store.flush(self.builder.totals)
        self._log(record)
        wanted = outputs.histogram_every and record.step % outputs.histogram_every == 0 and record.valid
        if wanted and self.layer_runs is not None:
            self.layer_runs.log_histograms(record.step, result.lca)

    def _log(self, record: StepRecord) -> None:
        if record.valid:
            self.cumulative += record.train.layer_lca
        metrics = scalars(self.layout, record, self.outputs.class_names)
        if self.scalar_writer is None:  # another logger: the layers as tags of the one run
            metrics.update(layer_scalars(self.layout, record.train.layer_lca, self.cumulative))
            self.metrics.append((metrics, record.step))
        else:  # one event for all of a step's values: a tenth of the cost of one event per value
            values = [Summary.Value(tag=tag, simple_value=value) for tag, value in metrics.items()]
            self.scalar_writer.add_summary(Summary(value=values), record.step)
            self.layer_runs.log(record.step, record.train.layer_lca, self.cumulative)


def dense_vectors(result: StepResult, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The step's per-parameter vectors stored densely: lca, gradient, delta, val_lca, val_gradient."""
    available = {
        "lca": lambda: result.lca,
        "gradient": lambda: result.train.grad,
        "delta": lambda: result.delta,
    }
    if result.val is not None:
        available["val_lca"] = lambda: result.val.grad.double() * result.delta
        available["val_gradient"] = lambda: result.val.grad
    return {name: available[name]() for name in names}


def scalars(layout: ParameterLayout, record: StepRecord, class_names: list[str] | None) -> dict[str, float]:
    """The TensorBoard scalars of a record: the step's numbers and, with per-class records, each class's
    LCA."""
    helped, hurt, zero = (record.counts.double() / layout.num_parameters).tolist()
    metrics = {
        "lca/loss_change": record.train.loss_change,
        "lca/lca_sum": record.train.lca_sum,
        "lca/integration_error": record.train.error,
        "lca/fraction_helped": helped,
        "lca/fraction_hurt": hurt,
        "lca/fraction_zero": zero,
        "lca/splits": record.splits,
    }
    if record.train.loss_change != 0:
        metrics["lca/integration_error_percent"] = 100 * abs(record.train.error / record.train.loss_change)
    if class_names is not None and record.train.class_layer_lca is not None:
        per_class = record.train.class_layer_lca.double().sum(dim=1).tolist()
        metrics.update(
            {f"lca_class/{name}": value for name, value in zip(class_names, per_class, strict=True)}
        )
    if record.val is not None:
        metrics.update({"lca_val/loss_change": record.val.loss_change, "lca_val/lca_sum": record.val.lca_sum})
    return metrics


def layer_scalars(
    layout: ParameterLayout, step_lca: torch.Tensor, cumulative: torch.Tensor
) -> dict[str, float]:
    """Each layer's LCA at a step and summed over the run so far, as tags of one run (for a logger that
    has no runs of its own per layer)."""
    metrics: dict[str, float] = {}
    for module, value, total in zip(
        layout.layers, layout.per_layer(step_lca).tolist(), layout.per_layer(cumulative).tolist(), strict=True
    ):
        metrics[f"lca_layer/{layer_name(module)}"] = value
        metrics[f"lca_cumulative/{layer_name(module)}"] = total
    return metrics
