"""What Loss Change Allocation costs, against baselines measured in the same process.

(a) time of one rk4 LCA step (the callback's work around an optimizer step, records, store and
    TensorBoard included) divided by the time of two plain forward+backward passes over the same
    evaluation set: the algorithm's floor, since rk4 evaluates the gradient at two new points a step.
(b) per-class LCA (10 classes): step time divided by the time of its own two per-class gradient
    evaluations (its floor), and by the class-free step time.
(c) peak and current resident memory of the process after 100 and after 1,000 LCA steps.
(d) bytes on disk of a ResNet-20 store of 3,600 steps with the default records, against the
    reference implementation's dense format (weights float64, train and val gradients at every
    integration point float32, train and val LCA float32, per step).
(e) step time with the evaluation set read from the dataset at every evaluation (``eval_storage:
    dataset``, one worker) divided by the step time with the set kept in memory, on the same set.
(f) peak resident memory of a run whose evaluation set is 4x larger than the memory cap it is given
    (streamed), against the same run with the set kept in memory and a run without LCA, each in a
    process of its own; the growth is compared with two chunks of the set.
(g) paper scale (--paper-scale, about 20 minutes): ResNet-20 with the whole 45,000-image train split and
    the 5,000-image val split (synthetic CIFAR-10 files), configs/lca_cifar10_resnet20.yaml with rk4
    instead of its adaptive rule (chunks of 5,000, batch statistics): seconds per LCA step, peak memory,
    and the projected time of the paper's 3,600 steps. rk4 is adaptive's least work (two evaluations a
    step); each doubling of the sub-intervals adds as many again.

    python bench/lca_cost.py [--steps 40] [--nets FC LeNet] [--skip-memory] [--skip-disk]
                             [--skip-streaming] [--paper-scale]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synthetic_images import SyntheticImages  # noqa: E402
from callbacks.lca import LossChangeAllocation  # noqa: E402
from callbacks.lca.evaluation import Evaluation  # noqa: E402
from callbacks.lca.integrators import PathIntegral  # noqa: E402
from callbacks.lca.layout import ParameterLayout  # noqa: E402
from callbacks.lca.records import RecordBuilder  # noqa: E402
from callbacks.lca.store import LCAStore  # noqa: E402
from lightning_app.cli import cli_main  # noqa: E402
from models.classification import ClassificationModule  # noqa: E402
from models.nets.fc import FullyConnected  # noqa: E402
from models.nets.resnet_cifar import ResNetCIFAR  # noqa: E402
from tests.fake_data import write_cifar10  # noqa: E402

CONFIG = str(ROOT / "configs" / "mnist_fc_lca.yaml")
NETS = {"FC": "models.nets.fc.FullyConnected", "LeNet": "models.nets.lenet_lca.LeNetLCA"}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a timer measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TimedEvaluator:
    """An LCA evaluator that adds the time of each evaluation to ``spent``."""

    def __init__(self, evaluator, spent: list[float]) -> None:
        self.evaluator = evaluator
        self.spent = spent

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def __call__(self, theta):
        synchronize(theta.device)
        start = time.perf_counter()
        result = self.evaluator(theta)
        synchronize(theta.device)
        self.spent.append(time.perf_counter() - start)
        return result


class TimedLCA(LossChangeAllocation):
    """The callback, timing its own work per step (the pre-step snapshot and the post-step work) and,
    within it, its gradient evaluations; then, at the same point of the loop, two plain forward+backward
    passes of the model over the same evaluation chunks (the floor), so all are measured alike."""

    def __init__(self, measure_floor: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.measure_floor = measure_floor
        self.step_times: list[float] = []
        self.evaluation_times: list[float] = []
        self.floor_times: list[float] = []
        self.memory: dict[int, tuple[float, float]] = {}
        self._spent = 0.0
        self._evaluations: list[float] = []

    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        self.evaluators = [TimedEvaluator(evaluator, self._evaluations) for evaluator in self.evaluators]

    def _before_step(self) -> None:
        start = time.perf_counter()
        super()._before_step()
        synchronize(self.placement.device)
        self._spent = time.perf_counter() - start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(self.placement.device)
        start = time.perf_counter()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        synchronize(self.placement.device)
        self.step_times.append(self._spent + time.perf_counter() - start)
        self.evaluation_times.append(sum(self._evaluations))
        self._evaluations.clear()
        if self.measure_floor:
            self.floor_times.append(self._floor(pl_module))
        if trainer.global_step in (100, 1000):
            self.memory[trainer.global_step] = memory_mib()

    def _floor(self, pl_module) -> float:
        chunks = self.evaluators[0].chunks
        pl_module.eval()
        synchronize(self.placement.device)
        start = time.perf_counter()
        with torch.enable_grad():
            for _ in range(2):
                for chunk in chunks:
                    # class rows (per-class LCA) as one batch of the same examples
                    inputs, targets = (t.flatten(0, 1) if chunks.grouped else t for t in chunk.tensors[:2])
                    loss = pl_module.criterion(pl_module(inputs), targets)
                    (loss * (len(targets) / chunks.total)).backward()
        synchronize(self.placement.device)
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
        class_step, evaluations = mean(per_class.step_times), mean(per_class.evaluation_times)
        print(f"(b) {name}: per-class (10 classes) step {1000 * class_step:.1f} ms / its two per-class "
              f"gradient evaluations {1000 * evaluations:.1f} ms: ratio {class_step / evaluations:.2f}; "
              f"/ class-free step {1000 * step:.1f} ms: ratio {class_step / step:.2f}")  # fmt: skip


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
                            {"train": torch.arange(45_000).numpy()}, dense=())  # fmt: skip
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


def streaming_ratio(steps: int, nets: list[str]) -> None:
    for name in nets:
        times = {}
        for storage in ("device", "dataset"):
            callback, _ = lca_run(NETS[name], steps, per_class=False, eval_storage=storage, eval_workers=1)
            times[storage] = mean(callback.step_times)
        print(f"(e) {name}: LCA step with the set kept in memory {1000 * times['device']:.1f} ms, read from "
              f"the dataset by one worker {1000 * times['dataset']:.1f} ms: resident / streamed "
              f"{times['device'] / times['dataset']:.2f}")  # fmt: skip


STREAMED_CHUNK = 1_000  # images of 3x32x32: 11.7 MiB in float32


def memory_probe(mode: str, images: int) -> None:
    """One run of (f), in this process: FC on ``images`` lazily generated 3x32x32 images, 3 LCA steps with
    the set kept in memory ('resident'), streamed under a cap of a quarter of it ('streamed'), or no LCA
    ('none'); prints the peak resident memory (JSON)."""
    set_bytes = images * 3 * 32 * 32 * 4
    callbacks = []
    if mode != "none":
        cap = (
            {"eval_storage": "auto", "eval_memory_cap_mib": set_bytes / 4 / 2**20}
            if mode == "streamed"
            else {}
        )
        callbacks = [LossChangeAllocation(chunk_size=STREAMED_CHUNK, per_class=False, report=False, **cap)]
    model = ClassificationModule(FullyConnected(input_size=3 * 32 * 32))
    trainer = pl.Trainer(
        max_steps=3, callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=SyntheticImages(images, 100, (3, 32, 32)))
    storage = callbacks[0].evaluators[0].chunks.storage if callbacks else None
    print(json.dumps({"peak_mib": memory_mib()[0], "storage": storage, "set_mib": set_bytes / 2**20}))


def probe(mode: str, images: int) -> dict:
    command = [sys.executable, __file__, "--memory-probe", mode, str(images)]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def streaming_memory() -> None:
    base = probe("none", 20_000)["peak_mib"]
    chunk_mib = STREAMED_CHUNK * 3 * 32 * 32 * 4 / 2**20
    for mode, images in (("streamed", 20_000), ("streamed", 80_000), ("resident", 20_000)):
        run = probe(mode, images)
        capped = " under a cap of a quarter of it" if mode == "streamed" else ""
        growth = run["peak_mib"] - base
        print(f"(f) FC, evaluation set of {images:,} 3x32x32 images ({run['set_mib']:.0f} MiB in float32), "
              f"{mode}{capped}: kept as {run['storage']!r}, peak resident memory {growth:+.0f} MiB over a "
              f"run without LCA (two chunks: {2 * chunk_mib:.0f} MiB)")  # fmt: skip


def paper_scale(steps: int = 2) -> None:
    """configs/lca_cifar10_resnet20.yaml on synthetic CIFAR-10 files of the real size."""
    data_dir = Path(tempfile.mkdtemp())
    write_cifar10(data_dir, per_batch=10_000, test=10_000)
    callback = TimedLCA(integrator="rk4", with_val=True, chunk_size=5000, per_class=False, report=False)
    cli = cli_main(
        ["--config", str(ROOT / "configs" / "lca_cifar10_resnet20.yaml"), f"--data.data_dir={data_dir}",
         f"--trainer.max_steps={steps}", "--trainer.limit_val_batches=0",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.callbacks=[]"],
        run=False,
    )  # fmt: skip
    cli.trainer.callbacks.insert(0, callback)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    later = statistics.mean(callback.step_times[1:])  # step 0 also evaluates the start point
    run_seconds = 3600 * later
    print(f"(g) ResNet-20, evaluation sets {callback.eval_sizes}, chunks of 5,000, rk4: step 0 "
          f"{callback.step_times[0]:.0f} s, later steps {later:.0f} s; peak resident memory "
          f"{memory_mib()[0] / 1024:.1f} GiB; the paper's 3,600 steps: {run_seconds / 3600:.0f} hours "
          f"({run_seconds / 86400:.1f} days)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=40, help="LCA steps per timed run")
    parser.add_argument(
        "--nets", nargs="+", choices=list(NETS), default=list(NETS), help="networks of (a), (b) and (e)"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip (c) and (f)")
    parser.add_argument("--skip-disk", action="store_true", help="skip (d)")
    parser.add_argument("--skip-streaming", action="store_true", help="skip (e) and (f)")
    parser.add_argument("--paper-scale", action="store_true", help="run (g), about 20 minutes on 2 cores")
    parser.add_argument("--memory-probe", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="bench-lca-"))
    if args.memory_probe:
        memory_probe(args.memory_probe[0], int(args.memory_probe[1]))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, offline MNIST sample")
    time_ratios(args.steps, args.nets)
    if not args.skip_memory:
        memory_growth()
    if not args.skip_disk:
        store_bytes()
    if not args.skip_streaming:
        streaming_ratio(args.steps, args.nets)
        if not args.skip_memory:
            streaming_memory()
    if args.paper_scale:
        paper_scale()


if __name__ == "__main__":
    main()
