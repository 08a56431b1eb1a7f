"""ROAD (noisy linear imputation): known answers, pixel selection, pytorch-grad-cam as an oracle.

The imputation is checked against properties that follow from its definition (each removed pixel is
the renormalised 8-neighbour weighted mean; the 1/6-1/12 stencil is exact for harmonic polynomials,
so ramps and x^2 - y^2 are reproduced, x^2 + y^2 is not), against pytorch-grad-cam's
``NoisyLinearImputer`` (the ROAD authors' code), and on the real EfficientNet-Lite0.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gradcam_tutorial.evaluation import faithfulness, road

WEIGHTS = {(dy, dx): (1 / 12 if dy and dx else 1 / 6) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if dy or dx}


def neighbour_mean(image: np.ndarray) -> np.ndarray:
    """Each pixel's weighted mean of its in-image 8 neighbours, weights renormalised (independent loop)."""
    _channels, height, width = image.shape
    total = np.zeros_like(image)
    weight = np.zeros((height, width))
    for (dy, dx), w in WEIGHTS.items():
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    total[:, y, x] += w * image[:, y + dy, x + dx]
                    weight[y, x] += w
    return total / weight


def grid_image(function, height: int = 20, width: int = 24) -> torch.Tensor:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return torch.from_numpy(np.stack([function(ys, xs), 2.0 * function(ys, xs) - 1.0, -function(ys, xs)]))


def block(height: int, width: int, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    removed = torch.zeros(height, width, dtype=torch.bool)
    removed[top:bottom, left:right] = True
    return removed


# --- imputation: known answers -------------------------------------------------------------------


@pytest.mark.parametrize(
    "function",
    [
        lambda y, x: 0.3 + 0.05 * y - 0.02 * x,  # linear ramp
        lambda y, x: 0.01 * (x - 11.5) ** 2 - 0.01 * (y - 9.5) ** 2,  # harmonic quadratic
        lambda y, x: 0.003 * (x - 11.5) * (y - 9.5),  # harmonic quadratic
    ],
)
def test_harmonic_polynomials_are_reproduced_in_the_interior(function):
    image = grid_image(function)
    removed = block(20, 24, 4, 15, 5, 19)  # does not touch the border
    out = road.impute(image, removed, noise_std=0.0)
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-10)


def test_non_harmonic_function_is_not_reproduced_but_overshot():
    # x^2 + y^2: the stencil's mean exceeds the centre by 4/3 (in units of the coefficient), so the
    # discrete-harmonic fill lies strictly above the function inside the hole (maximum principle)
    image = grid_image(lambda y, x: 0.01 * ((x - 11.5) ** 2 + (y - 9.5) ** 2))
    removed = block(20, 24, 4, 15, 5, 19)
    out = road.impute(image, removed, noise_std=0.0).numpy()
    gap = out[0][removed.numpy()] - image[0].numpy()[removed.numpy()]
    assert gap.min() > 1e-3
    # and the definition still holds: every removed pixel is its neighbours' weighted mean
    np.testing.assert_allclose(out[:, removed], neighbour_mean(out)[:, removed], atol=1e-10)


def test_border_weights_are_renormalised_not_reflected():
    # a hole touching the top edge: a ramp along x is still reproduced (the remaining weights are
    # symmetric in x), a ramp along y is not (only downward neighbours remain on the top row)
    removed = block(20, 24, 0, 6, 5, 19)
    along_x = grid_image(lambda y, x: 0.04 * x)
    np.testing.assert_allclose(road.impute(along_x, removed, noise_std=0.0).numpy(), along_x.numpy(), atol=1e-10)
    along_y = grid_image(lambda y, x: 0.04 * y)
    out = road.impute(along_y, removed, noise_std=0.0).numpy()
    assert np.abs(out - along_y.numpy()).max() > 0.05
    np.testing.assert_allclose(out[:, removed], neighbour_mean(out)[:, removed], atol=1e-10)


def test_random_mask_satisfies_the_defining_equations():
    generator = torch.Generator().manual_seed(4)
    image = torch.randn(3, 17, 23, generator=generator, dtype=torch.float64)
    removed = torch.rand(17, 23, generator=generator) < 0.6  # corners and edges included
    out = road.impute(image, removed, noise_std=0.0)
    assert torch.equal(out[:, ~removed], image[:, ~removed])
    np.testing.assert_allclose(out[:, removed].numpy(), neighbour_mean(out.numpy())[:, removed.numpy()], atol=1e-10)


