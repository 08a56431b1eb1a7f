"""The report's comparison of Grad-CAM's variants (evaluation/variants.py): known answers on synthetic
scores, a real run, and each variant's numbers recomputed per photo by routes that share none of the
comparison's code (issue 33).

``evaluate_variants`` scores every variant's map with energy, pointing, deletion and insertion AUCs,
the ROAD gap and the sanity number, sharing Grad-CAM's scores with any variant whose map equals it. A
slip there (the wrong map, the wrong curve, the wrong photo's boxes, the gap's sign, a "randomised"
map taken from the trained model) still leaves every number in its range, so only a second
computation can see it. The core methods' own tests are in test_methods.py.
"""

from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torchvision.transforms.functional import gaussian_blur

from gradcam_tutorial import CAM_METHODS, compute_methods, create_model
from gradcam_tutorial.data import ValPhoto, imagenet_val
from gradcam_tutorial.evaluation import localisation, road
from gradcam_tutorial.evaluation.run_sanity import sanity_check, summarise_sanity
from gradcam_tutorial.evaluation.sanity import cascading_randomisation, randomisation_stages
from gradcam_tutorial.evaluation.variants import (
    MEASURES,
    VariantScores,
    evaluate_variants,
    format_variant_table,
    plot_variant_differences,
    summarise_variants,
    verdicts,
)
from gradcam_tutorial.images import load_image
from gradcam_tutorial.models import ModelSpec, get_spec
from gradcam_tutorial.viz import heatmap_on_photo, resize_heatmap


def synthetic(shift: dict[str, float], n: int = 40, missing: int = 0) -> VariantScores:
    rng = np.random.default_rng(0)
    base = {m: rng.uniform(0.2, 0.8, n) for m in MEASURES}
    scores = {"gradcam": base}
    for name, delta in shift.items():
        scores[name] = {m: base[m] + delta for m in MEASURES}
        if missing:
            for values in scores[name].values():
                values[:missing] = np.nan
    return VariantScores(("gradcam", *shift), "layer", scores, dict.fromkeys(("gradcam", *shift), False))


def test_paired_intervals_see_a_constant_shift_and_nothing_else():
    summary = summarise_variants(synthetic({"up": 0.05, "down": -0.05, "same": 0.0}))
    for measure in MEASURES:
        assert summary["up"][measure]["diff_vs_gradcam_ci95"] == pytest.approx([0.05, 0.05])
        assert summary["same"][measure]["diff_vs_gradcam_ci95"] == pytest.approx([0.0, 0.0])
        assert summary["up"][measure]["mean"] == pytest.approx(summary["gradcam"][measure]["mean"] + 0.05)
    read = verdicts(summary)
    assert read["same"] == dict.fromkeys(MEASURES, "same")
    # higher is better except for deletion AUC and the similarity after randomisation
    assert read["up"] == {
        "energy": "better",
        "pointing": "better",
        "insertion_auc": "better",
        "deletion_auc": "worse",
        "road_gap": "better",
        "sanity_final_abs_spearman": "worse",
    }
    assert {v: k for k, v in read["down"].items() if k in ("deletion_auc", "energy")} == {
        "better": "deletion_auc",
        "worse": "energy",
    }


def test_table_marks_each_measure_as_its_interval_reads():
    summary = summarise_variants(synthetic({"up": 0.05, "same": 0.0}))
    summary["same"]["same_map_as_gradcam"] = True
    lines = format_variant_table(summary).splitlines()
    assert lines[0].split()[:2] == ["method", "photos"] and len(lines) == 4
    assert lines[1].startswith("gradcam") and f"{summary['gradcam']['energy']['mean']:.4f}" in lines[1]
    up = lines[2]
    marks = [cell.split()[0] for cell in up.split("]")[1:]]
    assert up.startswith("up") and marks == ["+", "+", "+", "-", "+", "-"]  # deletion, |rho|: lower is better
    assert up.count("[+0.0500, +0.0500]") == len(MEASURES)
    assert lines[3].count(" =") == len(MEASURES) and lines[3].endswith("(Grad-CAM's maps)")


def test_table_never_sets_a_variants_mean_beside_gradcams():
    """A variant run on fewer photos (Score-CAM's subset) is shown only by its paired interval: its
    own mean, on other photos than Grad-CAM's, is not in the table."""
    summary = summarise_variants(synthetic({"subset": 0.1}, missing=30))
    table = format_variant_table(summary)
    row = table.splitlines()[2]
    assert row.split()[:2] == ["subset", "10"]
    for measure in MEASURES:
        assert f"{summary['subset'][measure]['mean']:.4f}" not in row
    assert row.count("[+0.1000, +0.1000] +") == 4


