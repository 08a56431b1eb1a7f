"""The variants table's sanity number, recomputed by a route that shares none of its code (issue 33).

The comparison of the variants (``evaluation/variants.py``) reports, per variant, the |Spearman|
between the trained model's map and the fully randomised model's. A slip that took the "randomised"
map from the trained model made every value 1.0 and no test noticed, since each value still lay in
[0, 1]. Here the number is worked out again on two validation photos with the public ``CAM_METHODS``,
``resize_heatmap`` and scipy's ``spearmanr``, and the table's Grad-CAM value is set against the
sanity section's, which the report prints beside it. (Filed apart from ``test_variant_comparison.py``,
where it also belongs, so as not to clash with work in progress there.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gradcam_tutorial import CAM_METHODS
from gradcam_tutorial.data import imagenet_val
from gradcam_tutorial.evaluation.report import sanity_check, summarise_sanity
from gradcam_tutorial.evaluation.sanity import cascading_randomisation, randomisation_stages
from gradcam_tutorial.evaluation.variants import evaluate_variants, summarise_variants
from gradcam_tutorial.images import load_image
from gradcam_tutorial.viz import resize_heatmap

VARIANTS = ("gradcam", "layercam")
# the comparison scores on a channels-last copy: the same maps up to float32 rounding, so the
# correlations of the 224 x 224 maps agree to far better than this
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def compared(effnet):
    """The comparison as the report runs it, at the default layer, on two photos (cheap settings for
    the perturbation measures, which this file does not check)."""
    model, spec = effnet
    photos = list(imagenet_val())[:2]
    *_, (_, randomised) = cascading_randomisation(model, 0)
    result = evaluate_variants(model, spec, photos, randomised, None, VARIANTS, steps=2, road_percentages=(50.0,))
    return model, spec, photos, randomised, result


def _map_at_input_size(method: str, model: torch.nn.Module, layer: str, x: torch.Tensor, class_idx: int) -> np.ndarray:
    with CAM_METHODS[method](model, layer) as cam:
        return resize_heatmap(cam.compute(x, class_idx).normalized()[0, 0], (x.shape[-2], x.shape[-1]))


def test_each_variants_sanity_value_is_the_spearman_of_its_trained_and_randomised_maps(compared):
    model, spec, photos, randomised, result = compared
    assert result.layer == spec.target_layer
    ranked = []  # (method) of each randomised map that is not flat
    for row, photo in enumerate(photos):
        x = spec.preprocess(load_image(photo.path))
        for method in VARIANTS:
            trained = _map_at_input_size(method, model, spec.target_layer, x, photo.class_index)
            random = _map_at_input_size(method, randomised, spec.target_layer, x, photo.class_index)
            # the randomised model's map is another map, not the trained one computed twice
            assert np.abs(trained - random).max() > 0.5, (photo.path.name, method)
            assert np.ptp(trained) > 0, "a flat trained map would compare with nothing"
            # a flat map ranks nothing: the report counts it as uncorrelated (0), where scipy gives NaN
            rho = abs(spearmanr(trained.ravel(), random.ravel()).statistic) if np.ptp(random) > 0 else 0.0
            ranked += [method] if np.ptp(random) > 0 else []
            assert rho < 0.9, (photo.path.name, method, rho)
            reported = result.scores[method]["sanity_final_abs_spearman"][row]
            assert reported == pytest.approx(rho, abs=TOLERANCE), (photo.path.name, method)
    # the first photo's randomised Grad-CAM map is flat (all zero after the ReLU), the second's is not:
    # both ways of scoring are checked
    assert ranked.count("gradcam") == 1 and ranked.count("layercam") == 2


def test_the_tables_gradcam_sanity_value_equals_the_sanity_sections(compared):
    """Same photos, layer, seed and full depth: the two tables of the report print one number."""
    model, spec, photos, _, result = compared
    depth = len(randomisation_stages(model))
    section = summarise_sanity(sanity_check(model, spec, photos, depths=[depth], methods=("gradcam",)))
    assert section["depth"] == depth
    table = summarise_variants(result)["gradcam"]["sanity_final_abs_spearman"]
    assert table["n_photos"] == len(photos)
    assert table["mean"] == pytest.approx(section["final_abs_spearman"]["gradcam"], abs=TOLERANCE)
