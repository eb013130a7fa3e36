import csv
import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from callbacks.lca import LossChangeAllocation
from callbacks.lca.analysis import summary
from callbacks.lca.store import LCARun
from datamodules.mnist import MNISTDataModule
from lightning_app import report
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError
from models.classification import ClassificationModule
from models.nets.fc import FullyConnected
from tests.lca_support import CountingEvaluator

ROOT = Path(__file__).parents[1]
LCA_CONFIG = str(ROOT / "configs" / "mnist_fc_lca.yaml")
PLAIN = str(ROOT / "configs" / "mnist_fc_sample.yaml")
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


def lca_fit(*overrides: str, config: str = LCA_CONFIG):
    """``train.py fit`` on the LCA config with a small evaluation set unless overridden."""
    small = ["--trainer.callbacks.init_args.eval_size=300", "--trainer.callbacks.init_args.report=false"]
    return cli_main(["fit", "--config", config, *QUIET, *small, *overrides])


def bare_trainer(callback: pl.Callback, **kwargs) -> pl.Trainer:
    """A trainer with no logger, checkpoint, progress bar or validation; lca.h5 goes to the working folder."""
    quiet = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "limit_val_batches": 0,
    }
    return pl.Trainer(callbacks=[callback], **quiet, **kwargs)


def run_of(cli) -> LCARun:
    return LCARun(Path(cli.trainer.log_dir) / "lca.h5")


# ------------------------------------------------------------------ training untouched, exactness
@pytest.mark.parametrize(
    ("net", "lca_options"),
    [
        # dropout: a random draw by the callback would change the masks; per-class LCA through vmap
        (["--model.net.class_path=models.nets.lenet_lca.LeNetLCA"], []),
        # batch norm on batch statistics: running statistics must stay untouched
        (
            [
                "--model.net.class_path=models.nets.resnet_cifar.ResNetCIFAR",
                "--model.net.init_args.in_channels=1",
            ],
            ["--trainer.callbacks.init_args.per_class=false"],
        ),
    ],
)
def test_training_is_bit_identical_with_and_without_the_callback(net, lca_options):
    steps = ["--trainer.max_steps=6", "--trainer.limit_val_batches=0", *net]
    plain = cli_main(["fit", "--config", PLAIN, *QUIET, *steps])
    small = ["--trainer.callbacks.init_args.eval_size=120", "--trainer.callbacks.init_args.with_val=false"]
    with_lca = lca_fit(*steps, *small, *lca_options)
    assert run_of(with_lca).steps["step"].tolist() == list(range(6))
    pairs = zip(plain.model.state_dict().items(), with_lca.model.state_dict().items(), strict=True)
    for (name, a), (_, b) in pairs:
        assert torch.equal(a, b), name


