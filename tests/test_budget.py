"""The full run's cost line: every image through the network is counted, by kind, and priced."""

from __future__ import annotations

import copy

import pytest

from gradcam_tutorial import GradCAM
from gradcam_tutorial.evaluation import budget, faithfulness, saliency
from gradcam_tutorial.evaluation.saliency import guided_backprop


def test_counting_sees_every_kind_and_every_copy(effnet, grid):
    model, spec = effnet
    x = spec.preprocess(grid[0])
    with budget.counting(model) as counts:
        scorer = faithfulness.channels_last_copy(model)  # a copy made while counting counts too
        faithfulness.class_probabilities(scorer, x.repeat(3, 1, 1, 1), 0)
        with GradCAM(model, spec.target_layer) as cam:
            cam.compute(x.repeat(2, 1, 1, 1), [1, 2])
        saliency.gradient_saliency(model, x, 0)
        guided_backprop(copy.deepcopy(model), x, 0)
    assert dict(counts) == {"inference": 3, "gradcam": 2, "input_gradient": 2}
    faithfulness.class_probabilities(scorer, x, 0)  # after the block nothing counts, copies included
    saliency.gradient_saliency(model, x, 0)
    assert dict(counts) == {"inference": 3, "gradcam": 2, "input_gradient": 2}
    assert not model._forward_pre_hooks  # the model is left as found


def test_price_is_per_image_and_the_budget_multiplies_it(effnet):
    model, spec = effnet
    prices = budget.price(model, spec.target_layer, size=64, batch=4, repeats=1, warmup=0)
    assert set(prices) == set(budget.KINDS) and all(0 < value < 5 for value in prices.values())
    counts = {"inference": 10, "gradcam": 2}
    assert budget.budget_seconds(counts, prices) == pytest.approx(10 * prices["inference"] + 2 * prices["gradcam"])
    assert not model._forward_pre_hooks