def test_table_marks_a_gain_from_flat_randomised_maps_as_no_gain():
    summary = summarise_variants(synthetic({"flat": 0.0}))
    summary["flat"]["sanity_final_abs_spearman"] = {
        "mean": 0.0,
        "ci95": [0.0, 0.0],
        "n_photos": 40,
        "diff_vs_gradcam_ci95": [-0.3, -0.1],
    }
    row = format_variant_table(summary).splitlines()[2]
    assert "[-0.3000, -0.1000] ?" in row and row.endswith("(?: every randomised map flat)")


def test_figure_draws_one_interval_per_variant_layer_and_measure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_layer = {
        "a": summarise_variants(synthetic({"up": 0.05, "down": -0.05})),
        "_b": summarise_variants(synthetic({"up": 0.02, "down": -0.02})),  # layer names like "_blocks.14"
    }
    fig, axes = plt.subplots(1, len(MEASURES), sharey=True)
    plot_variant_differences(by_layer, axes)
    for ax, measure in zip(axes, MEASURES, strict=True):
        intervals = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_linewidth() == 3]
        assert len(intervals) == 4, measure  # two variants at two layers
        assert sorted(round(float(line.get_xdata()[0]), 6) for line in intervals) == [-0.05, -0.02, 0.02, 0.05]
        # every axis names its rows, also when the axes share y
        assert [t.get_text() for t in ax.get_yticklabels()] == ["up", "down"], measure
        assert ax.get_xlabel()
    (legend,) = fig.legends  # below the axes, where it covers no interval
    assert [t.get_text() for t in legend.get_texts()] == ["at a", "at _b"]
    plt.close(fig)


def test_a_variant_run_on_fewer_photos_is_paired_on_those_photos():
    summary = summarise_variants(synthetic({"subset": 0.1}, missing=30))
    entry = summary["subset"]["energy"]
    assert entry["n_photos"] == 10 and summary["gradcam"]["energy"]["n_photos"] == 40
    assert entry["diff_vs_gradcam_ci95"] == pytest.approx([0.1, 0.1])


def test_localisation_on_a_larger_set_replaces_energy_and_pointing():
    result = synthetic({"other": 0.0})
    larger = {name: {"energy": np.full(100, 0.3), "pointing": np.ones(100)} for name in ("gradcam", "other")}
    summary = summarise_variants(result, localisation_scores=larger)
    assert summary["other"]["energy"]["n_photos"] == 100 and summary["other"]["energy"]["mean"] == pytest.approx(0.3)
    assert summary["other"]["insertion_auc"]["n_photos"] == 40


@pytest.fixture(scope="module")
def real_run():
    model, spec = create_model("efficientnet_lite0")
    photos = list(imagenet_val())[:2]
    *_, (_, randomised) = cascading_randomisation(model, 0)
    names = ("gradcam", "hirescam", "layercam", "scorecam")
    return (
        model,
        spec,
        photos,
        evaluate_variants(model, spec, photos, randomised, "_blocks.14", names, score_cam_photos=1, steps=4),
    )


@pytest.mark.slow  # the comparison on EfficientNet-Lite0: minutes on a CPU
def test_real_run_scores_every_variant_and_score_cam_on_its_subset(real_run):
    *_, result = real_run
    assert result.layer == "_blocks.14" and result.n_photos == 2
    for name in result.names:
        for measure in MEASURES:
            values = result.scores[name][measure]
            ran = ~np.isnan(values)
            assert ran.sum() == (1 if name == "scorecam" else 2), (name, measure)
            low = -1 if measure == "road_gap" else 0  # LeRF minus MoRF probability
            assert ((values[ran] >= low) & (values[ran] <= 1)).all(), (name, measure)
    # a layer inside the network: the gradient varies over space and every variant differs
    assert not any(result.same_as_gradcam[v] for v in ("hirescam", "layercam", "scorecam"))
    assert result.same_as_gradcam["gradcam"]


@pytest.mark.slow  # the comparison on EfficientNet-Lite0: minutes on a CPU
def test_real_run_energy_can_be_recomputed_from_the_public_api(real_run):
    """Energy is the share of the map placed on the photo's own grid inside the class's boxes."""
    model, spec, photos, result = real_run
    photo = photos[0]
    image = load_image(photo.path)
    maps = compute_methods(model, "_blocks.14", spec.preprocess(image), photo.class_index, ("layercam",))
    placed = heatmap_on_photo(maps["layercam"].normalized()[0, 0].numpy(), image.size, spec.pixel_box(image.size))
    inside = localisation.box_mask(image.size, photo.original_size, photo.boxes)
    assert localisation.energy(placed, inside) == pytest.approx(result.scores["layercam"]["energy"][0], abs=1e-4)


