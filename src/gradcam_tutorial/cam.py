"""Grad-CAM with one forward pass, for any number of classes and images.

Grad-CAM (Selvaraju et al., 2017) weights each channel ``k`` of a layer's activation ``A`` by the
spatial mean of the gradient of the class score ``y_c`` (the logit, before softmax) with respect to
that channel, sums the weighted channels and keeps the positive part::

    w_k = mean_ij d y_c / d A_k[i, j]        map = ReLU(sum_k w_k A_k)

Only the part of the network *after* the layer is needed for that gradient. So the forward pass runs
with autograd off until the layer's forward hook fires; the hook detaches the activation, marks it as
requiring a gradient and switches autograd on for the rest of the network. ``torch.autograd.grad``
then walks back through the head alone, once per requested class, and never touches parameter
gradients. Hooks live only for the duration of a call, so none can leak or stack.

The formula itself is :func:`combine_gradcam`, a pure function of the activation and the gradient;
its relatives in :mod:`.methods` are functions of the same shape (:data:`Combine`), collected with
it in :data:`~.methods.COMBINE`, and each class's :attr:`GradCAM.combine` is one of them.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np
import torch
from torch import nn

from .layers import LayerError, resolve_layer
from .state import restored_modes
from .targets import Target, is_target_list, target_scores
from .tokens import Reshape, auto_reshape, to_grid

# None: each image's top class; int: that class for every image; a flat sequence or 1-D tensor: one
# class per image (its length is the batch size); a nested sequence or (B, K) tensor: K per image;
# a target callable or a list of K of them (:mod:`.targets`): K scores of the output per image.
Targets = None | int | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | Target | Sequence[Target]

# How a gradient-based method turns the layer's activation A (B, C, h, w) and the gradient
# G = d y_c / d A (B, C, h, w) into its map (B, h, w) before the ReLU. A pure function, so that a
# variant is a formula that can be read, tested and registered alone, away from the hooks.
Combine = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def combine_gradcam(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's map before the ReLU: channels weighted by their mean gradient, then summed.

    A module function rather than a method, so that :data:`~.methods.COMBINE` lists it beside its
    relatives and :class:`GradCAM` uses it without importing them.
    """
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return (weights * activation).sum(dim=1)


# One lock per model, shared by every GradCAM on it. A call hooks a layer that every forward pass
# through the model runs and switches the model to eval mode and back: two threads doing that at once
# on one model would capture each other's activations and restore each other's modes. Calls on the
# same model therefore take turns (re-entrant, so a hook or a subclass may call again); calls on
# different models run in parallel. This registry only synchronises: no result depends on it.
_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _model_lock(model: nn.Module) -> threading.RLock:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


class ModelError(ValueError):
    """A model that Grad-CAM cannot differentiate as it is (e.g. weights made under inference_mode)."""


class _FewerCalls(Exception):
    """The layer ran fewer times than the call expected: retry hooking every call."""


class TargetError(ValueError):
    """Targets that are not class indices of the model's output, or do not fit the batch."""


@dataclass(frozen=True)
class CAMResult:
    """Raw maps ``(B, K, h, w)`` for ``K`` classes of each of ``B`` images, with their scores.

    For target callables (:mod:`.targets`) there are no classes: ``class_indices`` are -1,
    ``probabilities`` NaN, and ``logits`` holds the targets' scores ``(B, K)``."""

    maps: torch.Tensor
    class_indices: torch.Tensor
    probabilities: torch.Tensor
    logits: torch.Tensor

    def normalized(self) -> torch.Tensor:
        return normalize_maps(self.maps)


def normalize_maps(maps: torch.Tensor, rel_eps: float = 1e-6) -> torch.Tensor:
    """Min-max scale each map to [0, 1]; a flat map (no contrast) becomes all zeros, never NaN.

    The original post divides by the maximum, which is 0/0 = NaN on an all-zero map. A span of at most
    ``rel_eps`` of the peak is float noise, not a signal, so it is treated as flat too.
    """
    flat = maps.flatten(-2)
    low = flat.min(-1).values[..., None, None]
    high = flat.max(-1).values[..., None, None]
    span = high - low
    has_contrast = (span > 0) & (span > rel_eps * high.abs())
    return torch.where(has_contrast, (maps - low) / torch.where(has_contrast, span, torch.ones_like(span)), 0.0)


