"""GPU verification: the callbacks on a GPU against the same steps on the CPU in float64, and GPU speed.

For the LCA paper's four networks (configs/lca_mnist_fc.yaml, lca_mnist_lenet.yaml,
lca_cifar10_allcnn.yaml, lca_cifar10_resnet20.yaml, on synthetic MNIST and CIFAR-10 files of the real
size) and configs/spacenet6_unet_resnet18.yaml and spacenet3_linknet_lca.yaml (on synthetic tiles):

1. correctness: a few training steps on the device with LossChangeAllocation (rk4, in each bn_mode when
   the network has batch norm) and the AttributionCallback, recording every step's parameters and
   buffers; then the same steps' LCA recomputed on the CPU in float64 from those parameters and compared
   with the device's records (largest difference / largest value, pass at 1e-4). TF32 is off for these
   runs. The attribution sanity scores must be finite. For ResNet-20 the records are also compared across
   eval_storage device, host (pinned memory, copied one chunk ahead) and dataset (streamed).
2. cost: LCA step time / two plain forward+backward passes over the evaluation set (the whole train split
   for the classifiers), and the peak GPU memory of that run;
3. training samples/s at precision 32 and bf16-mixed (no callbacks), and, with more than one GPU, DDP on 1
   and on all of them.

    python bench/gpu_check.py                          # under 8 minutes on one GPU
    python bench/gpu_check.py --device cpu --quick     # the same checks on tiny data: tests the script

SpaceNet 6's config trains with a Jaccard loss, which LCA cannot allocate (it is not a mean over
elements): its LCA runs use the BCE loss instead.
"""

import argparse
import copy
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lca_cost import TimedLCA, synchronize  # noqa: E402
from callbacks.attribution import AttributionCallback  # noqa: E402
from callbacks.lca import LossChangeAllocation  # noqa: E402
from callbacks.lca.eval_chunks import evaluation_chunks  # noqa: E402
from callbacks.lca.evaluation import LossEvaluator, has_batch_norm  # noqa: E402
from callbacks.lca.integrators import integrate  # noqa: E402
from callbacks.lca.layout import ParameterLayout  # noqa: E402
from callbacks.lca.loss import ElementwiseLoss  # noqa: E402
from callbacks.lca.store import LCARun  # noqa: E402
from callbacks.model_copy import conv_layer_names  # noqa: E402
from lightning_app.cli import cli_main  # noqa: E402
from tests.fake_data import write_cifar10, write_mnist  # noqa: E402
from tests.lca_support import ParameterTrail  # noqa: E402
from tests.spacenet_fixtures import make_spacenet3, make_spacenet6  # noqa: E402

QUIET = [
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
    "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0", "--trainer.callbacks=[]",
]  # fmt: skip
RECORDS = ("loss_start", "loss_end", "lca_sum", "layer_lca")
QUICK_IMAGES = ["--data.val_size=100", "--data.batch_size=32"]
TOLERANCE = 1e-4


@dataclass
class Case:
    """A config, the synthetic data it runs on, and the LCA settings of its checks."""

    config: str
    data: str  # mnist, cifar, spacenet6, spacenet3
    check_size: int  # evaluation examples of the float64 comparison
    chunk_size: int
    per_class: bool
    extra: list[str] = field(default_factory=list)


CASES = {
    "FC": Case("lca_mnist_fc", "mnist", 512, 256, True),
    "LeNet": Case("lca_mnist_lenet", "mnist", 512, 256, True),
    "AllCNN": Case("lca_cifar10_allcnn", "cifar", 256, 128, False),
    "ResNet-20": Case("lca_cifar10_resnet20", "cifar", 256, 128, False),
    "U-Net ResNet-18": Case(
        "spacenet6_unet_resnet18", "spacenet6", 4, 2, False,
        ["--model.loss=[{name: bce}]", "--data.split=random", "--data.crop_size=256", "--data.batch_size=8"],
    ),
    "LinkNet": Case("spacenet3_linknet_lca", "spacenet3", 4, 2, False, ["--data.batch_size=6"]),
}  # fmt: skip


def write_data(kind: str, root: Path, quick: bool) -> list[str]:
    """Synthetic files of ``kind`` (the real sizes, or tiny with ``quick``) and the options reading them."""
    folder = root / kind
    if kind == "mnist":
        write_mnist(folder, *((600, 100) if quick else (60_000, 10_000)))
        return [f"--data.data_dir={folder}", *(QUICK_IMAGES if quick else ["--data.val_size=5000"])]
    if kind == "cifar":
        write_cifar10(folder, *((120, 100) if quick else (10_000, 10_000)))
        return [f"--data.data_dir={folder}", *(QUICK_IMAGES if quick else ["--data.val_size=5000"])]
    size, tiles = (64, 8) if quick else (512, 24)
    writer = make_spacenet6 if kind == "spacenet6" else make_spacenet3
    aoi = writer(folder, tiles=tiles, size=size)
    data_dir = aoi if kind == "spacenet6" else aoi.parent
    return [f"--data.data_dir={data_dir}", f"--data.cache_dir={folder / 'cache'}",
            "--data.num_workers=2", "--data.val_fraction=0.2", "--data.test_fraction=0.2",
            *(["--data.crop_size=64", "--data.batch_size=2"] if quick else [])]  # fmt: skip


