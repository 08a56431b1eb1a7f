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


class PassCounter(Counter[str]):
    """Images counted by kind; :meth:`paused` stops counting while the run prices passes itself."""

    def __init__(self) -> None:
        super().__init__()
        self.active = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        was, self.active = self.active, False
        try:
            yield
        finally:
            self.active = was


@contextmanager
def counting(model: nn.Module) -> Iterator[PassCounter]:
    """Count the images ``model`` and its later deep copies evaluate, by kind, until the block ends.

    A forward pre-hook on the root module sees every call; ``copy.deepcopy`` keeps module hooks,
    so copies made inside the block count too (and stop counting when the block ends).
    """
    counts = PassCounter()

    def hook(_module: nn.Module, inputs: tuple[object, ...]) -> None:
        if counts.active and inputs and isinstance(inputs[0], torch.Tensor):
            counts[_kind()] += int(inputs[0].shape[0]) if inputs[0].dim() == 4 else 1

    handle = model.register_forward_pre_hook(hook)
    try:
        yield counts
    finally:
        counts.active = False
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
    model: nn.Module,
    layer: str,
    size: int = 224,
    batch: int | None = None,
    repeats: int = 5,
    warmup: int = 2,
    scoring_batch: int | None = None,
    scored: int = 16,
) -> dict[str, float]:
    """Seconds per image of each kind, each timed batched the way the evaluation runs it: Grad-CAM
    in batches of ``batch`` (default :data:`~gradcam_tutorial.evaluation.faithfulness.GRADCAM_BATCH`),
    ``scored`` images of no-gradient scoring in batches of ``scoring_batch`` (default
    :data:`~gradcam_tutorial.evaluation.faithfulness.SCORING_BATCH`), gradients one image at a time."""
    from .faithfulness import GRADCAM_BATCH, SCORING_BATCH, channels_last_copy

    batch, scoring_batch = batch or GRADCAM_BATCH, scoring_batch or SCORING_BATCH
    x = torch.randn(max(batch, scored), 3, size, size, generator=torch.Generator().manual_seed(0))
    return _time_kinds(model, channels_last_copy(model), layer, x, batch, scoring_batch, repeats, warmup, repeats * 2)


def _time_kinds(
    model: nn.Module,
    scorer: nn.Module,
    layer: str,
    x: torch.Tensor,
    batch: int,
    scoring_batch: int,
    repeats: int,
    warmup: int,
    gradient_repeats: int,
) -> dict[str, float]:
    """Seconds per image of each kind: ``scorer`` scoring all of ``x`` in batches of
    ``scoring_batch``, Grad-CAM on its first ``batch`` images, the input gradient of its first one."""
    from ..cam import GradCAM
    from .faithfulness import class_probabilities
    from .saliency import gradient_saliency

    with GradCAM(model, layer) as cam:
        inference = _median_seconds(lambda: class_probabilities(scorer, x, 0, chunk=scoring_batch), repeats, warmup)
        gradcam = _median_seconds(lambda: cam.compute(x[:batch], list(range(batch))), repeats, warmup)
    gradient = _median_seconds(lambda: gradient_saliency(model, x[:1], 0), gradient_repeats, warmup)
    return {"inference": inference / len(x), "gradcam": gradcam / batch, "input_gradient": gradient}


class PriceSampler:
    """Prices each kind of pass again and again while an evaluation runs (not counted, not timed).

    One pricing after a 30-minute run sees the machine in one moment: on a shared machine its
    speed drifts, and a slow moment makes every pass look dear and the rest look cheap. Sampled
    every ``every`` seconds through the run, the median price is what a pass cost under the load
    the run itself saw. Each sample times ``scoring_batch``-image batches of no-gradient scoring
    (``scored`` images in all), one Grad-CAM batch of ``batch`` and one input gradient, each after
    one untimed call: the run makes its passes in warm loops of one shape, while a sample taken
    between them, after other shapes, would pay oneDNN's set-up again (in the full run of
    2026-11-30, sampled cold, Grad-CAM's batch cost 117 ms per image; warm after the run, 38 ms).
    Batch sizes default to the evaluation's own (:data:`~.faithfulness.GRADCAM_BATCH`,
    :data:`~.faithfulness.SCORING_BATCH`).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: str,
        counts: PassCounter,
        every: float = 60.0,
        batch: int | None = None,
        scoring_batch: int | None = None,
        size: int = 224,
        scored: int = 16,
    ) -> None:
        from .faithfulness import GRADCAM_BATCH, SCORING_BATCH, channels_last_copy

        self.model, self.layer, self.counts, self.every = model, layer, counts, every
        self.batch, self.scoring_batch = batch or GRADCAM_BATCH, scoring_batch or SCORING_BATCH
        with counts.paused():
            self.scorer = channels_last_copy(model)
        self.x = torch.randn(max(self.batch, scored), 3, size, size, generator=torch.Generator().manual_seed(0))
        self.samples: dict[str, list[float]] = {kind: [] for kind in KINDS}
        # when each sample was taken, seconds after the sampler was made: shows how the machine's
        # speed drifted through the run, which the medians alone hide
        self.times: list[float] = []
        self.created = time.perf_counter()
        self.seconds = 0.0  # wall time spent pricing: not part of the evaluation
        self.last = float("-inf")

    def maybe_sample(self) -> None:
        """Take a sample if the last one is at least ``every`` seconds old."""
        if time.perf_counter() - self.last >= self.every:
            self.sample()

    def sample(self) -> None:
        started = time.perf_counter()
        with self.counts.paused():
            prices = _time_kinds(
                self.model, self.scorer, self.layer, self.x, self.batch, self.scoring_batch, 1, 1, 1
            )  # one timed call of each kind, after one untimed call
        for kind, seconds in prices.items():
            self.samples[kind].append(seconds)
        self.times.append(started - self.created)
        self.last = time.perf_counter()
        self.seconds += self.last - started

    def prices(self) -> dict[str, float]:
        """Median seconds per image of each kind over the samples."""
        if not self.samples["inference"]:
            raise RuntimeError("no price sample taken yet")
        return {kind: statistics.median(values) for kind, values in self.samples.items()}


def scoring_prices(
    model: nn.Module, batches: tuple[int, ...] = (1, 4, 8, 16), size: int = 224, repeats: int = 5, warmup: int = 2
) -> dict[int, float]:
    """Seconds per image of no-gradient scoring at each batch size, so the batch the run uses can be checked."""
    from .faithfulness import channels_last_copy, class_probabilities

    x = torch.randn(max(batches) * 2, 3, size, size, generator=torch.Generator().manual_seed(0))
    scorer = channels_last_copy(model)

    def scoring(batch: int) -> Callable[[], object]:
        return lambda: class_probabilities(scorer, x[: 2 * batch], 0, chunk=batch)

    return {batch: _median_seconds(scoring(batch), repeats, warmup) / (2 * batch) for batch in batches}


def budget_seconds(counts: Counter[str] | dict[str, int], prices: dict[str, float]) -> float:
    """The time the counted passes take at the measured prices."""
    return float(sum(counts.get(kind, 0) * prices[kind] for kind in KINDS))
