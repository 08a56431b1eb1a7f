"""The report's runners leave a caller's model exactly as found (issue 33).

Each runner that takes a model is called once on a ResNet-18 with random weights (the weights add
nothing to bookkeeping) at 64 pixels, in train mode with its batch norms, partly frozen, with a
caller's hook and a caller's accumulated gradient: any pass they made in train mode, any hook or
gradient they left behind, shows in the guard of ``conftest.py``.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable

import pytest
import torch
import torchvision
from torch import nn

from conftest import left_as_found, train_mode_with_batchnorm
from gradcam_tutorial.data import ValPhoto, imagenet_val
from gradcam_tutorial.evaluation import peers, report, variants
from gradcam_tutorial.images import load_image
from gradcam_tutorial.models import ModelSpec, get_spec

Runner = Callable[[nn.Module, ModelSpec, list[ValPhoto]], object]

RUNNERS: dict[str, Runner] = {
    "top_k_accuracy": lambda model, spec, photos: report.top_k_accuracy(model, spec, photos),
    "pointing_by_layer": lambda model, spec, photos: report.pointing_by_layer(model, spec),
    "evaluate_localisation": lambda model, spec, photos: report.evaluate_localisation(
        model, spec, photos, [spec.target_layer, spec.earlier_layer], variants=("hirescam",)
    ),
    "evaluate_faithfulness": lambda model, spec, photos: report.evaluate_faithfulness(
        model, spec, photos, steps=2, road_percentages=(50.0,)
    ),
    "sanity_check": lambda model, spec, photos: report.sanity_check(model, spec, photos, depths=[1]),
    "randomised_maps": lambda model, spec, photos: report.randomised_maps(
        model, spec, load_image(photos[0].path), photos[0].class_index, depths=[1]
    ),
    "evaluate_variants": lambda model, spec, photos: variants.evaluate_variants(
        model, spec, photos, model, names=("gradcam", "layercam"), steps=2, road_percentages=(50.0,)
    ),
    "compare_with_peers": lambda model, spec, photos: peers.compare_with_peers(
        model, spec.target_layer, spec.preprocess(load_image(photos[0].path)), photos[0].class_index
    ),
}


@pytest.fixture(scope="module")
def small_resnet() -> tuple[nn.Module, ModelSpec]:
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval(), dataclasses.replace(get_spec("resnet18"), input_size=64)


@pytest.mark.parametrize("runner", list(RUNNERS))
def test_every_report_runner_leaves_the_model_as_found(small_resnet, runner):
    model = train_mode_with_batchnorm(copy.deepcopy(small_resnet[0]))
    model.layer1.requires_grad_(False)
    model.layer2.eval()  # mixed flags, as with frozen batch norms while fine-tuning
    model.conv1.weight.grad = torch.ones_like(model.conv1.weight)
    model.fc.register_forward_hook(lambda *_: None)
    with left_as_found(model):
        RUNNERS[runner](model, small_resnet[1], list(imagenet_val()[:1]))
