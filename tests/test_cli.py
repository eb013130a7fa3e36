import logging
import os
import sys
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from callbacks.lca.store import LCARun
from lightning_app.cli import cli_main, main
from models.classification import ClassificationModule

QUICKSTART = str(Path(__file__).parents[1] / "configs" / "quickstart.yaml")
PLAIN = str(
    Path(__file__).parents[1] / "configs" / "mnist_fc_sample.yaml"
)  # the quickstart without callbacks
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


class Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def quickstart_run(tmp_path_factory):
    """The README's quickstart, trained once: (the CLI object, its run folder, the messages it logged)."""
    folder = tmp_path_factory.mktemp("quickstart")
    cwd = os.getcwd()
    messages = Messages()
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["train.py"])
        os.chdir(folder)
        for logger in loggers:
            logger.addHandler(messages)
        try:
            cli = cli_main(["fit", "--config", QUICKSTART, *QUIET])
        finally:
            os.chdir(cwd)
            for logger in loggers:
                logger.removeHandler(messages)
    return cli, folder / "runs" / "quickstart" / "version_0", messages.lines


def scalars(run_dir: Path) -> dict[str, list[float]]:
    events = EventAccumulator(str(run_dir))
    events.Reload()
    return {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_quickstart_trains_offline_to_over_90_percent_and_writes_tensorboard_events(quickstart_run):
    _, run_dir, _ = quickstart_run
    logged = scalars(run_dir)
    assert len(logged["Validation/acc"]) == 10  # one value per epoch
    assert logged["Validation/acc"][-1] > 0.9
    assert logged["Training/loss_epoch"][-1] < logged["Training/loss_epoch"][0]
    assert {"Training/loss_step", "Training/acc", "Validation/loss", "Validation/acc_top5"} <= set(logged)
    # capitals sort first in TensorBoard: the module's curves open before the callbacks' groups
    groups = sorted({tag.split("/")[0] for tag in logged})
    assert groups[:2] == ["Training", "Validation"] and not any(g.startswith("train") for g in groups)


def test_quickstart_shows_the_product_lca_report_attributions_and_where_to_look(quickstart_run):
    _, run_dir, messages = quickstart_run
    assert LCARun(run_dir / "lca.h5").steps["step"].tolist() == list(range(800))
    assert {path.name for path in (run_dir / "lca_report").glob("*.png")} >= {
        "loss.png",
        "peaks.png",
        "neurons.png",
    }
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    assert any(tag.startswith("attribution/IntegratedGradients") for tag in events.Tags()["images"])
    assert any(tag.startswith("lca_report/") for tag in events.Tags()["images"])
    assert f"LCA report: {run_dir.relative_to(run_dir.parents[2])}/lca_report/" in "\n".join(messages)
    assert any(
        line.endswith("look at it with: tensorboard --logdir runs/quickstart (the Interpretability tab: LCA, "
                      "attributions, feature visualisation, live explorer)")
        for line in messages
    )  # fmt: skip


def test_hparams_tab_shows_the_settings_that_tell_runs_apart_against_the_validation_accuracy(quickstart_run):
    _, run_dir, _ = quickstart_run
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()

    def plugin_data(tag: str) -> HParamsPluginData:
        return HParamsPluginData.FromString(events.SummaryMetadata(tag).plugin_data.content)

    started = plugin_data("_hparams_/session_start_info").session_start_info.hparams
    shown = {name: getattr(value, value.WhichOneof("kind")) for name, value in started.items()}
    assert shown == {
        "network": "FullyConnected", "optimizer": "SGD", "lr": 0.05, "batch_size": 50.0,
        "max_epochs": 10.0, "seed": 0.0, "data": "MNISTDataModule (sample)",
    }  # fmt: skip
    assert sorted(shown)[:5] == ["batch_size", "data", "lr", "max_epochs", "network"]  # TensorBoard's 5
    metrics = plugin_data("_hparams_/experiment").experiment.metric_infos
    assert [info.name.tag for info in metrics] == ["hp/val_acc"]
    accuracy = [event.value for event in events.Scalars("hp/val_acc")]
    assert accuracy == pytest.approx([event.value for event in events.Scalars("Validation/acc")])
    assert len(accuracy) == 10 and "hp_metric" not in events.Tags()["scalars"]


def test_run_folder_holds_the_resolved_config_the_versions_and_a_checkpoint(quickstart_run):
    _, run_dir, _ = quickstart_run
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["seed_everything"] == 0
    assert config["trainer"]["logger"]["init_args"] == {
        "save_dir": "runs", "name": "quickstart", "default_hp_metric": False,
    }  # fmt: skip
    assert config["model"]["init_args"]["net"]["class_path"] == "models.nets.fc.FullyConnected"
    assert config["data"]["init_args"]["source"] == "sample"
    versions = yaml.safe_load((run_dir / "versions.yaml").read_text())
    assert versions["torch"] == metadata.version("torch")
    assert versions["lightning"] == metadata.version("lightning")
    assert [path.name for path in (run_dir / "checkpoints").iterdir()] == ["epoch=9-step=800.ckpt"]


def test_checkpoint_loads_on_its_own_with_its_network(quickstart_run):
    cli, run_dir, _ = quickstart_run
    checkpoint = next((run_dir / "checkpoints").iterdir())
    loaded = ClassificationModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    trained = cli.model.eval()
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), trained(x))


