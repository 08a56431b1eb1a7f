"""The same Grad-CAM from three independent libraries, to check ours against.

pytorch-grad-cam, captum and torchcam each implement Grad-CAM their own way (tensor hooks with a full
backward, captum's layer-gradient machinery, ``autograd.grad`` on the hooked output). Agreement
with all three on raw maps is strong evidence that our one-pass shortcut computes the same thing.
They are test and benchmark extras, not runtime dependencies, so each is imported only when asked
for. Every call leaves the model as found: train/eval flag, and no parameter ``.grad`` left behind
by a peer that runs a full backward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from ..cam import GradCAM, normalize_maps
from ..layers import resolve_layer
from ..state import restored_modes

PEERS: tuple[str, ...] = ("pytorch_grad_cam", "captum", "torchcam")


@contextmanager
def preserve_model_state(model: nn.Module) -> Iterator[None]:
    """Undo what a peer does to a model: ``eval()`` forever, parameter gradients from ``backward``."""
    grads = {id(p): p.grad for p in model.parameters()}
    try:
        with restored_modes(model):
            yield
    finally:
        for parameter in model.parameters():
            parameter.grad = grads.get(id(parameter))


# Each peer called the way its users call it for several classes of the same input; every one
# returns the raw maps ``(B, h, w)`` (post-ReLU, not normalised, at the layer's resolution) per class.
PeerRunner = Callable[[nn.Module, nn.Module, torch.Tensor, Sequence[int]], list[torch.Tensor]]


def _pytorch_grad_cam(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]
) -> list[torch.Tensor]:
    # One call per class (its targets are one per image of the batch). Its __call__ returns maps
    # resized to the input and min-max scaled; get_cam_image is the step before that (weights *
    # activations summed over channels, per the hooked tensors), so calling it on the hooked
    # activations and gradients, then ReLU, gives the raw map at layer resolution. A module called
    # more than once (EfficientNet's shared ``_swish``) is hooked at every call; both lists end up in
    # forward order, and the last call is the one that feeds the classifier.
    from pytorch_grad_cam import GradCAM as PeerGradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = PeerGradCAM(model=model, target_layers=[layer])
    maps = []
    try:
        for class_idx in classes:
            targets = [ClassifierOutputTarget(class_idx) for _ in range(x.shape[0])]
            cam(input_tensor=x, targets=targets)
            hooked = cam.activations_and_grads
            activation, gradient = (t.cpu().numpy() for t in (hooked.activations[-1], hooked.gradients[-1]))
            raw = cam.get_cam_image(x, layer, targets, activation, gradient)
            maps.append(torch.from_numpy(np.maximum(raw, 0)).float())
    finally:
        cam.activations_and_grads.release()
    return maps


def _captum(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]) -> list[torch.Tensor]:
    from captum.attr import LayerGradCam

    explainer = LayerGradCam(model, layer)
    return [explainer.attribute(x, target=c, relu_attributions=True).detach()[:, 0].float() for c in classes]


def _torchcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]) -> list[torch.Tensor]:
    # One forward, then one autograd.grad per class through the graph kept alive in between.
    from torchcam.methods import GradCAM as PeerGradCAM

    with PeerGradCAM(model, target_layer=layer, input_shape=tuple(x.shape[1:])) as extractor:
        scores = model(x)
        last = len(classes) - 1
        return [
            extractor(class_idx=c, scores=scores, normalized=False, retain_graph=k < last)[0].detach().float()
            for k, c in enumerate(classes)
        ]


RUNNERS: dict[str, PeerRunner] = {
    "pytorch_grad_cam": _pytorch_grad_cam,
    "captum": _captum,
    "torchcam": _torchcam,
}


def peer_maps(peer: str, model: nn.Module, layer_name: str, x: torch.Tensor, class_idx: int) -> torch.Tensor:
    """A peer's raw Grad-CAM maps ``(B, h, w)`` (post-ReLU, not normalised) at the layer's resolution."""
    if peer not in RUNNERS:
        raise ValueError(f"unknown peer {peer!r}; choose one of {', '.join(PEERS)}")
    _, layer = resolve_layer(model, layer_name)
    with preserve_model_state(model), torch.enable_grad():
        model.eval()
        (maps,) = RUNNERS[peer](model, layer, x.detach().clone(), [int(class_idx)])
    return maps


def compare_with_peers(model: nn.Module, layer_name: str, x: torch.Tensor, class_idx: int) -> dict[str, float]:
    """Largest absolute difference between our normalised maps and each peer's, normalised alike."""
    with GradCAM(model, layer_name) as cam:
        ours = normalize_maps(cam.compute(x, int(class_idx)).maps[:, 0])
    return {
        peer: float((normalize_maps(peer_maps(peer, model, layer_name, x, class_idx)) - ours).abs().max())
        for peer in PEERS
    }
