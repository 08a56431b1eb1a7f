"""Leaving a caller's model as found (state.py): train mode, frozen parts, hooks, errors mid-pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import (
    ClassNameError,
    LayerError,
    explain,
)
from gradcam_tutorial.classes import EGYPTIAN_CAT

# ---------------------------------------------------------------- 20: the caller's state is left alone


@pytest.fixture()
def restore_effnet(effnet):
    """The session model, put back exactly as it was whatever a test does to it."""
    model, spec = effnet
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    weights = {name: value.clone() for name, value in model.state_dict().items()}  # buffers too
    yield model, spec
    model.load_state_dict(weights)
    for module, training in modes.items():
        module.training = training
    for parameter, flag in flags.items():
        parameter.requires_grad_(flag)


@pytest.mark.slow
def test_20_train_mode_no_grad_and_errors_leave_the_model_as_found(restore_effnet, grid):
    model, spec = restore_effnet
    photo = grid[0]
    reference = explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967])

    train_mode_with_batchnorm(model)
    model._blocks[0].requires_grad_(False)  # a partly frozen model, as in fine-tuning
    user_hook = model._conv_head.register_forward_hook(lambda *_: None)
    with torch.no_grad(), left_as_found(model):  # the caller's no_grad is still in force after
        in_train_mode = explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967])
    with left_as_found(model):
        with torch.inference_mode():
            assert np.allclose(
                explain(photo, model, spec, classes=[EGYPTIAN_CAT, 967]).heatmaps, reference.heatmaps, atol=1e-5
            )
        with pytest.raises(LayerError):
            explain(photo, model, spec, layer="_fc")  # fails inside the call, after the forward pass
        with pytest.raises(ClassNameError):
            explain(photo, model, spec, classes=[5000])
    user_hook.remove()

    assert np.allclose(in_train_mode.heatmaps, reference.heatmaps, atol=1e-5)
    assert np.allclose(in_train_mode.probabilities, reference.probabilities, atol=1e-6)


def test_20b_exception_raised_inside_the_forward_pass(restore_effnet, grid):
    model, spec = restore_effnet
    train_mode_with_batchnorm(model)

    def explode(*_):
        raise RuntimeError("boom inside the head")

    handle = model._bn1.register_forward_hook(explode)  # fires after the target layer's hook
    with left_as_found(model), pytest.raises(RuntimeError, match="boom"):
        explain(grid[0], model, spec)
    handle.remove()


def test_20c_mixed_modes_are_restored_per_module(restore_effnet, grid):
    model, spec = restore_effnet
    train_mode_with_batchnorm(model)
    model._bn1.eval()  # e.g. a frozen batch norm while fine-tuning the rest
    with left_as_found(model):
        explain(grid[0], model, spec)


def test_20d_layer_tracing_restores_mixed_modes(restore_effnet):
    from gradcam_tutorial import last_spatial_layer

    model, _ = restore_effnet
    train_mode_with_batchnorm(model)
    model._bn1.eval()
    with left_as_found(model):  # a pass in train mode would move every batch norm's running statistics
        assert last_spatial_layer(model) == "features"
