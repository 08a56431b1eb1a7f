"""targets.py and target callables in GradCAM: any score of the model's output, several of them from
one forward pass. Oracle: pytorch-grad-cam with the same scores as its targets (its
SemanticSegmentationTarget for the mask), on torchvision models with random weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from gradcam_tutorial import GradCAM
from gradcam_tutorial.cam import TargetError
from gradcam_tutorial.every_class import EveryClassCAM
from gradcam_tutorial.methods import COMBINE, ScoreCAM, compute_methods
from gradcam_tutorial.targets import MultiLabel, SegmentationMask, Similarity, TargetScoreError


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None).eval(), torch.randn(2, 3, 128, 128)


def _pytorch_grad_cam(model: nn.Module, layer: nn.Module, x: torch.Tensor, per_image_targets) -> np.ndarray:
    """pytorch-grad-cam's raw Grad-CAM maps (before resizing and scaling) for per-image targets."""
    import pytorch_grad_cam

    cam = pytorch_grad_cam.GradCAM(model=model, target_layers=[layer])
    try:
        cam(input_tensor=x, targets=per_image_targets)
        hooked = cam.activations_and_grads
        activation, gradient = hooked.activations[-1].numpy(), hooked.gradients[-1].numpy()
        return np.maximum(cam.get_cam_image(x, layer, per_image_targets, activation, gradient, False), 0)
    finally:
        cam.activations_and_grads.release()


def _close(ours: torch.Tensor, theirs: np.ndarray) -> None:
    scale = float(np.abs(theirs).max())
    assert scale > 0, "the comparison needs maps that are not all zero"
    assert float(np.abs(ours.numpy() - theirs).max()) <= 1e-5 * max(1.0, scale)


def test_a_multi_label_score_matches_pytorch_grad_cam(resnet):
    model, x = resnet
    ours = GradCAM(model, "layer4").compute(x, MultiLabel(5))
    theirs = _pytorch_grad_cam(model, model.layer4, x, [lambda out: torch.sigmoid(out[5])] * 2)
    _close(ours.maps[:, 0], theirs)
    torch.testing.assert_close(ours.logits[:, 0], torch.sigmoid(model(x)[:, 5]).detach())
    assert (ours.class_indices == -1).all() and ours.probabilities.isnan().all()


def test_an_embeddings_similarity_matches_pytorch_grad_cam(resnet):
    model, x = resnet
    embedder = nn.Sequential(*list(model.children())[:-1], nn.Flatten()).eval()  # (B, 512)
    with torch.no_grad():
        reference = embedder(torch.randn(1, 3, 128, 128))[0]
    ours = GradCAM(embedder, "7").compute(x, Similarity(reference))
    same = lambda out: nn.functional.cosine_similarity(out, reference, dim=0)  # noqa: E731  per image, as its targets are
    _close(ours.maps[:, 0], _pytorch_grad_cam(embedder, embedder[7], x, [same] * 2))


@pytest.mark.slow
def test_a_segmentation_mask_matches_pytorch_grad_cams_semantic_segmentation_target():
    from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget

    torch.manual_seed(0)
    model = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    x = torch.randn(1, 3, 96, 96)
    mask = torch.zeros(96, 96)
    mask[20:60, 30:80] = 1.0

    class Out(nn.Module):  # pytorch-grad-cam needs a tensor output; our targets read the dictionary
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, inputs):
            return self.model(inputs)["out"]

    layer = "backbone.16"
    ours = GradCAM(model, layer).compute(x, SegmentationMask(12, mask))
    theirs = _pytorch_grad_cam(Out(), model.get_submodule(layer), x, [SemanticSegmentationTarget(12, mask.numpy())])
    _close(ours.maps[:, 0], theirs)


def test_one_forward_pass_serves_several_targets_and_every_gradient_method(resnet):
    model, x = resnet
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        targets = [MultiLabel(1), MultiLabel(2), lambda out: out[:, 3]]
        together = compute_methods(model, "layer4", x, targets, names=list(COMBINE))
        assert len(calls) == 1
        for k, target in enumerate(targets):
            alone = GradCAM(model, "layer4").compute(x, target).maps[:, 0]
            torch.testing.assert_close(together["gradcam"].maps[:, k], alone)
        # a plain class score as a callable is the class index's map
        torch.testing.assert_close(together["gradcam"].maps[:, 2], GradCAM(model, "layer4").compute(x, 3).maps[:, 0])
    finally:
        handle.remove()


def test_targets_that_are_not_one_score_per_image_are_refused_in_one_sentence(resnet):
    model, x = resnet
    with pytest.raises(
        TargetScoreError, match=r"^target 1 \(function\) gave \(2, 1000\), not one score per image \(2,\)$"
    ):
        GradCAM(model, "layer4").compute(x, [MultiLabel(1), lambda out: out])
    with pytest.raises(TargetScoreError, match=r"gave float, not one score per image"):
        GradCAM(model, "layer4").compute(x, lambda out: 1.0)
    with pytest.raises(TargetScoreError, match=r"the mask is \(3, 3\) but the output is"):
        SegmentationMask(0, torch.ones(3, 3))(torch.zeros(1, 2, 4, 4))
    for cam in (ScoreCAM(model, "layer4"), EveryClassCAM(model, "layer4")):
        with pytest.raises(TargetError, match="explains class indices only, not target callables"):
            cam.compute(x[:1], MultiLabel(1))
    segmenter = torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    with pytest.raises(TargetError, match="not \\(batch, classes\\) logits; pass a target callable"):
        GradCAM(segmenter, "backbone.16").compute(torch.randn(1, 3, 64, 64), 3)


def test_scores_keep_the_outputs_dtype_and_the_mask_counts_only_its_pixels():
    output = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    mask = torch.zeros(4, 4, dtype=torch.float64)
    mask[1:3, 0] = 1.0
    score = SegmentationMask(1, mask)(output)
    assert score.dtype == torch.float32
    torch.testing.assert_close(score, output[:, 1, 1:3, 0].sum(dim=1))
    with pytest.raises(TargetScoreError, match=r"^the mask is \(3, 3\) but the output is \(4, 4\)$"):
        SegmentationMask(1, torch.ones(3, 3))(output)
    embedding = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    similarity = Similarity(torch.tensor([2.0, 0.0], dtype=torch.float64))(embedding)
    assert similarity.dtype == torch.float32
    torch.testing.assert_close(similarity, torch.tensor([1.0, 2**-0.5]))
