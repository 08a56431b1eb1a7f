"""The seeded percentile bootstrap and the reading of a paired interval (evaluation/stats.py).

Percentile bootstrap: the interval at level L spans the (1 - L) / 2 and (1 + L) / 2 percentiles of
the resampled means, so with two resamples it is a known blend of the two means.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from gradcam_tutorial.evaluation.stats import bootstrap_ci, paired_bootstrap_ci, reading


@pytest.mark.slow
def test_bootstrap_interval_contains_mean_shrinks_and_is_seeded():
    rng = np.random.default_rng(2)
    small, large = rng.normal(1.0, 1.0, 20), rng.normal(1.0, 1.0, 2000)
    low, high = bootstrap_ci(small, seed=0)
    assert low < small.mean() < high
    low_l, high_l = bootstrap_ci(large, seed=0)
    assert low_l < large.mean() < high_l
    assert (high_l - low_l) < (high - low) / 4  # ~ 1/sqrt(n): 10x narrower expected
    assert bootstrap_ci(small, seed=0) == (low, high)
    assert bootstrap_ci(small, seed=1) != (low, high)
    assert paired_bootstrap_ci(small + 1.0, small) == pytest.approx((1.0, 1.0))
    paired = paired_bootstrap_ci(large + 0.1 + rng.normal(0, 0.01, 2000), large)
    assert paired[0] > 0 and paired[0] < 0.1 < paired[1]


def test_the_default_interval_is_a_reproducible_95_percent_interval_of_the_mean():
    """Called with its defaults, the interval spans 1.96 standard errors either side of the mean
    (400 normal values), is the same on every call, covers the true mean in about 95 of 100 samples,
    and the paired interval resamples the pairs together: it is the interval of the differences."""
    rng = np.random.default_rng(7)
    sample = rng.normal(0.0, 1.0, 400)
    low, high = bootstrap_ci(sample)
    error = sample.std() / np.sqrt(sample.size)
    assert (high - low) / (2 * 1.96 * error) == pytest.approx(1.0, abs=0.03)
    assert abs((low + high) / 2 - sample.mean()) < 0.1 * error
    assert bootstrap_ci(sample) == (low, high)
    covered = sum(lo < 0.0 < hi for lo, hi in (bootstrap_ci(rng.normal(0.0, 1.0, 40)) for _ in range(100)))
    assert 86 <= covered <= 99
    a, b = rng.random(30), rng.random(30)
    assert paired_bootstrap_ci(a, b) == bootstrap_ci(a - b)


def test_bootstrap_of_float32_values_is_computed_in_double_precision():
    values = np.random.default_rng(6).random(25).astype(np.float32)
    assert bootstrap_ci(values, n_boot=200) == bootstrap_ci(values.astype(np.float64), n_boot=200)


def test_interval_is_the_percentiles_of_the_resampled_means():
    """With two resamples the level-L interval is ``m0 + t (m1 - m0)`` and ``m1 - t (m1 - m0)``,
    t = (1 - L) / 2 (linear percentiles); level 1 gives the two means themselves."""
    data = [0.0, 1.0, 2.0, 7.0]
    low, high = bootstrap_ci(data, n_boot=2, seed=0, level=1.0)
    assert low < high and (4 * low).is_integer() and (4 * high).is_integer()  # means of four draws
    for level in (0.95, 0.8, 0.5):
        tail = (1 - level) / 2
        expected = (low + tail * (high - low), high - tail * (high - low))
        assert bootstrap_ci(data, n_boot=2, seed=0, level=level) == pytest.approx(expected, rel=1e-12)
    first, second = [3.0, 1.0, 4.0, 1.0, 5.0], [2.0, 7.0, 1.0, 8.0, 2.0]
    low, high = paired_bootstrap_ci(first, second, n_boot=2, seed=0, level=1.0)
    assert low < high and (5 * low).is_integer() and (5 * high).is_integer()  # means of five differences
    expected = (low + 0.25 * (high - low), high - 0.25 * (high - low))
    assert paired_bootstrap_ci(first, second, n_boot=2, seed=0, level=0.5) == pytest.approx(expected, rel=1e-12)


def test_bootstrap_of_one_value_is_that_value_and_bad_input_is_refused_by_name():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    with pytest.raises(ValueError, match=f"^{re.escape('bootstrap of no values')}$"):
        bootstrap_ci([])
    message = "paired samples differ in size: (3,) vs (2,)"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        paired_bootstrap_ci([1.0, 2.0, 3.0], [1.0, 2.0])


@pytest.mark.parametrize(
    ("interval", "higher_is_better", "expected"),
    [
        ((0.01, 0.05), True, "better"),
        ((0.01, 0.05), False, "worse"),
        ((-0.05, -0.01), True, "worse"),
        ((-0.05, -0.01), False, "better"),
        ((-0.01, 0.05), True, "same"),
        ((0.0, 0.05), True, "same"),  # touching 0 is not excluding it
        ((0.0, 0.0), False, "same"),
    ],
)
def test_reading_says_better_only_where_the_interval_excludes_zero(interval, higher_is_better, expected):
    assert reading(interval, higher_is_better) == expected
