"""explain() (explain.py): from a photo to class names, scores and maps placed on the photo.

A small 1000-class stand-in makes class names and top-k real and cheap; the tests that need what a
trained network sees use the session's EfficientNet-Lite0.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms
from torchvision.transforms import functional as TF

from conftest import left_as_found
from gradcam_tutorial import (
    ClassNameError,
    GradCAM,
    LayerError,
    ModelError,
    explain,
    get_spec,
    load_image,
)
from gradcam_tutorial.images import to_rgb
from gradcam_tutorial.regions import region_shares
from test_cam import _Tiny, grad_cam_by_hand
from test_models import IMAGENET_MEAN, IMAGENET_STD, _photo

# ---------------------------------------------------------------- explain: from a photo to maps on it


@pytest.fixture(scope="module")
def tiny() -> nn.Module:
    """test_cam's four-class model, with the same seed."""
    torch.manual_seed(3)
    return _Tiny().eval()


@pytest.fixture(scope="module")
def thousand_classes() -> nn.Module:
    """A small stand-in with ImageNet's 1000 outputs, so class names and top-k are real."""
    torch.manual_seed(5)
    return _Tiny(classes=1000).eval()


def test_explain_reports_classes_names_scores_top_k_and_where_the_maps_lie(thousand_classes):
    from torchvision.models import ResNet18_Weights

    names = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # torchvision's ImageNet class names
    spec = get_spec("efficientnet_lite0")
    photo = _photo(400, 300)
    x = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize((0.5,) * 3, (0.5,) * 3)]
    )(TF.crop(photo, 19, 69, 262, 262)).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(thousand_classes(x)[0], dim=0)
    raw = grad_cam_by_hand(thousand_classes, thousand_classes.block, x, [[285, 1]])[0]
    low, high = raw.amin(dim=(1, 2), keepdim=True), raw.amax(dim=(1, 2), keepdim=True)
    top = torch.argsort(probabilities, descending=True)[:3].tolist()

    result = explain(photo, thousand_classes, spec, classes=["Egyptian cat", 1], layer="block", top_k=3)

    assert result.image is photo and result.layer == "block"
    assert result.class_indices == [285, 1] and result.class_names == [names[285], names[1]] == [
        "Egyptian cat",
        "goldfish",
    ]
    assert result.probabilities == pytest.approx([float(probabilities[285]), float(probabilities[1])], rel=1e-5)
    assert [(i, n) for i, n, _ in result.top_k] == [(i, names[i]) for i in top]
    assert [p for _, _, p in result.top_k] == pytest.approx([float(probabilities[i]) for i in top], rel=1e-5)
    assert all(type(i) is int and type(p) is float for i, _, p in result.top_k)
    assert result.small_heatmaps.dtype == np.float32 and result.small_heatmaps.shape == (2, 112, 112)
    np.testing.assert_allclose(result.small_heatmaps, ((raw - low) / (high - low)).numpy(), rtol=1e-4, atol=1e-5)
    assert result.box == pytest.approx((68.75, 18.75, 331.25, 281.25)) and result.pixel_box == (69, 19, 331, 281)
    assert result.heatmap(1).shape == (300, 400) and result.heatmaps.shape == (2, 300, 400)
    np.testing.assert_array_equal(result.heatmaps[1], result.heatmap(1))
    assert result.heatmap(0)[:, :60].max() == 0  # left of the box the network never looked


def test_explain_shows_an_rgb_pngs_transparent_colour_as_white(thousand_classes, tmp_path):
    pixels = np.zeros((40, 50, 3), np.uint8)
    pixels[:, 25:] = (10, 200, 30)
    path = tmp_path / "keyed.png"
    Image.fromarray(pixels).save(path, transparency=(0, 0, 0))  # black is the colour key
    with Image.open(path) as photo:
        assert photo.mode == "RGB" and photo.info["transparency"] == (0, 0, 0)
        result = explain(photo, thousand_classes, get_spec("efficientnet_lite0"), classes=[1], layer="block")
    shown = np.asarray(result.image)
    assert (shown[:, :25] == 255).all() and (shown[:, 25:] == (10, 200, 30)).all()


