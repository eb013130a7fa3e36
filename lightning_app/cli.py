"""The command line: ``python train.py fit|validate|test|predict --config configs/X.yaml``.

A LightningCLI whose defaults make every run a reproducible record: TensorBoard logs under
``runs/<config name>/version_N/``, the resolved config and the package versions saved there,
checkpoints in ``checkpoints/``, and ``seed_everything`` seeded from the config (0 unless set).
"""

import re
import sys
import zipfile
from pathlib import Path
from typing import NoReturn

import lightning.pytorch as pl
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI

import models.classification  # noqa: F401  (makes the short class names of the YAML resolvable)
import models.segmentation  # noqa: F401
from lightning_app.errors import UserInputError, describe, report_errors
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
    """LightningCLI with a DashboardLogger (TensorBoard) under ``<trainer.default_root_dir or
    runs>/<config name>/`` unless the config sets a logger."""

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.trainer.logger in (None, True):
            config.trainer.logger = Namespace(
                class_path="lightning_app.dashboard_logger.DashboardLogger",
                init_args=Namespace(
                    save_dir=config.trainer.default_root_dir or RUNS_DIR,
                    name=run_name(config),
                    default_hp_metric=False,  # SaveConfigAndVersions logs the validation metric instead
                ),
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


def check_input_files(args: list[str]) -> None:
    """Read the ``--config`` files and the ``--ckpt_path`` checkpoint of a command line far enough to
    refuse, naming the file, what the parser would report without it (or as a traceback)."""
    for option, path in _file_options(args):
        if option == "--config":
            check_config_file(Path(path))
        elif path not in ("best", "last", "hpc", "registry"):
            check_checkpoint_file(Path(path))


def _file_options(args: list[str]) -> list[tuple[str, str]]:
    found = []
    for index, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in ("--config", "--ckpt_path"):
            value = value or (args[index + 1] if index + 1 < len(args) else "")
            if value and not value.lstrip().startswith(("{", "[")):  # a path, not an inline YAML value
                found.append((name, value))
    return found


def check_config_file(path: Path) -> None:
    try:
        with path.open() as file:
            content = yaml.safe_load(file)
    except OSError as error:
        raise UserInputError(f"--config {path}: {describe(error)}") from error
    except yaml.YAMLError as error:
        raise UserInputError(f"--config {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if not isinstance(content, dict) or not content:
        raise UserInputError(
            f"--config {path} holds no settings (empty, or not a mapping of keys); see "
            "configs/quickstart.yaml"
        )


def check_checkpoint_file(path: Path) -> None:
    """A checkpoint is a zip archive (``torch.save``); an empty, cut or foreign file fails its check."""
    if not path.is_file():
        raise UserInputError(f"--ckpt_path {path}: no such file")
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (OSError, zipfile.BadZipFile) as error:
        raise UserInputError(
            f"--ckpt_path {path} is not a readable checkpoint ({describe(error)}): it is empty, cut short "
            "or not written by torch.save; give another checkpoint"
        ) from error
    if damaged is not None:
        raise UserInputError(
            f"--ckpt_path {path} is damaged (member {damaged} fails its CRC): give another checkpoint"
        )


def main() -> None:
    """Entry point of ``train.py``: bad input ends with a one-line ``error: ...``, not a traceback
    (``INTERPRETABILITY_DEBUG=1`` shows it)."""
    report_errors(_train)


def _train() -> None:
    check_input_files(sys.argv[1:])
    cli_main()
