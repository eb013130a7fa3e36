"""Callbacks on a model that Lightning moves and converts after their ``setup``: what a GPU, a precision
or SyncBatchNorm changes, emulated on CPU (``precision="64-true"`` converts the module in
``strategy.setup``; a callback replacing every buffer does what ``.to(device)`` does)."""

import copy
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from callbacks.activations import ActivationCallback
from callbacks.attribution import AttributionCallback
from callbacks.embeddings import EmbeddingCallback
from callbacks.lca import LossChangeAllocation
from callbacks.lca.store import LCARun
from datamodules.mnist import MNISTDataModule
from lightning_app.errors import UserInputError
from models.classification import ClassificationModule
from models.nets.fc import FullyConnected
from models.nets.lenet_keras import LeNetKeras
from models.nets.resnet_cifar import ResNetCIFAR
from tests.lca_support import CountingEvaluator, ParameterTrail

ROOT = Path(__file__).parents[1]
QUIET = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False, "limit_val_batches": 0}


def plain_loss_and_gradient(net, theta, inputs, labels, chunk_size, batch_stats):
    """The mean cross-entropy over ``inputs`` and its gradient by plain autograd on a copy of ``net``
    holding ``theta``; batch norm on each chunk's statistics when ``batch_stats``, else running ones."""
    net = copy.deepcopy(net)
    vector_to_parameters(theta, net.parameters())
    net.train(batch_stats)
    total = 0.0
    for x, y in zip(inputs.split(chunk_size), labels.split(chunk_size), strict=True):
        loss = torch.nn.functional.cross_entropy(net(x), y, reduction="sum") / len(labels)
        loss.backward()
        total += float(loss)
    return total, parameters_to_vector(p.grad for p in net.parameters())


def eval_set(data: MNISTDataModule, size: int, dtype: torch.dtype):
    subset = data.evaluation_subset("train", size=size, seed=0)
    inputs, labels = zip(*(subset[i] for i in range(len(subset))), strict=True)
    return torch.stack(inputs).to(dtype), torch.stack(labels)


# ------------------------------------------------------------------ precision converts the module after setup
@pytest.mark.parametrize(
    ("net", "per_class", "batch_stats"),
    [(FullyConnected, True, False), (lambda: ResNetCIFAR(in_channels=1), False, True)],
    ids=["fc", "resnet20_batch_norm"],
)
def test_lca_under_64_true_equals_a_float64_recomputation(net, per_class, batch_stats):
    lca = LossChangeAllocation(eval_size=120, chunk_size=50, per_class=per_class, report=False)
    trail = ParameterTrail()
    module, data = ClassificationModule(net()), MNISTDataModule(source="sample", batch_size=32)
    pl.Trainer(precision="64-true", max_steps=3, callbacks=[lca, trail], **QUIET).fit(module, data)
    run = LCARun(Path("lca.h5"))
    inputs, labels = eval_set(data, 120, torch.float64)
    bounds = np.cumsum([0, *run.sizes])
    for step, (start, end) in enumerate(zip(trail.before, trail.after, strict=True)):
        assert start.dtype == torch.float64
        delta = end - start
        points = [start, start + 0.5 * delta, end]
        (loss_start, g0), (_, g_mid), (loss_end, g1) = (
            plain_loss_and_gradient(module.net, p, inputs, labels, 50, batch_stats) for p in points
        )
        lca_values = ((g0 + 4 * g_mid + g1) / 6 * delta).numpy()
        layer_lca = [lca_values[a:b].sum() for a, b in zip(bounds, bounds[1:], strict=False)]
        np.testing.assert_allclose(run.steps["loss_start"][step], loss_start, rtol=1e-9)
        np.testing.assert_allclose(run.steps["loss_end"][step], loss_end, rtol=1e-9)
        np.testing.assert_allclose(run.steps["lca_sum"][step], lca_values.sum(), rtol=1e-9)
        np.testing.assert_allclose(
            run.steps["layer_lca"][step], layer_lca, rtol=1e-9, atol=1e-12 * np.abs(layer_lca).max()
        )


