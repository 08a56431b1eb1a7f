"""Leaving a caller's model exactly as it was found."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def restored_modes(model: nn.Module) -> Iterator[nn.Module]:
    """Restore every module's own train/eval flag on exit, also on error.

    ``model.train(flag)`` would set one flag for all modules, but a model may keep parts in eval
    mode on purpose (frozen batch norms in a fine-tuned network), so each module's flag is saved.
    """
    modes = [(module, module.training) for module in model.modules()]
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
