"""Per-layer optimizer settings: parameter groups by name pattern, with LCA."""

from pathlib import Path

import numpy as np
import pytest
import torch

from callbacks.lca import LossChangeAllocation
from callbacks.lca.store import LCARun
from lightning_app.cli import cli_main
from lightning_app.errors import UserInputError

ROOT = Path(__file__).parents[1]
GROUPS = '[{params: "net.fc3.*", lr: 0.0}, {params: "net.fc1.*", momentum: 0.5, weight_decay: 0.001}]'


def fc_cli(root: Path, groups: str, *extra: str):
    return cli_main(
        [
            "--config", str(ROOT / "configs" / "mnist_fc_sample.yaml"), f"--trainer.default_root_dir={root}",
            "--trainer.max_steps=6", "--trainer.limit_val_batches=0", "--trainer.enable_progress_bar=false",
            "--model.init_args.optimizer=torch.optim.SGD", "--model.init_args.optimizer.init_args.lr=0.05",
            "--model.init_args.optimizer.init_args.momentum=0.9", f"--model.init_args.param_groups={groups}",
            *extra,
        ],
        run=False,
    )  # fmt: skip


def test_a_group_with_lr_0_never_moves_and_gets_zero_lca_and_a_group_keeps_its_momentum(tmp_path):
    cli = fc_cli(tmp_path, GROUPS)
    cli.trainer.callbacks.append(LossChangeAllocation(eval_size=200, report=False))
    before = {name: p.detach().clone() for name, p in cli.model.named_parameters()}
    cli.trainer.fit(cli.model, cli.datamodule)
    after = dict(cli.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in ("net.fc3.weight", "net.fc3.bias"))
    assert not torch.equal(before["net.fc1.weight"], after["net.fc1.weight"])
    groups = cli.trainer.optimizers[0].param_groups
    assert [(g["lr"], g["momentum"], g["weight_decay"]) for g in groups] == [
        (0.0, 0.9, 0.0), (0.05, 0.5, 0.001), (0.05, 0.9, 0.0),
    ]  # fmt: skip
    assert [len(g["params"]) for g in groups] == [2, 2, 2]  # fc3, fc1, and the rest (fc2)
    run = LCARun(Path(cli.trainer.log_dir) / "lca.h5")
    fc3 = [i for i, name in enumerate(run.names) if name.startswith("net.fc3.")]
    assert np.all(run.steps["layer_lca"][:, fc3] == 0) and run.steps["layer_lca"][:, 0].any()


@pytest.mark.parametrize(
    "groups, message",
    [
        ('[{params: "net.fc9.*", lr: 0.0}]', r"params 'net.fc9.\*' matches no parameter .* net.fc1.weight"),
        ("[{lr: 0.0}]", r"param_groups\[0\] needs params: a name pattern"),
        ('[{params: "net.fc3.*", betas: [0.9, 0.99]}]', "SGD has no setting betas; its settings are"),
        (
            '[{params: "net.fc3.*", lr: 0.1}, {params: "net.fc1.*", lr: -1.0}]',
            r"model.param_groups\[1\].lr=-1.0 is refused by SGD: Invalid learning rate: -1.0",
        ),
        (
            '[{params: "net.fc3.*", lr: fast}]',
            r"\[0\].lr='fast' must be a number, as SGD's own lr",
        ),
        ('[{params: "net.fc3.*", momentum: -0.5}]', r"param_groups\[0\].momentum=-0.5 is refused by SGD"),
    ],
)
def test_bad_groups_are_refused_in_one_line(tmp_path, groups, message):
    cli = fc_cli(tmp_path, groups)
    with pytest.raises(UserInputError, match=message):
        cli.trainer.fit(cli.model, cli.datamodule)


def test_a_scheduler_scales_every_group_and_a_zero_lr_stays_zero(tmp_path):
    cli = fc_cli(
        tmp_path, GROUPS, "--trainer.max_steps=-1", "--trainer.max_epochs=3",
        "--trainer.limit_train_batches=2", "--model.init_args.lr_scheduler=torch.optim.lr_scheduler.StepLR",
        "--model.init_args.lr_scheduler.init_args.step_size=1",
        "--model.init_args.lr_scheduler.init_args.gamma=0.5",
    )  # fmt: skip
    cli.trainer.fit(cli.model, cli.datamodule)
    lrs = [group["lr"] for group in cli.trainer.optimizers[0].param_groups]
    assert lrs == pytest.approx([0.0, 0.05 * 0.125, 0.05 * 0.125])  # three epochs, halved after each


def test_the_layer_settings_config_builds_the_groups_it_declares(tmp_path):
    config = str(ROOT / "configs" / "mnist_fc_lca_layer_settings.yaml")
    cli = cli_main(["--config", config, f"--trainer.default_root_dir={tmp_path}"], run=False)
    optimizer = cli.model.configure_optimizers()
    settings = [(g["lr"], g["momentum"], len(g["params"])) for g in optimizer.param_groups]
    assert settings == [(0.01, 0.9, 2), (0.05, 0.0, 2), (0.05, 0.9, 2)]