# ------------------------------------------------------------------ buffers replaced after LCA was built
class ReplaceEveryBuffer(pl.Callback):
    """Replaces every buffer tensor of the model by a copy, as ``.to(device)`` does: when fit starts
    (after the callbacks before it) and before every training batch."""

    def on_fit_start(self, trainer, pl_module) -> None:
        pl_module._apply(lambda tensor: tensor.clone())

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        pl_module._apply(lambda tensor: tensor.clone())


def test_eval_mode_lca_reads_the_running_statistics_of_the_live_model():
    lca = LossChangeAllocation(eval_size=120, chunk_size=60, bn_mode="eval", per_class=False, report=False)
    module, data = ClassificationModule(ResNetCIFAR(in_channels=1)), MNISTDataModule(source="sample")
    pl.Trainer(max_steps=4, callbacks=[lca, ReplaceEveryBuffer()], **QUIET).fit(module, data)
    inputs, labels = eval_set(data, 120, torch.float32)
    module.eval()
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(module(inputs), labels)
    # the last step's end point: the final weights with the running statistics of the last batch
    assert LCARun(Path("lca.h5")).steps["loss_end"][-1] == pytest.approx(float(expected), rel=1e-5)


class CountingLCA(LossChangeAllocation):
    def on_fit_start(self, trainer, pl_module) -> None:
        super().on_fit_start(trainer, pl_module)
        self.evaluators[0] = CountingEvaluator(self.evaluators[0])


def test_eval_mode_rk4_reuses_the_end_point_when_the_running_statistics_stay():
    # momentum 0: training leaves the running statistics as they are, only the batch counter ticks
    lca = CountingLCA(eval_size=60, chunk_size=60, bn_mode="eval", per_class=False, report=False)
    module = ClassificationModule(ResNetCIFAR(in_channels=1, bn_momentum=0.0))
    pl.Trainer(max_steps=5, callbacks=[lca], **QUIET).fit(module, MNISTDataModule(source="sample"))
    assert lca.evaluators[0].calls == 3 + 2 * 4  # step 0: start, midpoint, end; then midpoint and end