def test_nothing_removed_returns_an_unchanged_copy_and_everything_removed_is_refused():
    image = torch.randn(3, 8, 9)
    out = road.impute(image, torch.zeros(8, 9, dtype=torch.bool))
    assert torch.equal(out, image) and out.data_ptr() != image.data_ptr()
    with pytest.raises(ValueError, match="nothing left"):
        road.impute(image, torch.ones(8, 9, dtype=torch.bool))


def test_noise_touches_only_removed_pixels_and_is_reproducible():
    image = torch.randn(3, 40, 40, generator=torch.Generator().manual_seed(0))
    removed = torch.rand(40, 40, generator=torch.Generator().manual_seed(1)) < 0.5
    clean = road.impute(image, removed, noise_std=0.0)
    noisy = road.impute(image, removed, noise_std=0.5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(noisy[:, ~removed], image[:, ~removed])
    noise = (noisy - clean)[:, removed].double()
    assert noise.numel() > 2000
    assert abs(noise.std().item() - 0.5) < 0.03 and abs(noise.mean().item()) < 0.03
    again = road.impute(image, removed, noise_std=0.5, generator=torch.Generator().manual_seed(7))
    other = road.impute(image, removed, noise_std=0.5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(noisy, again) and not torch.equal(noisy, other)


# --- which pixels are removed --------------------------------------------------------------------


def test_morf_and_lerf_remove_exactly_the_top_and_bottom_share():
    values = np.random.default_rng(3).permutation(12 * 15).reshape(12, 15).astype(np.float32)
    ordered = np.sort(values.ravel())[::-1]
    percentages = [0, 10, 25, 50, 90, 100]
    morf = road.removed_masks(values, percentages, "morf").numpy()
    lerf = road.removed_masks(torch.from_numpy(values), percentages, "lerf").numpy()
    for p, top, bottom in zip(percentages, morf, lerf, strict=True):
        k = int(np.rint(p / 100 * values.size))
        assert top.sum() == bottom.sum() == k
        if k:
            np.testing.assert_array_equal(top, values >= ordered[k - 1])
            np.testing.assert_array_equal(bottom, values <= ordered[::-1][k - 1])


def test_ties_are_broken_by_the_seeded_permutation():
    levels = np.zeros((10, 10))
    levels[:3] = 2.0  # 30 pixels on top
    levels[3:7] = 1.0  # 40 tied pixels in the middle
    masks = {seed: road.removed_masks(levels, [50], "morf", seed)[0].numpy() for seed in (0, 1)}
    for seed, mask in masks.items():
        assert mask[levels == 2].all() and not mask[levels == 0].any() and mask[levels == 1].sum() == 20
        np.testing.assert_array_equal(mask.ravel(), faithfulness.saliency_rank(levels, seed).numpy() < 50)
    assert not np.array_equal(masks[0], masks[1])
    # a flat map removes a random half, not the first rows in raster order
    flat = road.removed_masks(np.ones((10, 10)), [50], "morf", 0)[0].numpy()
    assert flat.sum() == 50 and 10 < flat[:5].sum() < 40
    # one tie-break for both orders: MoRF at p and LeRF at 100 - p split the image in two
    for p in (20, 50, 70):
        morf = road.removed_masks(levels, [p], "morf", 5)[0]
        lerf = road.removed_masks(levels, [100 - p], "lerf", 5)[0]
        assert torch.equal(morf, ~lerf)


def test_road_inputs_change_exactly_the_selected_pixels():
    saliency = np.random.default_rng(0).random((16, 16))
    image = torch.zeros(3, 16, 16)  # imputes to 0, so only the noise shows
    for order in road.ORDERS:
        inputs = road.road_inputs(image, saliency, [10, 60], order, noise_std=1.0, seed=2)
        assert inputs.shape == (2, 3, 16, 16)
        expected = road.removed_masks(saliency, [10, 60], order, seed=2)
        assert torch.equal((inputs != 0).all(dim=1), expected) and torch.equal((inputs != 0).any(dim=1), expected)
        assert torch.equal(inputs, road.road_inputs(image[None], saliency, [10, 60], order, noise_std=1.0, seed=2))
    with pytest.raises(ValueError):
        road.road_inputs(image, saliency, [10], "middle")
    with pytest.raises(ValueError):
        road.road_inputs(image, saliency[:8], [10], "morf")


@pytest.mark.parametrize("shape, share", [((13, 17), 0.5), ((13, 17), 0.97), ((9, 6), 0.2), ((30, 30), 0.7)])
def test_the_linear_system_is_its_definition_in_dissection_order(shape, share):
    """Upper-triangle CSR of the imputation matrix, against a dense matrix written from the definition."""
    height, width = shape
    removed = np.random.default_rng(7).random(shape) < share
    system = road._linear_system(removed)
    order = road._dissection_order(height, width)
    assert np.array_equal(system.pixels, order[removed.ravel()[order]])  # removed pixels, in the order
    dense = np.zeros((system.pixels.size, system.pixels.size))
    where = {int(pixel): i for i, pixel in enumerate(system.pixels)}
    for i, pixel in enumerate(system.pixels):
        y, x = divmod(int(pixel), width)
        for (dy, dx), w in WEIGHTS.items():
            if 0 <= y + dy < height and 0 <= x + dx < width:
                dense[i, i] += w
                j = where.get((y + dy) * width + x + dx)
                if j is not None:
                    dense[i, j] = -w
    n = system.pixels.size
    rows = [system.indices[system.indptr[i] : system.indptr[i + 1]] for i in range(n)]
    assert all(row[0] == i and np.all(np.diff(row) > 0) for i, row in enumerate(rows))  # diagonal first, sorted
    got = np.zeros_like(dense)
    for i, row in enumerate(rows):
        got[i, row] = system.data[system.indptr[i] : system.indptr[i + 1]]
    np.testing.assert_array_equal(got, np.triu(dense))
    np.testing.assert_array_equal(dense, dense.T)


def test_rankings_passed_in_give_the_same_inputs_and_scores():
    """Deletion, insertion and ROAD rank the same maps: a caller may rank once and pass the ranks."""
    rng = np.random.default_rng(5)
    image = torch.from_numpy(rng.normal(size=(3, 24, 20)).astype(np.float32))
    maps = [rng.random((24, 20)), np.zeros((24, 20))]
    ranks = [faithfulness.saliency_rank(m, 3) for m in maps]

    def model(x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.mean((1, 2, 3)), x[:, 0, :12].mean((1, 2)), x[:, 1].amax((1, 2))], dim=1)

    mine = road.road_scores(model, image, maps, 1, [20, 70], seed=3, ranks=ranks)
    theirs = road.road_scores(model, image, maps, 1, [20, 70], seed=3)
    assert all(np.array_equal(mine[order], theirs[order]) for order in road.ORDERS)
    curves = faithfulness.perturbation_curves(model, image, maps, 1, steps=4, seed=3, ranks=ranks)
    plain = faithfulness.perturbation_curves(model, image, maps, 1, steps=4, seed=3)
    assert np.array_equal(curves.deletion, plain.deletion) and np.array_equal(curves.insertion, plain.insertion)
    # the ranks, not the maps, pick the pixels: the reversed map's ranks give the reversed map's scores
    reversed_ranks = [faithfulness.saliency_rank(-maps[0], 3)]
    flipped = road.road_scores(model, image, maps[:1], 1, [20, 70], seed=3, ranks=reversed_ranks)
    assert np.array_equal(flipped["morf"], road.road_scores(model, image, [-maps[0]], 1, [20, 70], seed=3)["morf"])
    flipped_curves = faithfulness.perturbation_curves(model, image, maps[:1], 1, steps=4, seed=3, ranks=reversed_ranks)
    assert np.array_equal(
        flipped_curves.deletion, faithfulness.perturbation_curves(model, image, [-maps[0]], 1, 4, 3).deletion
    )
    with pytest.raises(ValueError, match="2 maps"):
        road.road_scores(model, image, maps, 1, [20], ranks=ranks[:1])
    with pytest.raises(ValueError, match="2 maps"):
        faithfulness.perturbation_curves(model, image, maps, 1, steps=4, ranks=ranks[:1])
    with pytest.raises(ValueError, match="does not fit"):
        road.road_scores(model, image, maps[:1], 1, [20], ranks=[ranks[0][:-1]])
    with pytest.raises(ValueError, match="pixels"):
        faithfulness.perturbation_curves(model, image, maps[:1], 1, steps=4, ranks=[ranks[0][:-1]])


def one_at_a_time(image, saliencies, percentages, seed, orders=road.ORDERS, noise_std=road.NOISE_STD):
    """road_scores' inputs built the plain way: one impute per mask, one generator per map and order."""
    out = []
    for saliency in saliencies:
        for order in orders:
            generator = torch.Generator().manual_seed(seed)
            for mask in road.removed_masks(saliency, percentages, order, seed):
                out.append(road.impute(image, mask, noise_std, generator))
    return torch.stack(out)


def test_solving_together_in_threads_changes_no_bit(monkeypatch):
    rng = np.random.default_rng(4)
    image = torch.from_numpy(rng.normal(size=(3, 48, 40)).astype(np.float32))
    smooth = torch.nn.functional.interpolate(torch.from_numpy(rng.random((1, 1, 6, 5))), size=(48, 40))[0, 0]
    saliencies = [smooth, rng.random((48, 40)), smooth.clone()]  # the third repeats the first
    percentages = [10, 50, 90]
    expected = one_at_a_time(image, saliencies, percentages, seed=3)
    for workers in (1, 2, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda workers=workers: workers)
        got = road._road_batch(image, saliencies, percentages, road.ORDERS, road.NOISE_STD, 3)
        assert torch.equal(got, expected)
    # the repeated map saw the same noise stream, so its inputs are the first map's
    assert torch.equal(expected[:6], expected[12:])


def test_equal_masks_are_solved_once_and_masks_that_come_back_are_factorised_once(monkeypatch):
    factorised = []
    real_factorise = road._factorise

    def counted_factorise(system):
        factorised.append(system.pixels.size)
        return real_factorise(system)

    monkeypatch.setattr(road, "_factorise", counted_factorise)
    monkeypatch.setattr(road, "_FACTORISATIONS", road._Factorisations(keep=4))
    rng = np.random.default_rng(5)
    fixed = rng.random((30, 30))  # a map every photo shares, like the centre prior
    images = [torch.from_numpy(rng.normal(size=(3, 30, 30))) for _ in range(4)]
    for number, image in enumerate(images):
        factorised.clear()
        own = rng.random((30, 30))
        before = dataclasses.replace(road.IMPUTATION)
        got = road._road_batch(image, [fixed, own, own], [20, 60], ("morf",), 0.0, 0)
        assert road.IMPUTATION.masks - before.masks == 6 and road.IMPUTATION.solved - before.solved == 4
        assert road.IMPUTATION.seconds > before.seconds
        # the photo's own map twice: solved once; the shared map only on the first photo (the plain
        # imputes below are its second sighting, after which its factors are kept)
        assert len(factorised) == (4 if number == 0 else 2)
        assert torch.equal(got, one_at_a_time(image, [fixed, own, own], [20, 60], 0, ("morf",), 0.0))
    # a bounded number of factors is kept: new shared masks push the oldest out
    cache = road._FACTORISATIONS
    for seed in range(6):
        mask = np.random.default_rng(seed).random((30, 30)) < 0.3
        cache.get(mask, road._mask_key(mask))
        cache.get(mask, road._mask_key(mask))
    assert len(cache.factors) == 4


def test_the_solver_is_scipys_superlu_named_with_its_version():
    import scipy

    assert road.solver_name() == f"SuperLU (scipy {scipy.__version__})"


@pytest.mark.parametrize("percentage", [10, 50, 90])
def test_the_dissection_order_gives_superlus_own_ordering_solution(percentage):
    """Keeping our nested-dissection numbering changes only the speed: SuperLU's own minimum-degree
    ordering of the same system gives the same fill to rounding."""
    rng = np.random.default_rng(2)
    image = rng.normal(size=(3, 64 * 64))
    coarse = torch.from_numpy(rng.random((1, 1, 7, 7)))
    saliency = torch.nn.functional.interpolate(coarse, size=(64, 64), mode="bilinear")[0, 0].numpy()
    for order in road.ORDERS:
        mask = road.removed_masks(saliency, [percentage], order)[0].numpy()
        system = road._linear_system(mask)
        rhs = road._kept_sums(image, mask)[:, system.pixels]
        ours = road._SuperLU(system).solve(rhs)
        theirs = road._SuperLU(system, "MMD_AT_PLUS_A").solve(rhs)
        assert ours.shape == (3, mask.sum())
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
        assert np.abs(ours - image[:, system.pixels]).mean() > 0.1  # a fill, not the removed pixels


# --- pytorch-grad-cam (the ROAD authors' imputer) as an oracle -----------------------------------


# pytorch-grad-cam calls np.argwhere on torch tensors, which NumPy 2 warns about; not our code
their_numpy_warning = pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context:DeprecationWarning")


class Recorder:
    """Stands in for pytorch-grad-cam's imputer and keeps the kept-pixel mask it is handed."""

    def __call__(self, image: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
        self.removed = kept.numpy() < 0.5
        return image


def their_removed(order: str, percentile: float, saliency: np.ndarray) -> np.ndarray:
    from pytorch_grad_cam.metrics.perturbation_confidence import RemoveLeastRelevantFirst, RemoveMostRelevantFirst

    recorder = Recorder()
    kind = RemoveMostRelevantFirst if order == "morf" else RemoveLeastRelevantFirst
    kind(percentile, recorder)(torch.zeros(3, *saliency.shape), torch.from_numpy(saliency))
    return recorder.removed


@their_numpy_warning
@pytest.mark.parametrize("side", [(40, 48), (224, 224)])
def test_imputation_equals_pytorch_grad_cam_without_noise(side):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    generator = torch.Generator().manual_seed(side[0])
    image = torch.randn(3, *side, generator=generator)
    removed = torch.rand(*side, generator=generator) < (0.6 if side[0] < 100 else 0.3)
    ours = road.impute(image, removed, noise_std=0.0)
    theirs = NoisyLinearImputer(noise=0.0)(image, (~removed).float())  # their mask: 1 = kept
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), atol=1e-5, rtol=0)