def build(case: Case, data: list[str], device: str, *options: str):
    """The config's model, data module and trainer on ``device`` (callbacks added by the caller)."""
    accelerator = "gpu" if device == "cuda" else "cpu"
    args = ["--config", str(ROOT / "configs" / f"{case.config}.yaml"), *QUIET, *case.extra, *data,
            f"--trainer.accelerator={accelerator}", "--trainer.devices=1", *options]  # fmt: skip
    return cli_main(args, run=False)


def fit(cli, callbacks: list[pl.Callback]):
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


# ------------------------------------------------------------------ 1. correctness against float64
def reference(module, trail: ParameterTrail, lca: LossChangeAllocation, dataset) -> dict[str, np.ndarray]:
    """The records of the trail's steps, recomputed on the CPU in float64 (rk4, the same evaluation set)."""
    model = copy.deepcopy(module, memo={id(module._trainer): None}).cpu().double()
    loss = ElementwiseLoss(model.criterion)
    classes = len(lca.class_names) if lca.class_names else None
    rows = None if lca.bn_mode == "batch_stats" and has_batch_norm(model) else classes
    chunks = evaluation_chunks(dataset, loss, lca.chunk_size, rows, 0, 1, torch.device("cpu"), torch.float64,
                               "device", workers=0)  # fmt: skip
    layout = ParameterLayout.of(model)
    evaluator = LossEvaluator(model, layout, loss, chunks, lca.bn_mode, classes, lambda t: t)
    records = {name: [] for name in RECORDS}
    for start, end, buffers in zip(trail.before, trail.after, trail.buffers, strict=True):
        for name, value in buffers.items():
            model.get_buffer(name).copy_(value)
        start, end = start.double(), end.double()
        delta = end - start
        (result,), _ = integrate([evaluator], start, end, delta, [evaluator(start)], "rk4")
        lca_values = result.grad * delta
        records["loss_start"].append(float(result.start.loss))
        records["loss_end"].append(float(result.end.loss))
        records["lca_sum"].append(float(lca_values.sum()))
        records["layer_lca"].append([float(part.sum()) for part in lca_values.split(layout.sizes)])
    return {name: np.array(values) for name, values in records.items()}


def relative_error(records: dict, expected: dict) -> float:
    return max(
        float(
            np.abs(np.asarray(records[name]) - expected[name]).max()
            / max(np.abs(expected[name]).max(), 1e-30)
        )
        for name in RECORDS
    )


def lca_run(
    case: Case, data: list[str], device: str, steps: int, bn_mode: str, storage: str, attribution: bool
):
    """A run of ``steps`` steps with rk4 LCA on the comparison set; (cli, callback, trail, store)."""
    lca = LossChangeAllocation(integrator="rk4", eval_size=case.check_size, chunk_size=case.chunk_size,
                               bn_mode=bn_mode, per_class=case.per_class, report=False,
                               eval_storage=storage)  # fmt: skip
    trail = ParameterTrail()
    callbacks = [lca, trail]
    cli = build(case, data, device, f"--trainer.max_steps={steps}")
    if attribution:
        methods = {"Saliency": {}, "IntegratedGradients": {"n_steps": 8}}
        if conv_layer_names(cli.model):
            methods["LayerGradCam"] = {}
        target = {"target": "building"} if case.data.startswith("spacenet") else {}
        callbacks.append(
            AttributionCallback(methods=methods, every_n_epochs=0, per_class=None, size=2, **target)
        )
    fit(cli, callbacks)
    return cli, lca, trail, LCARun(lca.path)


def check_correctness(name: str, case: Case, data: list[str], device: str, steps: int) -> list[str]:
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    lines = []
    modes = ["batch_stats", "eval"] if has_batch_norm(build(case, data, "cpu").model) else ["batch_stats"]
    for bn_mode in modes:
        cli, lca, trail, run = lca_run(case, data, device, steps, bn_mode, "device", attribution=True)
        expected = reference(cli.model, trail, lca, lca.eval_sets["train"])
        error = relative_error(run.steps, expected)
        attribution = next(c for c in cli.trainer.callbacks if isinstance(c, AttributionCallback))
        finite = all(math.isfinite(v) for scores in attribution.sanity.values() for v in scores.values())
        verdict = "PASS" if error <= TOLERANCE and finite else "FAIL"
        lines.append(f"{verdict} {name} LCA {bn_mode} on {device} vs CPU float64: relative error {error:.1e};"
                     f" attribution {sorted(attribution.sanity)} finite: {finite}")  # fmt: skip
    torch.backends.cudnn.allow_tf32 = True
    return lines


def check_storages(name: str, case: Case, data: list[str], device: str, steps: int) -> list[str]:
    runs = {
        s: lca_run(case, data, device, steps, "batch_stats", s, False)[3]
        for s in ("device", "host", "dataset")
    }
    error = max(relative_error(runs[s].steps, runs["device"].steps) for s in ("host", "dataset"))
    verdict = "PASS" if error <= 1e-6 else "FAIL"
    return [f"{verdict} {name} LCA records with the set on the device, in host memory, streamed: "
            f"largest relative difference {error:.1e}"]  # fmt: skip