# ------------------------------------------------------------------ a model moved during training
class ConvertToDouble(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == 1:
            pl_module.double()


def test_a_model_converted_during_training_is_named():
    lca = LossChangeAllocation(eval_size=60, report=False)
    module = ClassificationModule(FullyConnected())
    trainer = pl.Trainer(max_steps=5, callbacks=[lca, ConvertToDouble()], **QUIET)
    with pytest.raises(
        UserInputError,
        match=r"LossChangeAllocation: the model moved from cpu float32 to cpu float64 after fit started "
        r"\(step 2\); .* set them with trainer.accelerator and trainer.precision",
    ):
        trainer.fit(module, MNISTDataModule(source="sample"))


# ------------------------------------------------------------------ SyncBatchNorm under DDP
def fit_resnet(folder: Path, bn_mode: str, *extra: str) -> LCARun:
    folder.mkdir()
    command = [
        sys.executable, str(ROOT / "train.py"), "fit", "--config", str(ROOT / "configs/mnist_fc_lca.yaml"),
        "--model.net.class_path=models.nets.resnet_cifar.ResNetCIFAR", "--model.net.init_args.in_channels=1",
        "--model.net.init_args.blocks_per_stage=1",
        "--data.class_path=tests.lca_support.UnshuffledMNIST", "--data.init_args.source=sample",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.accelerator=cpu",
        "--trainer.precision=64-true",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.callbacks.init_args.eval_size=200", "--trainer.callbacks.init_args.chunk_size=50",
        "--trainer.callbacks.init_args.with_val=false", "--trainer.callbacks.init_args.per_class=false",
        f"--trainer.callbacks.init_args.bn_mode={bn_mode}", "--trainer.callbacks.init_args.report=false",
        *extra,
    ]  # fmt: skip
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return LCARun(folder / "runs" / "mnist_fc_lca" / "version_0" / "lca.h5")


@pytest.mark.parametrize("bn_mode", ["eval", "batch_stats"])
def test_sync_batch_norm_under_ddp_equals_one_process(tmp_path, bn_mode):
    single = fit_resnet(tmp_path / "single", bn_mode, "--data.init_args.batch_size=100")
    ddp = fit_resnet(
        tmp_path / "ddp", bn_mode, "--data.init_args.batch_size=50", "--trainer.devices=2",
        "--trainer.strategy=ddp", "--trainer.use_distributed_sampler=false", "--trainer.sync_batchnorm=true",
        "--trainer.callbacks+=tests.lca_support.EmulatedSyncBatchNorm",
    )  # fmt: skip
    assert ddp.attrs["world_size"] == 2
    for name in ("loss_start", "loss_end", "lca_sum", "layer_lca"):
        scale = np.abs(single.steps[name]).max()
        np.testing.assert_allclose(
            ddp.steps[name], single.steps[name], rtol=1e-7, atol=1e-9 * scale, err_msg=name
        )


# ------------------------------------------------------------------ inspection on a converted model
def test_inspection_callbacks_run_on_a_float64_model():
    attribution = AttributionCallback(
        methods={"Saliency": {}, "IntegratedGradients": {"n_steps": 8}, "LayerGradCam": {}},
        every_n_epochs=0,
    )
    activations = ActivationCallback(every_n_epochs=0)
    embedding = EmbeddingCallback(per_class=3, max_iter=250)
    data = MNISTDataModule(source="sample", batch_size=64)
    trainer = pl.Trainer(
        precision="64-true", max_steps=3, callbacks=[attribution, activations, embedding],
        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0, default_root_dir=".",
    )  # fmt: skip
    module = ClassificationModule(LeNetKeras())
    trainer.fit(module, data)
    assert next(module.parameters()).dtype == torch.float64
    assert set(attribution.sanity) == {"Saliency", "IntegratedGradients", "LayerGradCam"}
    assert all(np.isfinite(v) for results in attribution.sanity.values() for v in results.values())
    assert embedding.points.shape == (30, 2) and set(activations.dead_fractions) == {"net.conv1", "net.conv2"}
    events = EventAccumulator(trainer.logger.log_dir, size_guidance={"images": 0}).Reload()
    assert {"attribution/Saliency", "attribution/LayerGradCam", "embedding/tsne"} <= set(
        events.Tags()["images"]
    )


# ------------------------------------------------------------------ bring your own LightningModule
class OwnModule(pl.LightningModule):
    """A LightningModule written from scratch: the README's example of the callbacks' contract."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                       torch.nn.Linear(4 * 26 * 26, 10))  # fmt: skip
        self.criterion = torch.nn.CrossEntropyLoss()
        self.num_classes = 10

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.criterion(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_module_of_ones_own_works_with_every_callback():
    lca = LossChangeAllocation(eval_size=100, report=False)
    attribution = AttributionCallback(methods={"Saliency": {}, "LayerGradCam": {}}, every_n_epochs=0)
    trainer = pl.Trainer(
        max_steps=3, callbacks=[lca, attribution, ActivationCallback(every_n_epochs=0)],
        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0, default_root_dir=".",
    )  # fmt: skip
    trainer.fit(OwnModule(), MNISTDataModule(source="sample"))
    run = LCARun(Path(trainer.log_dir) / "lca.h5")
    assert len(run.steps["step"]) == 3 and run.class_names == [str(c) for c in range(10)]
    assert set(attribution.sanity) == {"Saliency", "LayerGradCam"}


def test_a_module_missing_part_of_the_contract_is_told_what():
    module = OwnModule()
    del module.num_classes
    trainer = pl.Trainer(max_steps=1, callbacks=[AttributionCallback()], **QUIET)
    with pytest.raises(
        UserInputError,
        match=r"AttributionCallback needs the LightningModule to provide criterion, num_classes, forward; "
        r"OwnModule lacks num_classes \(see callbacks.contracts.InspectableModule\)",
    ):
        trainer.fit(module, MNISTDataModule(source="sample"))


def test_bare_dataloaders_are_told_a_data_module_is_needed():
    loader = MNISTDataModule(source="sample").train_dataloader()
    trainer = pl.Trainer(max_steps=1, callbacks=[LossChangeAllocation()], **QUIET)
    with pytest.raises(
        UserInputError,
        match=r"LossChangeAllocation needs a data module; none was given \(pass a LightningDataModule",
    ):
        trainer.fit(OwnModule(), train_dataloaders=loader)