@their_numpy_warning
def test_noise_is_pytorch_grad_cam_default():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    assert road.NOISE_STD == NoisyLinearImputer().noise == 0.01
    generator = torch.Generator().manual_seed(9)
    image = torch.randn(3, 60, 60, generator=generator)
    removed = torch.rand(60, 60, generator=generator) < 0.5
    torch.manual_seed(0)
    noise = NoisyLinearImputer()(image, (~removed).float()) - road.impute(image, removed, noise_std=0.0)
    assert noise[:, ~removed].abs().max() == 0
    assert abs(noise[:, removed].std().item() - 0.01) < 0.0006


def test_percentile_semantics_and_ties_differ_from_pytorch_grad_cam():
    # their ``percentile`` q is the share *kept*: MoRF(q) removes the (100 - q) % most relevant and
    # LeRF(q) the (100 - q) % least relevant; on a tie-free map that is our removal at p = 100 - q
    saliency = np.random.default_rng(1).permutation(400).reshape(20, 20) / 400.0
    for q in (10, 30, 50, 80):
        for order in road.ORDERS:
            ours = road.removed_masks(saliency, [100 - q], order)[0].numpy()
            np.testing.assert_array_equal(their_removed(order, q, saliency), ours)
    # ties: they remove every pixel at or above the percentile value, we remove exactly p %
    quadrant = np.zeros((16, 16))
    quadrant[:8, :8] = 1.0
    assert their_removed("morf", 80, quadrant).sum() == 64  # 25 %, not 20 %
    assert their_removed("morf", 70, quadrant).all()  # 100 %: nothing kept, their system is singular
    assert (
        road.removed_masks(quadrant, [20], "morf")[0].sum() == 51
        and road.removed_masks(quadrant, [30], "morf")[0].sum() == 77
    )


