"""Targets beyond a class index: what score Grad-CAM explains, as a function of the model's output.

A target is any callable that takes the model's whole output for a batch (a logits tensor, a
segmentation model's ``{"out": ...}`` dictionary, an embedding) and returns one score per image,
shape ``(B,)``. Pass one, or a list of several, as ``targets`` to :meth:`~.cam.GradCAM.compute`:
all of them are explained from one forward pass, one walk back each. Three are ready here:

* :class:`MultiLabel`: a multi-label model's sigmoid probability of one label;
* :class:`SegmentationMask`: a segmentation model's class score summed over a pixel mask ("why
  these pixels are this class");
* :class:`Similarity`: the cosine similarity of an embedding to a reference embedding ("what
  makes this image look like that one").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

Target = Callable[[Any], torch.Tensor]


class TargetScoreError(ValueError):
    """A target's score is not one number per image."""


def _tensor(output: Any, key: str = "out") -> torch.Tensor:
    """The tensor of a model output: itself, or ``output[key]`` (torchvision's segmentation models)."""
    return output[key] if isinstance(output, dict) else output


@dataclass(frozen=True)
class MultiLabel:
    """``sigmoid(logit[label])``: for a model trained with one independent sigmoid per label, the
    label's own probability (a softmax would set the labels against one another)."""

    label: int

    def __call__(self, output: Any) -> torch.Tensor:
        return torch.sigmoid(_tensor(output)[:, self.label])


@dataclass(frozen=True)
class SegmentationMask:
    """A segmentation model's score of ``category`` summed over ``mask`` (``(H, W)``, the output's
    size; 1 where a pixel counts, as pytorch-grad-cam's semantic-segmentation target)."""

    category: int
    mask: torch.Tensor

    def __call__(self, output: Any) -> torch.Tensor:
        scores = _tensor(output)[:, self.category]
        if scores.shape[-2:] != self.mask.shape:
            raise TargetScoreError(f"the mask is {tuple(self.mask.shape)} but the output is {tuple(scores.shape[-2:])}")
        return (scores * self.mask.to(scores.device, scores.dtype)).sum(dim=(-2, -1))


@dataclass(frozen=True)
class Similarity:
    """Cosine similarity of each image's embedding (``(B, D)`` output) to ``reference`` (``(D,)``)."""

    reference: torch.Tensor

    def __call__(self, output: Any) -> torch.Tensor:
        embedding = _tensor(output)
        return torch.nn.functional.cosine_similarity(embedding, self.reference.to(embedding).unsqueeze(0), dim=1)


def is_target_list(targets: object) -> bool:
    """``targets`` is one target callable or a non-empty sequence of them (not class indices)."""
    if callable(targets) and not isinstance(targets, torch.Tensor):
        return True
    return (
        isinstance(targets, Sequence) and not isinstance(targets, str) and bool(targets) and all(map(callable, targets))
    )


def target_scores(targets: Target | Sequence[Target], output: Any, batch: int) -> torch.Tensor:
    """``(B, K)`` scores of ``K`` targets, each checked to be one number per image."""
    chosen = [targets] if callable(targets) else list(targets)
    columns = []
    for number, target in enumerate(chosen):
        score = target(output)
        if not isinstance(score, torch.Tensor) or score.shape != (batch,):
            shape = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
            raise TargetScoreError(
                f"target {number} ({type(target).__name__}) gave {shape}, not one score per image ({batch},)"
            )
        columns.append(score)
    return torch.stack(columns, dim=1)
