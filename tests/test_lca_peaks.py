"""Peak moments of learning and the two null models of their synchronisation across layers."""

import numpy as np
import pytest

from callbacks.lca.analysis import PeakRule, peak_moments, shift_null, synchronised


def test_a_peak_is_a_strict_local_minimum_by_default_and_the_rule_is_configurable():
    series = np.array([0.0, -1.0, 0.0, -0.5, -0.4, -2.0, -1.9, -3.0, 0.0, 0.0])
    assert np.flatnonzero(peak_moments(series)).tolist() == [1, 3, 5, 7]
    assert np.flatnonzero(peak_moments(series, PeakRule(window=2))).tolist() == [7]  # below 2 on each side
    assert np.flatnonzero(peak_moments(series, PeakRule(threshold=0.9))).tolist() == [1, 5, 7]
    assert not peak_moments(np.array([0.0, -1.0])).any()  # the ends are never peaks


def autocorrelated(generator, shape, steps):
    """Independent smooth random series (moving averages of noise): peaks cluster like real LCA."""
    noise = generator.normal(size=(*shape, steps + 4))
    return sum(noise[..., k : k + steps] for k in range(5))


def test_planted_synchronous_peaks_are_far_above_the_shift_null():
    generator = np.random.default_rng(0)
    series = autocorrelated(generator, (3, 4), 600)
    planted = generator.choice(np.arange(2, 598, 5), size=60, replace=False)  # apart: each a strict minimum
    series[:, :, planted] -= 50.0  # every layer and class dips at the same steps
    peaks = peak_moments(series)
    observed, independent = synchronised(peaks, min_layers=3)
    under_shift, p_value = shift_null(peaks, min_layers=3, draws=200)
    assert observed.sum() >= 4 * 60
    assert under_shift < observed.sum() / 4 and p_value == pytest.approx(1 / 201)


def test_on_independent_series_the_shift_null_expects_what_is_found():
    generator = np.random.default_rng(1)
    peaks = peak_moments(autocorrelated(generator, (3, 10), 2000))
    observed, independent = synchronised(peaks, min_layers=3)
    under_shift, p_value = shift_null(peaks, min_layers=3, draws=300)
    found = observed.sum()
    assert abs(found - under_shift) < 4 * np.sqrt(under_shift)  # within Poisson noise
    assert abs(found - independent) < 4 * np.sqrt(independent)
    assert p_value > 0.01
