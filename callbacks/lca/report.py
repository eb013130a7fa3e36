"""The figures of an LCA run (the LCA paper's and Macura's), drawn from its store.

``write_report`` writes them as PNG files and, given a logger with a TensorBoard ``experiment``, logs
them there too. ``python -m lightning_app.report lca RUN_DIR`` is the command-line entry point.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from callbacks.lca.analysis import (  # noqa: E402
    NULL_DRAWS,
    PAPER_PEAKS,
    PeakRule,
    peak_counts,
    summary,
)
from callbacks.lca.records import histogram_edges  # noqa: E402
from callbacks.lca.store import LCARun  # noqa: E402
from lightning_app.errors import UserInputError, describe  # noqa: E402

GREEN, RED, BLUE, ORANGE, GREY = "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9e9e9e"


def _title_stats(values: np.ndarray) -> str:
    return f"Mean = {np.mean(values):.2f}, stdev = {np.std(values):.2f}"


def helped_histograms(run: LCARun) -> plt.Figure:
    """Parameters helped per iteration, and iterations helped per parameter (50 bins each)."""
    valid = run.steps["valid"].astype(bool)
    per_iteration = run.steps["layer_counts"][valid, :, 0].sum(axis=1)
    per_parameter = run.totals["helped"]
    zero_share = run.totals["zero"].sum() / max(run.num_parameters * int(run.totals["steps"]), 1)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.hist(per_iteration, bins=50, color=GREEN)
    left.set(
        xlabel="params helped per iteration", ylabel="number of iterations", title=_title_stats(per_iteration)
    )
    right.hist(per_parameter, bins=50, color=GREEN)
    right.set(
        xlabel="iterations helped per param", ylabel="number of params", title=_title_stats(per_parameter)
    )
    figure.suptitle(
        f"{run.num_parameters:,} parameters; {100 * zero_share:.1f}% of all LCA values are exactly zero"
    )
    figure.tight_layout()
    return figure


def loss_curve(run: LCARun) -> plt.Figure:
    """Actual loss and L0 + cumulative Σ LCA; the per-iteration difference on a twin axis."""
    figure, axis = plt.subplots(figsize=(8, 4.5))
    draw_loss(axis, run)
    axis.legend(loc="upper right")
    figure.tight_layout()
    return figure


def draw_loss(axis: plt.Axes, run: LCARun, title: str = "true and approximated loss") -> None:
    """Macura's loss plot on ``axis``: the actual loss (blue) and L0 + cumulative Σ LCA (orange), with the
    per-iteration difference as dots on a twin axis; the conservation error in the title."""
    steps = run.steps
    actual = np.append(steps["loss_start"], steps["loss_end"][-1:])
    approximate = steps["loss_start"][0] + np.concatenate([[0.0], np.cumsum(np.nan_to_num(steps["lca_sum"]))])
    difference = steps["loss_end"] - steps["loss_start"] - steps["lca_sum"]
    error = 100 * (summary(run)["conservation_rel_error"] or 0.0)
    iterations = np.arange(len(actual))
    axis.plot(iterations, actual, color=BLUE, label="actual loss")
    axis.plot(iterations, approximate, color=ORANGE, label="sum approx loss")
    axis.set(xlabel="iterations", ylabel="loss", title=f"{title} (err {error:.2f}%)")
    twin = axis.twinx()
    twin.plot(iterations[1:], difference, "o", color=ORANGE, alpha=0.5, markersize=1)
    twin.set_ylabel("diff per iteration")


def layer_bars(run: LCARun, compare: LCARun | None = None) -> plt.Figure:
    """Total LCA per parameter tensor: weights only, and all parameters; a compared run hatched."""
    totals = np.sum(run.steps["layer_lca"][run.steps["valid"].astype(bool)], axis=0)
    other = None
    if compare is not None:
        other_totals = dict(zip(compare.names, np.sum(compare.steps["layer_lca"], axis=0), strict=True))
        other = np.array([other_totals.get(name, np.nan) for name in run.names])
    figure, axes = plt.subplots(1, 2, figsize=(max(8, 0.35 * len(run.names) + 4), 4.5))
    for axis, keep, title in (
        (axes[0], run.is_weight, "Kernel layers"),
        (axes[1], np.ones_like(run.is_weight), "All layers"),
    ):
        names = [name for name, k in zip(run.names, keep, strict=True) if k]
        positions = np.arange(len(names))
        width = 0.4 if other is not None else 0.8
        axis.bar(
            positions,
            totals[keep],
            width,
            color=[GREEN if v < 0 else RED for v in totals[keep]],
            label=str(run.path.parent.name),
        )
        if other is not None:
            axis.bar(
                positions + width,
                other[keep],
                width,
                fill=False,
                hatch="//",
                label=f"{compare.path.parent.name} (hatched)",
            )
            axis.legend()
        axis.axhline(0, color="black", linestyle=":", linewidth=1)
        axis.set_xticks(positions + (width / 2 if other is not None else 0), names, rotation=90, fontsize=7)
        axis.set(xlabel="Layer", ylabel="LCA per layer", title=title)
    figure.tight_layout()
    return figure


def layer_trajectories(run: LCARun) -> plt.Figure:
    """Cumulative LCA of each parameter tensor over iterations (val dashed when recorded)."""
    figure, axis = plt.subplots(figsize=(9, 5))
    colours = plt.cm.viridis(np.linspace(0, 1, len(run.names)))
    cumulative = np.cumsum(np.nan_to_num(run.steps["layer_lca"]), axis=0)
    for index, name in enumerate(run.names):
        axis.plot(cumulative[:, index], color=colours[index], label=name)
        if run.val is not None:
            axis.plot(
                np.cumsum(np.nan_to_num(run.val["layer_lca"][:, index])), color=colours[index], linestyle="--"
            )
    axis.set(
        xlabel="iterations",
        ylabel="LCA, summed over parameters",
        title="cumulative LCA per layer" + (" (val dashed)" if run.val is not None else ""),
    )
    if len(run.names) <= 20:
        axis.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return figure


def helped_stacked(run: LCARun) -> plt.Figure:
    """Percent of parameters helped, zero and hurt at each iteration."""
    counts = run.steps["layer_counts"].sum(axis=1).astype(np.float64)
    percent = 100 * counts / run.num_parameters
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.stackplot(
        np.arange(len(percent)),
        percent[:, 0],
        percent[:, 2],
        percent[:, 1],
        colors=[GREEN, GREY, RED],
        labels=["helped", "zero", "hurt"],
    )
    axis.axhline(50, color="black", linestyle=":", linewidth=1)
    axis.set(
        xlabel="iterations",
        ylabel="% of parameters",
        ylim=(0, 100),
        title="parameters helped / zero / hurt per iteration",
    )
    axis.legend(loc="lower right")
    figure.tight_layout()
    return figure


def value_histogram(run: LCARun) -> plt.Figure:
    """Every LCA value of the run (all iterations x parameters), on octave magnitude bins, with the
    count axis linear and logarithmic; helped (negative) values green, hurt red."""
    edges = histogram_edges().numpy()
    negative, positive = run.totals["histogram"]
    zero = int(run.totals["zero"].sum())
    figure, axes = plt.subplots(1, 2, figsize=(12, 4))
    for axis, scale in zip(axes, ("linear", "log"), strict=True):
        axis.stairs(negative[::-1], -edges[::-1], fill=True, color=GREEN, label="helped (< 0)")
        axis.stairs(positive, edges, fill=True, color=RED, label="hurt (> 0)")
        axis.set_xscale("symlog", linthresh=edges[0])
        ticks = [10.0**k for k in range(-12, 1, 4)]
        axis.set_xticks([-t for t in ticks[::-1]] + [0] + ticks)
        axis.tick_params(axis="x", labelsize=7, labelrotation=45)
        axis.set_yscale(scale)
        axis.set(
            xlabel="LC",
            ylabel="number of parameters",
            title=f"all LCA values ({zero:,} exactly zero), {scale} counts",
        )
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def neuron_heatmap(run: LCARun) -> plt.Figure:
    """Neurons x iterations, green = helped, red = hurt; each module scaled to its own 99th percentile."""
    values = -np.nan_to_num(run.steps["neuron_lca"].T.astype(np.float64))  # (neurons, steps), helped > 0
    modules = np.array(run.neuron_modules)
    scaled = np.zeros_like(values)
    boundaries, centres, labels = [], [], []
    for module in dict.fromkeys(run.neuron_modules):
        rows = np.flatnonzero(modules == module)
        scale = np.percentile(np.abs(values[rows]), 99) or 1.0
        scaled[rows] = np.clip(values[rows] / scale, -1, 1)
        boundaries.append(rows[-1] + 0.5)
        centres.append(rows.mean())
        labels.append(module)
    figure, axis = plt.subplots(figsize=(10, max(4, min(14, 0.02 * len(values) + 3))))
    image = axis.imshow(
        scaled, aspect="auto", cmap="RdYlGn", norm=TwoSlopeNorm(0, -1, 1), interpolation="nearest"
    )
    for boundary in boundaries[:-1]:
        axis.axhline(boundary, color="black", linewidth=0.5)
    step = max(1, len(labels) // 40)
    axis.set_yticks(centres[::step], labels[::step], fontsize=6)
    axis.set(
        xlabel="iterations", title="LCA per neuron (green helped, red hurt; per-module 99th-percentile scale)"
    )
    figure.colorbar(image, ax=axis, label="-LCA / module scale")
    figure.tight_layout()
    return figure


def peaks_figure(
    run: LCARun, min_layers: int | None = None, rule: PeakRule = PAPER_PEAKS, draws: int = NULL_DRAWS
) -> tuple[plt.Figure, dict]:
    """Peak moments of learning per module and class (``rule``; default the LCA paper's strict local
    minima); peaks shared by ``min_layers`` modules (default: all) at the same step and class in red.
    Returns the figure and the counts: found, expected if layers peaked independently, expected under
    ``draws`` circular shifts of each layer's series, and that null's p-value."""
    modules, peaks, observed, counts = peak_counts(run, min_layers, rule, draws)
    classes = run.class_names or ["all"]
    figure, axis = plt.subplots(figsize=(10, max(3, 0.12 * len(modules) * len(classes) + 1.5)))
    rows = [(c, m) for c in range(len(classes)) for m in range(len(modules))]
    for row, (c, m) in enumerate(rows):
        times = np.flatnonzero(peaks[m, c])
        shared = observed[c, times]
        axis.plot(times[~shared], np.full((~shared).sum(), row), "o", color="black", markersize=1.5)
        axis.plot(times[shared], np.full(shared.sum(), row), "o", color=RED, markersize=3)
    step = max(1, len(rows) // 40)
    axis.set_yticks(
        range(0, len(rows), step), [f"{classes[c]} · {modules[m]}" for c, m in rows][::step], fontsize=6
    )
    title = (
        f"peak moments of learning; red: same class and step in >= {counts['synchronised_min_layers']} "
        f"layers: {counts['synchronised_peaks']} found, {counts['synchronised_expected_independent']:.1f} "
        "expected if layers peaked independently, "
        f"{counts['synchronised_expected_under_shift']:.1f} under circular shifts "
        f"(p = {counts['synchronised_p_value']:.3g})"
    )
    axis.set_title(title, fontsize=8)
    axis.set(xlabel="iterations")
    figure.tight_layout()
    return figure, counts


def trajectories_figure(run: LCARun) -> plt.Figure:
    """Per layer, the cumulative LCA of its tracked random parameters (grey) and of the parameters with
    the largest |cumulative LCA| at the end (green: helped overall, red: hurt), each drawn from the step
    it joined the leaders (streamed records: no earlier values exist)."""
    steps = run.steps
    random, leaders, index = steps["trajectory_random"], steps["trajectory_leaders"], steps["leader_index"]
    iterations = np.arange(1, len(index) + 1)
    bounds = np.cumsum([0, *run.trajectory_widths])
    figure, axes = plt.subplots(
        1, len(run.trajectory_layers), figsize=(4 * len(run.trajectory_layers), 3.6), squeeze=False
    )
    for axis, layer, start, stop in zip(axes[0], run.trajectory_layers, bounds, bounds[1:], strict=False):
        axis.plot(iterations, random[:, start:stop], color=GREY, linewidth=0.5)
        final = np.sort(index[-1, start:stop])
        block = index[:, start:stop]
        position = np.clip(np.searchsorted(final, block), 0, len(final) - 1)
        joined = final[position] == block
        traces = np.full((len(block), len(final)), np.nan)
        traces[np.nonzero(joined)[0], position[joined]] = leaders[:, start:stop][joined]
        for trace in traces.T:
            axis.plot(iterations, trace, color=GREEN if trace[-1] < 0 else RED, linewidth=0.8)
        axis.set(title=layer, xlabel="iterations", ylabel="cumulative LCA")
    figure.suptitle(
        f"parameter trajectories: {run.trajectory_widths[0]} random parameters per layer (grey) and the "
        "leaders by |cumulative LCA| at the end (green helped, red hurt), from when they joined them",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def _save(figures: dict[str, plt.Figure], folder: Path, experiment, step: int) -> None:
    for name, figure in figures.items():
        figure.savefig(folder / f"{name}.png", dpi=120)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure(f"lca_report/{name}", figure, global_step=step, close=False)
        plt.close(figure)


def write_report(
    store: Path,
    logger=None,
    compare: Path | None = None,
    min_layers: int | None = None,
    out: Path | None = None,
    step: int = 0,
    rule: PeakRule = PAPER_PEAKS,
    draws: int = NULL_DRAWS,
) -> dict:
    """Draw every figure of the run whose store is ``store`` into ``out`` (default:
    ``<store dir>/lca_report/``); log them to the logger's TensorBoard experiment if it has one, at
    ``step`` (the run's last). Returns the summary (with peak counts)."""
    run = LCARun(store)
    other = LCARun(compare) if compare is not None else None
    numbers = summary(run)
    peaks, numbers["peak_moments"] = peaks_figure(run, min_layers, rule, draws)
    figures = {
        "helped_histograms": helped_histograms(run),
        "loss": loss_curve(run),
        "layers": layer_bars(run, other),
        "layers_cumulative": layer_trajectories(run),
        "helped_stacked": helped_stacked(run),
        "all_values_histogram": value_histogram(run),
        "neurons": neuron_heatmap(run),
        "peaks": peaks,
    }
    if run.trajectory_layers:  # stores written before trajectories were recorded have none
        figures["trajectories"] = trajectories_figure(run)
    folder = run.path.parent / "lca_report" if out is None else Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _save(figures, folder, getattr(logger, "experiment", None), step)
    except OSError as error:
        raise UserInputError(
            f"cannot write the LCA report into {folder}: {describe(error)}; give another folder with --out"
        ) from error
    numbers["figures"] = sorted(str(folder / f"{name}.png") for name in figures)
    return numbers
