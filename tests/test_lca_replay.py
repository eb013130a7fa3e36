"""LCA recomputed offline from a weight history equals the LCA recorded online."""

from pathlib import Path

import h5py
import numpy as np
import pytest

from callbacks.lca import LossChangeAllocation
from callbacks.lca.store import LCARun
from callbacks.lca.weight_history import WeightHistory
from lightning_app import report
from lightning_app.cli import cli_main

ROOT = Path(__file__).parents[1]
COLUMNS = ("lca_sum", "loss_start", "loss_end", "layer_lca", "neuron_lca", "class_layer_lca")


def fc_run(root: Path, lca: LossChangeAllocation, history: bool) -> Path:
    cli = cli_main([
        "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), f"--trainer.default_root_dir={root}",
        "--trainer.max_steps=5", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
    ], run=False)  # fmt: skip
    cli.trainer.callbacks += [lca, WeightHistory()] if history else [lca]
    cli.trainer.fit(cli.model, cli.datamodule)
    return Path(cli.trainer.log_dir)


def assert_same_records(replayed: LCARun, online: LCARun) -> None:
    for name in COLUMNS:
        np.testing.assert_allclose(replayed.steps[name], online.steps[name], rtol=1e-6, atol=1e-12)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """``train.py fit``, 5 steps of the FC network with LCA (rk4, 300 training examples, 100 val) and its
    weight history: the run folder."""
    root = tmp_path_factory.mktemp("history")
    callbacks = (
        "[{class_path: callbacks.lca.LossChangeAllocation, init_args: {eval_size: 300, with_val: true, "
        "val_size: 100, report: false}}, {class_path: callbacks.lca.WeightHistory}]"
    )
    cli = cli_main([
        "fit", "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"),
        f"--trainer.default_root_dir={root}", "--trainer.max_steps=5", "--trainer.limit_val_batches=0",
        "--trainer.enable_progress_bar=false", f"--trainer.callbacks={callbacks}",
    ])  # fmt: skip
    return Path(cli.trainer.log_dir)


def test_the_weight_history_holds_every_step(recorded):
    with h5py.File(recorded / "weights.h5") as history:
        assert history["theta"].shape == (6, 84_060) and history["global_step"][()].tolist() == [
            0,
            1,
            2,
            3,
            4,
            5,
        ]
        assert history["theta"].compression == "gzip"


def test_replay_with_the_runs_settings_reproduces_the_online_records(recorded, tmp_path, capsys):
    report.main(["lca-replay", str(recorded), "--out", str(tmp_path / "replayed")])
    assert "replayed LCA: " in capsys.readouterr().out
    replayed, online = LCARun(tmp_path / "replayed" / "lca.h5"), LCARun(recorded / "lca.h5")
    assert_same_records(replayed, online)
    np.testing.assert_allclose(replayed.val["lca_sum"], online.val["lca_sum"], rtol=1e-6)
    np.testing.assert_allclose(replayed.totals["lca"], online.totals["lca"], rtol=1e-6, atol=1e-12)


def test_replay_with_another_integrator_and_set_gives_what_an_online_run_with_them_gives(recorded, tmp_path):
    settings = {"integrator": "first_order", "eval_split": "val", "eval_size": 200}
    online = fc_run(
        tmp_path / "online", LossChangeAllocation(**settings, with_val=False, report=False), False
    )
    report.main([
        "lca-replay", str(recorded), "--integrator", "first_order", "--eval-split", "val",
        "--eval-size", "200", "--out", str(tmp_path / "replayed"),
    ])  # fmt: skip
    replayed = LCARun(tmp_path / "replayed" / "lca.h5")
    assert replayed.attrs["integrator"] == "first_order" and replayed.attrs["eval_split"] == "val"
    assert_same_records(replayed, LCARun(online / "lca.h5"))


def test_replay_needs_a_weight_history(tmp_path):
    run = fc_run(tmp_path, LossChangeAllocation(eval_size=100, report=False), history=False)
    with pytest.raises(
        SystemExit, match="error: .* has no weights.h5: replay needs a run trained with the WeightHistory"
    ):
        report.main(["lca-replay", str(run)])


def test_the_replayable_config_records_the_weight_history(tmp_path):
    config = str(ROOT / "configs" / "mnist_fc_lca_replayable.yaml")
    cli = cli_main(["--config", config, f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert {"LossChangeAllocation", "WeightHistory"} <= {type(c).__name__ for c in cli.trainer.callbacks}
