"""The variants table's localisation and perturbation numbers, recomputed per photo by hand (issue 33).

``evaluate_variants`` scores every variant's map with energy, pointing, deletion and insertion AUCs
and the ROAD gap, sharing Grad-CAM's scores with any variant whose map equals it. A slip there (the
wrong map, the wrong curve, the wrong photo's boxes, the gap's sign) still leaves every number in
its range, so only a second computation can see it. Here each variant's map comes from its own
``CAM_METHODS`` class (the comparison computes them all in one ``compute_methods`` pass), and each
measure is worked out again in NumPy and torch from its definition; only ROAD's linear solve is
borrowed, through the public one-mask ``road.impute``. Score-CAM (1280 masked passes per photo at
this layer) is left out to keep the test short.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from gradcam_tutorial import CAM_METHODS
from gradcam_tutorial.data import ValPhoto, imagenet_val
from gradcam_tutorial.evaluation import road
from gradcam_tutorial.evaluation.variants import VariantScores, evaluate_variants, summarise_variants
from gradcam_tutorial.images import load_image
from gradcam_tutorial.models import ModelSpec
from gradcam_tutorial.viz import heatmap_on_photo, resize_heatmap

# At the default layer HiResCAM's map is Grad-CAM's (the comparison reuses Grad-CAM's scores for it)
# and LayerCAM's is its own (scored afresh): both routes through the comparison are checked.
VARIANTS = ("gradcam", "hirescam", "layercam")
STEPS = 3
PERCENTAGES = (30.0,)  # one ROAD percentage: each is a linear solve and a network pass per map and order
SEED = 0
# Photos 3 and 5 of the mirror: every map points into its own photo's boxes, and photo 3's peak is
# more than 15 pixels from photo 5's boxes, so pointing against the other photo's boxes would miss.
PHOTOS = (3, 5)
# Same maps up to float32 rounding (one joint pass against one per method), scored by the same
# network in other batches: the scores agreed to 1.0e-7 at most (2026-12-06), 2.8e-17 for the AUCs.
# Photo 5's class probability is small (AUCs near 0.001 to 0.01), so the bound is absolute and tight.
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def compared(effnet) -> tuple[torch.nn.Module, ModelSpec, list[ValPhoto], VariantScores]:
    """The comparison on two photos with few steps and one ROAD percentage; the model stands in for
    the randomised one, whose sanity number this file does not check (test_variant_sanity.py does)."""
    model, spec = effnet
    photos = [imagenet_val()[index] for index in PHOTOS]
    result = evaluate_variants(
        model, spec, photos, model, None, VARIANTS, steps=STEPS, road_percentages=PERCENTAGES, seed=SEED
    )
    return model, spec, photos, result


def _ranks(saliency: np.ndarray, seed: int) -> np.ndarray:
    """Each pixel's place in the most-salient-first order. Equal values (the map's zeros) go in the
    order of a ``torch.randperm`` seeded with ``seed``, the tie rule the comparison documents: the
    same rule is needed to pick the same pixels, not the same code."""
    values = saliency.astype(np.float64).ravel()
    shuffle = torch.randperm(values.size, generator=torch.Generator().manual_seed(seed)).numpy()
    place = np.empty_like(shuffle)
    place[shuffle] = np.arange(values.size)
    order = np.lexsort((place, -values))  # by value, high first; ties by place in the shuffle
    rank = np.empty(values.size, dtype=np.int64)
    rank[order] = np.arange(values.size)
    return rank


def _probabilities(model: torch.nn.Module, inputs: list[torch.Tensor], class_index: int) -> np.ndarray:
    """Softmax probability of the class, four inputs at a time (larger batches are slower on a CPU)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(inputs), 4):
            logits = model(torch.stack(inputs[start : start + 4]))
            out.append(torch.softmax(logits, dim=1)[:, class_index].double().numpy())
    return np.concatenate(out)


def _deletion_and_insertion(
    model: torch.nn.Module, x: torch.Tensor, ranks: list[np.ndarray], class_index: int
) -> list[tuple[float, float]]:
    """RISE's two AUCs per map: the ranked pixels set to 0 in the normalised input, or taken from the
    input into its blur (kernel 11, sigma 5), in ``STEPS`` equal chunks; trapezoids over fractions
    0..1. The ends (input, all zero, all blurred) do not depend on the map and are scored once."""
    start = gaussian_blur(x, [11, 11], [5.0, 5.0])
    counts = np.rint(np.linspace(0, ranks[0].size, STEPS + 1))[1:-1]
    inputs = [x, torch.zeros_like(x), start]
    for rank in ranks:
        chosen = [torch.from_numpy(rank.reshape(x.shape[-2:]) < k) for k in counts]
        inputs += [torch.where(c, 0.0, x) for c in chosen] + [torch.where(c, x, start) for c in chosen]
    probabilities = _probabilities(model, inputs, class_index)
    full, gone, blurred = probabilities[:3]
    out = []
    for inner in probabilities[3:].reshape(len(ranks), 2, STEPS - 1):
        deletion = np.concatenate([[full], inner[0], [gone]])
        insertion = np.concatenate([[blurred], inner[1], [full]])
        out.append((float(np.trapezoid(deletion, dx=1 / STEPS)), float(np.trapezoid(insertion, dx=1 / STEPS))))
    return out


