"""What an evaluation must cost: the network evaluations it cannot avoid, priced on this machine.

An evaluation's time is network passes plus everything around them (loading photos, ranking
pixels, imputing, bootstrapping). :func:`counting` records every image that goes through the model
(or any copy made of it while counting: the scorer, the randomised models), by kind:

* ``inference``: a forward pass without autograd (scoring a perturbed input);
* ``gradcam``: a forward pass whose head records a graph and is differentiated once (Grad-CAM);
* ``input_gradient``: a forward and a backward pass down to the input (gradient, Guided Backprop).

:func:`price` times each kind batched, after a warm-up, as medians; the counts times those prices
are the run's budget, and the run's own time divided by it says how much the rest costs.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

KINDS = ("inference", "gradcam", "input_gradient")


def _kind() -> str:
    if torch.is_inference_mode_enabled():
        return "inference"
    return "input_gradient" if torch.is_grad_enabled() else "gradcam"


@contextmanager
def counting(model: nn.Module) -> Iterator[Counter[str]]:
    """Count the images ``model`` and its later deep copies evaluate, by kind, until the block ends.

    A forward pre-hook on the root module sees every call; ``copy.deepcopy`` keeps module hooks,
    so copies made inside the block count too (and stop counting when the block ends).
    """
    counts: Counter[str] = Counter()
    active = True

    def hook(_module: nn.Module, inputs: tuple[object, ...]) -> None:
        if active and inputs and isinstance(inputs[0], torch.Tensor):
            counts[_kind()] += int(inputs[0].shape[0]) if inputs[0].dim() == 4 else 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield counts
    finally:
        active = False
        handle.remove()


def _median_seconds(run: Callable[[], object], repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def price(
    model: nn.Module, layer: str, size: int = 224, batch: int = 16, repeats: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Seconds per image of each kind, each timed batched the way the evaluation runs it."""
    from ..cam import GradCAM
    from .faithfulness import channels_last_copy, class_probabilities
    from .saliency import gradient_saliency

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    scorer = channels_last_copy(model)
    with GradCAM(model, layer) as cam:
        per_batch = {
            "inference": _median_seconds(lambda: class_probabilities(scorer, x, 0, chunk=batch), repeats, warmup),
            "gradcam": _median_seconds(lambda: cam.compute(x, list(range(batch))), repeats, warmup),
        }
    single = _median_seconds(lambda: gradient_saliency(model, x[:1], 0), repeats * 2, warmup)
    return {
        "inference": per_batch["inference"] / batch,
        "gradcam": per_batch["gradcam"] / batch,
        "input_gradient": single,
    }


def budget_seconds(counts: Counter[str] | dict[str, int], prices: dict[str, float]) -> float:
    """The time the counted passes take at the measured prices."""
    return float(sum(counts.get(kind, 0) * prices[kind] for kind in KINDS))
