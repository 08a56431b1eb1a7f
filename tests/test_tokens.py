"""tokens.py and GradCAM(reshape=...): transformers' token layers laid out as grids.

Oracle: pytorch-grad-cam with its own reshape transforms, on torchvision's ``vit_b_16`` and ``swin_t``
with random weights (no pretrained transformer installs offline): the raw maps of Grad-CAM and of
every gradient variant agree. torchvision initialises ViT's head to zeros, which makes every score
constant and every map zero, so the tests give it random weights."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from gradcam_tutorial import GradCAM
from gradcam_tutorial.every_class import EveryClassCAM
from gradcam_tutorial.layers import LayerError
from gradcam_tutorial.methods import COMBINE, compute_methods
from gradcam_tutorial.tokens import auto_reshape, channels_last_grid, default_token_layer, vit_grid

GRADIENT_METHODS = list(COMBINE)
CLASSES = [3, 7]


def _vit(**sizes) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(**sizes) if sizes else torchvision.models.vit_b_16(weights=None)
    nn.init.normal_(model.heads.head.weight, std=0.02)  # torchvision starts it at zero: constant scores
    return model.eval()


def _small_vit() -> nn.Module:
    return _vit(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)


@pytest.fixture(scope="module")
def transformers():
    torch.manual_seed(0)
    swin = torchvision.models.swin_t(weights=None).eval()
    x = torch.randn(2, 3, 224, 224)
    return {"vit_b_16": (_vit(), x), "swin_t": (swin, x)}


def _peer_maps(model: nn.Module, layer: nn.Module, reshape, method: str, x: torch.Tensor) -> np.ndarray:
    """pytorch-grad-cam's raw maps (before its resizing and scaling), one class per column."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from gradcam_tutorial.evaluation.peers import PYTORCH_GRAD_CAM_CLASSES

    cam = getattr(pytorch_grad_cam, PYTORCH_GRAD_CAM_CLASSES[method])(
        model=model, target_layers=[layer], reshape_transform=reshape
    )
    try:
        columns = []
        for k in CLASSES:
            targets = [ClassifierOutputTarget(k)] * x.shape[0]
            cam(input_tensor=x, targets=targets)
            hooked = cam.activations_and_grads
            activation, gradient = hooked.activations[-1].numpy(), hooked.gradients[-1].numpy()
            columns.append(np.maximum(cam.get_cam_image(x, layer, targets, activation, gradient, False), 0))
        return np.stack(columns, axis=1)
    finally:
        cam.activations_and_grads.release()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_b_16", "swin_t"])
def test_every_gradient_method_matches_pytorch_grad_cam_on_torchvision_transformers(transformers, name):
    from pytorch_grad_cam.utils.reshape_transforms import swinT_reshape_transform, vit_reshape_transform

    model, x = transformers[name]
    layer_name = default_token_layer(model)
    assert layer_name is not None
    layer = model.get_submodule(layer_name)
    peer_reshape = {
        "vit_b_16": partial(vit_reshape_transform, height=14, width=14),
        # torchvision's Swin is channels-last (B, 7, 7, C); pytorch-grad-cam's transform reads tokens
        "swin_t": lambda t: swinT_reshape_transform(t.flatten(1, 2), height=7, width=7),
    }[name]
    ours = compute_methods(model, layer_name, x, [CLASSES] * 2, names=GRADIENT_METHODS)
    for method in GRADIENT_METHODS:
        theirs = _peer_maps(model, layer, peer_reshape, method, x)
        mine = ours[method].maps.numpy()
        scale = float(np.abs(theirs).max())
        assert scale > 1e-4, (method, "the comparison needs maps that are not all zero")
        difference = float(np.abs(mine - theirs).max())
        assert difference <= 1e-5 and difference <= 1e-4 * scale, (name, method, difference, scale)


@pytest.mark.slow
def test_patch_tokens_at_the_last_vit_block_output_get_no_gradient(transformers):
    """The head reads only the class token, so the last block's output explains nothing; one
    attention step earlier (ln_1 of that block, the default) every patch token counts."""
    model, x = transformers["vit_b_16"]
    last = f"encoder.layers.encoder_layer_{len(model.encoder.layers) - 1}"
    assert GradCAM(model, last).compute(x, 3).maps.abs().max() == 0
    assert GradCAM(model, default_token_layer(model)).compute(x, 3).maps.abs().amax(dim=(2, 3)).min() > 0


