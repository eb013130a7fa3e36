"""The summary of an LCA sweep: Macura's table (per learning rate and batch size, the mean share of
parameters helped per iteration, overall and among those that moved, the conservation error and the
final loss) and the grid of loss plots of his appendix, one panel per run."""

import csv
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure

from callbacks.lca.analysis import summary
from callbacks.lca.report import draw_loss
from callbacks.lca.store import LCARun
from lightning_app.errors import UserInputError

COLUMNS = (
    "run", "lr", "batch_size", "iterations", "helped_percent", "helped_of_moved_percent",
    "conservation_error_percent", "final_loss",
)  # fmt: skip
TABLE_FILE, FIGURE_FILE = "lca_sweep.csv", "lca_sweep_grid.png"


def sweep_runs(folder: Path) -> list[tuple[Path, LCARun]]:
    """(run folder, store) of every run with an LCA store under ``folder``."""
    stores = sorted(folder.rglob("lca.h5"))
    if not stores:
        raise UserInputError(
            f"no lca.h5 under {folder}: run the sweep first (python -m lightning_app.sweep SWEEP_FILE)"
        )
    return [(store.parent, LCARun(store)) for store in stores]


def run_settings(run_dir: Path) -> tuple[float | None, int | None]:
    """The learning rate and batch size of a run, from the config.yaml saved in its folder."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise UserInputError(f"{run_dir} has no config.yaml to read its learning rate and batch size from")
    config = yaml.safe_load(path.read_text())
    lr = config.get("model", {}).get("init_args", {}).get("optimizer", {}).get("init_args", {}).get("lr")
    batch_size = config.get("data", {}).get("init_args", {}).get("batch_size")
    return lr, batch_size


def sweep_row(folder: Path, run_dir: Path, run: LCARun) -> dict:
    lr, batch_size = run_settings(run_dir)
    numbers = summary(run)
    return {
        "run": str(run_dir.relative_to(folder)),
        "lr": lr,
        "batch_size": batch_size,
        "iterations": numbers["iterations"],
        "helped_percent": 100 * numbers["mean_helped_fraction"],
        "helped_of_moved_percent": 100 * numbers["mean_helped_fraction_nonzero"],
        "conservation_error_percent": 100 * (numbers["conservation_rel_error"] or 0.0),
        "final_loss": numbers["loss_end"],
    }


def grid_figure(rows: list[dict], runs: list[LCARun]) -> Figure:
    """One loss plot per run: learning rates down (largest first), batch sizes across."""
    rates = sorted({row["lr"] for row in rows}, key=lambda v: -np.inf if v is None else -v)
    sizes = sorted({row["batch_size"] for row in rows}, key=lambda v: np.inf if v is None else v)
    figure = Figure(figsize=(5 * len(sizes), 3.4 * len(rates)), layout="tight")
    axes = figure.subplots(len(rates), len(sizes), squeeze=False)
    for axis in axes.flat:
        axis.set_visible(False)
    for row, run in zip(rows, runs, strict=True):
        axis = axes[rates.index(row["lr"]), sizes.index(row["batch_size"])]
        axis.set_visible(True)
        draw_loss(axis, run, title=f"lr {row['lr']}, batch {row['batch_size']}")
    return figure


def write_sweep_summary(folder: Path, out: Path | None = None) -> dict:
    """The table (``lca_sweep.csv``) and the grid figure (``lca_sweep_grid.png``) of the sweep under
    ``folder``, written to ``out`` (default ``folder``); returns the rows (largest learning rate first,
    then by batch size) and the two paths."""
    found = [(sweep_row(folder, run_dir, run), run) for run_dir, run in sweep_runs(folder)]
    found.sort(key=lambda pair: (-(pair[0]["lr"] or 0.0), pair[0]["batch_size"] or 0, pair[0]["run"]))
    rows, runs = [row for row, _ in found], [run for _, run in found]
    target = out or folder
    target.mkdir(parents=True, exist_ok=True)
    with open(target / TABLE_FILE, "w", newline="") as file:
        writer = csv.DictWriter(file, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    figure = grid_figure(rows, runs)
    figure.savefig(target / FIGURE_FILE, dpi=100)
    return {"runs": rows, "table": str(target / TABLE_FILE), "figure": str(target / FIGURE_FILE)}
