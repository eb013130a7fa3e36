"""Run a sweep file: stages of variants on top of one base config, one training run per variant.

    python -m lightning_app.sweep configs/spacenet6_sweep.yaml [--stage NAME ...] [--dry-run] [-- ARGS]

A sweep file names a ``base`` config (a path relative to the sweep file's folder) and ``stages``, each
with optional ``settings`` (dotted config keys shared by the stage's runs) and ``variants`` (name ->
dotted keys). Every variant becomes an override config ``runs/<sweep>/overrides/<stage>/<variant>.yaml``
and the run ``python train.py fit --config BASE [ARGS] --config OVERRIDE``, logged to
``runs/<sweep>/<stage>/<variant>/``. ARGS after ``--`` go to every run (the override still wins). A run
that fails stops the sweep with one line naming the run, the setting of its cell the error is about, and
where to fix it.
"""

import argparse
import re
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import yaml

from lightning_app.cli import RUNS_DIR
from lightning_app.errors import UserInputError, run_subcommand

TRAIN_SCRIPT = Path(__file__).resolve().parents[1] / "train.py"
ERROR_LINES = 50  # the last lines of a run's error output kept to find its error


@dataclass(frozen=True)
class SweepRun:
    """One cell of a sweep: its stage, variant, dotted settings and the nested override config."""

    stage: str
    variant: str
    settings: dict

    @property
    def override(self) -> dict:
        return nested(self.settings)


def nested(dotted: dict) -> dict:
    """``{'a.b.c': 1}`` -> ``{'a': {'b': {'c': 1}}}``."""
    result: dict = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        node = result
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return result


def read_sweep(path: Path) -> tuple[Path, list[SweepRun]]:
    """The base config (resolved against the sweep file's folder) and every run of the sweep file at
    ``path``."""
    try:
        sweep = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise UserInputError(f"cannot read the sweep file {path}: {error}") from error
    if not isinstance(sweep, dict) or "base" not in sweep or not sweep.get("stages"):
        raise UserInputError(f"{path}: a sweep file needs 'base' (a config) and 'stages'")
    runs = []
    for position, stage in enumerate(sweep["stages"]):
        if not stage.get("name") or not stage.get("variants"):
            raise UserInputError(f"{path}: stage {position} needs a 'name' and 'variants'")
        for variant, keys in stage["variants"].items():
            runs.append(SweepRun(stage["name"], variant, {**stage.get("settings", {}), **keys}))
    base = path.parent / sweep["base"]
    if not base.is_file():
        raise UserInputError(
            f"{path}: base {sweep['base']!r} is not a file next to the sweep file ({base}); write the "
            "base config's path relative to the sweep file's folder"
        )
    return base, runs


def command(base: Path, override: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        str(TRAIN_SCRIPT),
        "fit",
        "--config",
        str(base),
        *extra,
        "--config",
        str(override),
    ]


def write_override(run: SweepRun, sweep_name: str) -> Path:
    """The run's override config, with its own TensorBoard folder."""
    logger = {
        "class_path": "lightning_app.dashboard_logger.DashboardLogger",
        "init_args": {"save_dir": RUNS_DIR, "name": f"{sweep_name}/{run.stage}/{run.variant}"},
    }
    override = {**run.override, "trainer": {**run.override.get("trainer", {}), "logger": logger}}
    path = Path(RUNS_DIR) / sweep_name / "overrides" / run.stage / f"{run.variant}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(override, sort_keys=False))
    return path


def sweep(args: argparse.Namespace) -> None:
    path = Path(args.sweep_file)
    base, runs = read_sweep(path)
    stages = {run.stage for run in runs}
    unknown = set(args.stage or []) - stages
    if unknown:
        raise UserInputError(f"--stage {sorted(unknown)} not in {path}; its stages are {sorted(stages)}")
    chosen = [run for run in runs if not args.stage or run.stage in args.stage]
    for number, run in enumerate(chosen, start=1):
        line = command(base, write_override(run, path.stem), args.extra)
        print(f"[{number}/{len(chosen)}] {run.stage}/{run.variant}: {' '.join(line)}", flush=True)
        if not args.dry_run:
            error = run_with_error_line(line)
            if error is not None:
                raise UserInputError(failure(run, error, path))


def run_with_error_line(line: list[str]) -> str | None:
    """Run ``line``, its output passed through; None when it succeeds, else its error's last line: the
    last ``error: ...`` line it printed, or the last line of its traceback."""
    process = subprocess.Popen(line, stderr=subprocess.PIPE, text=True, errors="replace")
    last = deque(maxlen=ERROR_LINES)
    for text in process.stderr:
        sys.stderr.write(text)
        if text.strip():
            last.append(text.strip())
    if process.wait() == 0:
        return None
    errors = [text for text in last if text.lower().startswith("error: ")]
    return (
        errors[-1][len("error: ") :] if errors else last[-1] if last else f"exit status {process.returncode}"
    )


def mentions(error: str, text: str) -> bool:
    """``text`` appears in ``error`` as a whole word or number (``2`` is not in ``version_2``)."""
    return re.search(rf"(?<![\w.-]){re.escape(text)}(?![\w.])", error) is not None


def failure(run: SweepRun, error: str, path: Path) -> str:
    """The line that ends a sweep at a failed run: the run, the error, the cell's setting it is about
    (its value or key named in the error; all of the cell's settings when none is), and the fix."""
    about = [key for key, value in run.settings.items() if mentions(error, str(value))] or [
        key for key in run.settings if mentions(error, key.rsplit(".", 1)[-1])
    ]
    settings = ", ".join(f"{key}={run.settings[key]!r}" for key in (about or run.settings))
    which = "the setting" if len(about) == 1 else "the settings" if about else "its settings"
    return (
        f"run {run.stage}/{run.variant} failed: {error} ({which} {settings} of stage {run.stage!r}, variant "
        f"{run.variant!r}); fix it in {path} and rerun with --stage {run.stage}; the runs before it are "
        "complete"
    )


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    own = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m lightning_app.sweep",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("sweep_file", help="the sweep YAML, e.g. configs/spacenet6_sweep.yaml")
    parser.add_argument("--stage", action="append", help="run only this stage (repeatable)")
    parser.add_argument(
        "--dry-run", action="store_true", help="write the overrides and print the commands only"
    )
    parser.set_defaults(run=sweep, extra=extra)
    run_subcommand(parser, own)


if __name__ == "__main__":
    main()