# ------------------------------------------------------------------ 2. and 3. cost and speed
def peak_memory(device: str) -> str:
    return (
        f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB" if device == "cuda" else "CPU"
    )


def lca_cost(name: str, case: Case, data: list[str], device: str, steps: int, quick: bool) -> list[str]:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    size = case.check_size if quick or case.data.startswith("spacenet") else None
    callback = TimedLCA(measure_floor=True, integrator="rk4", eval_size=size, chunk_size=case.chunk_size * 8,
                        per_class=case.per_class, report=False)  # fmt: skip
    fit(build(case, data, device, f"--trainer.max_steps={steps}"), [callback])
    step, floor = statistics.mean(callback.step_times[2:]), statistics.mean(callback.floor_times[2:])
    examples = callback.eval_sizes["train"]
    return [f"{name}: LCA step {1000 * step:.1f} ms / two forward+backward passes {1000 * floor:.1f} ms over "
            f"{examples:,} examples = {step / floor:.2f}; {peak_memory(device)}"]  # fmt: skip


class Throughput(pl.Callback):
    """Training samples per second over the batches after ``warmup``; written as JSON to ``path`` (rank 0)
    when given."""

    def __init__(self, warmup: int = 3, path: str | None = None) -> None:
        self.warmup = warmup
        self.path = path
        self.times: list[float] = []
        self.samples = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        synchronize(pl_module.device)
        self.times.append(time.perf_counter())
        if len(self.times) > self.warmup + 1:
            self.samples += len(batch[0]) * trainer.world_size

    def samples_per_second(self) -> float:
        return self.samples / (self.times[-1] - self.times[self.warmup])

    def on_train_end(self, trainer, pl_module) -> None:
        if self.path and trainer.is_global_zero:
            Path(self.path).write_text(json.dumps({"samples_per_second": self.samples_per_second()}))


def precision_speed(name: str, case: Case, data: list[str], device: str, steps: int) -> list[str]:
    speeds = {}
    for precision in ("32", "bf16-mixed"):
        meter = Throughput()
        fit(
            build(case, data, device, f"--trainer.max_steps={steps}", f"--trainer.precision={precision}"),
            [meter],
        )
        speeds[precision] = meter.samples_per_second()
    return [f"{name}: training {speeds['32']:,.0f} samples/s at precision 32, {speeds['bf16-mixed']:,.0f} at "
            f"bf16-mixed ({speeds['bf16-mixed'] / speeds['32']:.2f}x)"]  # fmt: skip


def ddp_speed(name: str, case: Case, data: list[str], steps: int) -> list[str]:
    gpus = torch.cuda.device_count()
    speeds = {}
    for devices in (1, gpus):
        path = Path(tempfile.mkdtemp()) / "throughput.json"
        config = str(ROOT / "configs" / f"{case.config}.yaml")
        command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", config,
                   *QUIET, *case.extra, *data, "--trainer.accelerator=gpu", f"--trainer.devices={devices}",
                   "--trainer.strategy=ddp", f"--trainer.max_steps={steps}",
                   "--trainer.callbacks+=bench.gpu_check.Throughput",
                   f"--trainer.callbacks.path={path}"]  # fmt: skip
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        speeds[devices] = json.loads(path.read_text())["samples_per_second"]
    return [f"{name}: DDP {speeds[1]:,.0f} samples/s on 1 GPU, {speeds[gpus]:,.0f} on {gpus} "
            f"({speeds[gpus] / speeds[1]:.2f}x)"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny data and few steps (checks the script)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: no CUDA device is visible; run with --device cpu to check the script itself")
    steps = 3 if args.quick else 6
    root = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    os.chdir(root)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "CPU"
    print(f"{device_name}, torch {torch.__version__}, {torch.cuda.device_count()} GPU(s)", flush=True)
    started, lines, written = time.perf_counter(), [], {}
    for name in args.cases:
        case = CASES[name]
        if args.quick:
            case = replace(case, check_size=min(case.check_size, 64), chunk_size=min(case.chunk_size, 32))
        if case.data not in written:
            written[case.data] = write_data(case.data, root, args.quick)
        data = written[case.data]
        lines += check_correctness(name, case, data, args.device, steps)
        if name == "ResNet-20":
            lines += check_storages(name, case, data, args.device, steps)
        lines += lca_cost(name, case, data, args.device, steps + 2, args.quick)
        lines += precision_speed(name, case, data, args.device, steps + 4)
        if args.device == "cuda" and torch.cuda.device_count() > 1 and name == "ResNet-20":
            lines += ddp_speed(name, case, data, steps + 4)
        print("\n".join(lines[-4:]), flush=True)
    print(f"\n{device_name}: {time.perf_counter() - started:.0f} s")
    print("\n".join(lines))
    failed = [line for line in lines if line.startswith("FAIL")]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