def test_dense_gradients_and_deltas_recompute_the_lca_and_the_estimate_counts_them(caplog):
    fields = ["--trainer.callbacks.init_args.dense_every=2", "--trainer.callbacks.init_args.val_size=100"]
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        only_lca = lca_fit("--trainer.max_steps=4", "--trainer.limit_val_batches=0", *fields)
        everything = lca_fit(
            "--trainer.max_steps=4", "--trainer.limit_val_batches=0", *fields,
            "--trainer.callbacks.init_args.dense_fields=[lca, gradient, delta]",
        )  # fmt: skip
    run = run_of(everything)
    steps, lca = run.dense("lca")
    _, gradient = run.dense("gradient")
    _, delta = run.dense("delta")
    _, val_lca = run.dense("val_lca")
    _, val_gradient = run.dense("val_gradient")
    assert steps.tolist() == [0, 2] and lca.shape == (2, 84_060)
    scale = np.abs(lca).max()
    np.testing.assert_allclose(lca, gradient.astype(np.float64) * delta, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(val_lca, val_gradient.astype(np.float64) * delta, rtol=1e-5, atol=1e-6 * scale)
    np.testing.assert_allclose(lca.sum(axis=1), run.steps["lca_sum"][[0, 2]], rtol=1e-4)
    np.testing.assert_allclose(val_lca.sum(axis=1), run.val["lca_sum"][[0, 2]], rtol=1e-4)
    with pytest.raises(UserInputError, match="holds no dense 'gradient'; it holds \\['lca', 'val_lca'\\]"):
        run_of(only_lca).dense("gradient")
    estimates = [float(m) for m in re.findall(r"store ([\d,.]+) MiB for 4 steps", caplog.text)]
    dense_mib = 2 * 84_060 * 4 / 2**20  # two dense rows of one float32 vector
    assert estimates[1] - estimates[0] == pytest.approx(
        3 * dense_mib, abs=0.05
    )  # + gradient, delta, val_gradient
    with pytest.raises(
        UserInputError, match="dense_fields \\['hessian'\\] must be one or more of lca, gradient, delta"
    ):
        LossChangeAllocation(dense_every=2, dense_fields=["hessian"])
    with pytest.raises(UserInputError, match="dense_fields \\[\\] must be one or more of lca, gradient"):
        LossChangeAllocation(dense_every=2, dense_fields=[])
    with pytest.raises(UserInputError, match="are stored only with dense_every: k .*; set it, or leave"):
        LossChangeAllocation(dense_fields=["lca", "gradient"])


def test_trajectories_are_the_cumulative_lca_of_random_and_leading_parameters_per_layer():
    cli = lca_fit(
        "--trainer.max_steps=6", "--trainer.limit_val_batches=0",
        "--trainer.callbacks.init_args.dense_every=1", "--trainer.callbacks.init_args.eval_size=200",
    )  # fmt: skip
    run = run_of(cli)
    _, dense = run.dense()
    cumulative = np.cumsum(dense.astype(np.float64), axis=0)  # (steps, parameters)
    assert run.trajectory_layers == ["net.fc1", "net.fc2", "net.fc3"]
    assert run.trajectory_widths.tolist() == [50, 50, 50]
    index = run.random_index
    bounds = [0, 78_500, 78_500 + 5_050, 84_060]  # each layer's parameters, weight and bias
    assert all(bounds[n] <= i < bounds[n + 1] for n in range(3) for i in index[50 * n : 50 * (n + 1)])
    np.testing.assert_allclose(run.steps["trajectory_random"], cumulative[:, index], rtol=1e-5, atol=1e-9)
    leaders = run.steps["leader_index"]
    np.testing.assert_allclose(
        run.steps["trajectory_leaders"], np.take_along_axis(cumulative, leaders, axis=1), rtol=1e-5, atol=1e-9
    )
    for n in range(3):  # the leaders of the last step are the layer's 50 largest |cumulative LCA|
        layer = np.abs(cumulative[-1, bounds[n] : bounds[n + 1]])
        expected = set((np.argsort(-layer)[:50] + bounds[n]).tolist())
        assert set(leaders[-1, 50 * n : 50 * (n + 1)].tolist()) == expected


def test_streamed_records_equal_a_dense_recomputation():
    cli = lca_fit(
        "--trainer.max_steps=8",
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks.init_args.dense_every=1",
        "--trainer.callbacks.init_args.eval_size=200",
        "--trainer.callbacks.init_args.flush_every=3",
    )
    run = run_of(cli)
    steps, dense = run.dense()
    assert steps.tolist() == list(range(8)) and dense.shape == (8, 84_060)
    dense = dense.astype(np.float64)
    bounds = np.cumsum([0, *run.sizes])
    per_tensor = np.stack([dense[:, a:b].sum(1) for a, b in zip(bounds, bounds[1:], strict=False)], axis=1)
    np.testing.assert_allclose(run.steps["layer_lca"], per_tensor, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(run.steps["lca_sum"], dense.sum(1), rtol=1e-5)
    signs = [
        np.stack([(dense[:, a:b] < 0).sum(1), (dense[:, a:b] > 0).sum(1), (dense[:, a:b] == 0).sum(1)], 1)
        for a, b in zip(bounds, bounds[1:], strict=False)
    ]
    assert np.array_equal(run.steps["layer_counts"], np.stack(signs, axis=1))
    fc1_neurons = dense[:, :78_400].reshape(8, 100, 784).sum(2) + dense[:, 78_400:78_500]
    np.testing.assert_allclose(run.steps["neuron_lca"][:, :100], fc1_neurons, rtol=1e-4, atol=1e-12)
    # the dense records are float32: compare at float32's resolution of the largest values
    np.testing.assert_allclose(run.totals["lca"], dense.sum(0), rtol=1e-5, atol=1e-6 * np.abs(dense).max())
    assert np.array_equal(run.totals["helped"], (dense < 0).sum(0))
    assert np.array_equal(run.totals["hurt"], (dense > 0).sum(0))
    assert np.array_equal(run.totals["zero"], (dense == 0).sum(0))
    assert run.totals["histogram"].sum() == np.count_nonzero(dense) and run.totals["steps"] == 8
    class_sum = run.steps["class_layer_lca"].sum(axis=1)
    np.testing.assert_allclose(
        class_sum, run.steps["layer_lca"], rtol=1e-4, atol=1e-9
    )  # per class sums to all


@pytest.fixture(scope="module")
def lca_runs(tmp_path_factory):
    """configs/mnist_fc_lca.yaml as shipped (10 epochs, 800 steps) with each integrator:
    {integrator: (cli, run folder)}."""
    folder = tmp_path_factory.mktemp("lca")
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["train.py"])
        for integrator in ("rk4", "first_order", "adaptive"):
            cli = cli_main(["fit", "--config", LCA_CONFIG, *QUIET,
                            f"--trainer.callbacks.init_args.integrator={integrator}",
                            f"--trainer.callbacks.init_args.report={integrator == 'rk4'}"])  # fmt: skip
            runs[integrator] = (cli, folder / cli.trainer.log_dir)
    return runs


def test_rk4_conserves_the_loss_change_and_first_order_does_not(lca_runs):
    numbers = {name: summary(LCARun(run_dir / "lca.h5")) for name, (_, run_dir) in lca_runs.items()}
    rk4, first_order = numbers["rk4"], numbers["first_order"]
    assert rk4["iterations"] == 800 and rk4["integrator"] == "rk4"
    assert rk4["loss_change"] < -1.5  # the loss fell on the evaluation set
    assert rk4["conservation_rel_error"] < 2e-3  # 0.15% on this seed's data order
    assert first_order["conservation_rel_error"] > 100 * rk4["conservation_rel_error"]
    assert rk4["val_lca_sum"] == pytest.approx(rk4["val_loss_change"], rel=1e-2)
    assert 0.3 < rk4["mean_helped_fraction"] < rk4["mean_helped_fraction_nonzero"] < 0.8


def test_adaptive_keeps_every_step_within_its_tolerance(lca_runs):
    run = LCARun(lca_runs["adaptive"][1] / "lca.h5")
    for values in (run.steps, run.val):  # the tolerance holds on the train and the val set
        errors = values["loss_end"] - values["loss_start"] - values["lca_sum"]
        assert np.all((np.abs(errors) <= 1e-3) | (run.steps["splits"] == 32))
    assert set(np.unique(run.steps["splits"])) <= {2, 4, 8, 16, 32}


def test_tensorboard_holds_the_scalars_the_layer_chart_histograms_and_the_report(lca_runs):
    cli, run_dir = lca_runs["rk4"]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    expected = {
        "lca/loss_change",
        "lca/lca_sum",
        "lca/integration_error",
        "lca/fraction_helped",
        "lca_val/lca_sum",
    }
    assert expected <= set(tags["scalars"])
    assert not any(tag.startswith("lca_layer") for tag in tags["scalars"])  # the layers are runs
    assert len(events.Scalars("lca/lca_sum")) == 800
    assert "custom_scalars__config__" in tags["tensors"]
    assert {"lca_report/loss", "lca_report/helped_histograms", "lca_report/peaks"} <= set(tags["images"])
    assert [image.step for image in events.Images("lca_report/loss")] == [800]  # the run's last step


def test_each_layer_is_a_tensorboard_run_whose_scalars_match_the_store(lca_runs):
    _, run_dir = lca_runs["rk4"]
    run = LCARun(run_dir / "lca.h5")
    layers = sorted(p.name for p in (run_dir / "lca_layers").iterdir())
    assert layers == ["net.fc1", "net.fc2", "net.fc3"]  # one run per layer, weight and bias together
    for layer in layers:
        events = EventAccumulator(
            str(run_dir / "lca_layers" / layer), size_guidance={"scalars": 0, "histograms": 0}
        )
        events.Reload()
        tensors = [i for i, name in enumerate(run.names) if name.startswith(f"{layer}.")]
        step = events.Scalars("lca_layer/step")
        assert [e.step for e in step] == list(range(800))
        np.testing.assert_allclose(
            [e.value for e in step], run.steps["layer_lca"][:, tensors].sum(axis=1), rtol=1e-5, atol=1e-9
        )
        total = sum(run.totals["lca"][run.offsets[i] : run.offsets[i] + run.sizes[i]].sum() for i in tensors)
        last = events.Scalars("lca_layer/cumulative")[-1]
        assert last.step == 799 and last.value == pytest.approx(total, rel=1e-5, abs=1e-9)
        histograms = events.Histograms("lca_layer/per_parameter")
        assert [h.step for h in histograms] == list(range(0, 800, 25))  # 32 time slices
        assert histograms[0].histogram_value.num == sum(run.sizes[i] for i in tensors)


def test_tensorboard_holds_per_class_and_relative_error_scalars_that_match_the_store(lca_runs):
    _, run_dir = lca_runs["rk4"]
    run = LCARun(run_dir / "lca.h5")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    last = {tag: events.Scalars(tag)[-1] for tag in events.Tags()["scalars"]}
    class_sum = sum(last[f"lca_class/{name}"].value for name in run.class_names)
    assert class_sum == pytest.approx(
        run.steps["lca_sum"][-1], rel=1e-4, abs=1e-9
    )  # classes add up to the step
    steps = run.steps
    expected = 100 * abs(
        (steps["loss_end"] - steps["loss_start"] - steps["lca_sum"])
        / (steps["loss_end"] - steps["loss_start"])
    )
    logged = [event.value for event in events.Scalars("lca/integration_error_percent")]
    np.testing.assert_allclose(logged, expected, rtol=1e-4)


def test_report_command_writes_the_figures_and_prints_the_numbers(lca_runs, capsys):
    _, run_dir = lca_runs["rk4"]
    report.main(["lca", str(run_dir), "--json", "--compare", str(lca_runs["first_order"][1])])
    numbers = json.loads(capsys.readouterr().out)
    required = {
        "iterations",
        "parameters",
        "loss_change",
        "lca_sum",
        "conservation_rel_error",
        "mean_helped_fraction",
        "mean_helped_fraction_nonzero",
        "integrator",
    }
    assert required <= set(numbers) and numbers["parameters"] == 84_060
    assert (
        numbers["peak_moments"]["synchronised_peaks"]
        > numbers["peak_moments"]["synchronised_expected_under_shift"]
    )
    names = {
        "helped_histograms",
        "loss",
        "layers",
        "layers_cumulative",
        "helped_stacked",
        "all_values_histogram",
        "neurons",
        "peaks",
        "trajectories",
    }
    assert {Path(f).stem for f in numbers["figures"]} == names
    for name in names:
        assert (run_dir / "lca_report" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_command_names_a_run_without_a_store(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        report.main(["lca", str(tmp_path)])
    assert (
        exit_.value.code
        == f"error: {tmp_path} holds no lca.h5: was it trained with the LossChangeAllocation callback?"
    )


# ------------------------------------------------------------------ freezing
def test_a_layer_frozen_at_initialisation_never_moves_and_gets_zero_lca():
    freeze = ["--trainer.callbacks+=callbacks.freeze.FreezeLayers", "--trainer.callbacks.layers=[net.fc3]"]
    cli = lca_fit("--trainer.max_steps=5", "--trainer.limit_val_batches=0", *freeze)
    initial = cli_main(["--config", PLAIN], run=False).model  # the same seed: the initial weights
    assert torch.equal(cli.model.net.fc3.weight, initial.net.fc3.weight)
    assert not torch.equal(cli.model.net.fc1.weight, initial.net.fc1.weight)
    run = run_of(cli)
    fc3 = [run.names.index("net.fc3.weight"), run.names.index("net.fc3.bias")]
    assert np.all(run.steps["layer_lca"][:, fc3] == 0)
    assert np.all(run.steps["layer_counts"][:, fc3, 2] == np.array(run.sizes)[fc3])  # all zero


def test_a_layer_frozen_from_step_k_moves_until_then():
    freeze = [
        "--trainer.callbacks+=callbacks.freeze.FreezeLayers",
        "--trainer.callbacks.layers=[net.fc1]",
        "--trainer.callbacks.from_step=3",
    ]
    run = run_of(lca_fit("--trainer.max_steps=6", "--trainer.limit_val_batches=0", *freeze))
    fc1 = run.names.index("net.fc1.weight")
    assert np.all(run.steps["layer_lca"][:3, fc1] != 0) and np.all(run.steps["layer_lca"][3:, fc1] == 0)


def test_freezing_an_unknown_layer_lists_the_layers():
    freeze = ["--trainer.callbacks+=callbacks.freeze.FreezeLayers", "--trainer.callbacks.layers=[net.fc9]"]
    with pytest.raises(
        UserInputError, match="no layer 'net.fc9'; layers with parameters: net.fc1, net.fc2, net.fc3"
    ):
        lca_fit("--trainer.max_steps=1", *freeze)


# ------------------------------------------------------------------ bad input
def test_an_evaluation_set_larger_than_the_split_is_refused():
    with pytest.raises(
        UserInputError, match="an evaluation subset of 99999 images exceeds the 4000 of train"
    ):
        lca_fit("--trainer.max_steps=1", "--trainer.callbacks.init_args.eval_size=99999")


def test_a_store_path_that_cannot_be_written_is_named():
    with pytest.raises(UserInputError, match="cannot write the LCA store /etc/hostname/lca.h5"):
        lca_fit("--trainer.max_steps=1", "--trainer.callbacks.init_args.store_path=/etc/hostname/lca.h5")


def test_a_streamed_evaluation_set_records_what_a_resident_one_does():
    runs = {}
    for storage in ("device", "dataset"):
        cli = lca_fit(
            "--trainer.max_steps=3",
            "--trainer.limit_val_batches=0",
            "--trainer.callbacks.init_args.chunk_size=120",
            f"--trainer.callbacks.init_args.eval_storage={storage}",
        )
        callback = next(c for c in cli.trainer.callbacks if isinstance(c, LossChangeAllocation))
        assert [e.chunks.storage for e in callback.evaluators] == [storage, storage]
        runs[storage] = run_of(cli)
    for name, values in runs["device"].steps.items():
        np.testing.assert_array_equal(runs["dataset"].steps[name], values, err_msg=name)


def test_auto_storage_streams_a_set_larger_than_the_memory_cap():
    # 300 digits of 784 float32 values and their labels: 0.9 MiB
    cli = lca_fit("--trainer.max_steps=1", "--trainer.callbacks.init_args.eval_memory_cap_mib=0.5")
    callback = next(c for c in cli.trainer.callbacks if isinstance(c, LossChangeAllocation))
    assert callback.evaluators[0].chunks.storage == "dataset"


def test_a_set_that_does_not_fit_with_streaming_off_is_refused():
    with pytest.raises(
        UserInputError,
        match=r"the LCA evaluation set needs 1 MiB in torch.float32 but eval_memory_cap_mib allows 0 MiB on "
        r"device \(cpu\): set eval_storage to dataset or auto",
    ):
        lca_fit(
            "--trainer.max_steps=1",
            "--trainer.callbacks.init_args.eval_storage=device",
            "--trainer.callbacks.init_args.eval_memory_cap_mib=0.1",
        )


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"chunk_size": 0}, "LCA chunk_size=0 must be a positive number of examples"),
        ({"eval_storage": "disk"}, "LCA eval_storage 'disk' is not one of auto, device, host, dataset"),
        ({"eval_memory_cap_mib": -1}, "LCA eval_memory_cap_mib=-1 must be positive"),
        ({"eval_workers": -1}, "LossChangeAllocation.eval_workers=-1 must be 0 or more"),
    ],
)
def test_bad_evaluation_options_are_named(option, message):
    with pytest.raises(UserInputError, match=message):
        LossChangeAllocation(**option)


