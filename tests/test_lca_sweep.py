"""The LCA sweep: the sweep files and the summary table and grid of a sweep's runs."""

import csv
import json
import os
from pathlib import Path

import pytest

from callbacks.lca import LossChangeAllocation
from callbacks.lca.analysis import summary
from callbacks.lca.store import LCARun
from callbacks.lca.sweep_summary import COLUMNS
from lightning_app import report
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError
from lightning_app.sweep import main as sweep_main
from lightning_app.sweep import read_sweep

ROOT = Path(__file__).parents[1]
GRID = {(lr, bs) for lr in (0.1, 0.01, 0.001) for bs in (125, 250, 500)}


@pytest.mark.parametrize("name, base, epochs", [
    ("lca_mnist_fc_sweep", "lca_mnist_fc.yaml", 15),
    ("lca_mnist_fc_sample_sweep", "mnist_fc_lca.yaml", 2),
])  # fmt: skip
def test_the_sweep_files_hold_the_learning_rate_by_batch_size_grid(name, base, epochs):
    config, runs = read_sweep(ROOT / "configs" / f"{name}.yaml")  # read from the test's own folder
    assert config == ROOT / "configs" / base
    settings = {
        (run.override["model"]["init_args"]["optimizer"]["init_args"]["lr"],
         run.override["data"]["init_args"]["batch_size"])
        for run in runs
    }  # fmt: skip
    assert len(runs) == 9 and settings == GRID
    assert {run.override["trainer"]["max_epochs"] for run in runs} == {epochs}


def test_the_summary_table_equals_the_numbers_recomputed_from_each_store(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for lr, batch_size in [(0.1, 125), (0.1, 250), (0.01, 125), (0.01, 250)]:
        cli = cli_main([
            "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"),
            f"--trainer.default_root_dir={sweep / 'grid' / f'lr{lr}_bs{batch_size}'}",
            "--trainer.max_steps=4",
            "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            f"--model.init_args.optimizer.init_args.lr={lr}", f"--data.init_args.batch_size={batch_size}",
        ], run=False)  # fmt: skip
        cli.trainer.callbacks.append(LossChangeAllocation(eval_size=200, report=False))
        cli.trainer.fit(cli.model, cli.datamodule)
    report.main(["lca-sweep", str(sweep), "--json"])
    numbers = json.loads(capsys.readouterr().out)
    rows = {(row["lr"], row["batch_size"]): row for row in numbers["runs"]}
    assert set(rows) == {(0.1, 125), (0.1, 250), (0.01, 125), (0.01, 250)}
    for row in rows.values():
        expected = summary(LCARun(sweep / row["run"] / "lca.h5"))
        assert row["iterations"] == expected["iterations"] == 4
        assert row["helped_percent"] == pytest.approx(100 * expected["mean_helped_fraction"])
        assert row["helped_of_moved_percent"] == pytest.approx(100 * expected["mean_helped_fraction_nonzero"])
        assert row["conservation_error_percent"] == pytest.approx(100 * expected["conservation_rel_error"])
        assert row["final_loss"] == pytest.approx(expected["loss_end"])
    with open(numbers["table"]) as file:
        assert len(list(csv.DictReader(file))) == 4
    assert Path(numbers["figure"]).stat().st_size > 10_000
    report.main(["lca-sweep", str(sweep)])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].split() == list(COLUMNS)
    assert len(printed) == 1 + 4 + 2


def test_a_folder_without_lca_runs_is_refused_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match="error: no lca.h5 under .*: run the sweep first"):
        report.main(["lca-sweep", str(tmp_path)])
    with pytest.raises(SystemExit, match="error: .*missing is not a folder"):
        report.main(["lca-sweep", str(tmp_path / "missing")])


def write_sweep(folder: Path, base: str, variants: str) -> Path:
    path = folder / "sweeps" / "bad_cells.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(
        f"base: {base}\nstages:\n  - name: grid\n    settings: {{trainer.max_steps: 2, "
        f"trainer.limit_val_batches: 0, trainer.enable_progress_bar: false}}\n    variants:\n{variants}"
    )
    return path


def test_the_base_config_is_found_next_to_the_sweep_file(tmp_path):
    base = os.path.relpath(ROOT / "configs" / "mnist_fc_sample.yaml", tmp_path / "sweeps")
    config, runs = read_sweep(write_sweep(tmp_path, base, "      a: {trainer.max_epochs: 1}\n"))
    assert config.resolve() == ROOT / "configs" / "mnist_fc_sample.yaml" and runs[0].settings == {
        "trainer.max_steps": 2, "trainer.limit_val_batches": 0, "trainer.enable_progress_bar": False,
        "trainer.max_epochs": 1,
    }  # fmt: skip
    missing = write_sweep(tmp_path / "other", "configs/mnist_fc_sample.yaml", "      a: {}\n")
    with pytest.raises(UserInputError, match="base 'configs/mnist_fc_sample.yaml' is not a file next to the"):
        read_sweep(missing)


@pytest.mark.parametrize("variant, setting, error", [
    ("negative", "model.init_args.optimizer.init_args.lr=-1.0",
     "model.init_args.optimizer: Invalid learning rate: -1.0; fix its init_args"),
    ("text", "model.init_args.optimizer.init_args.lr='fast'", 'Parser key "lr"'),
])  # fmt: skip
def test_a_failing_cell_is_named_with_its_setting_and_the_fix(tmp_path, capfd, variant, setting, error):
    base = os.path.relpath(ROOT / "configs" / "mnist_fc_sample.yaml", tmp_path / "sweeps")
    lr = {"negative": "-1.0", "text": "fast"}[variant]
    path = write_sweep(
        tmp_path,
        base,
        f"      {variant}: {{model.init_args.optimizer.init_args.lr: {lr}, trainer.max_epochs: 7}}\n",
    )
    with pytest.raises(SystemExit) as exit_info:
        sweep_main([str(path)])
    message = str(exit_info.value)
    assert message.startswith(f"error: run grid/{variant} failed: ") and error in message
    assert (
        f"(the setting {setting} of stage 'grid', variant '{variant}'); fix it in {path} and rerun" in message
    )
    assert "Traceback" not in capfd.readouterr().err  # the run itself ends in one line too
