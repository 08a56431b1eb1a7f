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


HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOK_DICTS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks")


def hook_snapshot(model: nn.Module) -> dict[str, tuple[tuple[int, ...], ...]]:
    """The hook ids in every module's hook dictionaries, plus torch's global module hooks.

    Two snapshots are equal exactly when no hook was added or removed in between, anywhere: how the
    tests, the soak run and a careful caller check that an explanation left no hook behind.
    """
    from torch.nn.modules import module as torch_module

    snapshot = {
        name: tuple(tuple(getattr(m, attr, {}).keys()) for attr in HOOK_DICTS) for name, m in model.named_modules()
    }
    snapshot["<global>"] = tuple(tuple(getattr(torch_module, attr, {}).keys()) for attr in _GLOBAL_HOOK_DICTS)
    return snapshot
