"""The numbers of an LCA run, computed from its store: conservation, helped fractions, peak moments."""

import numpy as np

from callbacks.lca.store import LCARun


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


def peak_moments(series: np.ndarray) -> np.ndarray:
    """Strict local minima along the last axis (a peak moment of learning: the loss fell more through this
    step than through its neighbours). Boolean array of the shape of ``series``; the ends are never peaks."""
    peaks = np.zeros(series.shape, dtype=bool)
    middle = series[..., 1:-1]
    peaks[..., 1:-1] = (middle < series[..., :-2]) & (middle < series[..., 2:])
    return peaks


def synchronised(peaks: np.ndarray, min_layers: int) -> tuple[np.ndarray, float]:
    """Peaks of the same class at the same step in at least ``min_layers`` modules, and the number expected
    if each module peaked independently at its own rate (a Poisson-binomial tail per class)."""
    layers_peaking = peaks.sum(axis=0)  # (classes, steps)
    observed = layers_peaking >= min_layers
    interior = max(peaks.shape[-1] - 2, 1)
    expected = 0.0
    for rates in (peaks.sum(axis=-1) / interior).T:  # per class: one rate per module
        distribution = np.array([1.0])
        for rate in rates:
            distribution = np.convolve(distribution, [1 - rate, rate])
        expected += distribution[min_layers:].sum() * interior
    return observed, expected