def test_layouts_are_recognised_for_torchvisions_transformers_only():
    vit = _small_vit()
    assert auto_reshape(vit, "encoder.layers.encoder_layer_1.ln_1") is vit_grid
    assert auto_reshape(vit, "conv_proj") is None  # a convolution: already a grid
    swin = torchvision.models.swin_t(weights=None)
    assert auto_reshape(swin, "norm") is channels_last_grid and auto_reshape(swin, "features.7") is channels_last_grid
    assert auto_reshape(swin, "permute") is None  # after Swin's own permute: channels first
    assert auto_reshape(torchvision.models.resnet18(weights=None), "layer4") is None
    assert default_token_layer(torchvision.models.resnet18(weights=None)) is None


def test_a_reshape_callable_lays_out_activation_and_gradient_alike():
    """A custom layout is applied to both: mirroring the grid left to right mirrors the map."""
    model, x = _small_vit(), torch.randn(1, 3, 32, 32)
    layer = "encoder.layers.encoder_layer_1.ln_1"
    plain = GradCAM(model, layer).compute(x, 4).maps
    mirrored = GradCAM(model, layer, reshape=lambda t: vit_grid(t).flip(-1)).compute(x, 4).maps
    assert plain.abs().max() > 0
    torch.testing.assert_close(mirrored, plain.flip(-1))


def test_tokens_that_are_not_a_grid_are_refused_in_one_sentence():
    with pytest.raises(LayerError, match=r"^13 tokens are a class token and 12 patches, not a square grid; pass"):
        vit_grid(torch.zeros(1, 13, 8))
    with pytest.raises(LayerError, match=r"^1 tokens are a class token and 0 patches"):
        vit_grid(torch.zeros(1, 1, 8))
    with pytest.raises(
        LayerError, match=r"^expected \(batch, tokens, channels\) from a ViT block, got shape \(1, 5, 2, 2\)$"
    ):
        vit_grid(torch.zeros(1, 5, 2, 2))
    assert vit_grid(torch.arange(16.0).reshape(1, 2, 8)).tolist() == [
        [[[8.0]], [[9.0]], [[10.0]], [[11.0]], [[12.0]], [[13.0]], [[14.0]], [[15.0]]]
    ]  # one patch: a 1 x 1 grid

    class Tokens(nn.Module):  # a token model torchvision does not ship: no layout is guessed
        def __init__(self):
            super().__init__()
            self.embed = nn.Linear(3, 8)
            self.head = nn.Linear(8, 5)

        def forward(self, x):
            return self.head(self.embed(x.flatten(2).transpose(1, 2)).mean(1))

    with pytest.raises(LayerError, match=r"layer 'embed' has no spatial output \(shape \(1, 16, 8\)\); .*reshape="):
        GradCAM(Tokens(), "embed").compute(torch.randn(1, 3, 4, 4), 0)
    side = math.isqrt(16)
    grid = GradCAM(Tokens(), "embed", reshape=lambda t: t.transpose(1, 2).reshape(1, 8, side, side))
    assert grid.compute(torch.randn(1, 3, 4, 4), 0).maps.shape == (1, 1, 4, 4)
    with pytest.raises(LayerError, match="gives tokens, not a convolutional grid"):
        EveryClassCAM(_small_vit(), "encoder.layers.encoder_layer_1.ln_1")


def test_swin_is_channels_last_and_each_transformer_has_its_layer():
    swin = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=5
    ).eval()
    assert (
        default_token_layer(swin) == "norm"
        and default_token_layer(_small_vit()) == "encoder.layers.encoder_layer_1.ln_1"
    )
    x = torch.randn(1, 3, 32, 32)
    stored = {}
    handle = swin.norm.register_forward_hook(lambda _m, _i, out: stored.setdefault("norm", out.detach()))
    maps = GradCAM(swin, "norm").compute(x, 2).maps  # (1, 1, 4, 4): 32 / 4 / 2 positions a side
    handle.remove()
    assert stored["norm"].shape == (1, 4, 4, 16) and maps.shape == (1, 1, 4, 4)
    torch.testing.assert_close(channels_last_grid(stored["norm"]), stored["norm"].permute(0, 3, 1, 2))
    with pytest.raises(LayerError, match=r"^expected \(batch, height, width, channels\), got shape \(1, 16, 8\)$"):
        channels_last_grid(torch.zeros(1, 16, 8))
