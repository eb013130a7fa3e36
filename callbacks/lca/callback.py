"""The Lightning callback that records Loss Change Allocation at every optimizer step."""

import math
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import yaml
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.nn.utils import parameters_to_vector
from torch.utils.hooks import RemovableHandle
from torch.utils.tensorboard import SummaryWriter
from typing_extensions import override

from callbacks.contracts import EvaluationSet, check_contracts
from callbacks.lca.eval_chunks import STORAGES, Storage, evaluation_chunks
from callbacks.lca.evaluation import (
    BatchNormMode,
    Evaluation,
    LossEvaluator,
    has_batch_norm,
    local_sync_batch_norm_group,
)
from callbacks.lca.integrators import Method, integrate
from callbacks.lca.integrity import state_crc
from callbacks.lca.layout import ParameterLayout
from callbacks.lca.loss import ElementwiseLoss
from callbacks.lca.record_writer import Outputs, RecordWriter, StepResult
from callbacks.lca.records import RecordBuilder, value_dtype
from callbacks.lca.store import DENSE_FIELDS, VALUE_FORMATS, LCARun, LCAStore, step_columns
from callbacks.lca.time_estimate import TimeEstimate
from callbacks.placement import Placement
from lightning_app.errors import UserInputError, check_not_negative, check_positive
from lightning_app.run_record import environment_versions


