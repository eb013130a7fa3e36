"""LCA recomputed offline from a weight history equals the LCA recorded online."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import callbacks.lca.replay as replay_module
from callbacks.lca import LossChangeAllocation
from callbacks.lca.replay import load_row
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
    """``train.py fit``, 5 steps of the FC network with LCA (rk4, 300 training examples, 100 val, every
    second step's per-parameter lca, gradient and delta) and its weight history: the run folder."""
    root = tmp_path_factory.mktemp("history")
    callbacks = (
        "[{class_path: callbacks.lca.LossChangeAllocation, init_args: {eval_size: 300, with_val: true, "
        "val_size: 100, report: false, dense_every: 2, dense_fields: [lca, gradient, delta]}}, "
        "{class_path: callbacks.lca.WeightHistory}]"
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
        assert history["theta"].compression == "gzip" and history["theta"].fletcher32
        assert history["global_step"].fletcher32 and history["theta"].dtype == np.float32


def test_replay_with_the_runs_settings_reproduces_the_online_records(recorded, tmp_path, capsys):
    report.main(["lca-replay", str(recorded), "--out", str(tmp_path / "replayed")])
    assert "replayed LCA: " in capsys.readouterr().out
    replayed, online = LCARun(tmp_path / "replayed" / "lca.h5"), LCARun(recorded / "lca.h5")
    assert_same_records(replayed, online)
    np.testing.assert_allclose(replayed.val["lca_sum"], online.val["lca_sum"], rtol=1e-6)
    np.testing.assert_allclose(replayed.totals["lca"], online.totals["lca"], rtol=1e-6, atol=1e-12)
    for field in ("lca", "gradient", "delta", "val_lca", "val_gradient"):
        (replayed_steps, replayed_values), (online_steps, online_values) = (
            run.dense(field) for run in (replayed, online)
        )
        assert replayed_steps.tolist() == online_steps.tolist() == [0, 2, 4]
        scale = np.abs(online_values).max()
        np.testing.assert_allclose(replayed_values, online_values, rtol=1e-5, atol=1e-6 * scale)
    assert not (tmp_path / "replayed" / "lca.partial.h5").exists()


def test_replay_flags_choose_the_dense_records(recorded, tmp_path):
    out = tmp_path / "gradients"
    report.main(
        ["lca-replay", str(recorded), "--dense-every", "1", "--dense-fields", "gradient", "--out", str(out)]
    )
    replayed = LCARun(out / "lca.h5")
    steps, gradient = replayed.dense("gradient")
    assert steps.tolist() == [0, 1, 2, 3, 4] and gradient.shape == (5, 84_060)
    assert replayed.attrs["dense_fields"] == ["gradient", "val_gradient"]
    report.main(["lca-replay", str(recorded), "--dense-every", "0", "--out", str(tmp_path / "none")])
    assert not LCARun(tmp_path / "none" / "lca.h5").has_dense
    with pytest.raises(SystemExit, match="dense_fields \\['hessian'\\] must be one or more of"):
        report.main(
            ["lca-replay", str(recorded), "--dense-fields", "hessian", "--out", str(tmp_path / "bad")]
        )
    assert not (tmp_path / "bad").exists()


def damaged_copy(recorded: Path, tmp_path: Path, damage) -> Path:
    """A copy of the run folder whose weights.h5 ``damage(path)`` changed."""
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "lca.h5", "weights.h5"):
        shutil.copy(recorded / name, run / name)
    damage(run / "weights.h5")
    return run


def flip_row_3(path: Path) -> None:
    with h5py.File(path, "r") as history:
        chunk = history["theta"].id.get_chunk_info_by_coord((3, 0))
    with path.open("r+b") as file:
        file.seek(chunk.byte_offset + chunk.size // 2)
        byte = file.read(1)
        file.seek(-1, 1)
        file.write(bytes([byte[0] ^ 0xFF]))


def cut_in_half(path: Path) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    "damage, message",
    [
        (flip_row_3, "weights.h5 is damaged: row 3 of theta \\(6 rows\\) cannot be read"),
        (cut_in_half, "weights.h5 cannot be read \\(.*truncated.*\\): the weight history is damaged"),
    ],
    ids=["bit-flip", "truncated"],
)
def test_a_damaged_weight_history_is_refused_before_anything_is_written(recorded, tmp_path, damage, message):
    run = damaged_copy(recorded, tmp_path, damage)
    with pytest.raises(SystemExit, match=f"error: .*{message}.*nothing was replayed"):
        report.main(["lca-replay", str(run)])
    assert not (run / "lca_replay").exists()


def test_a_replay_that_stops_leaves_a_partial_store_not_a_complete_looking_one(
    recorded, tmp_path, monkeypatch
):
    def failing_load(module, history, row):
        if row == 3:
            raise RuntimeError("the machine went away")
        load_row(module, history, row)

    monkeypatch.setattr(replay_module, "load_row", failing_load)
    out = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="the machine went away"):
        replay_module.replay(recorded, out)
    assert (out / "lca.partial.h5").exists() and not (out / "lca.h5").exists()
    with pytest.raises(SystemExit, match="holds no lca.h5"):
        report.main(["lca", str(out)])


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


def test_a_float64_run_records_and_replays_in_float64(tmp_path):
    lca = LossChangeAllocation(
        eval_size=200, dense_every=1, dense_fields=["lca", "gradient", "delta"], report=False
    )
    cli = cli_main([
        "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_steps=3", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
        "--trainer.precision=64-true",
    ], run=False)  # fmt: skip
    cli.trainer.callbacks += [lca, WeightHistory()]
    cli.trainer.fit(cli.model, cli.datamodule)
    run_dir = Path(cli.trainer.log_dir)
    with h5py.File(run_dir / "weights.h5") as history:
        assert history["theta"].dtype == np.float64
        final = torch.nn.utils.parameters_to_vector(cli.model.parameters()).detach().numpy()
        np.testing.assert_array_equal(history["theta"][-1], final)
    online = LCARun(run_dir / "lca.h5")
    for name in ("neuron_lca", "trajectory_random", "trajectory_leaders", "class_layer_lca"):
        assert online.steps[name].dtype == np.float64, name
    _, values = online.dense("lca")
    _, gradient = online.dense("gradient")
    _, delta = online.dense("delta")
    assert values.dtype == gradient.dtype == delta.dtype == np.float64
    np.testing.assert_allclose(values, gradient * delta, rtol=1e-12, atol=1e-15 * np.abs(values).max())
    report.main(["lca-replay", str(run_dir), "--out", str(tmp_path / "replayed")])
    replayed = LCARun(tmp_path / "replayed" / "lca.h5")
    for name in ("lca_sum", "neuron_lca", "class_layer_lca"):
        np.testing.assert_allclose(replayed.steps[name], online.steps[name], rtol=1e-10, atol=1e-16)
