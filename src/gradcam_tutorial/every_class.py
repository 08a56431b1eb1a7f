"""Grad-CAM's map of every class from one forward pass: what an explorer of all 1000 classes needs.

:class:`~.cam.GradCAM` walks back once per class; for 1000 classes that is 1000 walks. Grad-CAM
needs less than the gradient, only its sum over positions per channel, ``d y_c / d b_k`` for a
shift ``b_k`` added to the whole of channel ``k``: a ``classes x channels`` Jacobian. Three exact
ways, each through the part of the network after the layer only, fastest first:

* **the classifier's weights alone**, where the part after the layer is a global average pool and
  one linear layer (EfficientNet's ``features`` and ResNet's ``layer4``, followed by ``_fc`` and
  ``fc``): ``d y_c / d A[k, i, j] = W[c, k] / (h w)`` at every position, so every map is
  ``ReLU(W A / (h w))``, one matrix product. Each call checks the premise: the linear layer applied
  to the activation's spatial mean must give the model's logits.
* **forward mode over the channel shifts**: one Jacobian-vector product per *channel* (192 at
  EfficientNet's ``_blocks.14``) instead of one backward pass per *class* (1000), vectorised with
  ``torch.func``; the part before the layer runs once.
* **batched gradients**, for a variant whose formula needs the gradient at every position: a chunk
  of classes walks back as one vectorised backward pass (``is_grads_batched=True``).

``make bench`` (``benchmarks/bench_every_class.py``) times each against the forward pass.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.func import jvp, vmap

from .cam import CAMResult, GradCAM, Targets, combine_gradcam
from .layers import LayerError, resolve_layer


class EveryClassCAM(GradCAM):
    """Grad-CAM maps ``(B, K, h, w)`` of every class (``targets=None``) or of any ``(B, K)`` targets.

    ``head``: the linear layer (module or dotted name) that reads the spatial mean of
    ``target_layer`` (``spec.classifier`` for the registry's models at their default layer); with it
    the maps come from its weights, without it by forward mode (a subclass with another ``combine``:
    batched gradients). ``chunk`` bounds the memory: forward mode takes that many channels at a time,
    but runs the part before the layer again for each chunk (``None``: all channels, one run); batched
    gradients take that many classes at a time (``None``: 100). Every way gives
    :class:`~.cam.GradCAM`'s maps class by class, to float rounding.
    """

    accepts_score_targets = False  # every class of the logits, by the head's weights or forward mode

    def __init__(
        self,
        model: nn.Module,
        target_layer: nn.Module | str,
        head: nn.Module | str | None = None,
        chunk: int | None = None,
    ):
        super().__init__(model, target_layer)
        if self.reshape is not None:
            raise LayerError(
                f"layer {self.layer_name!r} gives tokens, not a convolutional grid; EveryClassCAM's shortcuts need one "
                "(use GradCAM with a list of classes)"
            )
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be at least 1, not {chunk}")
        self.chunk = chunk
        self.head_name: str | None = None
        self.head: nn.Module | None = None
        if head is not None:
            self.head_name, self.head = resolve_layer(model, head)
        if self.head is not None and not isinstance(self.head, nn.Linear):
            raise LayerError(f"head {self.head_name!r} is a {type(self.head).__name__}, not a torch.nn.Linear")

    def compute(self, input_batch: torch.Tensor, targets: Targets = None) -> CAMResult:
        """As :meth:`~.cam.GradCAM.compute`, except that ``targets=None`` means every class."""
        return super().compute(input_batch, targets)

    @staticmethod
    def _targets(targets: Targets, logits: torch.Tensor) -> torch.Tensor:
        if targets is None:
            batch, classes = logits.shape
            return torch.arange(classes, device=logits.device).expand(batch, classes)
        return GradCAM._targets(targets, logits)

    def _class_maps(
        self, x: torch.Tensor, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
    ) -> torch.Tensor:
        if self.combine is not combine_gradcam:
            return self._batched(activation, logits, classes)
        if self.head is not None:
            return self._from_weights(activation.detach(), logits.detach(), classes)
        return self._forward_mode(x, activation.detach(), classes)

    def _from_weights(self, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        assert isinstance(self.head, nn.Linear)
        pooled = activation.mean(dim=(2, 3))
        if pooled.shape[1] != self.head.in_features:
            raise LayerError(
                f"head {self.head_name!r} reads {self.head.in_features} features, but layer {self.layer_name!r} "
                f"has {pooled.shape[1]} channels; pass head=None for batched gradients"
            )
        with torch.no_grad():
            predicted = self.head(pooled)
        tolerance = 1e-4 * max(1.0, float(logits.abs().max()))
        if predicted.shape != logits.shape or not torch.allclose(predicted, logits, rtol=0, atol=tolerance):
            raise LayerError(
                f"head {self.head_name!r} applied to the spatial mean of layer {self.layer_name!r} does not give "
                "the model's logits, so the part after the layer is not a global average pool and this layer; "
                "pass head=None for batched gradients"
            )
        weights = self.head.weight.detach()[classes] / (activation.shape[2] * activation.shape[3])  # (B, K, C)
        return torch.relu(torch.einsum("bkc,bchw->bkhw", weights.to(activation.dtype), activation))

    def _forward_mode(self, x: torch.Tensor, activation: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Every class's ``d y_c / d b_k`` by one forward-mode product per channel ``k``, vectorised: the
        part before the layer has no tangent, so it runs once per chunk of channels."""
        channels = activation.shape[1]
        last_call = self._layer_calls  # a module called several times: shift its last call, which feeds the head

        def logits_with_shift(shift: torch.Tensor) -> torch.Tensor:
            calls = 0

            def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
                nonlocal calls
                calls += 1
                return output + shift[None, :, None, None] if calls == last_call else None

            handle = self.layer.register_forward_hook(hook)
            try:
                return self.model(x)
            finally:
                handle.remove()

        zero = activation.new_zeros(channels)
        with torch.no_grad(), warnings.catch_warnings():
            # PyTorch's forward mode loads its own decompositions through torch.jit.script on first use,
            # which warns that torch.jit.script is deprecated: a note about PyTorch's code, not the caller's
            warnings.filterwarnings("ignore", message="`torch.jit.script` is deprecated", category=FutureWarning)
            products = vmap(lambda t: jvp(logits_with_shift, (zero,), (t,)), chunk_size=self.chunk)(
                torch.eye(channels, dtype=activation.dtype, device=activation.device)
            )
        sums = products[1]  # (C, B, classes of the model): row k is d logits / d b_k
        weights = sums.permute(1, 2, 0).gather(1, classes[..., None].expand(-1, -1, channels))  # (B, K, C)
        weights = weights / (activation.shape[2] * activation.shape[3])
        return torch.relu(torch.einsum("bkc,bchw->bkhw", weights, activation))

    def _batched(self, activation: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        scores = logits.gather(1, classes)  # (B, K)
        batch, count = classes.shape
        detached = activation.detach()
        maps = []
        step = self.chunk or 100
        for start in range(0, count, step):
            n = min(step, count - start)
            picks = torch.zeros(n, batch, count, dtype=scores.dtype, device=scores.device)
            picks[torch.arange(n), :, torch.arange(start, start + n)] = 1.0  # one class per batched walk
            (grads,) = torch.autograd.grad(
                scores,
                activation,
                grad_outputs=picks,
                is_grads_batched=True,
                retain_graph=start + n < count,
                allow_unused=True,
            )
            if grads is None:
                raise LayerError(f"the model's output does not depend on layer {self.layer_name!r}")
            repeated = detached.expand(n, *detached.shape).reshape(n * batch, *detached.shape[1:])
            chunk_maps = self.combine(repeated, grads.reshape(n * batch, *grads.shape[2:]))
            maps.append(torch.relu(chunk_maps).reshape(n, batch, *chunk_maps.shape[1:]).transpose(0, 1))
        return torch.cat(maps, dim=1)
