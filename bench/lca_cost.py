"""What Loss Change Allocation costs, against baselines measured in the same process.

(a) time of one rk4 LCA step (the callback's work around an optimizer step, TensorBoard logging and
    store included) divided by the time of two plain forward+backward passes over the same evaluation
    set: the algorithm's floor, since rk4 evaluates the gradient at two new points a step.
(b) per-class LCA (10 classes) step time divided by class-free step time.
(c) peak and current resident memory of the process after 100 and after 1,000 LCA steps.
(d) bytes on disk of a ResNet-20 store of 3,600 steps with the default records, against the
    reference implementation's dense format (weights float64, train and val gradients at every
    integration point float32, train and val LCA float32, per step).

    python bench/lca_cost.py [--steps 40] [--nets FC LeNet] [--skip-memory] [--skip-disk]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from callbacks.lca import LossChangeAllocation  # noqa: E402
from callbacks.lca.evaluation import Evaluation  # noqa: E402
from callbacks.lca.integrators import PathIntegral  # noqa: E402
from callbacks.lca.layout import ParameterLayout  # noqa: E402
from callbacks.lca.records import RecordBuilder  # noqa: E402
from callbacks.lca.store import LCAStore  # noqa: E402
from lightning_app.cli import cli_main  # noqa: E402
from models.nets.resnet_cifar import ResNetCIFAR  # noqa: E402

CONFIG = str(ROOT / "configs" / "mnist_fc_lca.yaml")
NETS = {"FC": "models.nets.fc.FullyConnected", "LeNet": "models.nets.lenet_lca.LeNetLCA"}


class TimedLCA(LossChangeAllocation):
    """The callback, timing its own work per step (the pre-step snapshot and the post-step work), then,
    at the same point of the loop, two plain forward+backward passes of the model over the same
    evaluation chunks (the floor), so both are measured under the same conditions."""

    def __init__(self, measure_floor: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.measure_floor = measure_floor
        self.step_times: list[float] = []
        self.floor_times: list[float] = []
        self.memory: dict[int, tuple[float, float]] = {}

    def _before_step(self) -> None:
        start = time.perf_counter()
        super()._before_step()
        self._spent = time.perf_counter() - start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        start = time.perf_counter()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.step_times.append(self._spent + time.perf_counter() - start)
        if self.measure_floor:
            self.floor_times.append(self._floor(pl_module))
        if trainer.global_step in (100, 1000):
            self.memory[trainer.global_step] = memory_mib()

    def _floor(self, pl_module) -> float:
        evaluator = self.evaluators[0]
        pl_module.eval()
        start = time.perf_counter()
        with torch.enable_grad():
            for _ in range(2):
                for chunk in evaluator.chunks:
                    loss = pl_module.criterion(pl_module(chunk.inputs), chunk.targets)
                    (loss * (len(chunk.targets) / evaluator.chunks.total)).backward()
        elapsed = time.perf_counter() - start
        pl_module.zero_grad()
        pl_module.train()
        return elapsed


def memory_mib() -> tuple[float, float]:
    """(peak, current) resident memory of this process."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            values[line[:5]] = int(line.split()[1]) / 1024
    return values.get("VmHWM", float("nan")), values.get("VmRSS", float("nan"))


def lca_run(net: str, steps: int, *trainer_args: str, **lca_options) -> tuple[TimedLCA, object]:
    options = {"chunk_size": 4000, **lca_options}  # the evaluation chunks of configs/mnist_fc_lca.yaml
    callback = TimedLCA(integrator="rk4", with_val=False, report=False, **options)
    cli = cli_main(
        ["--config", CONFIG, f"--model.net.class_path={net}", f"--trainer.max_steps={steps}",
         "--trainer.max_epochs=-1", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
         "--trainer.enable_model_summary=false", "--trainer.callbacks=[]", *trainer_args],
        run=False,
    )  # fmt: skip
    cli.trainer.callbacks.insert(0, callback)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return callback, cli.model


