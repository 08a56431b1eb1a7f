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


# Our method name -> the class implementing it in pytorch-grad-cam and in torchcam.
PYTORCH_GRAD_CAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMPlusPlus",
    "hirescam": "HiResCAM",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}
TORCHCAM_CLASSES = {
    "gradcam": "GradCAM",
    "gradcam++": "GradCAMpp",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "scorecam": "ScoreCAM",
}


def pytorch_grad_cam_maps(
    method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]
) -> list[torch.Tensor]:
    """pytorch-grad-cam's raw maps of ``method`` per class: ``(B, h, w)``, post-ReLU, layer resolution.

    Its ``__call__`` returns maps resized to the input and min-max scaled; ``get_cam_image`` is the
    step before that (the method's weights and activations, summed over channels), so calling it on
    the hooked activations and gradients, then ReLU, gives the raw map. Score-CAM needs no backward,
    so for it only the forward pass runs before (its masked passes run once, in ``get_cam_image``).
    A module called more than once (EfficientNet's shared ``_swish``) is hooked at every call; both
    lists end up in forward order, and the last call is the one that feeds the classifier.
    """
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, PYTORCH_GRAD_CAM_CLASSES[method])(model=model, target_layers=[layer])
    maps = []
    try:
        for class_idx in classes:
            targets = [ClassifierOutputTarget(class_idx) for _ in range(x.shape[0])]
            hooked = cam.activations_and_grads
            if method == "scorecam":
                with torch.no_grad():
                    hooked(x)
                gradient = None
            else:
                cam(input_tensor=x, targets=targets)
                gradient = hooked.gradients[-1].cpu().numpy()
            activation = hooked.activations[-1].cpu().numpy()
            raw = cam.get_cam_image(x, layer, targets, activation, gradient, eigen_smooth=False)
            maps.append(torch.from_numpy(np.maximum(raw, 0)).float())
    finally:
        cam.activations_and_grads.release()
    return maps


def pytorch_grad_cam_heatmaps(
    method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]
) -> list[np.ndarray]:
    """pytorch-grad-cam used as its users do (what the benchmark times): one call per class,
    maps at input size, scaled to [0, 1]."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, PYTORCH_GRAD_CAM_CLASSES[method])(model=model, target_layers=[layer])
    try:
        return [cam(input_tensor=x, targets=[ClassifierOutputTarget(c)] * x.shape[0]) for c in classes]
    finally:
        cam.activations_and_grads.release()


def torchcam_maps(
    method: str, model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]
) -> list[torch.Tensor]:
    """torchcam's raw maps of ``method`` per class: one forward, then one extractor call per class
    (``autograd.grad`` through the graph kept alive in between, or Score-CAM's masked passes)."""
    import torchcam.methods

    extractor_class = getattr(torchcam.methods, TORCHCAM_CLASSES[method])
    with extractor_class(model, target_layer=layer, input_shape=tuple(x.shape[1:])) as extractor:
        if method == "scorecam":
            with torch.no_grad():
                model(x)
            return [extractor(class_idx=c, normalized=False)[0].float() for c in classes]
        # torchcam's XGrad-CAM adds 1e-8 to each channel's spatial sum, pytorch-grad-cam and we 1e-7;
        # on activations as small as a random MobileNet's (1e-12) that alone changes the map.
        options = {"eps": 1e-7} if method == "xgradcam" else {}
        scores = model(x)
        last = len(classes) - 1
        return [
            extractor(class_idx=c, scores=scores, normalized=False, retain_graph=k < last, **options)[0]
            .detach()
            .float()
            for k, c in enumerate(classes)
        ]


def _pytorch_grad_cam(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]
) -> list[torch.Tensor]:
    return pytorch_grad_cam_maps("gradcam", model, layer, x, classes)


def _captum(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]) -> list[torch.Tensor]:
    from captum.attr import LayerGradCam

    explainer = LayerGradCam(model, layer)
    return [explainer.attribute(x, target=c, relu_attributions=True).detach()[:, 0].float() for c in classes]


def _torchcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: Sequence[int]) -> list[torch.Tensor]:
    return torchcam_maps("gradcam", model, layer, x, classes)


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
