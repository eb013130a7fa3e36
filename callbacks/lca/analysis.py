"""The numbers of an LCA run, computed from its store: conservation, helped fractions, peak moments."""

from dataclasses import dataclass

import numpy as np

from callbacks.lca.store import LCARun

NULL_DRAWS = 1000  # circular shifts of the synchronisation null


def summary(run: LCARun) -> dict:
    """The headline numbers of a run (over its valid steps).

    ``loss_change`` is the sum of the per-step true loss changes on the LCA evaluation set (= L_T − L_0
    when every step continues from the previous one), ``lca_sum`` the sum of all LCA,
    ``conservation_rel_error`` = |lca_sum − loss_change| / |loss_change|. ``mean_helped_fraction`` is the
    fraction of all parameters with negative LCA, averaged over steps; ``..._nonzero`` the same among
    parameters whose LCA is not zero.
    """
    steps = run.steps
    valid = steps["valid"].astype(bool)
    counts = steps["layer_counts"][valid].sum(axis=1).astype(np.float64)  # (steps, 3)
    loss_change = float(np.sum(steps["loss_end"][valid] - steps["loss_start"][valid]))
    lca_sum = float(np.sum(steps["lca_sum"][valid]))
    helped, hurt, zero = (counts / run.num_parameters).T if len(counts) else (np.zeros(0),) * 3
    moving = counts[:, 0] + counts[:, 1]
    errors = (steps["loss_end"] - steps["loss_start"] - steps["lca_sum"])[valid]
    result = {
        "iterations": int(valid.sum()),
        "invalid_iterations": int((~valid).sum()),
        "parameters": run.num_parameters,
        "integrator": run.attrs["integrator"],
        "loss_start": float(steps["loss_start"][valid][0]) if valid.any() else None,
        "loss_end": float(steps["loss_end"][valid][-1]) if valid.any() else None,
        "loss_change": loss_change,
        "lca_sum": lca_sum,
        "conservation_rel_error": abs(lca_sum - loss_change) / abs(loss_change) if loss_change else None,
        "max_abs_step_error": float(np.max(np.abs(errors))) if len(errors) else None,
        "mean_splits": float(np.mean(steps["splits"][valid])) if valid.any() else None,
        "mean_helped_fraction": float(helped.mean()) if len(helped) else None,
        "mean_hurt_fraction": float(hurt.mean()) if len(hurt) else None,
        "mean_zero_fraction": float(zero.mean()) if len(zero) else None,
        "mean_helped_fraction_nonzero": float(np.mean(counts[:, 0] / np.maximum(moving, 1)))
        if len(counts)
        else None,
        "layers": dict(zip(run.names, np.sum(steps["layer_lca"][valid], axis=0).tolist(), strict=True)),
    }
    if run.val is not None:
        val_change = float(np.sum(run.val["loss_end"][valid] - run.val["loss_start"][valid]))
        result["val_loss_change"] = val_change
        result["val_lca_sum"] = float(np.sum(run.val["lca_sum"][valid]))
    return result


def module_series(run: LCARun, per_class: bool) -> tuple[list[str], np.ndarray]:
    """LCA per step summed over each module's tensors: (module names, array (modules, [classes,] steps))."""
    modules = list(dict.fromkeys(run.modules))
    values = run.steps["class_layer_lca"] if per_class else run.steps["layer_lca"][:, None, :]
    owner = np.array([modules.index(m) for m in run.modules])
    series = np.stack([values[..., owner == index].sum(axis=-1) for index in range(len(modules))])
    return modules, np.moveaxis(series, 1, 2)  # (modules, classes, steps)


@dataclass(frozen=True)
class PeakRule:
    """What counts as a peak moment of learning: a step whose LCA is below that of each of its ``window``
    neighbours on either side (the LCA paper: 1, a strict local minimum) and, with ``threshold``, below
    ``-threshold`` (the loss fell by at least that much through the step)."""

    window: int = 1
    threshold: float | None = None


PAPER_PEAKS = PeakRule()  # the LCA paper's: strict local minima, no threshold