def mean(times: list[float]) -> float:
    """Mean over the steps after the first two (which also evaluate the start point): a mean, so that
    work done every N steps (the store's flush) is counted."""
    return statistics.mean(times[2:])


def time_ratios(steps: int, nets: list[str]) -> None:
    for name in nets:
        net = NETS[name]
        class_free, _ = lca_run(net, steps, per_class=False, measure_floor=True)
        step, floor = mean(class_free.step_times), mean(class_free.floor_times)
        print(f"(a) {name}: LCA step {1000 * step:.1f} ms, two forward+backward passes {1000 * floor:.1f} ms "
              f"over {class_free.eval_sizes['train']:,} examples: ratio {step / floor:.2f}")  # fmt: skip
        per_class, _ = lca_run(net, steps, per_class=True)
        ratio = mean(per_class.step_times) / step
        print(f"(b) {name}: per-class (10 classes) step {1000 * mean(per_class.step_times):.1f} ms / "
              f"class-free {1000 * step:.1f} ms: ratio {ratio:.2f}")  # fmt: skip


def memory_growth() -> None:
    # without checkpoints: Lightning's checkpoint saves at epoch ends add a transient peak of their own
    no_checkpoints = "--trainer.enable_checkpointing=false"
    callback, _ = lca_run(NETS["FC"], 1000, no_checkpoints, per_class=True, eval_size=500, chunk_size=500)
    (peak_100, resident_100), (peak_1000, resident_1000) = callback.memory[100], callback.memory[1000]
    growth = peak_1000 - peak_100, resident_1000 - resident_100
    print(f"(c) FC, per-class LCA, no checkpoints: peak resident memory {peak_100:.1f} MiB after 100 steps, "
          f"{peak_1000:.1f} MiB after 1,000 ({growth[0]:+.1f} MiB); resident "
          f"{resident_100:.1f} and {resident_1000:.1f} MiB ({growth[1]:+.1f} MiB)")  # fmt: skip


def store_bytes(steps: int = 3600) -> None:
    """Write a ResNet-20 store of ``steps`` default records (per class, no val, no dense) from random
    gradients, which compress worse than real ones, and compare its size with the reference format."""
    layout = ParameterLayout.of(ResNetCIFAR())
    k, classes = layout.num_parameters, 10
    builder = RecordBuilder(layout, torch.device("cpu"))
    path = Path(tempfile.mkdtemp()) / "lca.h5"
    store = LCAStore.create(path, layout, {"integrator": "rk4"}, [str(c) for c in range(classes)],
                            {"train": torch.arange(45_000).numpy()}, dense=False)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        class_grad = torch.randn(classes, k, generator=generator) * 1e-3
        point = Evaluation(torch.tensor(2.0, dtype=torch.float64), class_grad.sum(0),
                           torch.full((classes,), 0.2, dtype=torch.float64), class_grad)  # fmt: skip
        delta = torch.randn(k, generator=generator, dtype=torch.float64) * 1e-3
        integral = PathIntegral(point, point, point.grad, class_grad)
        store.append(
            builder.build(step, step + 1, step // 180, 2, delta, point.grad.double() * delta, integral, None)
        )
        if store.position % 50 == 0:
            store.flush(builder.totals)
    store.close(builder.totals)
    ours = path.stat().st_size
    reference = 8 * k * (steps + 1) + 2 * 4 * k * (2 * steps + 1) + 2 * 4 * k * steps
    print(f"(d) ResNet-20 ({k:,} parameters), {steps:,} steps: store {ours / 2**20:.1f} MiB, reference dense "
          f"format {reference / 2**30:.1f} GiB: {100 * ours / reference:.3f}%")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40, help="LCA steps per timed run")
    parser.add_argument(
        "--nets", nargs="+", choices=list(NETS), default=list(NETS), help="networks of (a) and (b)"
    )
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--skip-disk", action="store_true")
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="bench-lca-"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, offline MNIST sample")
    time_ratios(args.steps, args.nets)
    if not args.skip_memory:
        memory_growth()
    if not args.skip_disk:
        store_bytes()


if __name__ == "__main__":
    main()