def input_box(spec, grid_size, box) -> tuple[int, int, int, int]:
    """A tile's grid box in network-input pixels (through the model's crop and resize)."""
    x0, y0, x1, y1 = spec.pixel_box(grid_size)
    scale = spec.input_size / (x1 - x0), spec.input_size / (y1 - y0)
    left, top, right, bottom = box

    def clip(v: float) -> int:
        return int(np.clip(round(v), 0, spec.input_size))

    return (
        clip((left - x0) * scale[0]),
        clip((top - y0) * scale[1]),
        clip((right - x0) * scale[0]),
        clip((bottom - y0) * scale[1]),
    )


def quadrant_map(spec, grid, tile) -> np.ndarray:
    left, top, right, bottom = input_box(spec, grid.size, tile.box)
    values = np.zeros((spec.input_size, spec.input_size))
    values[top:bottom, left:right] = 1.0
    return values


@pytest.mark.slow
@their_numpy_warning
def test_road_scores_equal_pytorch_grad_cam_on_efficientnet(effnet, grid, monkeypatch):
    from pytorch_grad_cam.metrics import road as their_road
    from pytorch_grad_cam.metrics.perturbation_confidence import (
        PerturbationConfidenceMetric,
        RemoveLeastRelevantFirst,
        RemoveMostRelevantFirst,
    )
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model, spec = effnet
    picture, tiles = grid
    x = spec.preprocess(picture)
    tile = tiles[0]
    # the cat's quadrant first, every pixel a distinct value (pytorch-grad-cam's threshold keeps all ties)
    n = spec.input_size**2
    saliency = (
        quadrant_map(spec, picture, tile)
        + 0.5 * np.random.default_rng(0).permutation(n).reshape(spec.input_size, -1) / n
    )
    percentages = [10, 30, 50]  # their imputer takes seconds at high removal shares; these keep the test short
    ours = road.road_scores(model, x, [saliency], tile.class_index, percentages, noise_std=0.0)
    with torch.inference_mode():
        full = torch.softmax(model(x), 1)[0, tile.class_index].item()
    targets = [ClassifierOutputSoftmaxTarget(tile.class_index)]
    for order, kind in (("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)):
        for p, score in zip(percentages, ours[order][0], strict=True):
            q = 100 - p  # their percentile is the share kept
            np.testing.assert_array_equal(
                their_removed(order, q, saliency), road.removed_masks(saliency, [p], order)[0].numpy()
            )
            metric = PerturbationConfidenceMetric(kind(q, their_road.NoisyLinearImputer(noise=0.0)))
            # by default they report the change from the untouched input's score, not the score
            change = metric(x, saliency[None], targets, model)[0]
            assert abs((change + full) - score) < 1e-4, (order, p)
    # their ROADCombined is half our gap, (mean LeRF - mean MoRF) / 2, as the untouched score cancels;
    # it builds its imputer with the default noise, switched off here (shown at one percentage)
    monkeypatch.setattr(their_road.NoisyLinearImputer.__init__, "__defaults__", (0.0, their_road.neighbors_weights))
    combined = their_road.ROADCombined(percentiles=[100 - percentages[-1]])(x, saliency[None], targets, model)[0]
    assert abs(combined - (ours["lerf"][0, -1] - ours["morf"][0, -1]) / 2) < 1e-4
    # the cat's own quadrant is a faithful map for the cat
    assert ours["lerf"].mean() > ours["morf"].mean() + 0.1


@pytest.mark.slow
def test_object_quadrant_beats_its_inverse_on_efficientnet(effnet, grid):
    model, spec = effnet
    picture, tiles = grid
    x = spec.preprocess(picture)
    fast = faithfulness.channels_last_copy(model)
    for tile in tiles:
        own = quadrant_map(spec, picture, tile)
        assert 0.2 < own.mean() < 0.3  # one quadrant of the network's view
        scores = road.road_scores(fast, x, [own, 1.0 - own], tile.class_index, [20, 50, 80], seed=1)
        gap = road.road_gap(scores)
        # the margin is small for the uniform, which the model barely sees on the grid (p ~ 1e-4)
        assert gap[0] > 0 > gap[1] and gap[0] > gap[1] + 0.02, (tile.name, scores)
        assert scores["morf"][0].mean() < scores["morf"][1].mean(), tile.name
        assert scores["lerf"][0].mean() > scores["lerf"][1].mean(), tile.name
