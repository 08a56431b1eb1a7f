"""GradCAM (cam.py): the maps follow Selvaraju et al.'s formula, whatever form the classes are asked in,
and the caller's model is left untouched.

The formula is worked out with plain torch hooks on small models (``grad_cam_by_hand``); the
bookkeeping properties use a random-weight ResNet-18 on 64x64 inputs, since they are about
bookkeeping, not about what the network has learned. Refusals are checked word for word.
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
from gradcam_tutorial import (
    GradCAM,
    LayerError,
    ModelError,
    TargetError,
    normalize_maps,
    resolve_layer,
)
from test_layers import _WithTupleOutput

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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    """A dotted name and the module itself pick the same layer, resolved to the same name and maps."""
    assert resolve_layer(resnet, "layer4.1.conv2") == ("layer4.1.conv2", resnet.layer4[1].conv2)
    name, module = resolve_layer(resnet, resnet.layer3)
    assert name == "layer3" and module is resnet.layer3
    by_name = GradCAM(resnet, "layer4.1.conv2")
    by_module = GradCAM(resnet, resnet.layer4[1].conv2)
    assert by_name.layer is by_module.layer is resnet.layer4[1].conv2
    assert by_name.layer_name == by_module.layer_name == "layer4.1.conv2"
    torch.testing.assert_close(by_name.compute(images).maps, by_module.compute(images).maps)
    with pytest.raises(LayerError, match="did you mean"):
        GradCAM(resnet, "layer4.1.conv3")


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


# ---------------------------------------------------------------- Grad-CAM


class _Tiny(nn.Module):
    """Stem, a strided block (the explained layer), ReLU, global average pool and a 4-class head."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.block = nn.Conv2d(6, 5, 3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.head = nn.Linear(5, classes)
        self.unused = nn.Conv2d(3, 3, 1)  # registered, never called
        self.side = nn.Conv2d(6, 2, 1)  # called, but the output ignores it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x))
        self.side(x)
        return self.head(self.act(self.block(x)).mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    torch.manual_seed(3)
    return _Tiny().eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    torch.manual_seed(4)
    return torch.randn(2, 3, 8, 8)


def grad_cam_by_hand(model: nn.Module, layer: nn.Module, x: torch.Tensor, classes: list[list[int]]) -> torch.Tensor:
    """Selvaraju et al.: ReLU(sum_k w_k A_k), w_k the spatial mean of d logit_c / d A_k; plain hooks."""
    kept: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: kept.append(out))
    try:
        logits = model(x)
    finally:
        handle.remove()
    (activation,) = kept
    maps = torch.zeros(x.shape[0], len(classes[0]), *activation.shape[2:])
    for b, row in enumerate(classes):
        for k, c in enumerate(row):
            (grad,) = torch.autograd.grad(logits[b, c], activation, retain_graph=True)
            weights = grad[b].mean(dim=(1, 2))
            maps[b, k] = torch.relu((weights[:, None, None] * activation[b]).sum(dim=0)).detach()
    return maps