def peak_moments(series: np.ndarray, rule: PeakRule = PAPER_PEAKS) -> np.ndarray:
    """The peak moments of ``series`` along its last axis (boolean, the shape of ``series``); the first
    and last ``rule.window`` steps are never peaks."""
    window, steps = rule.window, series.shape[-1]
    peaks = np.zeros(series.shape, dtype=bool)
    if steps <= 2 * window:
        return peaks
    middle = series[..., window : steps - window]
    inner = np.ones(middle.shape, dtype=bool)
    for offset in range(1, window + 1):
        inner &= middle < series[..., window - offset : steps - window - offset]
        inner &= middle < series[..., window + offset : steps - window + offset]
    if rule.threshold is not None:
        inner &= middle < -rule.threshold
    peaks[..., window : steps - window] = inner
    return peaks


def synchronised(peaks: np.ndarray, min_layers: int, window: int = 1) -> tuple[np.ndarray, float]:
    """Peaks of the same class at the same step in at least ``min_layers`` modules (peaks: (modules,
    classes, steps), found with ``window``), and the number expected if each module peaked independently
    at its own rate (a Poisson-binomial tail per class)."""
    layers_peaking = peaks.sum(axis=0)  # (classes, steps)
    observed = layers_peaking >= min_layers
    interior = max(peaks.shape[-1] - 2 * window, 1)
    expected = 0.0
    for rates in (peaks.sum(axis=-1) / interior).T:  # per class: one rate per module
        distribution = np.array([1.0])
        for rate in rates:
            distribution = np.convolve(distribution, [1 - rate, rate])
        expected += distribution[min_layers:].sum() * interior
    return observed, expected


def shift_null(
    peaks: np.ndarray, min_layers: int, draws: int = NULL_DRAWS, seed: int = 0
) -> tuple[float, float]:
    """The synchronised-peak count expected when layers do not move together, and the p-value of the
    observed count: each module's peak series (all its classes alike) is shifted circularly by its own
    random offset, ``draws`` times. Unlike the independence expectation, this keeps each layer's own
    clustering of peaks in time; only the alignment between layers is broken. p = (1 + draws with at
    least the observed count) / (1 + draws)."""
    observed = int((peaks.sum(axis=0) >= min_layers).sum())
    modules, steps = peaks.shape[0], peaks.shape[-1]
    generator = np.random.default_rng(seed)
    counts = np.empty(draws)
    for draw in range(draws):
        offsets = generator.integers(1, steps, size=modules) if steps > 1 else np.zeros(modules, int)
        shifted = sum(np.roll(peaks[m], offsets[m], axis=-1).astype(np.int32) for m in range(modules))
        counts[draw] = (shifted >= min_layers).sum()
    return float(counts.mean()), float((1 + (counts >= observed).sum()) / (1 + draws))


def peak_counts(
    run: LCARun, min_layers: int | None = None, rule: PeakRule = PAPER_PEAKS, draws: int = NULL_DRAWS
) -> tuple[list[str], np.ndarray, np.ndarray, dict]:
    """Peak moments per module and class (``rule``) and the synchronised ones, shared by ``min_layers``
    modules (default: all) at the same step and class: (modules, peaks (modules, classes, steps),
    synchronised (classes, steps), counts). The counts: peaks found, synchronised found, expected if
    layers peaked independently, expected under ``draws`` circular shifts of each layer's series, and
    that null's p-value."""
    modules, series = module_series(run, per_class=run.class_names is not None)
    peaks = peak_moments(series, rule)
    min_layers = min_layers or len(modules)
    observed, independent = synchronised(peaks, min_layers, rule.window)
    under_shift, p_value = shift_null(peaks, min_layers, draws)
    counts = {
        "peaks": int(peaks.sum()),
        "synchronised_peaks": int(observed.sum()),
        "synchronised_expected_independent": float(independent),
        "synchronised_expected_under_shift": under_shift,
        "synchronised_p_value": p_value,
        "null_draws": draws,
        "synchronised_min_layers": int(min_layers),
        "peak_window": rule.window,
        "peak_threshold": rule.threshold,
    }
    return modules, peaks, observed, counts