def test_the_comparison_needs_gradcam_to_pair_with():
    """Refused before any pass, so a tiny network stands in for EfficientNet-Lite0."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    message = "the comparison pairs every variant with Grad-CAM: include 'gradcam'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        evaluate_variants(model, get_spec("resnet18"), list(imagenet_val()[:1]), model, names=("hirescam",))


# --- localisation and perturbation numbers, recomputed per photo by hand ---------------------------
#
# Each variant's map comes from its own ``CAM_METHODS`` class (the comparison computes them all in one
# ``compute_methods`` pass), and each measure is worked out again in NumPy and torch from its
# definition; only ROAD's linear solve is borrowed, through the public one-mask ``road.impute``.
# Score-CAM (1280 masked passes per photo at this layer) is left out to keep the test short.


# At the default layer HiResCAM's map is Grad-CAM's (the comparison reuses Grad-CAM's scores for it)
# and LayerCAM's is its own (scored afresh): both routes through the comparison are checked.
MEASURED_VARIANTS = ("gradcam", "hirescam", "layercam")


MEASURED_STEPS = 3


MEASURED_PERCENTAGES = (30.0,)  # one ROAD percentage: each is a linear solve and a network pass per map and order


MEASURED_SEED = 0


# Photos 3 and 5 of the mirror: every map points into its own photo's boxes, and photo 3's peak is
# more than 15 pixels from photo 5's boxes, so pointing against the other photo's boxes would miss.
MEASURED_PHOTOS = (3, 5)


# Same maps up to float32 rounding (one joint pass against one per method), scored by the same
# network in other batches: the scores agreed to 1.0e-7 at most (2026-12-06), 2.8e-17 for the AUCs.
# Photo 5's class probability is small (AUCs near 0.001 to 0.01), so the bound is absolute and tight.
MEASURED_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def compared_by_measure(effnet) -> tuple[torch.nn.Module, ModelSpec, list[ValPhoto], VariantScores]:
    """The comparison on two photos with few steps and one ROAD percentage; the model stands in for
    the randomised one, whose sanity number the sanity tests below check on their own comparison."""
    model, spec = effnet
    photos = [imagenet_val()[index] for index in MEASURED_PHOTOS]
    result = evaluate_variants(
        model,
        spec,
        photos,
        model,
        None,
        MEASURED_VARIANTS,
        steps=MEASURED_STEPS,
        road_percentages=MEASURED_PERCENTAGES,
        seed=MEASURED_SEED,
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
    input into its blur (kernel 11, sigma 5), in ``MEASURED_STEPS`` equal chunks; trapezoids over fractions
    0..1. The ends (input, all zero, all blurred) do not depend on the map and are scored once."""
    start = gaussian_blur(x, [11, 11], [5.0, 5.0])
    counts = np.rint(np.linspace(0, ranks[0].size, MEASURED_STEPS + 1))[1:-1]
    inputs = [x, torch.zeros_like(x), start]
    for rank in ranks:
        chosen = [torch.from_numpy(rank.reshape(x.shape[-2:]) < k) for k in counts]
        inputs += [torch.where(c, 0.0, x) for c in chosen] + [torch.where(c, x, start) for c in chosen]
    probabilities = _probabilities(model, inputs, class_index)
    full, gone, blurred = probabilities[:3]
    out = []
    for inner in probabilities[3:].reshape(len(ranks), 2, MEASURED_STEPS - 1):
        deletion = np.concatenate([[full], inner[0], [gone]])
        insertion = np.concatenate([[blurred], inner[1], [full]])
        out.append(
            (
                float(np.trapezoid(deletion, dx=1 / MEASURED_STEPS)),
                float(np.trapezoid(insertion, dx=1 / MEASURED_STEPS)),
            )
        )
    return out


def _road_gap(model: torch.nn.Module, x: torch.Tensor, rank: np.ndarray, class_index: int) -> float:
    """Mean probability with the p % least relevant pixels imputed, minus with the p % most relevant;
    each order draws its noise from a fresh generator seeded ``MEASURED_SEED``, one percentage after another."""
    n = rank.size
    mean = {}
    for order in ("morf", "lerf"):
        generator = torch.Generator().manual_seed(MEASURED_SEED)
        inputs = []
        for percentage in MEASURED_PERCENTAGES:
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
    for variant in MEASURED_VARIANTS:
        with CAM_METHODS[variant](model, spec.target_layer) as cam:
            small[variant] = cam.compute(x, photo.class_index).normalized()[0, 0].numpy()
    # the comparison's premise at this layer: HiResCAM is Grad-CAM, LayerCAM is not
    assert np.abs(small["hirescam"] - small["gradcam"]).max() <= 1e-6
    assert np.abs(small["layercam"] - small["gradcam"]).max() > 0.1
    distinct = ("gradcam", "layercam")
    ranks = [_ranks(resize_heatmap(small[v], tuple(x.shape[-2:])), MEASURED_SEED) for v in distinct]
    aucs = dict(zip(distinct, _deletion_and_insertion(model, x[0], ranks, photo.class_index), strict=True))
    gaps = {v: _road_gap(model, x[0], rank, photo.class_index) for v, rank in zip(distinct, ranks, strict=True)}
    out = {}
    for variant in MEASURED_VARIANTS:
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


