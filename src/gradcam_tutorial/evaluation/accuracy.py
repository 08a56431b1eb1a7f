"""Top-1 and top-k accuracy on photos with known classes: how often the model being explained is right."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..data import Sample, ValPhoto
from ..images import load_image, restore_aspect
from ..models import ModelSpec
from . import faithfulness


def top_k_accuracy(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[Sample | ValPhoto],
    k: int = 5,
    batch: int = faithfulness.SCORING_BATCH,
    undo_stretch: bool = False,
) -> tuple[float, float]:
    """Top-1 and top-``k`` accuracy on ``photos`` with the model's own preprocessing.

    ``undo_stretch`` first gives each validation photo back its original aspect ratio
    (:func:`~gradcam_tutorial.images.restore_aspect`), so that Resize + CenterCrop sees the shapes
    the model was trained on rather than the mirror's 227x227 squash. Scoring runs on a
    channels-last copy of the model (1.6x less CPU time for EfficientNet-Lite0, same logits), in
    batches of :data:`~.faithfulness.SCORING_BATCH` (larger ones cost more per photo on a CPU).
    """
    if not photos:
        raise ValueError("no photos to score")
    if undo_stretch and not all(isinstance(photo, ValPhoto) for photo in photos):
        raise TypeError("undo_stretch needs validation photos (ValPhoto), which know their original size")
    hits = top_k_hits(model, spec, photos, k, batch, undo_stretch)
    return float(hits[:, 0].mean()), float(hits[:, 1].mean())


def top_k_hits(
    model: nn.Module,
    spec: ModelSpec,
    photos: Sequence[Sample | ValPhoto],
    k: int = 5,
    batch: int = faithfulness.SCORING_BATCH,
    undo_stretch: bool = False,
) -> np.ndarray:
    """``(n, 2)`` booleans per photo: its class is the top one, its class is among the top ``k``
    (what :func:`top_k_accuracy` averages, kept per photo for the full run's records)."""
    scorer = faithfulness.channels_last_copy(model)
    hits = []
    for start in range(0, len(photos), batch):
        chunk = photos[start : start + batch]
        images = [load_image(photo.path) for photo in chunk]
        if undo_stretch:
            sizes = [photo.original_size for photo in chunk if isinstance(photo, ValPhoto)]  # all, checked above
            images = [restore_aspect(image, size) for image, size in zip(images, sizes, strict=True)]
        with torch.inference_mode():
            x = torch.cat([spec.preprocess(image) for image in images]).contiguous(memory_format=torch.channels_last)
            ranked = scorer(x).topk(k, dim=1).indices
        truth = torch.tensor([photo.class_index for photo in chunk]).unsqueeze(1)
        hits.append(torch.stack([(ranked[:, :1] == truth).any(dim=1), (ranked == truth).any(dim=1)], dim=1).numpy())
    return np.concatenate(hits) if hits else np.zeros((0, 2), dtype=bool)
