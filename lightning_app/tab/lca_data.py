"""What the LCA view draws, computed from a run's store: loss change against the sum of LCA, LCA per
layer and per class, the helped/hurt/zero fractions, peak moments, and a layer's units ranked by LCA.
Every series is cut to ``buckets`` min/max pairs (:func:`~lightning_app.tab.downsample.min_max`), so a
chart's size, not the run's length, sets what is sent."""

import numpy as np

from callbacks.lca.analysis import PeakRule, module_series, peak_counts, summary
from callbacks.lca.store import LCARun
from lightning_app.errors import UserInputError
from lightning_app.tab.downsample import min_max

TOP_UNITS = 10  # units drawn over training when a layer is opened
VIEW_COLUMNS = frozenset(
    {
        "step",
        "valid",
        "splits",
        "loss_start",
        "loss_end",
        "lca_sum",
        "layer_lca",
        "layer_counts",
        "class_layer_lca",
    }
)  # what the summary, the series and the peaks read: a long store's per-unit records are left on disk
UNIT_COLUMNS = frozenset({"step", "valid", "neuron_lca"})


def series_view(run: LCARun, buckets: int, cumulative: bool, smooth: int) -> dict:
    """Per-step (or cumulative) series of the run, each as {"name", "x", "y"}, grouped by chart:
    ``loss`` (the true loss change and the sum of LCA), ``layers`` (one per module), ``classes`` (one
    per class, summed over modules; absent without per-class LCA) and ``fractions`` (helped, hurt and
    zero, fractions of all parameters). ``smooth`` > 1 is a trailing moving average over that many
    steps, applied before downsampling; cumulative series are never smoothed."""
    steps = run.steps
    valid = steps["valid"].astype(bool)
    x = steps["step"]

    def measured(values: np.ndarray) -> np.ndarray:
        values = np.where(valid, values.astype(np.float64), np.nan)
        if cumulative:
            return np.cumsum(np.nan_to_num(values))
        return moving_average(values, smooth) if smooth > 1 else values

    def drawn(name: str, values: np.ndarray) -> dict:
        xs, ys = min_max(x, measured(values), buckets)
        return {"name": name, "x": xs.tolist(), "y": ys.tolist()}

    modules, per_module = module_series(run, per_class=False)
    view = {
        "loss": [
            drawn("true loss change", steps["loss_end"] - steps["loss_start"]),
            drawn("sum of LCA", steps["lca_sum"]),
        ],
        "layers": [drawn(name, per_module[m, 0]) for m, name in enumerate(modules)],
        "fractions": [
            drawn(name, steps["layer_counts"][:, :, column].sum(axis=1) / run.num_parameters)
            for column, name in enumerate(("helped", "hurt", "zero"))
        ],
    }
    if "class_layer_lca" in steps and run.class_names is not None:
        per_class = steps["class_layer_lca"].sum(axis=2)  # (steps, classes)
        view["classes"] = [drawn(name, per_class[:, c]) for c, name in enumerate(run.class_names)]
    return view


def moving_average(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps (fewer at the start); NaN steps are left out of the mean."""
    present = ~np.isnan(values)
    sums = np.cumsum(np.where(present, values, 0.0))
    counts = np.cumsum(present)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def summary_view(run: LCARun) -> dict:
    """The run's headline numbers (:func:`callbacks.lca.analysis.summary`) and its layers."""
    numbers = summary(run)
    return {
        "summary": {key: value for key, value in numbers.items() if key != "layers"},
        "tensors": numbers["layers"],
        "modules": list(dict.fromkeys(run.modules)),
        "classes": run.class_names,
        "steps": int(len(run.steps["step"])),
    }


def peaks_view(run: LCARun, min_layers: int | None, window: int, draws: int) -> dict:
    """Peak moments: per module and class the steps of its peaks, the synchronised ones, and the counts
    with their nulls (:func:`callbacks.lca.analysis.peak_counts`)."""
    if window < 1:
        raise UserInputError(f"window {window} must be 1 or more")
    modules, peaks, observed, counts = peak_counts(run, min_layers, PeakRule(window=window), draws)
    x = run.steps["step"]
    classes = run.class_names or ["all"]
    return {
        "counts": counts,
        "rows": [
            {"module": module, "class": name, "steps": x[np.flatnonzero(peaks[m, c])].tolist()}
            for c, name in enumerate(classes)
            for m, module in enumerate(modules)
        ],
        "synchronised": [
            {"class": name, "steps": x[np.flatnonzero(observed[c])].tolist()}
            for c, name in enumerate(classes)
        ],
    }


def units_view(run: LCARun, module: str, buckets: int) -> dict:
    """The units (output neurons or channels) of ``module`` ranked by their total LCA, most helpful
    (most negative) first, and the cumulative LCA over training of the ``TOP_UNITS`` most helpful."""
    names = np.array(run.neuron_modules)
    rows = np.flatnonzero(names == module)
    if not len(rows):
        raise UserInputError(f"layer {module!r} has no units in this store; its layers: {sorted(set(names))}")
    values = run.steps["neuron_lca"][:, rows].astype(np.float64)
    values[~run.steps["valid"].astype(bool)] = np.nan
    totals = np.nansum(values, axis=0)
    order = np.argsort(totals)
    cumulative = np.cumsum(np.nan_to_num(values[:, order[:TOP_UNITS]]), axis=0)
    x = run.steps["step"]
    drawn = []
    for position, unit in enumerate(order[:TOP_UNITS]):
        xs, ys = min_max(x, cumulative[:, position], buckets)
        drawn.append({"name": f"unit {int(unit)}", "x": xs.tolist(), "y": ys.tolist()})
    return {
        "module": module,
        "ranking": [{"unit": int(unit), "lca": float(totals[unit])} for unit in order],
        "top_series": drawn,
    }