def test_maps_scores_and_classes_follow_the_grad_cam_formula(tiny, batch):
    classes = [[1, 3], [2, 0]]
    expected = grad_cam_by_hand(tiny, tiny.block, batch, classes)
    with torch.no_grad():
        logits = tiny(batch)
    assert (expected > 0).any() and (expected == 0).any(), "the ReLU must matter for the test to mean something"
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, classes)
    assert result.maps.shape == (2, 2, 4, 4) and result.maps.dtype == torch.float32
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)
    assert result.class_indices.tolist() == classes
    torch.testing.assert_close(result.logits, logits)
    torch.testing.assert_close(result.probabilities, torch.softmax(logits, dim=1).gather(1, torch.tensor(classes)))
    low = expected.amin(dim=(2, 3), keepdim=True)
    high = expected.amax(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(result.normalized(), (expected - low) / (high - low), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("targets", "rows"),
    [
        (None, "top"),
        (2, [[2], [2]]),
        (np.int64(2), [[2], [2]]),
        ([1, 3], [[1], [3]]),
        ((1, 3), [[1], [3]]),
        (torch.tensor([1, 3]), [[1], [3]]),
        (torch.tensor([[1, 2], [3, 0]]), [[1, 2], [3, 0]]),
        ([[1, 2], (3, 0)], [[1, 2], [3, 0]]),
    ],
)
def test_every_accepted_target_form_names_the_classes_it_means(tiny, batch, targets, rows):
    if rows == "top":
        with torch.no_grad():
            rows = tiny(batch).argmax(dim=1, keepdim=True).tolist()
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, targets)
    assert result.class_indices.tolist() == rows
    torch.testing.assert_close(result.maps, grad_cam_by_hand(tiny, tiny.block, batch, rows), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("targets", "size", "message"),
    [
        ([1], 2, "targets [1] do not fit a batch of 2"),
        ([], 2, "targets [] do not fit a batch of 2"),
        ([[1, 2], [3]], 2, "targets [[1, 2], [3]] do not fit a batch of 2"),
        ([[], []], 2, "targets [[], []] do not fit a batch of 2"),
        ("ab", 2, "targets 'ab' do not fit a batch of 2"),
        (True, 2, "targets True do not fit a batch of 2"),
        (torch.zeros(1, 1, 1, dtype=torch.long), 1, "do not fit a batch of 1; for several classes of one image"),
        ([1, 2], 1, "targets [1, 2] do not fit a batch of 1; for several classes of one image, nest them: [[a, b]]"),
        ([1.5, 2], 2, "class index must be an integer, not 1.5"),
        ([[True], [1]], 2, "class index must be an integer, not True"),
        (4, 2, "class index 4 is out of range 0..3"),
        ([0, -1], 2, "class index -1 is out of range 0..3"),
    ],
)
def test_targets_that_do_not_fit_are_refused_with_the_reason(tiny, batch, targets, size, message):
    with GradCAM(tiny, "block") as cam, pytest.raises(TargetError) as caught:
        cam.compute(batch[:size], targets)
    if message.startswith("do not fit"):
        assert message in str(caught.value)
    else:
        assert str(caught.value) == message


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [
        ("photo.png", TypeError, "input must be a torch.Tensor, not str"),
        (torch.zeros(3, 8), ValueError, "input must be (C, H, W) or (B, C, H, W); got shape (3, 8)"),
        (torch.full((1, 3, 8, 8), float("nan")), ValueError, "input contains NaN or infinite values"),
        (torch.full((1, 3, 8, 8), float("inf")), ValueError, "input contains NaN or infinite values"),
    ],
)
def test_inputs_that_are_not_images_are_refused_with_the_reason(tiny, given, error, message):
    with GradCAM(tiny, "block") as cam, pytest.raises(error) as caught:
        cam.compute(given)
    assert str(caught.value) == message


def test_one_image_may_come_unbatched_and_in_double_precision(tiny, batch):
    expected = grad_cam_by_hand(tiny, tiny.block, batch[1:], [[2]])
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch[1].double(), 2)
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ("unused", "layer 'unused' did not run during the forward pass"),
        ("side", "the model's output does not depend on layer 'side'"),
        (
            "head",
            "layer 'head' has no spatial output (shape (1, 4)); choose a convolutional layer or block"
            ", or pass reshape= a function to (batch, channels, height, width)",
        ),
    ],
)
def test_a_layer_grad_cam_cannot_use_is_refused_with_the_reason(tiny, batch, layer, message):
    with GradCAM(tiny, layer) as cam, pytest.raises(LayerError) as caught:
        cam.compute(batch[:1])
    assert str(caught.value) == message


def test_a_layer_returning_a_tuple_is_refused_with_the_reason():
    with GradCAM(_WithTupleOutput(), "pair") as cam, pytest.raises(LayerError) as caught:
        cam.compute(torch.zeros(1, 3, 8, 8))
    assert str(caught.value) == "layer 'pair' returns tuple, not a tensor"