class LossChangeAllocation(pl.Callback):
    """Loss Change Allocation (Lan et al., NeurIPS 2019), computed online while the model trains.

    For every optimizer step θ_t → θ_{t+1}, LCA_i = ḡ_i (θ_{t+1,i} − θ_{t,i}) where ḡ is the gradient of
    the LCA loss averaged along the straight segment (negative: parameter i helped, positive: hurt).
    The LCA loss is the module's ``criterion``, averaged over a fixed evaluation set (by default the
    whole train split, as the reference), not the training minibatch. Per step the callback records
    Σ LCA, the true loss at both ends, the integration error, per parameter-tensor and per-neuron LCA,
    per-class LCA, and helped/hurt/zero counts; per parameter it keeps running totals. Records stream to
    ``<log_dir>/lca.h5`` (see ``callbacks.lca.store``) and TensorBoard; ``python -m lightning_app.report
    lca RUN_DIR`` draws the figures, which are also logged at the end of ``fit``.

    Training is untouched: the callback substitutes parameters with ``torch.func.functional_call``,
    never updates batch-norm statistics, and draws no random numbers.

    Args:
        integrator: 'first_order' (gradient at θ_t), 'rk4' (Simpson: start, midpoint, end; two new
            gradient evaluations a step) or 'adaptive' (composite Simpson, doubling the sub-intervals up
            to ``max_splits`` until |ΔL − Σ LCA| <= ``tolerance`` on every evaluation set).
        tolerance: absolute tolerance of 'adaptive', in units of the loss (1e-3 as the reference).
        max_splits: most sub-intervals 'adaptive' uses.
        eval_size: examples of the train split in the LCA loss; None takes the whole split.
        eval_split: the split whose loss is allocated (default 'train', as the reference; the records
            and scalars still call it train).
        eval_seed: seed of the ``eval_size`` draw (the indices are stored).
        with_val: also allocate the loss on the val split (the reference's "helped_test").
        val_size: examples of the val split; None takes the whole split.
        chunk_size: examples evaluated together.
        eval_storage: where the evaluation set is kept between evaluations: 'device' (loaded once onto
            the model's device), 'host' (host memory, copied to the GPU one chunk ahead), 'dataset'
            (read from the data module's dataset at every evaluation, for sets larger than memory) or
            'auto' (the first that fits; see :mod:`callbacks.lca.eval_chunks`).
        eval_memory_cap_mib: the most memory the kept evaluation set may take (default: half the free
            memory of the device or host when fit starts).
        eval_workers: DataLoader processes reading the set with ``eval_storage: dataset``.
        bn_mode: 'batch_stats' (normalise each chunk with its own statistics, as the reference) or
            'eval' (running statistics).
        per_class: split the loss into per-class terms (one vectorised pass) and record LCA per class.
        dense_every: every k-th step, store per-parameter vectors of the step (0: never).
        dense_fields: which (with ``dense_every`` only): ``lca`` (default), ``gradient`` (the
            path-averaged gradient ḡ of the LCA loss) and ``delta`` (Δθ); with ``with_val``, lca and
            gradient of the val set too. LCA = gradient x delta element-wise, so a stored step can be
            recomputed or re-weighted.
        flush_every: steps between writes of the store.
        histogram_every: steps between TensorBoard histograms of the LCA of each layer's parameters
            (0: never).
        store_path: where the store goes; default ``<log_dir>/lca.h5``. A run never writes into
            another run's store: a resumed run copies the checkpoint's records into its own store (see
            the README's "Reliability").
        report: draw the report figures into ``<log_dir>/lca_report/`` and TensorBoard after fit.
    """

    def __init__(
        self,
        integrator: Method = "rk4",
        tolerance: float = 1e-3,
        max_splits: int = 32,
        eval_size: int | None = None,
        eval_split: str = "train",
        eval_seed: int = 0,
        with_val: bool = False,
        val_size: int | None = None,
        chunk_size: int = 1000,
        eval_storage: Storage = "auto",
        eval_memory_cap_mib: float | None = None,
        eval_workers: int = 1,
        bn_mode: BatchNormMode = "batch_stats",
        per_class: bool = True,
        dense_every: int = 0,
        dense_fields: list[str] | None = None,
        flush_every: int = 50,
        histogram_every: int = 25,
        store_path: str | None = None,
        report: bool = True,
    ) -> None:
        if integrator not in ("first_order", "rk4", "adaptive"):
            raise UserInputError(f"LCA integrator {integrator!r} is not one of first_order, rk4, adaptive")
        if bn_mode not in ("batch_stats", "eval"):
            raise UserInputError(f"LCA bn_mode {bn_mode!r} is not one of batch_stats, eval")
        if max_splits < 2 or max_splits & (max_splits - 1):
            raise UserInputError(f"LCA max_splits={max_splits} must be a power of two >= 2")
        if chunk_size <= 0:
            raise UserInputError(f"LCA chunk_size={chunk_size} must be a positive number of examples")
        if eval_storage not in STORAGES:
            raise UserInputError(f"LCA eval_storage {eval_storage!r} is not one of {', '.join(STORAGES)}")
        if eval_memory_cap_mib is not None and eval_memory_cap_mib <= 0:
            raise UserInputError(f"LCA eval_memory_cap_mib={eval_memory_cap_mib} must be positive")
        check_positive(
            "LossChangeAllocation", eval_size=eval_size, val_size=val_size, flush_every=flush_every,
            tolerance=tolerance,
        )  # fmt: skip
        check_not_negative(
            "LossChangeAllocation", eval_workers=eval_workers, dense_every=dense_every,
            histogram_every=histogram_every,
        )  # fmt: skip
        self.integrator = integrator
        self.tolerance = tolerance
        self.max_splits = max_splits
        self.eval_size = eval_size
        self.eval_split = eval_split
        self.eval_seed = eval_seed
        self.with_val = with_val
        self.val_size = val_size
        self.chunk_size = chunk_size
        self.eval_storage = eval_storage
        self.eval_memory_cap_mib = eval_memory_cap_mib
        self.eval_workers = eval_workers
        self.bn_mode = bn_mode
        self.per_class = per_class
        self.dense_every = dense_every
        self.dense_fields = ("lca",) if dense_fields is None else tuple(dense_fields)
        unknown = sorted(set(self.dense_fields) - set(DENSE_FIELDS))
        if unknown or not self.dense_fields:
            raise UserInputError(
                f"LCA dense_fields {list(self.dense_fields)} must be one or more of {', '.join(DENSE_FIELDS)}"
            )
        if dense_fields is not None and not dense_every:
            raise UserInputError(
                f"LCA dense_fields {list(self.dense_fields)} are stored only with dense_every: k (every k-th "
                "step); set it, or leave dense_fields out"
            )
        self.flush_every = flush_every
        self.histogram_every = histogram_every
        self.store_path = store_path
        self.report = report
        # drawn in setup
        self.class_names: list[str] | None = None
        self.eval_sets: dict[str, EvaluationSet] = {}
        self.eval_indices: dict[str, np.ndarray] = {}
        self.eval_sizes: dict[str, int] = {}
        # built in on_fit_start, with the model on its device and in its dtype
        self.placement: Placement | None = None
        self.layout: ParameterLayout | None = None
        self.evaluators: list[LossEvaluator] = []
        self.parameters: list[torch.nn.Parameter] = []
        # the step being recorded, and the last end point's evaluations
        self._theta_start: torch.Tensor | None = None
        self._stepped = False
        self._cache: tuple[torch.Tensor, dict[str, torch.Tensor], list[Evaluation]] | None = None
        self.recorded = 0
        self.clock = TimeEstimate()
        # output, on rank 0: records built, stored and logged off the training thread
        self.path: Path | None = None
        self.run_id = uuid.uuid4().hex
        self.writer: RecordWriter | None = None
        self._resume: dict | None = None
        self._hooks: list[RemovableHandle] = []

    # ---------------------------------------------------------------- set-up
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Check the contracts and the criterion, and draw the evaluation sets (not loaded yet)."""
        if stage != "fit":
            return
        check_contracts("LossChangeAllocation", pl_module, trainer.datamodule)
        ElementwiseLoss(pl_module.criterion)
        data = trainer.datamodule
        self.class_names = list(data.class_names) if self.per_class else None
        self.eval_sets = {
            "train": data.evaluation_subset(self.eval_split, size=self.eval_size, seed=self.eval_seed)
        }
        if self.with_val:
            self.eval_sets["val"] = data.evaluation_subset("val", size=self.val_size, seed=self.eval_seed)
        self.eval_indices = {name: np.asarray(s.source_indices) for name, s in self.eval_sets.items()}
        self.eval_sizes = {name: len(dataset) for name, dataset in self.eval_sets.items()}

    @override
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Build the evaluators from the live module, now on its device and in its dtype."""
        # Parameter objects outlive moves and conversions (their data is swapped in place)
        self.parameters = list(pl_module.parameters())
        self.placement = Placement.of(pl_module)
        self.layout = ParameterLayout.of(pl_module)
        loss = ElementwiseLoss(pl_module.criterion)
        classes = len(self.class_names) if self.class_names else None
        batch_coupled = self.bn_mode == "batch_stats" and has_batch_norm(pl_module)
        local_group = local_sync_batch_norm_group(pl_module, self.bn_mode)  # collective: every rank
        cap = None if self.eval_memory_cap_mib is None else self.eval_memory_cap_mib * 2**20
        self.evaluators = [
            LossEvaluator(
                pl_module, self.layout, loss,
                evaluation_chunks(
                    dataset, loss, self.chunk_size, None if batch_coupled else classes,
                    trainer.global_rank, trainer.world_size, self.placement.device, self.placement.dtype,
                    self.eval_storage, cap, self.eval_workers,
                ),
                self.bn_mode, classes, lambda t: trainer.strategy.reduce(t, reduce_op="sum"), local_group,
            )
            for dataset in self.eval_sets.values()
        ]  # fmt: skip
        self._cache, self._theta_start, self._stepped = None, None, False
        self.recorded = 0
        self.clock = TimeEstimate()

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise UserInputError(f"LCA follows one optimizer; this model has {len(trainer.optimizers)}")
        optimizer = trainer.optimizers[0]
        self._hooks = [
            optimizer.register_step_pre_hook(lambda *_: self._before_step()),
            optimizer.register_step_post_hook(lambda *_: self._after_step()),
        ]
        log_dir = trainer.log_dir  # collective under DDP: every rank asks
        self.path = Path(self.store_path) if self.store_path else Path(log_dir or ".") / "lca.h5"
        if self._resume is not None:
            self.recorded = self._resume["position"]
        if not trainer.is_global_zero:
            return
        builder = RecordBuilder(self.layout, self.placement.device, value_dtype(self.placement.dtype))
        if self._resume is not None:
            builder.totals.load_state_dict(self._resume["totals"])
        store = self._open_store(self._metadata(trainer, log_dir))
        store.flush(builder.totals)
        self._log_estimate(trainer)
        tensorboard = self._tensorboard(trainer)
        dense = self.dense_datasets()
        outputs = Outputs(
            store,
            self.dense_every,
            dense,
            self.flush_every,
            self.histogram_every,
            tensorboard,
            self.class_names,
        )
        self.writer = RecordWriter(builder, outputs, background=self.placement.device.type == "cuda")

    def _open_store(self, metadata: dict) -> LCAStore:
        """This run's store: new, or on resume holding the checkpoint's records when their store is the
        checkpoint's run's and intact (otherwise new, starting at the checkpoint's step, with a warning)."""
        dense = self.dense_datasets() if self.dense_every else ()
        values = value_dtype(self.placement.dtype)
        create = (self.path, self.layout, metadata, self.class_names, self.eval_indices, dense, values)
        if self._resume is None:
            return LCAStore.create(*create)
        source, position = Path(self._resume["store_path"]), self._resume["position"]
        metadata["resumed_from"] = f"{source} at step {position}"
        problem = continuation_problem(source, self._resume["run_id"], position)
        if problem is None:
            if source.resolve() == self.path.resolve():  # the same run, continued in its own folder
                metadata["run_id"] = self.run_id = self._resume["run_id"]
            elif self.path.exists():
                return LCAStore.create(*create)  # refused: another run's store
            return LCAStore.resume(source, position, self.path, metadata)
        rank_zero_warn(
            f"LCA: {problem}; this run's store {self.path} starts at step {position}, without the records "
            "of the steps before (the running totals include them)"
        )
        return LCAStore.create(*create)

    def _metadata(self, trainer: pl.Trainer, log_dir: str | None) -> dict:
        config_file = Path(log_dir or ".") / "config.yaml"
        return {
            "run_id": self.run_id,
            "integrator": self.integrator,
            "tolerance": self.tolerance,
            "max_splits": self.max_splits,
            "bn_mode": self.bn_mode,
            "per_class": int(self.per_class),
            "chunk_size": self.chunk_size,
            "eval_sizes": self.eval_sizes,
            "eval_seed": self.eval_seed,
            "eval_split": self.eval_split,
            "eval_size": self.eval_size,
            "val_size": self.val_size,
            "dense_every": self.dense_every,
            "dense_fields": list(self.dense_datasets()) if self.dense_every else [],
            "parameters": self.layout.num_parameters,
            "world_size": trainer.world_size,
            "config": config_file.read_text() if config_file.is_file() else "",
            "versions": yaml.safe_dump(environment_versions()),
        }

    def dense_datasets(self) -> tuple[str, ...]:
        """The dense datasets ``dense_fields`` asks for: the val set's lca and gradient too with_val."""
        val = [f"val_{field}" for field in self.dense_fields if field != "delta"] if self.with_val else []
        return (*self.dense_fields, *val)

    def _log_estimate(self, trainer: pl.Trainer) -> None:
        k = self.layout.num_parameters
        classes = len(self.class_names) if self.class_names else 1
        steps = trainer.estimated_stepping_batches
        steps = int(steps) if math.isfinite(steps) else 0
        values = VALUE_FORMATS[value_dtype(self.placement.dtype)]
        columns = step_columns(
            self.layout, len(self.class_names) if self.class_names else None, self.with_val, values
        )
        row_bytes = sum(math.prod(shape) * int(dtype[1:]) for shape, dtype in columns.values())
        dense_bytes = (
            (steps // self.dense_every) * k * int(values[1:]) * len(self.dense_datasets())
            if self.dense_every
            else 0
        )
        sets = len(self.evaluators)
        vectors = 4 * k * (1 + sets * 6 * classes) + 8 * k * 3 + 4 * k * 3  # θ, gradients, Δθ, LCA, totals
        kept = ", ".join(
            f"{name} in {e.chunks.storage} ({e.chunks.nbytes / 2**20:,.0f} MiB)"
            for name, e in zip(self.eval_sets, self.evaluators, strict=True)
        )
        store_mib = (steps * row_bytes + dense_bytes + 20 * k) / 2**20
        rank_zero_info(
            f"LCA: {k:,} parameters, {self.integrator}, on {self.placement}; evaluation sets "
            f"{self.eval_sizes} kept: {kept}; {vectors / 2**20:,.0f} MiB of vectors; store "
            f"{store_mib:,.1f} MiB for {steps:,} steps before compression, at {self.path}"
        )

    @staticmethod
    def _tensorboard(trainer: pl.Trainer) -> SummaryWriter | None:
        """The logger's SummaryWriter, with custom-scalar charts of the layers (each a run of its own,
        :mod:`callbacks.lca.layer_runs`), the classes and the loss change (the record writer adds the
        scalars in an event file of its own: TensorBoard reads every event file of a folder as one run)."""
        experiment = getattr(trainer.logger, "experiment", None)
        if not isinstance(experiment, SummaryWriter):
            return None
        experiment.add_custom_scalars(
            {
                "LCA": {
                    "LCA per layer": ["Multiline", ["lca_layer/step"]],
                    "cumulative LCA per layer": ["Multiline", ["lca_layer/cumulative"]],
                    "LCA per class": ["Multiline", ["lca_class/.*"]],
                    "loss change and sum of LCA": ["Multiline", ["lca/loss_change", "lca/lca_sum"]],
                    "fraction of parameters helped, hurt, zero": ["Multiline", ["lca/fraction_.*"]],
                }
            }
        )
        return experiment

    # ---------------------------------------------------------------- the step
    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        self.placement.check_unchanged(
            pl_module, "LossChangeAllocation", f"after fit started (step {self.recorded})"
        )

    def _before_step(self) -> None:
        if self._theta_start is not None:
            raise UserInputError("LCA records one optimizer step per training batch; this model made two")
        self._theta_start = self.current_theta()

    def _after_step(self) -> None:
        self._stepped = True

    @override
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if not self._stepped:
            return
        started = time.perf_counter()
        theta_start, theta_end = self._theta_start, self.current_theta()
        self._theta_start, self._stepped = None, False
        delta = theta_end.double() - theta_start.double()
        with ExitStack() as sessions:  # the module in LCA mode once for all of the step's evaluations
            for evaluator in self.evaluators:
                sessions.enter_context(evaluator.session())
            starts = self._start_evaluations(theta_start)
            integrals, splits = integrate(
                self.evaluators, theta_start, theta_end, delta, starts, self.integrator, self.tolerance,
                self.max_splits,
            )  # fmt: skip
        self._cache = (theta_end, self.evaluators[0].buffers_snapshot(), [i.end for i in integrals])
        lca = integrals[0].grad.double() * delta
        # numbered by real updates: Lightning's global_step also counts steps an AMP scaler skipped
        result = StepResult(
            self.recorded, trainer.global_step, trainer.current_epoch, splits, delta, lca, integrals[0],
            integrals[1] if self.with_val else None,
        )  # fmt: skip
        self.recorded += 1
        if self.writer is not None:
            self.writer.submit(result)
            log_metrics(trainer, self.writer)
        self.clock.record(time.perf_counter() - started)
        projection = self.clock.message(trainer.estimated_stepping_batches)
        if projection is not None:
            rank_zero_info(projection)

    def current_theta(self) -> torch.Tensor:
        """The flat vector of the parameters LCA tracks, in ``ParameterLayout`` order."""
        return parameters_to_vector(self.parameters).detach()

    def _start_evaluations(self, theta_start: torch.Tensor) -> list[Evaluation]:
        """The previous end point's evaluations when nothing moved since, else fresh ones."""
        if self._cache is not None:
            theta, buffers, evaluations = self._cache
            current = self.evaluators[0].buffers_snapshot()
            same_buffers = buffers.keys() == current.keys() and all(
                torch.equal(buffers[name], current[name]) for name in buffers
            )
            if same_buffers and torch.equal(theta, theta_start) and all(e.finite for e in evaluations):
                return evaluations
        return [evaluate(theta_start) for evaluate in self.evaluators]

    # ---------------------------------------------------------------- end, checkpoints
    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        if self.writer is None:
            return
        self.writer.raise_error()
        log_metrics(trainer, self.writer)
        if self.report and self.recorded:
            from callbacks.lca.report import write_report

            numbers = write_report(self.path, trainer.logger, step=trainer.global_step)
            rank_zero_info(
                f"LCA report: {Path(numbers['figures'][0]).parent}/ (loss change "
                f"{numbers['loss_change']:.4f}, sum of LCA {numbers['lca_sum']:.4f}); the numbers: "
                f"python -m lightning_app.report lca {self.path.parent}"
            )

    @override
    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._close()

    def _close(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        if self.writer is not None:
            self.writer.close()  # kept: its totals go into checkpoints saved after fit

    def last_epoch_neuron_lca(self) -> tuple[int, dict[str, np.ndarray]]:
        """(the last epoch recorded, per layer: the LCA of each of its output neurons summed over that
        epoch's valid steps), read from the store, which is brought up to date first. Rank 0, during
        ``fit`` (from ``on_train_epoch_end``) or after it. Negative values helped the loss."""
        if self.path is None:
            raise UserInputError("LossChangeAllocation has recorded nothing yet (it records during fit)")
        if self.writer is not None:
            self.writer.flush()
        run = LCARun(self.path)
        epochs = run.steps["epoch"]
        if len(epochs) == 0:
            raise UserInputError(f"the LCA store {self.path} holds no steps yet")
        rows = (epochs == epochs.max()) & (run.steps["valid"] == 1)
        summed = run.steps["neuron_lca"][rows].astype(np.float64).sum(axis=0)
        modules = np.asarray(run.neuron_modules)
        return int(epochs.max()), {
            module: summed[modules == module] for module in dict.fromkeys(run.neuron_modules)
        }

    @override
    def state_dict(self) -> dict:
        if self.path is None:  # not fitting yet
            return {}
        state = {"store_path": str(self.path.resolve()), "position": self.recorded, "run_id": self.run_id}
        if self.writer is not None:  # rank 0: the totals of every step so far, and the store up to date
            self.writer.flush()
            state["totals"] = self.writer.builder.totals.state_dict()
        return {**state, "checksum": state_crc(state)}

    @override
    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        state = {key: value for key, value in state_dict.items() if key != "checksum"}
        if "checksum" not in state_dict or state_crc(state) != state_dict["checksum"]:
            raise UserInputError(
                "the checkpoint's LossChangeAllocation state fails its checksum (the checkpoint is damaged, "
                "or was written by an older version): resume from another checkpoint"
            )
        self._resume = state


def continuation_problem(source: Path, run_id: str, position: int) -> str | None:
    """Why the store at ``source`` cannot give a resumed run the checkpoint's first ``position`` steps of
    run ``run_id`` (None when it can)."""
    if not source.is_file():
        return f"the checkpoint's LCA store {source} is missing"
    try:
        stored = LCARun(source)
    except UserInputError as error:
        return str(error)
    if stored.attrs.get("run_id") != run_id:
        return f"the LCA store {source} belongs to another run than the checkpoint"
    if len(stored.steps["step"]) < position:
        return f"{source} holds {len(stored.steps['step'])} steps but the checkpoint recorded {position}"
    return None


def log_metrics(trainer: pl.Trainer, writer: RecordWriter) -> None:
    """Log the scalars the writer made for a logger other than TensorBoard, from the training thread."""
    while writer.metrics:
        metrics, step = writer.metrics.popleft()
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=step)
