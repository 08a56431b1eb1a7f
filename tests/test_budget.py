"""The full run's cost line: every image through the network is counted, by kind, and priced."""

from __future__ import annotations

import copy

import pytest
import torch

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
    prices = budget.price(model, spec.target_layer, size=64, batch=4, repeats=1, warmup=0, scoring_batch=2)
    assert set(prices) == set(budget.KINDS) and all(0 < value < 5 for value in prices.values())
    counts = {"inference": 10, "gradcam": 2}
    assert budget.budget_seconds(counts, prices) == pytest.approx(10 * prices["inference"] + 2 * prices["gradcam"])
    assert not model._forward_pre_hooks


def test_scoring_prices_cover_each_batch_size_and_leave_no_hook(effnet):
    model, _spec = effnet
    prices = budget.scoring_prices(model, batches=(1, 3), size=64, repeats=1, warmup=0)
    assert list(prices) == [1, 3] and all(0 < value < 5 for value in prices.values())
    assert not model._forward_pre_hooks and not model._forward_hooks


def test_price_samples_are_neither_counted_nor_due_before_their_interval(effnet):
    model, spec = effnet
    with budget.counting(model) as counts:
        sampler = budget.PriceSampler(model, spec.target_layer, counts, every=3600.0, batch=2, scoring_batch=1, size=64)
        sampler.maybe_sample()  # the first one is always due
        sampler.maybe_sample()  # the next not before an hour
        assert not counts and counts.active  # pricing counted nothing and left counting on
        faithfulness.class_probabilities(faithfulness.channels_last_copy(model), torch.zeros(3, 3, 64, 64), 0)
        assert dict(counts) == {"inference": 3}
    assert all(len(values) == 1 for values in sampler.samples.values()) and sampler.seconds > 0
    sampler.sample()
    assert len(sampler.times) == 2 and 0 <= sampler.times[0] < sampler.times[1]  # when, for the drift
    prices = sampler.prices()
    assert set(prices) == set(budget.KINDS) and all(0 < value < 5 for value in prices.values())
    assert not model._forward_pre_hooks and not model._forward_hooks
    with pytest.raises(RuntimeError, match="no price sample"):
        budget.PriceSampler(model, spec.target_layer, budget.PassCounter()).prices()


def test_each_price_sample_is_timed_after_one_untimed_call(effnet):
    """A cold call pays oneDNN's set-up, which the run's warm loops do not: every kind runs twice."""
    model, spec = effnet
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda _module, inputs: calls.append(int(inputs[0].shape[0])))
    try:
        sampler = budget.PriceSampler(
            model, spec.target_layer, budget.PassCounter(), batch=2, scoring_batch=1, size=64, scored=2
        )
        sampler.sample()
        sampler.sample()  # later samples too, not only the first
    finally:
        handle.remove()
    # scoring: two batches of one image; Grad-CAM: one batch of two; the input gradient: one image
    assert sorted(calls) == sorted([1, 1, 2, 1] * 4)


def test_prices_default_to_the_batches_the_evaluation_runs(effnet):
    """Grad-CAM is priced in the localisation's batches and scoring in the scorer's, 16 images per sample."""
    model, spec = effnet
    sampler = budget.PriceSampler(model, spec.target_layer, budget.PassCounter())
    assert (sampler.batch, sampler.scoring_batch) == (faithfulness.GRADCAM_BATCH, faithfulness.SCORING_BATCH)
    assert sampler.x.shape[0] == 16
