"""The one-pass GradCAM's contract: same maps however they are asked for, and a model left untouched.

Most tests use a random-weight ResNet-18 on 64x64 inputs: the properties are about bookkeeping, not
about what the network has learned, and small inputs keep the file fast.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial import GradCAM, LayerError, TargetError, explain, normalize_maps

NINE_CLASSES = [1, 7, 285, 340, 409, 530, 667, 817, 965]


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(3, 3, 64, 64)


def assert_maps_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal up to float32 rounding relative to the largest value (batching reorders sums)."""
    assert expected.abs().max() > 0, "comparing all-zero maps proves nothing"
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * float(expected.abs().max()))


def test_several_classes_in_one_call_equal_one_at_a_time(resnet, images):
    x = images[:1]
    with GradCAM(resnet, "layer3") as cam:
        together = cam.compute(x, [NINE_CLASSES])
        separate = torch.cat([cam.compute(x, c).maps for c in NINE_CLASSES], dim=1)
    assert together.maps.shape == (1, 9, 4, 4)
    assert together.class_indices.tolist() == [NINE_CLASSES]
    assert_maps_close(together.maps, separate)


def test_batch_with_per_image_targets_equals_per_image_calls(resnet, images):
    targets = [[3, 285], [667, 1], [965, 409]]
    with GradCAM(resnet, "layer4.1.conv2") as cam:
        batch = cam.compute(images, targets)
        single = [cam.compute(images[i : i + 1], [targets[i]]) for i in range(len(images))]
    assert batch.maps.shape == (3, 2, 2, 2)
    assert_maps_close(batch.maps, torch.cat([s.maps for s in single]))
    torch.testing.assert_close(batch.probabilities, torch.cat([s.probabilities for s in single]), rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(batch.logits, torch.cat([s.logits for s in single]), rtol=1e-4, atol=1e-5)


def test_flat_target_list_means_one_class_per_image(resnet, images):
    with GradCAM(resnet, "layer3") as cam:
        flat = cam.compute(images, [5, 6, 7])
        nested = cam.compute(images, [[5], [6], [7]])
        vector = cam.compute(images, torch.tensor([5, 6, 7]))
        matrix = cam.compute(images, torch.tensor([[5, 1], [6, 1], [7, 1]]))
    assert flat.class_indices.tolist() == vector.class_indices.tolist() == [[5], [6], [7]]
    torch.testing.assert_close(flat.maps, nested.maps)
    torch.testing.assert_close(flat.maps, vector.maps)
    torch.testing.assert_close(flat.maps, matrix.maps[:, :1])
    assert matrix.class_indices.tolist() == [[5, 1], [6, 1], [7, 1]]


def test_a_flat_list_means_the_same_for_a_batch_of_one(resnet, images):
    """One class per image whatever the batch size: two classes of one image must be nested."""
    one = images[:1]
    with GradCAM(resnet, "layer3") as cam:
        assert cam.compute(one, [5]).class_indices.tolist() == [[5]]
        assert cam.compute(one, [[5, 6]]).class_indices.tolist() == [[5, 6]]
        with pytest.raises(TargetError, match=r"nest them: \[\[a, b\]\]"):
            cam.compute(one, [5, 6])
        with pytest.raises(TargetError, match="do not fit a batch of 1"):
            cam.compute(one, torch.tensor([5, 6]))


def test_default_target_is_each_images_top_class(effnet, grid):
    """Real weights on the four demo photos, so the images really have different top classes."""
    model, spec = effnet
    image, tiles = grid
    x = torch.cat([spec.preprocess(image.crop(t.box)) for t in tiles])
    with torch.no_grad():
        top = model(x).argmax(dim=1)
    with GradCAM(model, spec.target_layer) as cam:
        result = cam.compute(x)
        explicit = cam.compute(x, [[int(c)] for c in top])
    assert len(set(top.tolist())) == len(tiles), "each photo should have its own top class"
    assert result.class_indices[:, 0].tolist() == top.tolist()
    assert_maps_close(result.maps, explicit.maps)
    torch.testing.assert_close(result.probabilities[:, 0], torch.softmax(result.logits, 1).max(dim=1).values)


def test_compute_heatmap_keeps_the_original_call_shape(resnet, images):
    x = images[:1]
    with GradCAM(resnet, "layer3") as cam:
        heatmap, class_idx, probability = cam.compute_heatmap(x)
        raw, _, _ = cam.compute_heatmap(x, class_idx, normalize=False)
        stack, classes, probabilities = cam.compute_heatmap(x, [285, 1])
        unbatched, _, _ = cam.compute_heatmap(x[0], class_idx)
        with pytest.raises(ValueError, match="one image"):
            cam.compute_heatmap(images)
    assert isinstance(heatmap, np.ndarray) and heatmap.dtype == np.float32 and heatmap.shape == (4, 4)
    assert heatmap.min() == 0.0 and heatmap.max() == pytest.approx(1.0)
    assert isinstance(class_idx, int) and isinstance(probability, float) and 0.0 < probability < 1.0
    np.testing.assert_allclose(heatmap, normalize_maps(torch.from_numpy(raw)).numpy(), atol=1e-6)
    np.testing.assert_array_equal(unbatched, heatmap)
    assert stack.shape == (2, 4, 4) and stack.dtype == np.float32
    assert classes == [285, 1] and all(isinstance(p, float) for p in probabilities) and len(probabilities) == 2


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode], ids=["no_grad", "inference_mode"])
def test_works_inside_callers_no_grad_and_inference_mode(resnet, images, context):
    with GradCAM(resnet, "layer3") as cam:
        expected = cam.compute(images, [[285, 1]] * 3).maps
        with context():
            inside = cam.compute(images, [[285, 1]] * 3).maps
            assert not torch.is_grad_enabled()
        inference_input = None
        with torch.inference_mode():
            inference_input = images.clone()  # an inference tensor, made outside our call
        from_inference_tensor = cam.compute(inference_input, [[285, 1]] * 3).maps
    assert expected.abs().max() > 0
    torch.testing.assert_close(inside, expected)
    torch.testing.assert_close(from_inference_tensor, expected)