def test_explain_defaults_to_the_top_class_at_the_specs_layer_and_the_top_five(thousand_classes):
    import dataclasses

    spec = dataclasses.replace(get_spec("resnet18"), target_layer="block")
    photo = _photo(64, 48)
    x = transforms.Compose(
        [transforms.Resize((224, 224)), transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )(photo).unsqueeze(0)
    with torch.no_grad():
        probabilities = torch.softmax(thousand_classes(x)[0], dim=0)
    best = int(probabilities.argmax())
    for classes in (None, []):
        result = explain(photo, thousand_classes, spec, classes=classes)
        assert result.class_indices == [best] and result.layer == "block"
        assert [i for i, _, _ in result.top_k] == torch.argsort(probabilities, descending=True)[:5].tolist()
    assert len(explain(photo, thousand_classes, spec, top_k=2000).top_k) == 1000
    grey = explain(photo.convert("L"), thousand_classes, spec, classes=best)
    assert grey.image.mode == "RGB" and grey.class_indices == [best]


def test_class_names_are_looked_up_in_the_specs_own_categories(tiny):
    """A spec for a fine-tuned model brings its own labels; names resolve against those, not ImageNet's."""
    import dataclasses

    class FourLabels(type(get_spec("resnet18"))):
        @property
        def categories(self) -> tuple[str, ...]:
            return ("ant", "bee", "wasp", "moth")

    spec = FourLabels(**{f.name: getattr(get_spec("resnet18"), f.name) for f in dataclasses.fields(FourLabels)})
    result = explain(_photo(32, 32), tiny, spec, classes=["wasp", "Bee"], layer="block", top_k=4)
    assert result.class_indices == [2, 1] and result.class_names == ["wasp", "bee"]
    assert sorted(name for _, name, _ in result.top_k) == ["ant", "bee", "moth", "wasp"]


def test_a_gradcam_for_another_model_or_layer_is_refused_with_the_reason(tiny, thousand_classes):
    import dataclasses

    spec = dataclasses.replace(get_spec("resnet18"), target_layer="block")
    photo = _photo(32, 32)
    with GradCAM(thousand_classes, "block") as cam:
        with pytest.raises(ValueError) as other_model:
            explain(photo, tiny, spec, cam=cam)
        with pytest.raises(ValueError) as other_layer:
            explain(photo, thousand_classes, spec, layer="stem", cam=cam)
        assert explain(photo, thousand_classes, spec, layer=thousand_classes.block, cam=cam).layer == "block"
    assert str(other_model.value) == "cam explains another model; make a GradCAM of this one"
    assert str(other_layer.value) == "cam explains layer 'block', not the requested 'stem'"


# ---------------------------------------------------------------- issue 6: odd pictures, unknown classes and layers


def _spec_at_block():
    """ResNet-18's spec (ImageNet labels, whole photo stretched to 224) explaining the stand-in's ``block``."""
    import dataclasses

    return dataclasses.replace(get_spec("resnet18"), target_layer="block")


def test_06_one_pixel_image_is_explained(tmp_path, thousand_classes):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "dot.png")
    image = load_image(tmp_path / "dot.png")
    assert image.size == (1, 1) and image.getpixel((0, 0)) == (10, 200, 30)
    # EfficientNet's crop of a 1x1 photo is under a pixel wide: one pixel is kept
    result = explain(image, thousand_classes, get_spec("efficientnet_lite0"), layer="block")
    assert result.heatmaps.shape == (1, 1, 1)
    assert np.isfinite(result.heatmaps).all()


def test_14c_explain_refuses_out_of_range_class(thousand_classes):
    with left_as_found(thousand_classes), pytest.raises(ClassNameError, match="out of range"):
        explain(Image.new("RGB", (32, 32)), thousand_classes, _spec_at_block(), classes=[1000])


def test_16_unknown_layer_suggests_close_names(effnet):
    with pytest.raises(LayerError, match=r"no layer named '_conv_haed'.*_conv_head"):
        explain(Image.new("RGB", (32, 32)), *effnet, layer="_conv_haed")


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["_fc", "_avg_pooling"])
def test_16b_layer_without_spatial_output(effnet, layer):
    with pytest.raises(LayerError, match="no spatial output"):
        explain(Image.new("RGB", (32, 32)), *effnet, layer=layer)


