"""Does removing what the map calls important change the prediction? Deletion, insertion, Average Drop.

* Deletion / insertion (Petsiuk et al. 2018, RISE): pixels are removed from (or inserted into) the
  network's input in order of saliency, most salient first, in ``steps`` equal chunks, and the
  softmax probability of the explained class is recorded after each chunk. "Removed" means set to
  ``0`` in the network's *normalised* input, i.e. the normalisation mean colour (mid-grey for
  EfficientNet-Lite0), as RISE's code does; insertion starts from a Gaussian blur (kernel 11,
  sigma 5) of the input, as RISE does. The AUC is the trapezoid area under probability vs. fraction
  of pixels changed (0..1). A faithful map makes deletion fall fast (low AUC) and insertion rise
  fast (high AUC). Ties in the saliency order are broken by a seeded random permutation, so a map
  with large flat regions is not credited or blamed for raster order.
* Average Drop / Increase in Confidence (Chattopadhyay et al. 2018, Grad-CAM++), in the relative
  form torchcam documents: the "explanation map" is the normalised input multiplied by the map
  (resized to the input, in [0, 1]); Average Drop = mean of ``max(0, Y_c - O_c) / Y_c`` and Increase
  in Confidence = share of images with ``O_c > Y_c``, with ``Y_c`` / ``O_c`` the class probability
  on the full input / on the explanation map.

Every function is pure (maps, images and a model in, numbers out), so each is checked on a
synthetic case with a known answer.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import nn

BLUR_KERNEL = 11
BLUR_SIGMA = 5.0
# Images per no-gradient batch. On two cores EfficientNet-Lite0 scored 11.0-11.6 ms per image in
# batches of 4 and 16.4-16.9 ms in batches of 16 on a quiet machine (timed 2026-11-30); make
# report-full prices batches of 1, 4, 8 and 16 after its run ("cost" -> "inference_by_batch").
# The probabilities do not depend on the batch size.
SCORING_BATCH = 4
# Images per Grad-CAM batch (a forward pass and one walk back): 14-19 ms per image in batches of 4,
# 23-27 ms in batches of 16 and 30-37 ms in batches of 25 at the layers the report compares (two
# cores, timed 2026-12-01). Bigger batches overflow the CPU's caches.
GRADCAM_BATCH = 4


# --- deletion / insertion ------------------------------------------------------------------------


def blurred(x: torch.Tensor) -> torch.Tensor:
    """RISE's insertion start: the input blurred with a Gaussian (kernel 11, sigma 5)."""
    from torchvision.transforms.functional import gaussian_blur

    return gaussian_blur(x, [BLUR_KERNEL, BLUR_KERNEL], [BLUR_SIGMA, BLUR_SIGMA])


def saliency_rank(saliency: torch.Tensor | np.ndarray, seed: int = 0) -> torch.Tensor:
    """Each pixel's position in the most-salient-first order (0 = first), ties in random order."""
    values = torch.as_tensor(np.asarray(saliency, dtype=np.float64)).flatten()
    values = torch.nan_to_num(values, nan=float("-inf"))
    generator = torch.Generator().manual_seed(seed)
    shuffle = torch.randperm(values.numel(), generator=generator)
    # a stable sort of the shuffled values keeps the random order within each group of ties
    order = shuffle[torch.sort(values[shuffle], descending=True, stable=True).indices]
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    return rank


def map_ranks(
    saliencies: Sequence[torch.Tensor | np.ndarray], seed: int = 0, ranks: Sequence[torch.Tensor] | None = None
) -> list[torch.Tensor]:
    """Each map's :func:`saliency_rank`, or the caller's ``ranks`` of them once checked to fit the maps."""
    if ranks is None:
        return [saliency_rank(saliency, seed) for saliency in saliencies]
    if len(ranks) != len(saliencies):
        raise ValueError(f"{len(ranks)} ranks for {len(saliencies)} maps")
    for index, (rank, saliency) in enumerate(zip(ranks, saliencies, strict=True)):
        pixels = int(np.prod(np.shape(saliency)))  # np.size would call a tensor's own size()
        if rank.numel() != pixels:
            raise ValueError(f"rank {index} has {rank.numel()} pixels and does not fit its map of {pixels}")
    return list(ranks)


def step_counts(n_pixels: int, steps: int) -> torch.Tensor:
    """How many pixels are changed at each of the ``steps + 1`` points (0 .. all)."""
    return torch.round(torch.linspace(0, n_pixels, steps + 1)).long()


def perturbed_input(
    x: torch.Tensor, start: torch.Tensor, rank: torch.Tensor, count: int | torch.Tensor
) -> torch.Tensor:
    """``start`` (C, H, W) with its ``count`` first ranked pixels taken from ``x``."""
    chosen = (rank < count).reshape(1, *x.shape[-2:]).to(x.dtype)
    return start * (1 - chosen) + x * chosen


def perturbed_inputs(x: torch.Tensor, start: torch.Tensor, rank: torch.Tensor, steps: int) -> torch.Tensor:
    """``(steps + 1, C, H, W)`` inputs where the first k-th share of ranked pixels come from ``x``.

    Deletion is ``perturbed_inputs(baseline, x, ...)`` read as "pixels replaced by the baseline";
    insertion is ``perturbed_inputs(x, blurred, ...)``: ``start`` is the picture at fraction 0.
    """
    return torch.stack([perturbed_input(x, start, rank, count) for count in step_counts(rank.numel(), steps)])


def class_probabilities(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    class_idx: int,
    chunk: int = SCORING_BATCH,
) -> np.ndarray:
    """Softmax probability of ``class_idx`` for each input, in batches of ``chunk`` (no autograd).

    Inputs go in channels-last layout: with a model converted by :func:`channels_last_copy` that is
    about 1.5x less CPU for depthwise-convolution networks, and any model accepts it.
    """
    return _probabilities(model, inputs.shape[0], lambda start, stop: inputs[start:stop], class_idx, chunk)