def _hooked_output(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """The layer's output as it left the layer, copied before anything downstream can overwrite it."""
    seen: list[torch.Tensor] = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, out: seen.append(out.clone()))
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return seen[-1]


def test_in_place_relu_module_after_the_layer_does_not_corrupt_the_map():
    """VGG's conv ``features.13`` feeds ReLU(inplace=True); the reference is a copy with it not in place."""
    torch.manual_seed(0)
    model = torchvision.models.vgg11(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with GradCAM(model, "features.13") as cam:
        maps = cam.compute(x, [[1, 285, 667]]).maps
    activation = _hooked_output(model, "features.13", x)
    reference = copy.deepcopy(model)
    for module in reference.modules():
        if isinstance(module, nn.ReLU):
            module.inplace = False
    expected = []
    for c in (1, 285, 667):
        captured: list[torch.Tensor] = []
        hook = reference.features[13].register_forward_hook(lambda _m, _i, out, captured=captured: captured.append(out))
        try:
            (grad,) = torch.autograd.grad(reference(x)[0, c], captured[-1])
        finally:
            hook.remove()
        expected.append(torch.relu((grad.mean(dim=(2, 3), keepdim=True) * activation).sum(dim=1)))
    expected_maps = torch.stack(expected, dim=1)
    assert (activation < 0).any(), "the in-place ReLU must have something to overwrite"
    assert_maps_close(maps, expected_maps)


def test_in_place_functional_relu_after_densenet_features():
    """DenseNet applies ``F.relu(inplace=True)`` to ``features.norm5`` then pools into the classifier,
    so d y_c / d A_k[i, j] = W[c, k] [A_k[i, j] > 0] / (H W) exactly; the map must use that gradient
    and the un-clipped activation."""
    torch.manual_seed(0)
    model = torchvision.models.densenet121(weights=None).eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    classes = [1, 285, 667]
    with GradCAM(model, "features.norm5") as cam:
        maps = cam.compute(x, [classes]).maps
    activation = _hooked_output(model, "features.norm5", x)  # (1, C, H, W)
    height, width = activation.shape[-2:]
    weight = model.classifier.weight.detach()[classes]  # (K, C)
    grad = weight[None, :, :, None, None] * (activation[:, None] > 0) / (height * width)  # (1, K, C, H, W)
    expected = torch.relu((grad.mean(dim=(3, 4), keepdim=True) * activation[:, None]).sum(dim=2))
    assert (activation < 0).any() and expected.amax() > 0
    assert_maps_close(maps, expected)


class _Boom(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


@pytest.mark.parametrize("failure", ["bad_class", "model_raises", "layer_not_run", "ok"])
def test_model_left_as_found(resnet, images, failure):
    model = train_mode_with_batchnorm(copy.deepcopy(resnet))
    model.layer1.requires_grad_(False)  # a partly frozen model must stay partly frozen
    model.layer4.eval()  # mixed flags, as with frozen batch norms while fine-tuning
    model.fc.register_forward_hook(lambda _m, _i, out: None)  # the caller's own hooks stay
    model.layer2.register_full_backward_hook(lambda *_: None)
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)  # a caller's accumulated gradient stays
    layer = "layer3"
    targets: object = 285
    if failure == "model_raises":
        model.fc = nn.Sequential(_Boom())
    elif failure == "bad_class":
        targets = 1000
    elif failure == "layer_not_run":
        model.unused = nn.Conv2d(3, 3, 1)
        layer = "unused"
    with left_as_found(model), GradCAM(model, layer) as cam:
        if failure == "ok":
            cam.compute(images, targets)
        else:
            with pytest.raises((TargetError, RuntimeError, LayerError)):
                cam.compute(images, targets)


def test_explains_inference_behaviour_even_for_a_model_in_training_mode(resnet, images):
    training = copy.deepcopy(resnet).train()
    with GradCAM(resnet, "layer3") as cam:
        expected = cam.compute(images, 285).maps
    with GradCAM(training, "layer3") as cam:
        got = cam.compute(images, 285).maps
    assert training.training
    torch.testing.assert_close(got, expected)


def test_constructing_twice_never_stacks_hooks(resnet, images):
    hooks_seen: list[int] = []
    watcher = resnet.register_forward_pre_hook(lambda _m, _i: hooks_seen.append(len(resnet.layer3._forward_hooks)))
    try:
        first = GradCAM(resnet, "layer3")
        second = GradCAM(resnet, resnet.layer3)
        a = first.compute(images, 285).maps
        b = second.compute(images, 285).maps
        c = first.compute(images, 285).maps
    finally:
        watcher.remove()
    assert hooks_seen == [1, 1, 1]
    assert not resnet.layer3._forward_hooks
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def test_target_layer_as_module_or_dotted_name(resnet, images):
    by_name = GradCAM(resnet, "layer4.1.conv2")
    by_module = GradCAM(resnet, resnet.layer4[1].conv2)
    assert by_name.layer is by_module.layer is resnet.layer4[1].conv2
    assert by_name.layer_name == by_module.layer_name == "layer4.1.conv2"
    torch.testing.assert_close(by_name.compute(images).maps, by_module.compute(images).maps)
    with pytest.raises(LayerError, match="did you mean"):
        GradCAM(resnet, "layer4.1.conv3")


def test_closed_gradcam_refuses_to_run(resnet, images):
    with GradCAM(resnet, "layer3") as cam:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        cam.compute(images)


def test_normalize_maps_special_cases():
    maps = torch.stack(
        [
            torch.zeros(4, 4),  # all zero: what ReLU leaves of an all-negative map
            torch.full((4, 4), 3.0),  # flat
            1.0 + 1e-9 * torch.arange(16.0).reshape(4, 4),  # float noise on a flat map
            torch.arange(16.0).reshape(4, 4),
        ]
    )
    out = normalize_maps(maps)
    assert torch.isfinite(out).all()
    assert (out[:3] == 0).all()
    assert out[3].min() == 0 and out[3].max() == 1
    torch.testing.assert_close(out[3], maps[3] / 15)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=0.0, max_value=1e38), min_size=6, max_size=6),
    st.sampled_from([1.0, 1e-30, 1e30]),
)
def test_normalize_maps_is_finite_and_in_unit_range(values, scale):
    maps = torch.tensor(values, dtype=torch.float32).reshape(1, 1, 2, 3) * scale
    maps = torch.nan_to_num(maps, posinf=3e38)  # 1e38 * 1e30 overflows float32
    out = normalize_maps(maps)
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1