class NoCriterion(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(784, 10)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_model_without_a_criterion_is_refused():
    trainer = bare_trainer(LossChangeAllocation(), max_steps=1)
    with pytest.raises(
        UserInputError,
        match="LossChangeAllocation needs the LightningModule to provide criterion, num_classes, forward; "
        "NoCriterion lacks criterion, num_classes",
    ):
        trainer.fit(NoCriterion(), datamodule=MNISTDataModule(source="sample"))


def test_bad_integrator_and_bn_mode_are_refused():
    with pytest.raises(UserInputError, match="integrator 'euler' is not one of first_order, rk4, adaptive"):
        LossChangeAllocation(integrator="euler")
    with pytest.raises(UserInputError, match="bn_mode 'train'"):
        LossChangeAllocation(bn_mode="train")


class PoisonedEvaluator(CountingEvaluator):
    """An evaluator whose sixth evaluation (the end point of step 2: step 0 evaluates the start, end and
    midpoint, later steps the end and midpoint) returns a NaN loss."""

    def __call__(self, theta):
        result = super().__call__(theta)
        if self.calls == 6:
            result.loss = result.loss * float("nan")
        return result


class PoisonedLCA(LossChangeAllocation):
    def on_fit_start(self, trainer, pl_module):
        super().on_fit_start(trainer, pl_module)
        self.evaluators[0] = PoisonedEvaluator(self.evaluators[0])


def test_a_non_finite_lca_loss_marks_the_step_invalid_and_training_goes_on():
    trainer = bare_trainer(PoisonedLCA(eval_size=100, report=False), max_steps=5)
    from models.classification import ClassificationModule
    from models.nets.fc import FullyConnected

    with pytest.warns(UserWarning, match="LCA step 2: the LCA loss or its gradient is not finite"):
        trainer.fit(ClassificationModule(FullyConnected()), datamodule=MNISTDataModule(source="sample"))
    run = LCARun(Path("lca.h5"))
    assert run.steps["valid"].tolist() == [1, 1, 0, 1, 1]
    assert run.totals["steps"] == 4 and trainer.global_step == 5
    assert np.isfinite(run.steps["lca_sum"][3])  # the next step started from a fresh evaluation


def test_lca_scalars_reach_a_logger_other_than_tensorboard():
    logger = CSVLogger(".")
    trainer = pl.Trainer(
        callbacks=[LossChangeAllocation(eval_size=100, report=False)], logger=logger, max_steps=4,
        enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0,
    )  # fmt: skip
    trainer.fit(ClassificationModule(FullyConnected()), datamodule=MNISTDataModule(source="sample"))
    with open(Path(logger.log_dir) / "metrics.csv") as file:
        rows = [row for row in csv.DictReader(file) if row["lca/lca_sum"]]
    assert [int(row["step"]) for row in rows] == [0, 1, 2, 3]
    run = LCARun(Path(logger.log_dir) / "lca.h5")
    np.testing.assert_allclose([float(row["lca/lca_sum"]) for row in rows], run.steps["lca_sum"], rtol=1e-6)
    fc3 = [i for i, name in enumerate(run.names) if name.startswith("net.fc3.")]  # weight + bias
    np.testing.assert_allclose(
        [float(row["lca_layer/net.fc3"]) for row in rows],
        run.steps["layer_lca"][:, fc3].sum(axis=1),
        rtol=1e-5,
    )


def test_a_checkpoint_saved_after_fit_holds_the_running_totals():
    lca = LossChangeAllocation(eval_size=100, report=False)
    trainer = bare_trainer(lca, max_steps=3)
    trainer.fit(ClassificationModule(FullyConnected()), datamodule=MNISTDataModule(source="sample"))
    trainer.save_checkpoint("after.ckpt")
    state = torch.load("after.ckpt", weights_only=False)["callbacks"]["LossChangeAllocation"]
    assert state["position"] == 3 and state["totals"]["steps"] == 3
    np.testing.assert_array_equal(state["totals"]["lca"].numpy(), LCARun(Path("lca.h5")).totals["lca"])


class ReadStoreDuringTraining(pl.Callback):
    def __init__(self) -> None:
        self.rows_seen = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 7:
            self.rows_seen = len(LCARun(Path(trainer.log_dir) / "lca.h5").steps["step"])


def test_the_store_is_readable_while_training_runs():
    reader = ReadStoreDuringTraining()
    cli = cli_main(
        [
            "--config",
            LCA_CONFIG,
            *QUIET,
            "--trainer.max_steps=8",
            "--trainer.callbacks.init_args.flush_every=3",
            "--trainer.callbacks.init_args.eval_size=100",
            "--trainer.callbacks.init_args.report=false",
        ],
        run=False,
    )
    cli.trainer.callbacks.append(reader)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert reader.rows_seen == 6  # flushed at steps 3 and 6


# ------------------------------------------------------------------ DDP
def test_ddp_records_equal_a_single_process_run(tmp_path):
    common = [
        "--data.class_path=tests.lca_support.UnshuffledMNIST",
        "--data.init_args.source=sample",
        "--trainer.max_steps=6",
        "--trainer.limit_val_batches=0",
        "--trainer.callbacks.init_args.eval_size=400",
        "--trainer.callbacks.init_args.chunk_size=100",
        "--trainer.callbacks.init_args.report=false",
        "--trainer.accelerator=cpu",
        *QUIET,
    ]
    runs = {}
    for name, extra in (
        ("single", ["--data.init_args.batch_size=100"]),
        (
            "ddp",
            [
                "--data.init_args.batch_size=50",
                "--trainer.devices=2",
                "--trainer.strategy=ddp",
                "--trainer.use_distributed_sampler=false",
            ],
        ),
    ):
        (tmp_path / name).mkdir()
        command = [sys.executable, str(ROOT / "train.py"), "fit", "--config", LCA_CONFIG, *common, *extra]
        result = subprocess.run(command, cwd=tmp_path / name, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = LCARun(tmp_path / name / "runs" / "mnist_fc_lca" / "version_0" / "lca.h5")
    single, ddp = runs["single"], runs["ddp"]
    assert ddp.attrs["world_size"] == 2 and single.attrs["world_size"] == 1
    for name in ("loss_start", "loss_end", "lca_sum", "layer_lca", "class_layer_lca", "neuron_lca"):
        scale = np.abs(single.steps[name]).max()
        np.testing.assert_allclose(
            ddp.steps[name], single.steps[name], rtol=1e-5, atol=1e-5 * scale, err_msg=name
        )
    np.testing.assert_allclose(
        ddp.totals["lca"], single.totals["lca"], rtol=1e-5, atol=1e-5 * np.abs(single.totals["lca"]).max()
    )


# ------------------------------------------------------------------ the shipped LCA configs
@pytest.mark.parametrize(
    ("config", "chunk_size", "per_class"),
    [("lca_mnist_fc", 11000, True), ("lca_mnist_lenet", 11000, True), ("lca_cifar10_allcnn", 5000, False),
     ("lca_cifar10_resnet20", 5000, False), ("lca_cifar10_resnet20_freeze_last", 5000, False)],
)  # fmt: skip
def test_the_paper_lca_configs_compute_lca_as_the_reference(config, chunk_size, per_class):
    cli = cli_main(["--config", str(ROOT / "configs" / f"{config}.yaml")], run=False)
    lca = next(c for c in cli.trainer.callbacks if isinstance(c, LossChangeAllocation))
    assert (lca.integrator, lca.tolerance, lca.max_splits, lca.eval_size) == ("adaptive", 1e-3, 32, None)
    assert (lca.with_val, lca.chunk_size, lca.bn_mode, lca.per_class) == (
        True,
        chunk_size,
        "batch_stats",
        per_class,
    )
    frozen = [c.layers for c in cli.trainer.callbacks if type(c).__name__ == "FreezeLayers"]
    assert frozen == ([["net.fc"]] if config.endswith("freeze_last") else [])


def test_the_freezing_experiment_runs_and_the_report_compares_it(tmp_path, capsys):
    from tests.fake_data import write_cifar10

    write_cifar10(tmp_path / "data", per_batch=20, test=10)
    # small steps, so that adaptive integration needs no refinement: this test is about freezing
    small = ["--data.data_dir=" + str(tmp_path / "data"), "--data.val_size=10", "--data.batch_size=30",
             "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--model.optimizer.init_args.lr=0.001",
             *QUIET]  # fmt: skip
    runs = []
    for config in ("lca_cifar10_resnet20", "lca_cifar10_resnet20_freeze_last"):
        cli = cli_main(["fit", "--config", str(ROOT / "configs" / f"{config}.yaml"), *small])
        runs.append(Path(cli.trainer.log_dir))
    frozen = LCARun(runs[1] / "lca.h5")
    fc = [frozen.names.index("net.fc.weight"), frozen.names.index("net.fc.bias")]
    assert np.all(frozen.steps["layer_lca"][:, fc] == 0)
    assert np.all(LCARun(runs[0] / "lca.h5").steps["layer_lca"][:, fc] != 0)
    report.main(["lca", str(runs[0]), "--compare", str(runs[1])])
    assert "conservation error" in capsys.readouterr().out
    assert (runs[0] / "lca_report" / "layers.png").is_file()


# ------------------------------------------------------------------ one record per real parameter update
def test_gradient_accumulation_gives_one_record_per_optimizer_step():
    cli = lca_fit(
        "--trainer.max_steps=4", "--trainer.accumulate_grad_batches=3", "--trainer.limit_val_batches=0"
    )
    run = run_of(cli)
    assert cli.trainer.global_step == 4 and run.steps["step"].tolist() == [0, 1, 2, 3]
    assert run.steps["global_step"].tolist() == [1, 2, 3, 4]
    # each record spans one whole update of three accumulated batches: it starts where the last ended
    # and its LCA adds up to its loss change
    np.testing.assert_array_equal(run.steps["loss_start"][1:], run.steps["loss_end"][:-1])
    changes = run.steps["loss_end"] - run.steps["loss_start"]
    np.testing.assert_allclose(run.steps["lca_sum"], changes, rtol=0.02)


class SkipsOneStep(ClassificationModule):
    """Runs the closure but skips the update of batch 2, as AMP's gradient scaler does on an overflow."""

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None):
        if batch_idx == 2:
            optimizer_closure()
            return
        optimizer.step(closure=optimizer_closure)


def test_a_skipped_optimizer_step_is_not_recorded():
    trainer = bare_trainer(
        LossChangeAllocation(eval_size=100, report=False), max_epochs=1, limit_train_batches=5
    )
    trainer.fit(SkipsOneStep(FullyConnected()), datamodule=MNISTDataModule(source="sample"))
    run = LCARun(Path("lca.h5"))
    assert run.steps["step"].tolist() == [0, 1, 2, 3]  # four real updates of five optimizer_step calls
    assert run.steps["global_step"].tolist() == [1, 2, 4, 5]  # Lightning counts the skipped one too
    np.testing.assert_array_equal(run.steps["loss_start"][1:], run.steps["loss_end"][:-1])


def test_the_run_time_is_projected_once_after_the_first_steps(caplog):
    trainer = bare_trainer(LossChangeAllocation(eval_size=100, report=False), max_steps=9)
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        trainer.fit(ClassificationModule(FullyConnected()), datamodule=MNISTDataModule(source="sample"))
    lines = [r.getMessage() for r in caplog.records if "projected for the" in r.getMessage()]
    assert len(lines) == 1 and "projected for the 9 steps: LCA " in lines[0]
    lca, whole = (float(v) for v in re.findall(r"([\d.e+-]+) s a step, of ([\d.e+-]+) s in all", lines[0])[0])
    assert 0 < lca <= whole
