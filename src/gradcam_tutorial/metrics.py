"""Numbers that test whether a heatmap tells the truth about the model, not just whether it looks nice.

Every function here is pure: it gets maps, images and (where needed) a model and returns numbers,
so each one can be checked on a synthetic case whose answer is known. The definitions follow the
papers they come from; where a paper leaves a choice open, the choice is written down here.

* Pointing game (Zhang et al. 2016, in the mass-share form): how much of a map's mass lies in each
  region, where its peak is, and whether the object's own region holds the largest share.
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
* Map similarity: Spearman rank correlation (scipy) and SSIM (scikit-image); a flat map carries no
  ranking, so its correlation with anything is defined as 0 rather than NaN.
* Cascading randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"): weights are
  re-initialised stage by stage from the output down, cumulatively and seeded; a method whose map
  barely changes is not explaining what the model learned. A plain input gradient is the contrast.
* Bootstrap percentile intervals (seeded) of means and of paired differences, and two baselines
  every method must beat: a seeded random map and a centre-prior map (a centred Gaussian).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .state import restored_modes

Box = Sequence[float]
BLUR_KERNEL = 11
BLUR_SIGMA = 5.0


# --- pointing game ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PointingResult:
    """Where one map puts its mass: share per region, peak pixel ``(x, y)``, and the verdict."""

    shares: np.ndarray  # share of the map's total mass inside each region, in region order
    peak: tuple[int, int]
    peak_region: int | None  # index of the region holding the peak, None if outside all
    hit: bool  # the own region holds the largest share


def region_shares(heatmap: np.ndarray, boxes: Sequence[Box]) -> np.ndarray:
    """Share of the (non-negative) map's mass inside each ``(left, top, right, bottom)`` box."""
    values = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, None)
    total = values.sum()
    masses = np.array([values[int(t):int(b), int(l):int(r)].sum() for l, t, r, b in boxes])
    return masses / total if total > 0 else np.zeros(len(boxes))


def pointing_game(heatmap: np.ndarray, boxes: Sequence[Box], own: int) -> PointingResult:
    """Mass shares per box and whether box ``own`` (the object's region) holds the most mass.

    A map with no mass at all points nowhere and never hits.
    """
    shares = region_shares(heatmap, boxes)
    y, x = np.unravel_index(int(np.argmax(heatmap)), np.shape(heatmap))
    inside = [i for i, (l, t, r, b) in enumerate(boxes) if l <= x < r and t <= y < b]
    hit = bool(shares.sum() > 0 and int(np.argmax(shares)) == own)
    return PointingResult(shares, (int(x), int(y)), inside[0] if inside else None, hit)


# --- baselines -----------------------------------------------------------------------------------


