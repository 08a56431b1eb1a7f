"""Grad-CAM's relatives on the same one-pass machinery: forward once, walk back once per class.

Every gradient-based variant differs from Grad-CAM only in how it turns the layer's activation ``A``
(``B, C, h, w``) and the gradient ``G = d y_c / d A`` into a map (``B, h, w``, before the ReLU). That
rule is a pure function (:data:`~.cam.Combine`), and :data:`COMBINE` holds them all, Grad-CAM's own
(:func:`~.cam.combine_gradcam`) included. :class:`~.cam.GradCAM` does the forward pass, the hooks, the
targets and the ReLU and leaves the model as found; each class here only sets ``combine`` to its
table entry, and :func:`compute_methods` applies the table's functions to one shared gradient.
Scores ``y_c`` are logits, as in Grad-CAM. Every map ends in a ReLU.

To add a gradient-based variant:

1. write ``combine_<name>(activation, grad) -> map`` below, with a docstring that cites the paper and
   says which library's definition it follows;
2. add ``"<name>": combine_<name>`` to :data:`COMBINE`; :data:`CAM_METHODS` then holds a
   :class:`~.cam.GradCAM` subclass that uses it, and :func:`compute_methods` (with the report's
   comparison of variants) computes it. A named public class is optional: subclass
   :class:`~.cam.GradCAM` with ``combine = staticmethod(combine_<name>)``, list it in
   ``_NAMED_CLASSES``, and export it;
3. teach the peer oracle (``evaluation/peers.py``) the name if a peer library has the method: the
   tests run every entry of :data:`COMBINE` against the peers and against its class.

Score-CAM uses no gradient, so it is a class (:class:`ScoreCAM`) and not a table entry.

Where the libraries disagree with each other, the docstring of the function says which definition is
used and which library agrees; ``tests/test_methods.py`` checks each against that library.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .cam import CAMResult, Combine, GradCAM, Targets, combine_gradcam
from .layers import LayerError
from .state import restored_modes
from .tokens import Reshape


def combine_gradcam_plus_plus(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al., 2018): pixel-wise weights that favour several instances.

    The paper's alphas need second and third derivatives; with the class score passed through
    ``exp`` they become powers of the first, which is how the paper and pytorch-grad-cam compute
    them (same ``1e-6`` in the denominator; our maps agree). torchcam sums ``A * G**3`` over space in
    the denominator instead of ``sum(A) * G**3`` per pixel, a different formula.
    """
    grad_2 = grad.pow(2)
    activation_sum = activation.sum(dim=(2, 3), keepdim=True)
    alpha = grad_2 / (2 * grad_2 + activation_sum * grad_2 * grad + 1e-6)
    alpha = torch.where(grad != 0, alpha, torch.zeros_like(alpha))
    weights = (torch.relu(grad) * alpha).sum(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1)


def combine_hirescam(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin, 2020): ``sum_k G_k * A_k`` pixel by pixel, no spatial averaging.

    Before the ReLU, at a layer followed only by global average pooling and a linear layer, the map
    sums to the class score minus its bias, and equals Grad-CAM's there (the gradient is constant
    over space); deeper in the network the two differ wherever the gradient varies over space.
    """
    return (grad * activation).sum(dim=1)


def combine_xgradcam(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """XGrad-CAM (Fu et al., 2020): channel weights ``sum_ij G * A / sum_ij A`` (``1e-7`` added below,
    as pytorch-grad-cam does)."""
    activation_sum = activation.sum(dim=(2, 3), keepdim=True)
    weights = (grad * activation / (activation_sum + 1e-7)).sum(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1)


def combine_layercam(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al., 2021): ``sum_k ReLU(G_k) * A_k`` pixel by pixel."""
    return (torch.relu(grad) * activation).sum(dim=1)


# Every gradient-based method by name, in the order the report and the tutorial show them: the one
# place a variant is registered. Values map (activation, grad) to the map before the ReLU.
COMBINE: dict[str, Combine] = {
    "gradcam": combine_gradcam,
    "gradcam++": combine_gradcam_plus_plus,
    "hirescam": combine_hirescam,
    "xgradcam": combine_xgradcam,
    "layercam": combine_layercam,
}


class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ on :class:`~.cam.GradCAM`'s machinery: see :func:`combine_gradcam_plus_plus`."""

    combine = staticmethod(combine_gradcam_plus_plus)


class HiResCAM(GradCAM):
    """HiResCAM on :class:`~.cam.GradCAM`'s machinery: see :func:`combine_hirescam`."""

    combine = staticmethod(combine_hirescam)