def test_all_negative_class_evidence_gives_zero_heatmap_not_nan():
    """A class whose weights are negative on non-negative features has ReLU(...) = 0 everywhere."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[4].weight.copy_(torch.tensor([[-1.0, -2.0, -0.5, -1.0], [1.0, 2.0, 0.5, 1.0]]))
    x = torch.rand(1, 3, 8, 8)
    with GradCAM(model, "1") as cam:
        zero_map, _, _ = cam.compute_heatmap(x, 0)
        positive_map, _, _ = cam.compute_heatmap(x, 1)
    assert np.isfinite(zero_map).all() and (zero_map == 0).all()
    assert positive_map.max() == pytest.approx(1.0)


def test_no_parameter_ever_gets_a_gradient(resnet, images):
    for parameter in resnet.parameters():
        assert parameter.grad is None
    with GradCAM(resnet, "layer2") as cam:
        cam.compute(images, [NINE_CLASSES[:2]] * 3)
    assert all(p.grad is None for p in resnet.parameters())


def test_one_forward_pass_for_nine_classes(resnet, images):
    calls: list[int] = []
    counter = resnet.register_forward_pre_hook(lambda _m, _i: calls.append(1))
    try:
        with GradCAM(resnet, "layer3") as cam:
            result = cam.compute(images[:1], [NINE_CLASSES])
    finally:
        counter.remove()
    assert len(calls) == 1
    assert result.maps.shape[1] == 9


class _SharedActivation(nn.Module):
    """One ReLU6 module called ``calls`` times per forward, like EfficientNet's shared ``_swish``."""

    def __init__(self, calls: int = 2):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.act = nn.ReLU6()
        self.head = nn.Linear(8, 5)
        self.calls = calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.calls > 1:
            x = self.act(x)
        x = self.act(self.body(x))
        return self.head(x.mean(dim=(2, 3)))


