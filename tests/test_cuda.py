"""The core on a GPU: the same maps as on the CPU, and the model left exactly as found there.

Skipped where CUDA is not available (CI and the development machines have no GPU); run on a lent
GPU machine with `python -m pytest tests/test_cuda.py`. On GPUs with TF32 (Ampere and newer),
PyTorch lets cuDNN convolutions compute in TF32 by default (10-bit mantissa), so float32 agreement
is tested with TF32 switched off, and the default's difference is bounded separately.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from conftest import left_as_found
from gradcam_tutorial import GradCAM, create_model, demo_grid, explain
from gradcam_tutorial import classes as C

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

NINE = [C.GOOSE, C.VIZSLA, C.GERMAN_SHEPHERD, C.GREAT_DANE, C.CHOW, C.TABBY, C.TIGER_CAT, C.EGYPTIAN_CAT, C.COWBOY_HAT]


@pytest.fixture()
def full_float32():
    """Switch TF32 off for convolutions and matrix products during a test, then restore it."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _models():
    effnet, effnet_spec = create_model("efficientnet_lite0")
    torch.manual_seed(0)
    resnet, resnet_spec = create_model("resnet18", pretrained=False)
    # Tolerances relative to the image's largest map value. With random weights the channel terms
    # w_k A_k of ResNet-18's raw last convolution nearly cancel, so float32 rounding in a different
    # summation order (cuDNN's against oneDNN's) shows at 1e-3 of the result (measured 9.3e-4 on an
    # H100); the trained EfficientNet-Lite0 agrees to 1e-4.
    return [
        (effnet, effnet_spec, ("_swish", "_conv_head"), 1e-4),
        (resnet, resnet_spec, ("layer4", "layer4.1.conv2"), 2e-3),
    ]


@pytest.mark.parametrize("index", [0, 1], ids=["efficientnet_lite0", "resnet18"])
def test_gpu_maps_equal_cpu_maps_for_nine_classes_and_a_batch(index, full_float32):
    model, spec, layers, tolerance = _models()[index]
    grid, _ = demo_grid()
    x = spec.preprocess(grid)
    batch = torch.cat([x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)])
    gpu_model = copy.deepcopy(model).cuda()
    # the shared guard, on both models: weights and buffers bit for bit (with their device), modes,
    # gradients, hooks and autograd
    with left_as_found(model), left_as_found(gpu_model):
        _compare_on_both_devices(model, gpu_model, batch, layers, tolerance)


def _compare_on_both_devices(
    model: torch.nn.Module, gpu_model: torch.nn.Module, batch: torch.Tensor, layers: tuple[str, ...], tolerance: float
) -> None:
    """Each layer's maps for the nine classes on the CPU model and its GPU copy, within ``tolerance``."""
    for layer in layers:
        with GradCAM(model, layer) as cam:
            cpu = cam.compute(batch, [NINE] * 4)
        with GradCAM(gpu_model, layer) as cam:
            gpu = cam.compute(batch.cuda(), [NINE] * 4)
        assert gpu.maps.device.type == "cuda"
        # raw maps relative to the image's largest map value: min-max scaling of a map with little
        # contrast, or of one the ReLU leaves nearly empty, amplifies rounding beyond any tolerance
        scale = cpu.maps.abs().amax(dim=(1, 2, 3), keepdim=True)
        difference = (gpu.maps.cpu() - cpu.maps).abs() / scale
        assert float(difference.max()) <= tolerance, (layer, float(difference.max()))
        torch.testing.assert_close(gpu.probabilities.cpu(), cpu.probabilities, atol=1e-5, rtol=1e-4)
        assert torch.equal(gpu.class_indices.cpu(), cpu.class_indices)


def test_explain_with_a_gpu_model_places_the_same_heatmaps_on_the_photo(full_float32):
    model, spec, _, _ = _models()[0]
    grid, tiles = demo_grid()
    classes = [t.class_index for t in tiles]
    on_cpu = explain(grid, model, spec, classes)
    on_gpu = explain(grid, copy.deepcopy(model).cuda(), spec, classes)
    assert on_gpu.heatmaps.shape == on_cpu.heatmaps.shape and isinstance(on_gpu.heatmaps, np.ndarray)
    np.testing.assert_allclose(on_gpu.heatmaps, on_cpu.heatmaps, atol=1e-4)
    np.testing.assert_allclose(on_gpu.probabilities, on_cpu.probabilities, atol=1e-5)
    assert [i for i, _, _ in on_gpu.top_k] == [i for i, _, _ in on_cpu.top_k]


def test_with_pytorchs_default_tf32_maps_stay_within_two_hundredths():
    """What a user gets without touching TF32: close maps, the same peaks for clear maps."""
    model, spec, layers, _ = _models()[0]
    grid, _tiles = demo_grid()
    x = spec.preprocess(grid)
    with GradCAM(model, layers[0]) as cam:
        cpu = cam.compute(x, [NINE]).normalized()
    with GradCAM(copy.deepcopy(model).cuda(), layers[0]) as cam:
        gpu = cam.compute(x.cuda(), [NINE]).normalized().cpu()
    difference = float((gpu - cpu).abs().max())
    print(f"largest difference of normalised maps, TF32 allowed={torch.backends.cudnn.allow_tf32}: {difference:.2g}")
    assert difference < 0.02


def test_the_sanity_checks_randomisation_leaves_the_callers_random_streams_as_found():
    """torch.manual_seed reseeds every CUDA device too; each stage's reseeding must not leak out."""
    from gradcam_tutorial.evaluation.sanity import cascading_randomisation

    torch.manual_seed(123)
    torch.cuda.manual_seed_all(456)
    cpu, gpu = torch.get_rng_state(), torch.cuda.get_rng_state_all()
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    stages = [stage for stage, _ in cascading_randomisation(model, seed=7)]
    assert stages
    assert torch.equal(torch.get_rng_state(), cpu)
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), gpu, strict=True))