def _probabilities(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    n: int,
    images: Callable[[int, int], torch.Tensor],
    class_idx: int,
    chunk: int,
) -> np.ndarray:
    """:func:`class_probabilities` of ``n`` inputs that ``images(start, stop)`` makes a batch at a
    time, so that a long series of inputs never sits in memory whole."""
    out = []
    with torch.inference_mode():
        for start in range(0, n, chunk):
            batch = images(start, min(start + chunk, n))
            logits = model(batch.contiguous(memory_format=torch.channels_last))
            out.append(torch.softmax(logits.float(), dim=1)[:, class_idx])
    return torch.cat(out).cpu().numpy().astype(np.float64)


def channels_last_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with channels-last weights, for fast no-gradient scoring."""
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


@dataclass(frozen=True)
class PerturbationCurves:
    """Probability of the class after each step, one row per map: ``(n_maps, steps + 1)`` each."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray

    @property
    def deletion_auc(self) -> np.ndarray:
        return curve_auc(self.deletion)

    @property
    def insertion_auc(self) -> np.ndarray:
        return curve_auc(self.insertion)


def curve_auc(scores: np.ndarray) -> np.ndarray:
    """Trapezoid area under scores sampled at equal steps of the fraction 0..1 (last axis)."""
    scores = np.asarray(scores, dtype=np.float64)
    return (scores[..., 1:] + scores[..., :-1]).sum(-1) / (2 * (scores.shape[-1] - 1))


def perturbation_curves(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    saliencies: Sequence[torch.Tensor | np.ndarray],
    class_idx: int,
    steps: int = 8,
    seed: int = 0,
    deletion_baseline: torch.Tensor | None = None,
    insertion_start: torch.Tensor | None = None,
    chunk: int = SCORING_BATCH,
    ranks: Sequence[torch.Tensor] | None = None,
) -> PerturbationCurves:
    """Deletion and insertion curves of several maps for one input ``x`` (C, H, W), batched.

    Each saliency map must have ``x``'s spatial size. The endpoints (untouched input, fully removed,
    fully blurred) are the same for every map, so they are computed once. Defaults: removed pixels
    become 0 in the normalised input, insertion starts from :func:`blurred`. ``ranks``: each map's
    ``saliency_rank(map, seed)``, when the caller has them already (ROAD ranks the same maps).
    """
    x = x.squeeze(0) if x.dim() == 4 else x
    removed = torch.zeros_like(x) if deletion_baseline is None else deletion_baseline.reshape(x.shape)
    start = blurred(x) if insertion_start is None else insertion_start.reshape(x.shape)
    for index, saliency in enumerate(saliencies):
        if tuple(np.shape(saliency)) != tuple(x.shape[-2:]):
            raise ValueError(
                f"saliency map {index} has shape {tuple(np.shape(saliency))}, input is {tuple(x.shape[-2:])}"
            )
    # the inputs in scoring order: the three endpoints, then per map deletion's and insertion's
    # inner steps (deletion: ranked pixels taken from the baseline; insertion: ranked pixels taken
    # from x); made a batch at a time, straight into the channels-last layout the scorer reads
    ends = (x, removed, start)
    series = [(pair, rank) for rank in map_ranks(saliencies, seed, ranks) for pair in ((removed, x), (x, start))]
    inner = step_counts(x.shape[-2] * x.shape[-1], steps)[1:-1]

    def images(first: int, stop: int) -> torch.Tensor:
        batch = torch.empty((stop - first, *x.shape), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        for row, index in enumerate(range(first, stop)):
            if index < len(ends):
                batch[row] = ends[index]
            else:
                which, step = divmod(index - len(ends), steps - 1)
                (source, base), rank = series[which]
                batch[row] = perturbed_input(source, base, rank, inner[step])
        return batch

    probs = _probabilities(model, len(ends) + len(series) * (steps - 1), images, class_idx, chunk)
    full, gone, blur = probs[:3]
    middle = probs[3:].reshape(len(saliencies), 2, steps - 1)
    ones = np.ones((len(saliencies), 1))
    deletion = np.hstack([full * ones, middle[:, 0], gone * ones])
    insertion = np.hstack([blur * ones, middle[:, 1], full * ones])
    return PerturbationCurves(np.linspace(0.0, 1.0, steps + 1), deletion, insertion)


# --- Average Drop / Increase in Confidence ------------------------------------------------------


def masked_probabilities(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    masks: Sequence[torch.Tensor | np.ndarray],
    class_idx: int,
    chunk: int = SCORING_BATCH,
) -> np.ndarray:
    """Class probability on each explanation map ``x * mask`` (masks in [0, 1], input size)."""
    x = x.squeeze(0) if x.dim() == 4 else x
    stacked = torch.stack([torch.as_tensor(np.asarray(m, dtype=np.float32)).clamp(0, 1) for m in masks])
    return class_probabilities(model, x[None] * stacked[:, None], class_idx, chunk)


def average_drop(full: ArrayLike, explained: ArrayLike) -> float:
    """Mean relative drop ``max(0, Y - O) / Y`` of the class probability (Grad-CAM++; lower is better)."""
    y, o = np.asarray(full, dtype=np.float64), np.asarray(explained, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, y - o) / y))


def increase_in_confidence(full: ArrayLike, explained: ArrayLike) -> float:
    """Share of images whose probability rises on the explanation map, ``O > Y`` (higher is better)."""
    y, o = np.asarray(full, dtype=np.float64), np.asarray(explained, dtype=np.float64)
    return float(np.mean(o > y))
