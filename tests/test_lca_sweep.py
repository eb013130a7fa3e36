"""The LCA sweep: the sweep files and the summary table and grid of a sweep's runs."""

import csv
import json
from pathlib import Path

import pytest

from callbacks.lca import LossChangeAllocation
from callbacks.lca.analysis import summary
from callbacks.lca.store import LCARun
from callbacks.lca.sweep_summary import COLUMNS
from lightning_app import report
from lightning_app.cli import cli_main
from lightning_app.sweep import read_sweep

ROOT = Path(__file__).parents[1]
GRID = {(lr, bs) for lr in (0.1, 0.01, 0.001) for bs in (125, 250, 500)}


@pytest.mark.parametrize("name, base, epochs", [
    ("lca_mnist_fc_sweep", "configs/lca_mnist_fc.yaml", 15),
    ("lca_mnist_fc_sample_sweep", "configs/mnist_fc_lca.yaml", 2),
])  # fmt: skip
def test_the_sweep_files_hold_the_learning_rate_by_batch_size_grid(name, base, epochs):
    config, runs = read_sweep(ROOT / "configs" / f"{name}.yaml")
    assert config == Path(base)
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