def _road_gap(model: torch.nn.Module, x: torch.Tensor, rank: np.ndarray, class_index: int) -> float:
    """Mean probability with the p % least relevant pixels imputed, minus with the p % most relevant;
    each order draws its noise from a fresh generator seeded ``SEED``, one percentage after another."""
    n = rank.size
    mean = {}
    for order in ("morf", "lerf"):
        generator = torch.Generator().manual_seed(SEED)
        inputs = []
        for percentage in PERCENTAGES:
            k = int(np.rint(percentage / 100 * n))
            removed = rank < k if order == "morf" else rank >= n - k
            inputs.append(road.impute(x, removed.reshape(x.shape[-2:]), generator=generator))
        mean[order] = _probabilities(model, inputs, class_index).mean()
    return float(mean["lerf"] - mean["morf"])


def _localisation(placed: np.ndarray, photo: ValPhoto) -> tuple[float, float]:
    """Energy (share of the map in the boxes) and pointing (the first highest pixel within 15 original
    pixels of a box), with each grid pixel's centre taken back to the photo's original pixels."""
    height, width = placed.shape
    xs = (np.arange(width) + 0.5) * photo.original_size[0] / width
    ys = (np.arange(height) + 0.5) * photo.original_size[1] / height
    inside = np.zeros(placed.shape, dtype=bool)
    for x0, y0, x1, y1 in photo.boxes:
        inside |= ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    row, col = np.unravel_index(int(np.argmax(placed)), placed.shape)
    distances = [
        np.hypot(max(x0 - xs[col], xs[col] - x1, 0.0), max(y0 - ys[row], ys[row] - y1, 0.0))
        for x0, y0, x1, y1 in photo.boxes
    ]
    hit = placed.max() > 0 and min(distances) <= 15.0
    return float(placed[inside].sum() / placed.sum()), float(hit)


def _scores_by_hand(model: torch.nn.Module, spec: ModelSpec, photo: ValPhoto) -> dict[str, dict[str, float]]:
    """Every variant's five measures on one photo; a map equal to Grad-CAM's is scored once."""
    image = load_image(photo.path)
    x = spec.preprocess(image)
    small = {}
    for variant in VARIANTS:
        with CAM_METHODS[variant](model, spec.target_layer) as cam:
            small[variant] = cam.compute(x, photo.class_index).normalized()[0, 0].numpy()
    # the comparison's premise at this layer: HiResCAM is Grad-CAM, LayerCAM is not
    assert np.abs(small["hirescam"] - small["gradcam"]).max() <= 1e-6
    assert np.abs(small["layercam"] - small["gradcam"]).max() > 0.1
    distinct = ("gradcam", "layercam")
    ranks = [_ranks(resize_heatmap(small[v], tuple(x.shape[-2:])), SEED) for v in distinct]
    aucs = dict(zip(distinct, _deletion_and_insertion(model, x[0], ranks, photo.class_index), strict=True))
    gaps = {v: _road_gap(model, x[0], rank, photo.class_index) for v, rank in zip(distinct, ranks, strict=True)}
    out = {}
    for variant in VARIANTS:
        own = variant if variant in distinct else "gradcam"
        energy, pointing = _localisation(
            heatmap_on_photo(small[variant], image.size, spec.pixel_box(image.size)), photo
        )
        out[variant] = {
            "energy": energy,
            "pointing": pointing,
            "deletion_auc": aucs[own][0],
            "insertion_auc": aucs[own][1],
            "road_gap": gaps[own],
        }
    return out


def test_each_variants_localisation_and_perturbation_scores_are_recomputed_by_hand(compared):
    model, spec, photos, result = compared
    assert result.names == VARIANTS and result.n_photos == len(photos)
    assert result.same_as_gradcam == {"gradcam": True, "hirescam": True, "layercam": False}
    # the plain model in channels-last layout: the same network, scored as fast as the comparison's copy
    scorer = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    by_photo = [_scores_by_hand(scorer, spec, photo) for photo in photos]
    for row, expected in enumerate(by_photo):
        for variant, measures in expected.items():
            for measure, value in measures.items():
                stored = result.scores[variant][measure][row]
                assert stored == pytest.approx(value, abs=TOLERANCE), (row, variant, measure, stored, value)
    # the table prints the means of these per-photo values
    summary = summarise_variants(result)
    for variant in VARIANTS:
        for measure in by_photo[0][variant]:
            mean = np.mean([expected[variant][measure] for expected in by_photo])
            assert summary[variant][measure]["mean"] == pytest.approx(mean, abs=TOLERANCE), (variant, measure)
