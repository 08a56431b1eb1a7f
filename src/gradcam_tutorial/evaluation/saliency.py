"""Guided Backpropagation (Springenberg et al. 2015), the control method of the sanity check.

Adebayo et al. (2018, "Sanity Checks for Saliency Maps") found that Guided Backprop's maps hardly
change when a network's weights are randomised: they mostly show edges of the input, whatever the
model learned. The plain gradient (:func:`gradient_saliency`) and
Grad-CAM change a lot. Guided Backprop is here so the tutorial can show a method failing the check.

How it is computed. At every ReLU-type non-linearity the backward pass keeps only positive
gradients, and only where the forward input let the signal through. The non-linearity's own
derivative already does the second part (ReLU: input > 0; ReLU6: 0 < input < 6), so the only
change needed is to clamp the gradient arriving at each activation's output to ``>= 0`` before the
activation's own backward runs: ``grad_in = [0 < x < 6] * max(grad_out, 0)`` for ReLU6, and
``[x > 0] * max(grad_out, 0)`` for ReLU, which is Springenberg's rule.

Mechanism. For the duration of one call, every ``nn.ReLU`` / ``nn.ReLU6`` module gets a *forward*
hook that passes its output through an identity autograd function whose backward clamps the
gradient at zero. Forward hooks (unlike full backward hooks) work on in-place activations such as
torchvision ResNet's ``ReLU(inplace=True)``, fire on every call of a module that is used several
times in one forward pass (EfficientNet-Lite's blocks call their one ``_swish`` twice), and do not
change the module tree. The hooks are removed, and every module's train/eval flag restored, in a
``finally`` block, so the model is left as found also when the call raises.

What is not guided:

* other activations (SiLU/Swish, GELU, sigmoid gates, Hardswish, ...) pass gradients through
  unchanged, with their own derivative, so on a network built from them the map is partly a plain
  gradient;
* activations applied functionally (``F.relu(x)``, ``x.clamp(min=0)``) instead of as modules are
  not seen by module hooks and also pass through unchanged. EfficientNet-Lite0 has none: all 33
  activation calls of its forward pass go through its 17 ``nn.ReLU6`` modules (it has no
  squeeze-and-excitation sigmoid either), and torchvision's ResNets use ``nn.ReLU`` modules only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..cam import GradCAM
from ..state import restored_modes

GUIDED_ACTIVATIONS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward lets only the positive part of the gradient through."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # a copy, not a view: later in-place ops on the activation's output must stay legal
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.clamp(min=0)


def _guide_output(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the activation's output, with its incoming gradient clamped to ``>= 0``."""
    return _PositiveGradient.apply(output)


def guided_gradients(model: nn.Module, x: torch.Tensor, class_idx: int) -> torch.Tensor:
    """Guided Backprop's signed input gradient of ``logit_c``, ``(1, 3, H, W)``.

    ``x`` is ``(1, 3, H, W)`` or ``(3, H, W)``. The model runs in eval mode; afterwards its modules'
    train/eval flags are as before, no hook is left on it, and its parameters' ``.grad`` fields are
    untouched (only the input's gradient is computed). Works when called under
    ``torch.inference_mode()`` or ``torch.no_grad()``. Only ``nn.ReLU`` and ``nn.ReLU6`` modules are
    guided; see the module docstring for what other or functionally applied activations do.
    """
    handles = []
    with restored_modes(model), torch.enable_grad(), torch.inference_mode(False):
        try:
            for module in model.modules():
                if isinstance(module, GUIDED_ACTIVATIONS):
                    handles.append(module.register_forward_hook(_guide_output))
            model.eval()
            inputs = (x if x.dim() == 4 else x[None]).detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(model(inputs)[0, class_idx], inputs)
        finally:
            for handle in handles:
                handle.remove()
    return grad


def guided_backprop(model: nn.Module, x: torch.Tensor, class_idx: int) -> np.ndarray:
    """Guided Backprop map: max over colour channels of ``|guided d logit_c / d input|``, ``(H, W)``.

    Reduced exactly like :func:`gradient_saliency`, so the two maps can be compared pixel for pixel;
    :func:`guided_gradients` has the conditions.
    """
    return guided_gradients(model, x, class_idx)[0].abs().amax(dim=0).cpu().numpy().astype(np.float32)


def guided_gradcam(
    model: nn.Module, target_layer: nn.Module | str, x: torch.Tensor, class_idx: int, mode: str = "bilinear"
) -> np.ndarray:
    """Guided Grad-CAM (Selvaraju et al., 2017), the Grad-CAM paper's full method, ``(3, H, W)``.

    Guided Backprop's signed input gradient times the raw Grad-CAM map upsampled to the input size
    (``mode``: ``"bilinear"`` with pixel centres aligned as every map here, or ``"nearest"``, captum's
    default). Pixel-sharp like Guided Backprop, but only where Grad-CAM points; it inherits Guided
    Backprop's insensitivity to the weights (the sanity check), which Grad-CAM alone does not have.
    """
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', not {mode!r}")
    with GradCAM(model, target_layer) as cam:
        raw = cam.compute(x, class_idx).maps[:1]
    size = tuple(x.shape[-2:])
    corners = {"align_corners": False} if mode == "bilinear" else {}
    upsampled = F.interpolate(raw, size=size, mode=mode, **corners)
    return (guided_gradients(model, x, class_idx)[0] * upsampled[0]).cpu().numpy().astype(np.float32)


def gradient_saliency(model: nn.Module, x: torch.Tensor, class_idx: int) -> np.ndarray:
    """Plain gradient map (Simonyan et al. 2014): max over channels of |d logit_c / d input|.

    Only the input's gradient is computed; parameter ``.grad`` fields are left alone.
    """
    with restored_modes(model), torch.enable_grad(), torch.inference_mode(False):
        model.eval()
        inputs = (x if x.dim() == 4 else x[None]).detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model(inputs)[0, class_idx], inputs)
    return grad[0].abs().amax(dim=0).numpy().astype(np.float32)
