"""What the report's runners share (evaluation/shared.py): one photo-subset rule, the summaries' mean
and interval, and the rounding of the results file."""

from __future__ import annotations

import numpy as np
import pytest

from gradcam_tutorial.data import imagenet_samples
from gradcam_tutorial.evaluation import shared


def test_spread_samples_are_spread_over_the_classes_and_deterministic():
    all_samples = imagenet_samples()
    chosen = shared.spread(all_samples, 5)
    assert [s.class_index for s in chosen] == [s.class_index for s in shared.spread(all_samples, 5)]
    assert chosen[0] == all_samples[0] and chosen[-1] == all_samples[-1]
    assert len({s.class_index for s in chosen}) == 5
    assert shared.spread(all_samples, len(all_samples)) == list(all_samples)
    with pytest.raises(ValueError):
        shared.spread(all_samples, 0)


@pytest.mark.parametrize(
    ("total", "n", "expected"), [(10, 1, [0]), (10, 2, [0, 9]), (10, 4, [0, 3, 6, 9]), (3, 3, [0, 1, 2])]
)
def test_spread_positions_are_even_and_include_both_ends(total, n, expected):
    assert shared.spread_positions(total, n) == expected


@pytest.mark.parametrize(("total", "n"), [(300, 50), (1000, 300), (30, 10), (7, 6)])
def test_spread_gives_exactly_n_distinct_items_in_order(total, n):
    items = [f"photo {i}" for i in range(total)]
    chosen = shared.spread(items, n)
    assert len(chosen) == len(set(chosen)) == n
    assert chosen == sorted(chosen, key=items.index) and chosen[0] == items[0] and chosen[-1] == items[-1]


@pytest.mark.parametrize("n", [0, 11])
def test_spread_refuses_counts_outside_the_list(n):
    with pytest.raises(ValueError, match="between 1 and 10"):
        shared.spread(list(range(10)), n)


def test_interval_is_the_mean_inside_its_bootstrap_interval():
    values = np.array([0.0, 1.0, 1.0, 1.0])
    summary = shared.interval(values, seed=0)
    assert summary["mean"] == 0.75
    low, high = summary["ci95"]
    assert 0.0 <= low < 0.75 < high <= 1.0


def test_rounded_rounds_every_float_in_nested_results():
    value = {"a": 0.123456, "b": [1.000049, {"c": 2.5e-5}], "d": 3, "e": "x", "f": (0.99999,)}
    assert shared.rounded(value) == {"a": 0.1235, "b": [1.0, {"c": 0.0}], "d": 3, "e": "x", "f": [1.0]}
