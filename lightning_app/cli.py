"""The command line: ``python train.py fit|validate|test|predict --config configs/X.yaml``.

A LightningCLI whose defaults make every run a reproducible record: TensorBoard logs under
``runs/<config name>/version_N/``, the resolved config and the package versions saved there,
checkpoints in ``checkpoints/``, and ``seed_everything`` seeded from the config (0 unless set).
"""

import re
import sys
from pathlib import Path
from typing import NoReturn

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

import models.classification  # noqa: F401  (makes the short class names of the YAML resolvable)
import models.segmentation  # noqa: F401
from lightning_app.errors import UserInputError
from lightning_app.run_record import SaveConfigAndVersions

RUNS_DIR = "runs"
# Lines of jsonargparse's Union-type report that say nothing about the cause.
_UNION_NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:"
    r"|- Expected a <class 'NoneType'>|Given value type: |Given value: )"
)


class ConfigParser(LightningArgumentParser):
    """Reports a bad key or class_path as one line naming it, without the full usage text."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        lines = (line.strip() for line in message.splitlines())
        cause = " ".join(line.removeprefix("- ") for line in lines if line and not _UNION_NOISE.match(line))
        sys.stderr.write(f"error: {cause}\n(run with --help to list the accepted options)\n")
        sys.exit(2)


class InterpretabilityCLI(LightningCLI):
    """LightningCLI with a TensorBoardLogger under ``runs/<config name>/`` unless the config sets a logger."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.logger in (None, True):
            config.trainer.logger = Namespace(
                class_path="lightning.pytorch.loggers.TensorBoardLogger",
                init_args=Namespace(save_dir=RUNS_DIR, name=run_name(config)),
            )


def run_name(config: Namespace) -> str:
    """The stem of the first ``--config`` file, or 'default' without one."""
    config_files = config.get("config") or []
    return Path(str(config_files[0])).stem if config_files else "default"


def cli_main(args: ArgsType = None, run: bool = True) -> InterpretabilityCLI:
    """Build the CLI from ``args`` (default: ``sys.argv``) and, if ``run``, run its subcommand.

    ``cli_main(["--config", "configs/X.yaml"], run=False)`` instantiates the model, data module and
    trainer of a config without training: ``cli.model``, ``cli.datamodule``, ``cli.trainer``.
    """
    return InterpretabilityCLI(
        model_class=pl.LightningModule,
        datamodule_class=pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=SaveConfigAndVersions,
        parser_class=ConfigParser,
        auto_configure_optimizers=False,
        seed_everything_default=0,
        args=args,
        run=run,
    )


def main() -> None:
    """Entry point of ``train.py``: bad input ends with a one-line ``error: ...``, not a traceback."""
    try:
        cli_main()
    except UserInputError as error:
        sys.exit(f"error: {error}")