def test_compute_heatmap_gives_one_images_normalised_maps_with_plain_python_numbers(tiny, batch):
    x = batch[:1]
    raw = grad_cam_by_hand(tiny, tiny.block, x, [[1, 3]])[0]
    normalised = (raw - raw.amin(dim=(1, 2), keepdim=True)) / (raw.amax(dim=(1, 2)) - raw.amin(dim=(1, 2)))[
        :, None, None
    ]
    with torch.no_grad():
        probabilities = torch.softmax(tiny(x), dim=1)[0]
    with GradCAM(tiny, "block") as cam:
        heatmap, index, probability = cam.compute_heatmap(x, 3)
        unscaled, _, _ = cam.compute_heatmap(x, np.int64(3), normalize=False)
        stack, indices, stack_probabilities = cam.compute_heatmap(x, [1, 3])
        top, top_index, _ = cam.compute_heatmap(x)
        with pytest.raises(TargetError) as boolean:
            cam.compute_heatmap(x, True)
        with pytest.raises(ValueError) as batched:
            cam.compute_heatmap(batch)
    assert type(heatmap) is np.ndarray and heatmap.dtype == np.float32 and heatmap.shape == (4, 4)
    np.testing.assert_allclose(heatmap, normalised[1].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(unscaled, raw[1].numpy(), rtol=1e-5, atol=1e-6)
    assert type(index) is int and index == 3
    assert type(probability) is float and probability == pytest.approx(float(probabilities[3]), rel=1e-6)
    assert stack.dtype == np.float32 and stack.shape == (2, 4, 4)
    np.testing.assert_allclose(stack, normalised.numpy(), rtol=1e-5, atol=1e-6)
    assert indices == [1, 3] and all(type(p) is float for p in stack_probabilities)
    assert stack_probabilities == pytest.approx([float(probabilities[1]), float(probabilities[3])], rel=1e-6)
    assert top_index == int(probabilities.argmax())
    assert top.shape == (4, 4)
    assert str(boolean.value) == "class index must be an integer, not True"
    assert str(batched.value) == "compute_heatmap explains one image; got a batch of 2, use compute()"


def test_a_closed_gradcam_says_so(tiny, batch):
    with GradCAM(tiny, "block") as cam:
        pass
    with pytest.raises(RuntimeError) as caught:
        cam.compute(batch)
    assert str(caught.value) == "this GradCAM was closed; create a new one"


def test_weights_made_under_inference_mode_get_one_clear_error(batch):
    with torch.inference_mode():
        model = _Tiny().eval()
    with GradCAM(model, "block") as cam, pytest.raises(ModelError) as caught:
        cam.compute(batch)
    assert str(caught.value) == (
        "the model's weights were created under torch.inference_mode(), and autograd cannot use "
        "them for Grad-CAM's gradient; create or load the model outside inference_mode"
    )


# ---------------------------------------------------------------- Grad-CAM: edge cases of the contract


def test_normalize_maps_scales_each_map_from_its_own_minimum_to_its_maximum():
    maps = torch.tensor([[[2.0, 4.0], [6.0, 3.0]], [[-1.0, 1.0], [0.0, 3.0]]])
    expected = torch.tensor([[[0.0, 0.5], [1.0, 0.25]], [[0.0, 0.5], [0.25, 1.0]]])
    torch.testing.assert_close(normalize_maps(maps), expected)
    torch.testing.assert_close(normalize_maps(maps[0]), expected[0])  # a single (h, w) map too
    # float noise on a flat map: a span of 3 float32 steps at 10000 is 3e-7 of the peak, below 1e-6
    noise = 10000.0 + 2.0**-10 * torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    assert noise.max() > noise.min()
    assert (normalize_maps(noise) == 0).all()
    # all zero (what ReLU leaves of an all-negative map) and flat maps in a stack: zeros, never NaN,
    # and the other maps of the stack are scaled as if alone
    stack = torch.stack([torch.zeros(2, 2), torch.full((2, 2), 3.0), maps[0]])
    out = normalize_maps(stack)
    assert torch.isfinite(out).all() and (out[:2] == 0).all()
    torch.testing.assert_close(out[2], expected[0])


def test_normalize_maps_treats_a_span_of_exactly_rel_eps_of_the_peak_as_flat():
    at_the_floor = torch.tensor([[0.5, 1.0], [0.75, 1.0]])  # span 0.5 = 0.5 * peak, exactly
    assert (normalize_maps(at_the_floor, rel_eps=0.5) == 0).all()
    torch.testing.assert_close(normalize_maps(at_the_floor, rel_eps=0.49), torch.tensor([[0.0, 1.0], [0.5, 1.0]]))


@pytest.mark.parametrize("rel_eps", [1e-6, 0.0, -0.5])
def test_a_flat_map_becomes_zeros_never_nan_whatever_the_noise_floor(rel_eps):
    out = normalize_maps(torch.full((1, 2, 3, 3), 7.0), rel_eps=rel_eps)
    assert (out == 0).all()


def test_a_model_without_parameters_is_explained(batch):
    model = nn.Sequential(nn.AvgPool2d(2), nn.Flatten())  # 3 x 4 x 4 cells of an 8 x 8 input: 48 "classes"
    with GradCAM(model, "0") as cam:
        result = cam.compute(batch, [[5], [40]])
    by_hand = grad_cam_by_hand(model, model[0], batch.clone().requires_grad_(True), [[5], [40]])  # no weights: a graph
    torch.testing.assert_close(result.maps, by_hand)


def test_the_batch_goes_to_the_models_device_and_every_result_stays_there():
    """Shown with the meta device, which every machine has: the model there, the batch on the CPU."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = nn.Sequential(*model, nn.Linear(4, 3)).to("meta").eval()
    seen: list[torch.device] = []
    model.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].device))
    with GradCAM(model, "0") as cam:
        result = cam.compute(torch.zeros(2, 3, 8, 8), [1, 2])
    meta = torch.device("meta")
    assert seen == [meta]
    assert result.maps.shape == (2, 1, 8, 8)
    assert [t.device for t in (result.maps, result.class_indices, result.probabilities, result.logits)] == [meta] * 4


def test_a_batch_is_handed_to_the_model_without_a_copy(tiny, batch):
    seen: list[int] = []
    handle = tiny.register_forward_pre_hook(lambda _m, inputs: seen.append(inputs[0].data_ptr()))
    try:
        with GradCAM(tiny, "block") as cam:
            cam.compute(batch, 1)
    finally:
        handle.remove()
    assert seen == [batch.data_ptr()]


class _NormalisesInPlace(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sub_(0.5).mul_(2.0)


def test_a_batch_made_under_inference_mode_is_explained_by_a_model_that_works_in_place():
    torch.manual_seed(6)
    model = nn.Sequential(_NormalisesInPlace(), _Tiny()).eval()
    with torch.inference_mode():
        x = torch.rand(1, 3, 8, 8)
    with GradCAM(model, "1.block") as cam:
        result = cam.compute(x, 2)
    expected = grad_cam_by_hand(model, model[1].block, x.clone(), [[2]])
    torch.testing.assert_close(result.maps, expected, rtol=1e-5, atol=1e-6)


def test_a_one_cell_map_is_refused_and_a_one_by_two_map_is_explained(batch):
    torch.manual_seed(7)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d((1, 2)), nn.AdaptiveAvgPool2d(1))
    model = nn.Sequential(*model, nn.Flatten(), nn.Linear(4, 3)).eval()
    with GradCAM(model, "2") as cam, pytest.raises(LayerError) as caught:
        cam.compute(batch[:1])
    assert str(caught.value) == (
        "layer '2' has no spatial output (shape (1, 4, 1, 1)); choose a convolutional layer or block"
        ", or pass reshape= a function to (batch, channels, height, width)"
    )
    with GradCAM(model, "1") as cam:
        maps = cam.compute(batch, [0, 2]).maps
    assert maps.shape == (2, 1, 1, 2)
    torch.testing.assert_close(maps, grad_cam_by_hand(model, model[1], batch, [[0], [2]]), rtol=1e-5, atol=1e-6)


def test_numpy_integers_of_any_width_are_class_indices(tiny, batch):
    rows = [[np.int32(1)], [np.int32(3)]]
    with GradCAM(tiny, "block") as cam:
        result = cam.compute(batch, rows)
    assert result.class_indices.tolist() == [[1], [3]] and result.class_indices.dtype == torch.int64
    torch.testing.assert_close(result.maps, grad_cam_by_hand(tiny, tiny.block, batch, [[1], [3]]))


def test_a_shared_layer_that_runs_fewer_times_than_last_call_still_explains_the_asked_class(batch):
    torch.manual_seed(8)
    model = _SharedActivation().eval()  # the activation runs twice per forward
    with torch.no_grad():
        top = model(batch).argmax(dim=1)
    wanted = [[int(c + 1) % 5] for c in top]  # never the top class
    with GradCAM(model, "act") as cam:
        cam.compute(batch, wanted)  # learns: two calls per forward
        model.calls = 1
        result = cam.compute(batch, wanted)
    assert result.class_indices.tolist() == wanted
    kept: list[torch.Tensor] = []
    handle = model.act.register_forward_hook(lambda _m, _i, out: kept.append(out))
    model(batch)
    handle.remove()
    assert len(kept) == 1
    torch.testing.assert_close(result.maps, grad_cam_by_hand(model, model.act, batch, wanted), rtol=1e-5, atol=1e-6)