def random_map(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Uniform noise in [0, 1] from its own seeded generator: the map that knows nothing."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def center_map(shape: tuple[int, int], sigma_fraction: float = 0.25) -> np.ndarray:
    """A centred Gaussian (sigma = ``sigma_fraction`` of each side), peak 1: photographers' prior.

    Objects in ImageNet photos sit near the centre, so a method has to beat this to show it looks
    at the image at all.
    """
    height, width = shape
    ys = (np.arange(height) + 0.5 - height / 2) / (sigma_fraction * height)
    xs = (np.arange(width) + 0.5 - width / 2) / (sigma_fraction * width)
    return np.exp(-0.5 * (ys[:, None] ** 2 + xs[None, :] ** 2)).astype(np.float32)


def upsample(maps: torch.Tensor | np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of ``(h, w)`` or ``(..., h, w)`` maps to ``size = (H, W)`` (as torchcam does)."""
    tensor = torch.as_tensor(np.asarray(maps, dtype=np.float32) if isinstance(maps, np.ndarray) else maps).float()
    lead = tensor.shape[:-2]
    flat = tensor.reshape(-1, 1, *tensor.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.reshape(*lead, *size)


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


def step_counts(n_pixels: int, steps: int) -> torch.Tensor:
    """How many pixels are changed at each of the ``steps + 1`` points (0 .. all)."""
    return torch.round(torch.linspace(0, n_pixels, steps + 1)).long()


def perturbed_inputs(
    x: torch.Tensor, start: torch.Tensor, rank: torch.Tensor, steps: int
) -> torch.Tensor:
    """``(steps + 1, C, H, W)`` inputs where the first k-th share of ranked pixels come from ``x``.

    Deletion is ``perturbed_inputs(baseline, x, ...)`` read as "pixels replaced by the baseline";
    insertion is ``perturbed_inputs(x, blurred, ...)``: ``start`` is the picture at fraction 0.
    """
    counts = step_counts(rank.numel(), steps)
    chosen = (rank[None, :] < counts[:, None]).reshape(steps + 1, 1, *x.shape[-2:]).to(x.dtype)
    return start[None] * (1 - chosen) + x[None] * chosen


def class_probabilities(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor, class_idx: int, chunk: int = 16
) -> np.ndarray:
    """Softmax probability of ``class_idx`` for each input, in batches of ``chunk`` (no autograd).

    Inputs go in channels-last layout: with a model converted by :func:`channels_last_copy` that is
    about 1.5x less CPU for depthwise-convolution networks, and any model accepts it.
    """
    out = []
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], chunk):
            logits = model(inputs[start:start + chunk].contiguous(memory_format=torch.channels_last))
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
    chunk: int = 16,
) -> PerturbationCurves:
    """Deletion and insertion curves of several maps for one input ``x`` (C, H, W), batched.

    Each saliency map must have ``x``'s spatial size. The endpoints (untouched input, fully removed,
    fully blurred) are the same for every map, so they are computed once. Defaults: removed pixels
    become 0 in the normalised input, insertion starts from :func:`blurred`.
    """
    x = x.squeeze(0) if x.dim() == 4 else x
    removed = torch.zeros_like(x) if deletion_baseline is None else deletion_baseline.reshape(x.shape)
    start = blurred(x) if insertion_start is None else insertion_start.reshape(x.shape)
    interior = []
    for index, saliency in enumerate(saliencies):
        if tuple(np.shape(saliency)) != tuple(x.shape[-2:]):
            raise ValueError(f"saliency map {index} has shape {tuple(np.shape(saliency))}, input is {tuple(x.shape[-2:])}")
        rank = saliency_rank(saliency, seed)
        # deletion: ranked pixels taken from the baseline; insertion: ranked pixels taken from x
        interior.append(perturbed_inputs(removed, x, rank, steps)[1:-1])
        interior.append(perturbed_inputs(x, start, rank, steps)[1:-1])
    batch = torch.cat([torch.stack([x, removed, start]), *interior])
    probs = class_probabilities(model, batch, class_idx, chunk)
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
    chunk: int = 16,
) -> np.ndarray:
    """Class probability on each explanation map ``x * mask`` (masks in [0, 1], input size)."""
    x = x.squeeze(0) if x.dim() == 4 else x
    stacked = torch.stack([torch.as_tensor(np.asarray(m, dtype=np.float32)).clamp(0, 1) for m in masks])
    return class_probabilities(model, x[None] * stacked[:, None], class_idx, chunk)


def average_drop(full: Sequence[float], explained: Sequence[float]) -> float:
    """Mean relative drop ``max(0, Y - O) / Y`` of the class probability (Grad-CAM++; lower is better)."""
    y, o = np.asarray(full, dtype=np.float64), np.asarray(explained, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, y - o) / y))


def increase_in_confidence(full: Sequence[float], explained: Sequence[float]) -> float:
    """Share of images whose probability rises on the explanation map, ``O > Y`` (higher is better)."""
    y, o = np.asarray(full, dtype=np.float64), np.asarray(explained, dtype=np.float64)
    return float(np.mean(o > y))


# --- map similarity ------------------------------------------------------------------------------


def _is_flat(values: np.ndarray) -> bool:
    """No ranking: non-finite, or no spread beyond float rounding *relative to the map's own scale*.

    Relative, because the gradient of a fully randomised network is about 1e-14 everywhere and still
    ranks its pixels; an absolute threshold would call it flat and score it 0 instead of measuring it.
    """
    if not np.all(np.isfinite(values)):
        return True
    scale = float(np.abs(values).max())
    return scale == 0.0 or float(np.ptp(values)) <= 1e-12 * scale


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation of two maps' pixels; 0 when either map is flat (it ranks nothing)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"maps differ in size: {a.size} vs {b.size} pixels")
    if _is_flat(a) or _is_flat(b):
        return 0.0
    return float(spearmanr(a, b).statistic)


def _unit(values: np.ndarray) -> np.ndarray:
    values = np.nan_to_num(np.asarray(values, dtype=np.float64))
    span = np.ptp(values)
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def structural_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM of two maps, each min-max scaled to [0, 1] first (a flat map becomes all zeros)."""
    from skimage.metrics import structural_similarity as ssim

    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ValueError(f"maps differ in shape: {a.shape} vs {b.shape}")
    window = min(7, *(s if s % 2 else s - 1 for s in a.shape))
    return float(ssim(a, b, data_range=1.0, win_size=window))


# --- cascading randomisation ---------------------------------------------------------------------


def randomisation_stages(model: nn.Module) -> list[str]:
    """Names of the model's weight-carrying stages from the output down.

    Top-level children in registration order, with a ``ModuleList``/``Sequential`` of blocks
    expanded one level, reversed. For the models here (EfficientNet-Lite0: stem, blocks, head, fc;
    ResNet: conv1, layer1..4, fc) registration order is execution order.
    """
    stages = []
    for name, child in model.named_children():
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            stages += [f"{name}.{sub}" for sub, block in child.named_children() if any(True for _ in block.parameters())]
        elif any(True for _ in child.parameters()):
            stages.append(name)
    return stages[::-1]


def reinitialise(module: nn.Module) -> None:
    """Give every parameter of ``module`` a fresh default initialisation, from the global RNG.

    Convolutions and linear layers use their own ``reset_parameters``; batch norms get weight 1
    and bias 0 but keep their running statistics, which are measured data, not learned weights.
    """
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._NormBase):
            if sub.affine:
                nn.init.ones_(sub.weight)
                nn.init.zeros_(sub.bias)
        elif hasattr(sub, "reset_parameters") and any(True for _ in sub.parameters(recurse=False)):
            sub.reset_parameters()