class GradCAM:
    """Grad-CAM for ``model`` at ``target_layer`` (a module or its dotted name).

    ``compute_heatmap`` keeps the original post's call shape; ``compute`` is the general form for
    batches and several classes. The model is left exactly as found: same train/eval flag, same
    ``requires_grad`` flags, no hooks. Use as a context manager or call :meth:`close` when done.

    Make one per model and layer and reuse it: it remembers how often the layer ran in its last
    forward pass. A module the network calls more than once (EfficientNet's shared ``_swish``: stem
    and head) is explained at its last call, and knowing that, the earlier calls run without autograd;
    otherwise autograd records nearly the whole network from the first call on, doubling the cost of
    that first call. Only a hint: if the layer runs fewer times than remembered, the call starts over
    hooking every call, so results never depend on it.

    :attr:`combine` is the formula (:func:`combine_gradcam`); a variant that differs only in how it
    turns the activation and the gradient into a map replaces it with another :data:`Combine`.

    ``reshape`` lays a layer's output out as ``(B, C, h, w)`` (:mod:`.tokens`): by default it is
    recognised for torchvision's ``VisionTransformer`` (tokens) and ``SwinTransformer``
    (channels-last); pass a function for any other layout. In a ViT, hook the last block's
    ``ln_1``, not its output: the head reads only the class token, so the patch tokens at the last
    block's output get a zero gradient and every map there is zero (:mod:`.tokens` says why).
    """

    # target callables give any score of the output; a subclass that needs class indices says False
    accepts_score_targets = True

    # a plain function stored on the class, not bound to the instance: the maps depend on nothing else
    combine = staticmethod(combine_gradcam)

    def __init__(self, model: nn.Module, target_layer: nn.Module | str, reshape: Reshape | None = None):
        self.model = model
        self.layer_name, self.layer = resolve_layer(model, target_layer)
        self.reshape = reshape if reshape is not None else auto_reshape(model, self.layer_name)
        self._closed = False
        self._layer_calls = 1  # how often the layer ran in the latest explained forward pass

    def __enter__(self) -> GradCAM:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Mark this object finished; hooks never outlive a call, so there is nothing to remove."""
        self._closed = True

    def compute(self, input_batch: torch.Tensor, targets: Targets = None) -> CAMResult:
        """Raw Grad-CAM maps for a batch, from one forward pass.

        ``targets``: ``None`` explains each image's top class; an ``int`` the same class for every
        image; a flat sequence or 1-D tensor one class per image (as many as images); a nested
        sequence or a ``(B, K)`` tensor ``K`` classes per image (``[[a, b]]``: two for one image).
        """
        if self._closed:
            raise RuntimeError("this GradCAM was closed; create a new one")
        if any(p.is_inference() for p in self.model.parameters()):
            raise ModelError(
                "the model's weights were created under torch.inference_mode(), and autograd cannot use "
                "them for Grad-CAM's gradient; create or load the model outside inference_mode"
            )
        x = self._check_input(input_batch)
        with _model_lock(self.model):
            try:
                result = self._run(x, targets, self._layer_calls - 1)
            except _FewerCalls:  # the layer ran fewer times than last time: hook every call instead
                result = self._run(x, targets, 0)
        # a half-precision model (bfloat16, float16) still hands back float32 maps and scores, which
        # NumPy and the rest of the package can use
        return CAMResult(result.maps.float(), result.class_indices, result.probabilities.float(), result.logits.float())

    def _run(self, x: torch.Tensor, targets: Targets, skip: int) -> CAMResult:
        """One forward pass hooking the layer's calls after the first ``skip`` (:class:`_FewerCalls` if
        the layer ran, but no more than ``skip`` times)."""
        grad_was_enabled = torch.is_grad_enabled()
        captured: list[torch.Tensor] = []
        calls = 0

        def hook(_module: nn.Module, _inputs: object, output: object) -> torch.Tensor | None:
            nonlocal calls
            calls += 1
            if calls <= skip:
                return None  # an earlier call of a shared module: the head does not read it
            if not isinstance(output, torch.Tensor):
                raise LayerError(f"layer {self.layer_name!r} returns {type(output).__name__}, not a tensor")
            activation = output.detach().requires_grad_(True)
            captured.append(activation)
            torch.set_grad_enabled(True)  # record the graph from here on: the head only
            return activation.clone()  # a non-leaf, so in-place ops downstream (ReLU(inplace)) are safe

        handle = self.layer.register_forward_hook(hook)
        try:
            with torch.inference_mode(False), restored_modes(self.model):
                self.model.eval()  # explain inference behaviour: no dropout, running BN statistics
                torch.set_grad_enabled(False)
                try:
                    logits = self.model(x.clone() if x.is_inference() else x)
                finally:
                    handle.remove()  # any later forward pass (Score-CAM's masked inputs) is not hooked
                if not captured:
                    if calls:
                        raise _FewerCalls
                    raise LayerError(f"layer {self.layer_name!r} did not run during the forward pass")
                self._layer_calls = calls
                activation = captured[-1]  # a module called several times: its last call feeds the head
                self._grid(activation.detach())  # a grid, or a LayerError that says what to pass
                if is_target_list(targets):
                    return self._explain_scores(x, activation, logits, targets)
                if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
                    raise TargetError(
                        "the model's output is not (batch, classes) logits; pass a target callable "
                        "(gradcam_tutorial.targets) that turns it into one score per image"
                    )
                classes = self._targets(targets, logits)
                maps = self._class_maps(x, activation, logits, classes)
                probabilities = torch.softmax(logits.detach(), dim=1).gather(1, classes)
        finally:
            torch.set_grad_enabled(grad_was_enabled)
        return CAMResult(maps.detach(), classes, probabilities, logits.detach())

    def _explain_scores(self, x: torch.Tensor, activation: torch.Tensor, output: object, targets: Targets) -> CAMResult:
        """Maps of target callables' scores: each score is a column of the (B, K) "logits" handed to
        :meth:`_class_maps` with classes ``0 .. K-1``, so every method's walk back serves them alike."""
        if not self.accepts_score_targets:
            raise TargetError(f"{type(self).__name__} explains class indices only, not target callables")
        scores = target_scores(targets, output, x.shape[0])  # type: ignore[arg-type]  # checked by is_target_list
        batch, k = scores.shape
        columns = torch.arange(k, device=scores.device).expand(batch, k)
        maps = self._class_maps(x, activation, scores, columns)
        nan = torch.full(scores.shape, float("nan"), device=scores.device)
        return CAMResult(maps.detach(), torch.full_like(columns, -1), nan, scores.detach())

    def _grid(self, tensor: torch.Tensor) -> torch.Tensor:
        """The layer's activation (or its gradient) laid out as ``(B, C, h, w)``."""
        return to_grid(tensor, self.reshape, self.layer_name)

    def _class_maps(
        self, x: torch.Tensor, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        """``(B, K, h, w)`` maps: per class, one walk back through the head, then :attr:`combine`."""
        scores = logits.gather(1, classes)
        maps = []
        for k in range(classes.shape[1]):
            (grad,) = torch.autograd.grad(
                scores[:, k].sum(), activation, retain_graph=k < classes.shape[1] - 1, allow_unused=True
            )
            if grad is None:
                raise LayerError(f"the model's output does not depend on layer {self.layer_name!r}")
            maps.append(torch.relu(self.combine(self._grid(activation.detach()), self._grid(grad))))
        return torch.stack(maps, dim=1)

    @overload
    def compute_heatmap(
        self, input_batch: torch.Tensor, class_idx: int | None = None, normalize: bool = True
    ) -> tuple[np.ndarray, int, float]: ...

    @overload
    def compute_heatmap(
        self, input_batch: torch.Tensor, class_idx: Sequence[int], normalize: bool = True
    ) -> tuple[np.ndarray, list[int], list[float]]: ...

    def compute_heatmap(
        self, input_batch: torch.Tensor, class_idx: int | Sequence[int] | None = None, normalize: bool = True
    ) -> tuple[np.ndarray, int, float] | tuple[np.ndarray, list[int], list[float]]:
        """Heatmap, class index and probability for a batch of one image (the original call shape).

        ``class_idx`` an ``int`` (or ``None``: the top class) gives an ``(h, w)`` map, an ``int`` and a
        ``float``; a sequence of classes gives a ``(K, h, w)`` stack and lists, from one forward pass.
        ``normalize=False`` gives the raw map (its scale is comparable across classes).
        """
        if isinstance(class_idx, bool):
            raise TargetError(f"class index must be an integer, not {class_idx!r}")
        if input_batch.dim() == 4 and input_batch.shape[0] != 1:
            raise ValueError(
                f"compute_heatmap explains one image; got a batch of {input_batch.shape[0]}, use compute()"
            )
        if class_idx is None or isinstance(class_idx, (int, np.integer)):
            result = self.compute(input_batch, None if class_idx is None else int(class_idx))
            maps = self._maps_of_first(result, normalize)
            return maps[0], int(result.class_indices[0, 0]), float(result.probabilities[0, 0])
        result = self.compute(input_batch, [list(class_idx)])
        maps = self._maps_of_first(result, normalize)
        return maps, result.class_indices[0].tolist(), [float(p) for p in result.probabilities[0]]

    @staticmethod
    def _maps_of_first(result: CAMResult, normalize: bool) -> np.ndarray:
        return (result.normalized() if normalize else result.maps)[0].cpu().numpy().astype(np.float32)

    def _check_input(self, input_batch: torch.Tensor) -> torch.Tensor:
        if not isinstance(input_batch, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor, not {type(input_batch).__name__}")
        x = input_batch.unsqueeze(0) if input_batch.dim() == 3 else input_batch
        if x.dim() != 4:
            raise ValueError(f"input must be (C, H, W) or (B, C, H, W); got shape {tuple(input_batch.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError("input contains NaN or infinite values")
        parameter = next(self.model.parameters(), None)
        if parameter is not None:
            x = x.to(device=parameter.device, dtype=parameter.dtype)
        return x

    @staticmethod
    def _targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
        """Turn the accepted target forms into a ``(B, K)`` index tensor, checked for range."""
        batch, n_classes = logits.shape
        if targets is None:
            return logits.argmax(dim=1, keepdim=True)
        rows: list[list[object]] | None = None
        if isinstance(targets, (int, np.integer)) and not isinstance(targets, bool):
            rows = [[int(targets)]] * batch
        elif isinstance(targets, torch.Tensor):
            if targets.dim() == 1:
                rows = [[t] for t in targets.tolist()]
            elif targets.dim() == 2:
                rows = targets.tolist()
        elif isinstance(targets, Sequence) and not isinstance(targets, str) and targets:
            if all(isinstance(t, Sequence) and not isinstance(t, str) for t in targets):
                rows = [[*t] for t in targets if isinstance(t, Sequence)]
            else:
                rows = [[t] for t in targets]
        if rows is None or len(rows) != batch or len({len(r) for r in rows}) != 1 or not rows[0]:
            hint = "; for several classes of one image, nest them: [[a, b]]" if batch == 1 else ""
            raise TargetError(f"targets {targets!r} do not fit a batch of {batch}{hint}")
        for value in (v for row in rows for v in row):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TargetError(f"class index must be an integer, not {value!r}")
            if not 0 <= value < n_classes:
                raise TargetError(f"class index {value} is out of range 0..{n_classes - 1}")
        return torch.tensor(rows, dtype=torch.long, device=logits.device)