@pytest.mark.slow  # the comparison on EfficientNet-Lite0: minutes on a CPU
def test_each_variants_localisation_and_perturbation_scores_are_recomputed_by_hand(compared_by_measure):
    model, spec, photos, result = compared_by_measure
    assert result.names == MEASURED_VARIANTS and result.n_photos == len(photos)
    assert result.same_as_gradcam == {"gradcam": True, "hirescam": True, "layercam": False}
    # the plain model in channels-last layout: the same network, scored as fast as the comparison's copy
    scorer = copy.deepcopy(model).eval().to(memory_format=torch.channels_last)
    by_photo = [_scores_by_hand(scorer, spec, photo) for photo in photos]
    for row, expected in enumerate(by_photo):
        for variant, measures in expected.items():
            for measure, value in measures.items():
                stored = result.scores[variant][measure][row]
                assert stored == pytest.approx(value, abs=MEASURED_TOLERANCE), (row, variant, measure, stored, value)
    # the table prints the means of these per-photo values
    summary = summarise_variants(result)
    for variant in MEASURED_VARIANTS:
        for measure in by_photo[0][variant]:
            mean = np.mean([expected[variant][measure] for expected in by_photo])
            assert summary[variant][measure]["mean"] == pytest.approx(mean, abs=MEASURED_TOLERANCE), (variant, measure)


# --- the sanity number, recomputed with CAM_METHODS, resize_heatmap and scipy's spearmanr ----------
#
# The table reports, per variant, the |Spearman| between the trained model's map and the fully
# randomised model's; the table's Grad-CAM value is also set against the sanity section's.


SANITY_VARIANTS = ("gradcam", "layercam")


# the comparison scores on a channels-last copy: the same maps up to float32 rounding, so the
# correlations of the 224 x 224 maps agree to far better than this
SANITY_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def compared_for_sanity(effnet):
    """The comparison as the report runs it, at the default layer, on two photos (cheap settings for
    the perturbation measures, which this file does not check)."""
    model, spec = effnet
    photos = list(imagenet_val())[:2]
    *_, (_, randomised) = cascading_randomisation(model, 0)
    result = evaluate_variants(
        model, spec, photos, randomised, None, SANITY_VARIANTS, steps=2, road_percentages=(50.0,)
    )
    return model, spec, photos, randomised, result


def _map_at_input_size(method: str, model: torch.nn.Module, layer: str, x: torch.Tensor, class_idx: int) -> np.ndarray:
    with CAM_METHODS[method](model, layer) as cam:
        return resize_heatmap(cam.compute(x, class_idx).normalized()[0, 0], (x.shape[-2], x.shape[-1]))


@pytest.mark.slow  # the comparison on EfficientNet-Lite0: minutes on a CPU
def test_each_variants_sanity_value_is_the_spearman_of_its_trained_and_randomised_maps(compared_for_sanity):
    model, spec, photos, randomised, result = compared_for_sanity
    assert result.layer == spec.target_layer
    ranked = []  # (method) of each randomised map that is not flat
    for row, photo in enumerate(photos):
        x = spec.preprocess(load_image(photo.path))
        for method in SANITY_VARIANTS:
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
            assert reported == pytest.approx(rho, abs=SANITY_TOLERANCE), (photo.path.name, method)
    # the first photo's randomised Grad-CAM map is flat (all zero after the ReLU), the second's is not:
    # both ways of scoring are checked
    assert ranked.count("gradcam") == 1 and ranked.count("layercam") == 2


@pytest.mark.slow  # the comparison on EfficientNet-Lite0: minutes on a CPU
def test_the_tables_gradcam_sanity_value_equals_the_sanity_sections(compared_for_sanity):
    """Same photos, layer, seed and full depth: the two tables of the report print one number."""
    model, spec, photos, _, result = compared_for_sanity
    depth = len(randomisation_stages(model))
    section = summarise_sanity(sanity_check(model, spec, photos, depths=[depth], methods=("gradcam",)))
    assert section["depth"] == depth
    table = summarise_variants(result)["gradcam"]["sanity_final_abs_spearman"]
    assert table["n_photos"] == len(photos)
    assert table["mean"] == pytest.approx(section["final_abs_spearman"]["gradcam"], abs=SANITY_TOLERANCE)
