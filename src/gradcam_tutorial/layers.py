"""Choosing the layer Grad-CAM looks at.

Two rules are offered. :func:`last_conv2d` is the original post's scan: the last ``nn.Conv2d`` in
``named_modules()`` order. That is registration order, not execution order, and the layer it finds
is a raw convolution output, before the batch norm, the residual addition and the ReLU that the
classifier actually reads. :func:`last_spatial_layer` instead runs the model once and picks the last
module, in execution order, whose output is still a spatial map: the features the head pools.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from .state import restored_modes


class LayerError(ValueError):
    """A target layer that does not exist in the model or has no spatial output."""


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> tuple[str, nn.Module]:
    """Accept a module or its dotted name; return both, or suggest the closest names."""
    modules = dict(model.named_modules())
    if isinstance(layer, nn.Module):
        for name, module in modules.items():
            if module is layer:
                return name, module
        raise LayerError(f"the given {type(layer).__name__} module is not part of this model")
    if not isinstance(layer, str):
        raise LayerError(f"target layer must be a module or a dotted name, not {layer!r}")
    if layer in modules and layer != "":
        return layer, modules[layer]
    close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise LayerError(f"the model has no layer named {layer!r}{hint}")


def last_conv2d(model: nn.Module) -> str:
    """The original post's choice: name of the last ``nn.Conv2d`` listed by ``named_modules()``."""
    name = None
    for candidate, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            name = candidate
    if name is None:
        raise LayerError("the model has no nn.Conv2d layer")
    return name


def trace_spatial_outputs(model: nn.Module, input_size: int = 224) -> list[tuple[str, tuple[int, ...]]]:
    """Run one forward pass on zeros and list ``(name, output shape)`` in the order modules finish.

    Every module's train/eval flag is restored afterwards and every hook removed, also on error.
    """
    seen: list[tuple[str, tuple[int, ...]]] = []
    handles = []
    for name, module in model.named_modules():
        if name:
            handles.append(
                module.register_forward_hook(
                    lambda _m, _i, out, name=name: (
                        seen.append((name, tuple(out.shape))) if isinstance(out, torch.Tensor) else None
                    )
                )
            )
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        with restored_modes(model), torch.no_grad():
            model.eval()
            model(torch.zeros(1, 3, input_size, input_size, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return seen


def last_spatial_layer(model: nn.Module, input_size: int = 224) -> str:
    """The last module to finish whose output is a feature map (N, C, H, W) with H*W > 1."""
    spatial = [
        name for name, shape in trace_spatial_outputs(model, input_size) if len(shape) == 4 and shape[2] * shape[3] > 1
    ]
    if not spatial:
        raise LayerError("no module of this model outputs a spatial (N, C, H, W) feature map")
    return spatial[-1]
