"""Laying a layer's output out as a grid ``(B, C, h, w)``, so Grad-CAM can explain transformers.

Grad-CAM weighs channels over a spatial grid. A convolutional layer already gives one; a vision
transformer's block gives tokens ``(B, 1 + N, D)``, a class token then ``N`` patch tokens in
row-major order, and torchvision's Swin Transformer keeps its stages channels-last ``(B, H, W, C)``.
A *reshape* is a function from the layer's output to the grid; :class:`~.cam.GradCAM` applies it to
the activation and to the gradient alike (a pure re-layout: dropping the class token, permuting).

Which layer to hook in a vision transformer: the input of the last block's attention
(``encoder.layers.encoder_layer_11.ln_1`` in torchvision's ``vit_b_16``, :func:`default_token_layer`),
not the last block's output. torchvision's head reads only the class token (``x[:, 0]`` after the
final LayerNorm, which normalises each token alone), so the patch tokens at the last block's output
do not reach the score at all: their gradient is exactly zero and so is every map there. One
attention step earlier, every patch token feeds the class token through attention. In a Swin
Transformer every position reaches the head (it averages all of them), so its last stage or
``norm`` works.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from .layers import LayerError

Reshape = Callable[[torch.Tensor], torch.Tensor]


def vit_grid(tokens: torch.Tensor) -> torch.Tensor:
    """``(B, 1 + N, D)`` tokens of a ViT with a class token -> ``(B, D, s, s)``, ``N = s * s``."""
    if tokens.dim() != 3:
        raise LayerError(f"expected (batch, tokens, channels) from a ViT block, got shape {tuple(tokens.shape)}")
    patches = tokens.shape[1] - 1
    side = math.isqrt(patches)
    if patches < 1 or side * side != patches:
        raise LayerError(
            f"{tokens.shape[1]} tokens are a class token and {patches} patches, not a square grid; "
            "pass reshape= a function that lays them out as (batch, channels, height, width)"
        )
    return tokens[:, 1:].reshape(tokens.shape[0], side, side, tokens.shape[2]).permute(0, 3, 1, 2)


def channels_last_grid(activation: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, C)`` (torchvision's Swin stages) -> ``(B, C, H, W)``."""
    if activation.dim() != 4:
        raise LayerError(f"expected (batch, height, width, channels), got shape {tuple(activation.shape)}")
    return activation.permute(0, 3, 1, 2)


def auto_reshape(model: nn.Module, layer_name: str) -> Reshape | None:
    """The layout of ``layer_name``'s output in the transformers torchvision ships: ViT's encoder
    (tokens), Swin's ``features`` and ``norm`` (channels-last); ``None`` for anything else (a grid
    already, or a layout only the caller knows)."""
    from torchvision.models import SwinTransformer, VisionTransformer

    top = layer_name.split(".")[0]
    if isinstance(model, VisionTransformer) and top == "encoder":
        return vit_grid
    if isinstance(model, SwinTransformer) and top in ("features", "norm"):
        return channels_last_grid
    return None


def default_token_layer(model: nn.Module) -> str | None:
    """Where to hook torchvision's transformers (see the module's docstring), or ``None``."""
    from torchvision.models import SwinTransformer, VisionTransformer

    if isinstance(model, VisionTransformer):
        return f"encoder.layers.encoder_layer_{len(model.encoder.layers) - 1}.ln_1"
    if isinstance(model, SwinTransformer):
        return "norm"
    return None


def to_grid(activation: torch.Tensor, reshape: Reshape | None, layer_name: str) -> torch.Tensor:
    """The activation laid out as ``(B, C, h, w)`` with more than one position, or a one-sentence
    :class:`~.layers.LayerError` that says what to pass instead."""
    grid = reshape(activation) if reshape is not None else activation
    if grid.dim() != 4 or grid.shape[-1] * grid.shape[-2] <= 1:
        hint = (
            "choose a convolutional layer or block, or pass reshape= a function to (batch, channels, height, width)"
            if reshape is None
            else "the reshape must return (batch, channels, height, width) with more than one position"
        )
        raise LayerError(f"layer {layer_name!r} has no spatial output (shape {tuple(grid.shape)}); {hint}")
    return grid