def test_shared_module_is_explained_at_its_last_call_and_earlier_calls_skip_autograd():
    torch.manual_seed(0)
    model = _SharedActivation().eval()
    x = torch.randn(2, 3, 8, 8)
    grad_mode_in_body: list[bool] = []
    model.body.register_forward_pre_hook(lambda _m, _i: grad_mode_in_body.append(torch.is_grad_enabled()))
    with torch.no_grad():
        last = model.act(model.body(model.act(model.stem(x))))  # the head reads the second call
    expected = torch.relu(torch.einsum("c,bchw->bhw", model.head.weight[3].detach(), last) / 64)[:, None]
    with GradCAM(model, "act") as cam:
        first = cam.compute(x, 3).maps
        recorded_first = grad_mode_in_body[-1]
        second = cam.compute(x, 3).maps  # the same object knows the call count now
        recorded_second = grad_mode_in_body[-1]
        model.calls = 1  # the module now runs once: fewer calls than remembered
        with torch.no_grad():
            once = model.act(model.body(model.stem(x)))
        expected_once = torch.relu(torch.einsum("c,bchw->bhw", model.head.weight[3].detach(), once) / 64)[:, None]
        assert_maps_close(cam.compute(x, 3).maps, expected_once)
    assert_maps_close(first, expected)
    assert_maps_close(second, expected)
    assert recorded_first is True, "a first call cannot know the layer runs twice: it records from the first call"
    assert recorded_second is False, "the layers between the two calls must run without autograd"


def test_a_new_gradcam_does_not_inherit_another_ones_history():
    """No state outside the object: a fresh GradCAM behaves like a first call, whatever ran before."""
    torch.manual_seed(0)
    model = _SharedActivation().eval()
    x = torch.randn(2, 3, 8, 8)
    grad_mode_in_body: list[bool] = []
    model.body.register_forward_pre_hook(lambda _m, _i: grad_mode_in_body.append(torch.is_grad_enabled()))
    with GradCAM(model, "act") as used:
        used.compute(x, 3)
        used.compute(x, 3)
    with GradCAM(model, "act") as fresh:
        maps = fresh.compute(x, 3).maps
    assert grad_mode_in_body == [True, False, True]
    with GradCAM(model, "act") as other:
        assert_maps_close(other.compute(x, 3).maps, maps)


def test_explain_reuses_one_gradcam_and_refuses_a_mismatched_one(effnet, grid, resnet):
    model, spec = effnet
    image, _ = grid
    alone = explain(image, model, spec, classes=["espresso", 285])
    with GradCAM(model, spec.target_layer) as cam:
        reused = [explain(image, model, spec, classes=["espresso", 285], cam=cam) for _ in range(2)]
        with pytest.raises(ValueError, match="another model"):
            explain(image, resnet, spec, cam=cam)
        with pytest.raises(ValueError, match="not the requested '_conv_head'"):
            explain(image, model, spec, layer="_conv_head", cam=cam)
    for again in reused:
        assert again.class_indices == alone.class_indices and again.layer == alone.layer
        np.testing.assert_allclose(again.small_heatmaps, alone.small_heatmaps, atol=1e-6)