# --- API traps (issue 14, item 8) ------------------------------------------------------------------


@pytest.mark.parametrize(("classes", "expected"), [(0, [0]), (281, [281]), ("tabby", [281]), ([], None), (None, None)])
def test_explain_takes_one_class_as_an_index_or_a_name(thousand_classes, classes, expected):
    """0 is class 0 (not "no class"), a bare index is one class, a bare name is read whole."""
    photo = _photo(48, 40)
    result = explain(photo, thousand_classes, _spec_at_block(), classes)
    top = result.top_k[0][0]
    assert top not in (0, 281), "the top class must differ from the asked ones for the test to mean something"
    assert result.class_indices == (expected or [top])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "YCbCr", "LAB", "I;16"])
def test_explain_accepts_a_pil_image_in_any_mode_as_a_viewer_shows_it(effnet, grid, mode):
    """Each mode gives the maps of the same picture converted to RGB first, not errors or garbage."""
    model, spec = effnet
    image = grid[0]
    converted = image.convert("L").convert("I;16") if mode == "I;16" else image.convert(mode)
    result = explain(converted, model, spec, [285, 967])
    expected = explain(to_rgb(converted), model, spec, [285, 967])
    np.testing.assert_allclose(result.heatmaps, expected.heatmaps, atol=1e-6)
    assert result.image.mode == "RGB"
    if mode in ("RGBA", "CMYK", "YCbCr", "LAB", "P"):  # colour survives: the cat keeps its quadrant
        shares = region_shares(
            result.heatmaps[0], [(0, 0, 256, 256), (256, 0, 512, 256), (0, 256, 256, 512), (256, 256, 512, 512)]
        )
        assert shares.argmax() == 0, shares


@pytest.mark.slow
def test_a_bfloat16_model_gives_float32_maps_close_to_float32s(effnet, grid):
    model, spec = effnet
    half = copy.deepcopy(model).to(torch.bfloat16)
    result = explain(grid[0], half, spec, [285, 967])
    reference = explain(grid[0], model, spec, [285, 967])
    assert result.heatmaps.dtype == np.float32 and np.isfinite(result.heatmaps).all()
    assert np.abs(result.small_heatmaps - reference.small_heatmaps).max() < 0.15  # bfloat16 has 8 bits
    with GradCAM(half, spec.target_layer) as cam:
        heatmap, _, probability = cam.compute_heatmap(spec.preprocess(grid[0]), 285)
    assert heatmap.dtype == np.float32 and isinstance(probability, float)


def test_a_model_made_under_inference_mode_gets_one_clear_error():
    with torch.inference_mode():
        model = _Tiny(classes=1000).eval()
    with pytest.raises(ModelError, match="inference_mode"):
        explain(_photo(32, 32), model, _spec_at_block(), [285])


def test_a_boolean_is_no_class_index_for_explain_either(thousand_classes):
    """``True == 1`` in Python; a flag passed by mistake must not explain class 1."""
    import dataclasses

    spec = dataclasses.replace(get_spec("resnet18"), target_layer="block")
    with left_as_found(thousand_classes), pytest.raises(ClassNameError):
        explain(_photo(32, 32), thousand_classes, spec, True)


def test_explain_reuses_one_gradcam_and_refuses_a_mismatched_one(thousand_classes, tiny):
    spec = _spec_at_block()
    photo = _photo(64, 48)
    alone = explain(photo, thousand_classes, spec, classes=["espresso", 285])
    with GradCAM(thousand_classes, "block") as cam:
        reused = [explain(photo, thousand_classes, spec, classes=["espresso", 285], cam=cam) for _ in range(2)]
        with pytest.raises(ValueError, match="another model"):
            explain(photo, tiny, spec, cam=cam)
        with pytest.raises(ValueError, match="not the requested 'stem'"):
            explain(photo, thousand_classes, spec, layer="stem", cam=cam)
    assert alone.class_indices == [967, 285]
    for again in reused:
        assert again.class_indices == alone.class_indices and again.layer == alone.layer
        np.testing.assert_allclose(again.small_heatmaps, alone.small_heatmaps, atol=1e-6)