def test_validate_test_and_predict_subcommands_run_from_a_checkpoint(quickstart_run):
    _, run_dir, _ = quickstart_run
    checkpoint = str(next((run_dir / "checkpoints").iterdir()))
    validated = cli_main(["validate", "--config", QUICKSTART, "--ckpt_path", checkpoint, *QUIET])
    assert validated.trainer.callback_metrics["val/acc"] == pytest.approx(
        scalars(run_dir)["Validation/acc"][-1]
    )
    tested = cli_main(["test", "--config", QUICKSTART, "--ckpt_path", checkpoint, *QUIET])
    assert tested.trainer.callback_metrics["test/acc"] > 0.88
    assert Path(tested.trainer.log_dir) == Path("runs/quickstart/version_1")
    predicted = cli_main(["predict", "--config", QUICKSTART, "--ckpt_path", checkpoint, *QUIET])
    probabilities = torch.cat(predicted.trainer.predict_loop.predictions)
    assert probabilities.shape == (500, 10)
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(500))


def short_fit(*overrides: str):
    args = ["fit", "--config", PLAIN, "--trainer.max_epochs=1", "--trainer.limit_train_batches=5"]
    return cli_main([*args, "--trainer.limit_val_batches=0", *QUIET, *overrides])


def test_command_line_overrides_and_the_seed_make_runs_reproducible():
    first, again, reseeded = short_fit(), short_fit(), short_fit("--seed_everything=1")
    assert first.trainer.global_step == 5
    assert [Path(cli.trainer.log_dir).name for cli in (first, again, reseeded)] == [
        "version_0", "version_1", "version_2",
    ]  # fmt: skip
    weights = [cli.model.net.fc1.weight for cli in (first, again, reseeded)]
    assert torch.equal(weights[0], weights[1])
    assert not torch.equal(weights[0], weights[2])


def test_runs_go_under_the_default_root_dir_when_one_is_given(tmp_path):
    cli = short_fit(f"--trainer.default_root_dir={tmp_path / 'elsewhere'}")
    assert Path(cli.trainer.log_dir) == tmp_path / "elsewhere" / "mnist_fc_sample" / "version_0"
    assert (tmp_path / "elsewhere" / "mnist_fc_sample" / "version_0" / "config.yaml").is_file()
    assert not Path("runs").exists()


def test_a_run_without_a_logger_writes_nothing_into_the_working_directory(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        cli = short_fit("--trainer.logger=false", "--trainer.enable_checkpointing=false")
    assert cli.trainer.global_step == 5
    assert sorted(p.name for p in Path.cwd().iterdir()) == []  # no config.yaml, no versions.yaml
    assert "this run has no run folder, so config.yaml and versions.yaml are not written" in caplog.text


def test_print_config_prints_the_resolved_config_with_overrides(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli_main(["fit", "--config", PLAIN, "--trainer.max_epochs=3", "--print_config"])
    assert exit_.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 3
    assert printed["model"]["init_args"]["optimizer"]["init_args"]["lr"] == 0.05


def run_main(monkeypatch, capsys, *args: str) -> tuple[int | str, str]:
    """``train.py fit`` on the plain quickstart with ``args``: (the exit code or message, stderr)."""
    monkeypatch.setattr(sys, "argv", ["train.py", "fit", "--config", PLAIN, *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err


def test_unknown_key_is_named_in_one_line(monkeypatch, capsys, tmp_path):
    code, err = run_main(monkeypatch, capsys, "--trainer.max_epochz=3")
    assert code == 2
    assert err.splitlines()[0] == "error: unrecognized arguments: --trainer.max_epochz=3"
    assert "usage:" not in err
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer:\n  max_epochz: 3\n")
    code, err = run_main(monkeypatch, capsys, "--config", str(typo))
    assert code == 2
    assert err.splitlines()[0] == "error: Subcommand 'fit' does not accept option 'trainer.max_epochz'"


def test_class_path_that_does_not_import_is_named(monkeypatch, capsys):
    code, err = run_main(monkeypatch, capsys, "--model.net.class_path=models.nets.nope.Net")
    first_line = err.splitlines()[0]
    assert code == 2
    assert first_line.startswith('error: Parser key "model"')
    assert "Problem with given class_path 'models.nets.nope.Net'" in first_line
    assert "NoneType" not in err


def test_missing_data_folder_ends_with_one_error_line(monkeypatch, capsys, tmp_path):
    message, err = run_main(monkeypatch, capsys, "--data.source=full", f"--data.data_dir={tmp_path}/none")
    # sys.exit(message) prints the message as the last line on stderr and exits with status 1
    assert message.startswith(f"error: MNIST files missing in {tmp_path}/none/MNIST/raw: ")
    assert "\n" not in message and "Traceback" not in err