def cascading_randomisation(model: nn.Module, seed: int = 0, stages: Sequence[str] | None = None) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(stage, model)`` with stages re-initialised cumulatively from the top, seeded.

    A copy is changed; ``model`` itself is never touched. Stage ``i`` is re-initialised under seed
    ``seed + i``, so the same seed gives the same randomised weights at every depth.
    """
    copied = copy.deepcopy(model).eval()
    modules = dict(copied.named_modules())
    for depth, stage in enumerate(stages if stages is not None else randomisation_stages(copied)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + depth)
            reinitialise(modules[stage])
        yield stage, copied


def gradient_saliency(model: nn.Module, x: torch.Tensor, class_idx: int) -> np.ndarray:
    """Plain gradient map (Simonyan et al. 2014): max over channels of |d logit_c / d input|.

    Only the input's gradient is computed; parameter ``.grad`` fields are left alone.
    """
    with restored_modes(model), torch.enable_grad(), torch.inference_mode(False):
        model.eval()
        inputs = (x if x.dim() == 4 else x[None]).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(inputs)[0, class_idx], inputs)
    return grad[0].abs().amax(dim=0).numpy().astype(np.float32)


# --- bootstrap -----------------------------------------------------------------------------------


def bootstrap_ci(values: Sequence[float], n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean: resample with replacement, seeded."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ValueError("bootstrap of no values")
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(n_boot, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n_boot: int = 10_000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Interval of the mean of ``a - b`` over the same images (pairs resampled together)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in size: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, n_boot, seed, level)
