"""What every runner of the report shares: which photos, what the network sees of each, Grad-CAM's
map of it, and the one way a mean is summarised (with its bootstrap interval).

One subset rule (:func:`spread_positions`) serves every choice of photos, so that the faithfulness,
sanity and variant photos of a run, the notebook's live photos and Score-CAM's share of the
variant photos are picked alike and stay the same for the same counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from ..cam import GradCAM
from ..data import Sample, ValPhoto
from ..images import load_image
from ..models import ModelSpec
from ..viz import resize_heatmap
from . import stats

T = TypeVar("T")


def spread_positions(total: int, n: int) -> list[int]:
    """``n`` positions of ``0 .. total - 1`` evenly spaced, first and last included (fewer where
    rounding makes two equal, i.e. never for ``n <= total``)."""
    if not 1 <= n <= total:
        raise ValueError(f"choose between 1 and {total} photos, not {n}")
    return [int(i) for i in np.unique(np.round(np.linspace(0, total - 1, n)).astype(int))]


def spread(items: Sequence[T], n: int) -> list[T]:
    """``n`` of ``items`` evenly spaced through their order (always the same ones for the same n)."""
    return [items[i] for i in spread_positions(len(items), n)]


def model_input(sample: Sample | ValPhoto, spec: ModelSpec) -> torch.Tensor:
    """The ``(1, 3, H, W)`` network input of a photo."""
    return spec.preprocess(load_image(sample.path))


def input_list_sha256(photos: Sequence[ValPhoto | Sample]) -> str:
    """sha256 of the photos' own sha256s, one per line, in order: names the exact input set."""
    return hashlib.sha256("".join(f"{p.remote.sha256}\n" for p in photos).encode()).hexdigest()


def gradcam_map(cam: GradCAM, x: torch.Tensor, class_idx: int) -> tuple[torch.Tensor, float, tuple[int, int]]:
    """Grad-CAM for ``class_idx``, min-max normalised and resized to the input size, with the class's
    probability and the map's size at the layer (7x7 for 224 inputs here)."""
    result = cam.compute(x, class_idx)
    small = result.normalized()[0, 0]
    size = (x.shape[-2], x.shape[-1])
    placed = torch.from_numpy(resize_heatmap(small, size))
    return placed, float(result.probabilities[0, 0]), (small.shape[0], small.shape[1])


def interval(values: np.ndarray, seed: int = 0) -> dict[str, object]:
    """Mean and percentile-bootstrap 95 % interval."""
    low, high = stats.bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)), "ci95": [low, high]}


def rounded(value: Any, digits: int = 4) -> Any:
    """``value`` with every float rounded to ``digits`` decimals (for a JSON reader)."""
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    if isinstance(value, float):
        return round(value, digits)
    return value