class XGradCAM(GradCAM):
    """XGrad-CAM on :class:`~.cam.GradCAM`'s machinery: see :func:`combine_xgradcam`."""

    combine = staticmethod(combine_xgradcam)


class LayerCAM(GradCAM):
    """LayerCAM on :class:`~.cam.GradCAM`'s machinery: see :func:`combine_layercam`."""

    combine = staticmethod(combine_layercam)


class ScoreCAM(GradCAM):
    """Score-CAM (Wang et al., 2020): channel weights from masked forward passes, no gradient.

    Each channel ``A_k`` is upsampled to the input (bilinear, pixel centres aligned, as every map in
    this package), min-max scaled to [0, 1] (``1e-8`` added to the span, as the peers do) and
    multiplies the normalised input, so masked-out pixels are the dataset's mean colour. The class's
    logits for the ``C`` masked inputs, softmaxed over channels, are the weights: pytorch-grad-cam
    and torchcam both do this (torchcam's subtraction of the unmasked score is a constant the
    softmax removes). The paper's first release used the class *probability* without the channel
    softmax. pytorch-grad-cam upsamples with ``align_corners=True`` and torchcam scales before
    upsampling; the tests check ours against pytorch-grad-cam with its upsampling set to ours.

    One set of masked passes per image serves every requested class. A channel that is constant over
    the map (after a ReLU many channels of a late layer are all zero: 352 to 816 of EfficientNet-Lite0's
    1280 at ``features`` on eight validation photos) has a span of 0, so its scaled mask is 0
    everywhere and its masked input the zero image: one pass scores all such channels, which about
    halves Score-CAM's cost there. ``batch_size`` masked inputs go
    through the model at once. Bigger is not faster on a CPU: EfficientNet-Lite0 took 35 ms per
    224-pixel image in batches of 4 on this project's 2-core machine, 47 ms in batches of 32 (a GPU
    wants larger batches).
    """

    accepts_score_targets = False  # its masked passes score classes of the output

    def __init__(
        self, model: nn.Module, target_layer: nn.Module | str, batch_size: int = 4, reshape: Reshape | None = None
    ):
        super().__init__(model, target_layer, reshape)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.batch_size = batch_size

    def _class_maps(
        self, x: torch.Tensor, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        return self.class_maps(x, activation, classes)

    def class_maps(self, input_batch: torch.Tensor, activation: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Score-CAM's ``(B, K, h, w)`` maps, after the ReLU, of ``classes`` (a ``(B, K)`` index tensor).

        What :meth:`compute` does after its forward pass, public so that a caller that already has the
        layer's ``activation`` (``B, C, h, w``) for ``input_batch`` (on the model's device and dtype),
        such as :func:`compute_methods`, adds Score-CAM without a second hooked pass. The masked passes
        run in eval mode, and every module's train/eval flag is put back afterwards.
        """
        activation = self._grid(activation.detach())
        with restored_modes(self.model):
            self.model.eval()  # in train mode each masked pass would move the batch norms' statistics
            weights = self._score_weights(input_batch, activation, classes)  # (B, K, C)
        return torch.relu(torch.einsum("bkc,bchw->bkhw", weights, activation))

    def _score_weights(self, x: torch.Tensor, activation: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        batch, channels = activation.shape[:2]
        scores = activation.new_empty(batch, channels, classes.shape[1])
        with torch.inference_mode():  # plain inference passes: no autograd bookkeeping at all
            self._score_masked(x, activation, classes, scores)
        return torch.softmax(scores, dim=1).transpose(1, 2)

    def _score_masked(
        self, x: torch.Tensor, activation: torch.Tensor, classes: torch.Tensor, scores: torch.Tensor
    ) -> None:
        """Fill ``scores[b, k, j]``: logit of class ``classes[b, j]`` with image ``b`` masked by channel ``k``."""
        for b in range(activation.shape[0]):
            flat = activation[b].flatten(1)
            constant = flat.amax(dim=1) == flat.amin(dim=1)
            varying = (~constant).nonzero().flatten()
            for start in range(0, len(varying), self.batch_size):
                channels = varying[start : start + self.batch_size]
                masks = F.interpolate(
                    activation[b, channels, None], size=x.shape[-2:], mode="bilinear", align_corners=False
                )
                low = masks.amin(dim=(2, 3), keepdim=True)
                high = masks.amax(dim=(2, 3), keepdim=True)
                masks = (masks - low) / (high - low + 1e-8)
                scores[b, channels] = self.model(x[b] * masks)[:, classes[b]]
            if constant.any():
                scores[b, constant] = self.model(torch.zeros_like(x[b : b + 1]))[0, classes[b]]


# The public classes of the gradient-based methods, matched to their entries of COMBINE by ``combine``.
_NAMED_CLASSES: tuple[type[GradCAM], ...] = (GradCAM, GradCAMPlusPlus, HiResCAM, XGradCAM, LayerCAM)


def _class_of(name: str, combine: Combine) -> type[GradCAM]:
    """The named class that uses this entry of :data:`COMBINE`, or, for an entry without one, a plain
    :class:`~.cam.GradCAM` subclass: registering the function is then enough for :data:`CAM_METHODS`."""
    for cls in _NAMED_CLASSES:
        if cls.combine is combine:
            return cls
    namespace = {
        "combine": staticmethod(combine),
        "__doc__": f"``{name}`` of :data:`COMBINE` on :class:`~.cam.GradCAM`'s machinery.",
        "__module__": __name__,
    }
    return cast(type[GradCAM], type(f"GradCAM[{name}]", (GradCAM,), namespace))


# Every method by name, each a class with the same interface (``compute``, ``compute_heatmap``): the
# gradient-based ones in the order of COMBINE, then Score-CAM.
CAM_METHODS: dict[str, type[GradCAM]] = {name: _class_of(name, combine) for name, combine in COMBINE.items()}
CAM_METHODS["scorecam"] = ScoreCAM


class _Several(GradCAM):
    """Several methods from one forward pass: the gradient-based ones (entries of :data:`COMBINE`)
    share one walk back per class, Score-CAM adds its masked passes."""

    def __init__(
        self, model: nn.Module, target_layer: nn.Module | str, names: Sequence[str], reshape: Reshape | None = None
    ):
        super().__init__(model, target_layer, reshape)
        self.names = tuple(names)
        # looked up once, so that every class of the call uses the same function per name
        self._combines = {n: COMBINE[n] for n in self.names if n != "scorecam"}
        self._score_cam = ScoreCAM(model, target_layer, reshape=self.reshape) if "scorecam" in self.names else None
        self.accepts_score_targets = self._score_cam is None

    def _class_maps(
        self, x: torch.Tensor, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        per_method: dict[str, list[torch.Tensor]] = {n: [] for n in self._combines}
        scores = logits.gather(1, classes)
        grid = self._grid(activation.detach())
        for k in range(classes.shape[1] if self._combines else 0):
            (grad,) = torch.autograd.grad(scores[:, k].sum(), activation, retain_graph=True, allow_unused=True)
            if grad is None:
                raise LayerError(f"the model's output does not depend on layer {self.layer_name!r}")
            grid_grad = self._grid(grad)
            for name, combine in self._combines.items():
                per_method[name].append(torch.relu(combine(grid, grid_grad)))
        stacks = {n: torch.stack(maps, dim=1) for n, maps in per_method.items()}
        if self._score_cam is not None:
            stacks["scorecam"] = self._score_cam.class_maps(x, activation, classes)
        return torch.cat([stacks[n] for n in self.names], dim=1)


def compute_methods(
    model: nn.Module,
    target_layer: nn.Module | str,
    input_batch: torch.Tensor,
    targets: Targets = None,
    names: Sequence[str] = tuple(CAM_METHODS),
    reshape: Reshape | None = None,
) -> dict[str, CAMResult]:
    """Maps of several methods for the same classes, from one forward pass.

    The gradient-based methods share one walk back through the head per class (their maps equal
    each class's own ``compute``); Score-CAM adds its masked passes. ``names`` are entries of
    :data:`COMBINE`, read at the call (so one registered after import counts), and ``"scorecam"``.
    Returns ``{name: CAMResult}`` in the order of ``names``. ``reshape`` and target callables as
    for :class:`~.cam.GradCAM` (Score-CAM takes class indices only).
    """
    known = [*COMBINE, "scorecam"]
    if any(n not in known for n in names) or not names or len(set(names)) != len(names):
        raise ValueError(f"names must be distinct methods from {', '.join(known)}; got {list(names)}")
    with _Several(model, target_layer, names, reshape) as several:
        result = several.compute(input_batch, targets)
    k = result.class_indices.shape[1]
    return {
        name: CAMResult(result.maps[:, i * k : (i + 1) * k], result.class_indices, result.probabilities, result.logits)
        for i, name in enumerate(names)
    }
