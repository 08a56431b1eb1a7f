"""MKL's PARDISO (evaluation/pardiso.py) and ROAD's fallback to SuperLU where MKL is missing.

PARDISO is checked against SciPy's dense and sparse solvers on systems with known properties; ROAD's
imputation is checked to be the same, to rounding, whichever solver runs it.
"""

from __future__ import annotations

import gc
import json
import platform

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gradcam_tutorial.evaluation import pardiso, road

# MKL ships x86-64 wheels only; everywhere else ROAD runs on SuperLU and these tests do not apply
needs_mkl = pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64"), reason="MKL has no wheel for this machine"
)


def upper_csr(matrix: sp.spmatrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    upper = sp.triu(matrix, format="csr")
    upper.sort_indices()
    return upper.indptr, upper.indices, upper.data


def grid_laplacian(side: int, shift: float) -> sp.csr_matrix:
    """The 5-point Laplacian of a side x side grid plus ``shift`` on the diagonal (SPD for shift > 0)."""
    line = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(side, side))
    eye = sp.identity(side)
    return (sp.kron(line, eye) + sp.kron(eye, line) + shift * sp.identity(side * side)).tocsr()


@needs_mkl
def test_mkl_is_installed_where_it_has_wheels():
    assert pardiso.available()


@needs_mkl
def test_solves_match_scipy_for_several_right_hand_sides():
    rng = np.random.default_rng(0)
    matrix = grid_laplacian(30, 0.01)
    rhs = rng.normal(size=(3, matrix.shape[0]))
    factor = pardiso.CholeskyFactor(*upper_csr(matrix))
    got = factor.solve(rhs)
    expected = sp.linalg.spsolve(matrix.tocsc(), rhs.T).T
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(matrix @ got.T, rhs.T, atol=1e-9)
    # one right-hand side, and a non-contiguous one, give the same columns
    np.testing.assert_allclose(factor.solve(rhs[1:2]), got[1:2], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(factor.solve(np.asfortranarray(rhs)), got, rtol=1e-12, atol=1e-14)


@needs_mkl
def test_a_dense_random_spd_matrix_in_any_order():
    # PARDISO eliminates in the given numbering: a badly ordered matrix is slower, never wrong
    rng = np.random.default_rng(1)
    base = rng.normal(size=(40, 40))
    dense = base @ base.T + 40 * np.eye(40)
    permutation = rng.permutation(40)
    permuted = dense[np.ix_(permutation, permutation)]
    rhs = rng.normal(size=(2, 40))
    got = pardiso.CholeskyFactor(*upper_csr(sp.csr_matrix(permuted))).solve(rhs)
    np.testing.assert_allclose(got, np.linalg.solve(permuted, rhs.T).T, rtol=1e-10)


@needs_mkl
@pytest.mark.parametrize(
    "matrix",
    [
        [[1.0, 2.0], [2.0, 1.0]],  # eigenvalues 3 and -1: a negative pivot, found at the solve
        [[1.0, 0.0], [0.0, -1.0]],
        [[0.0, 0.0], [0.0, 1.0]],  # a zero pivot, found by the factorisation
    ],
)
def test_a_matrix_that_is_not_positive_definite_is_refused(matrix):
    with pytest.raises(RuntimeError, match="not positive definite"):
        pardiso.CholeskyFactor(*upper_csr(sp.csr_matrix(np.array(matrix)))).solve(np.ones((1, 2)))


@needs_mkl
def test_wrong_shapes_and_closed_factors_are_refused():
    factor = pardiso.CholeskyFactor(*upper_csr(grid_laplacian(4, 1.0)))
    with pytest.raises(ValueError, match=r"must be \(k, 16\), not \(16,\)"):
        factor.solve(np.ones(16))
    with pytest.raises(ValueError, match=r"not \(2, 15\)"):
        factor.solve(np.ones((2, 15)))
    factor.close()
    factor.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        factor.solve(np.ones((1, 16)))


@needs_mkl
def test_mkl_memory_is_released_when_a_factor_is_collected():
    factor = pardiso.CholeskyFactor(*upper_csr(grid_laplacian(10, 1.0)))
    release = factor._release
    assert release.alive
    del factor
    gc.collect()
    assert not release.alive


def smooth_saliency(side: int, seed: int) -> np.ndarray:
    coarse = torch.from_numpy(np.random.default_rng(seed).random((1, 1, 7, 7)))
    return torch.nn.functional.interpolate(coarse, size=(side, side), mode="bilinear")[0, 0].numpy()


@pytest.mark.parametrize("percentage", [10, 50, 90])
def test_road_imputation_is_the_same_with_superlu(monkeypatch, percentage):
    image = torch.from_numpy(np.random.default_rng(2).normal(size=(3, 224, 224)).astype(np.float32))
    saliency = smooth_saliency(224, 3)
    for order in road.ORDERS:
        mask = road.removed_masks(saliency, [percentage], order)[0].numpy()
        (first,) = road._fills(image, [mask])
        monkeypatch.setattr(road, "_FACTORISATIONS", road._Factorisations(solver="superlu"))
        (fallback,) = road._fills(image, [mask])
        monkeypatch.undo()
        # the same float64 system solved by two different factorisations
        assert first.shape == (3, mask.sum())
        np.testing.assert_allclose(first, fallback, rtol=0, atol=1e-10)
        assert np.abs(first - image.numpy()[:, mask]).mean() > 0.1  # a fill, not the removed pixels


def test_the_solver_is_named_and_falls_back_to_superlu_without_mkl(monkeypatch):
    expected = "MKL PARDISO (mkl " if pardiso.available() else "SuperLU (scipy "
    assert road.solver_name().startswith(expected)
    assert road.solver_name("superlu").startswith("SuperLU (scipy 1.")
    monkeypatch.setattr(pardiso, "available", lambda: False)
    assert road.default_solver() == "superlu" and road.solver_name().startswith("SuperLU")
    with pytest.raises(ValueError, match="solver must be one of"):
        road._Factorisations(solver="cholmod")


@needs_mkl
def test_the_benchmark_compares_both_solvers_on_the_same_masks(monkeypatch, tmp_path):
    import bench_road  # benchmarks/bench_road.py, on pytest's pythonpath

    monkeypatch.setattr(bench_road, "PERCENTAGES", (30.0,))  # 32 masks: a smoke test, not a timing
    cache = road._FACTORISATIONS
    result = bench_road.run(rounds=1, workers=1)
    assert road._FACTORISATIONS is cache  # the benchmark's own caches do not outlive it
    assert result["masks"] == 8 * 2 * 2  # demo photos and mirrors, Grad-CAM and random, two orders
    assert set(result["ms_per_mask"]) == {"pardiso", "superlu"}
    assert all(value > 0 for value in result["ms_per_mask"].values())
    assert result["superlu_over_pardiso"] == pytest.approx(
        result["ms_per_mask"]["superlu"] / result["ms_per_mask"]["pardiso"]
    )
    assert 0 < result["max_abs_difference"] < 1e-9  # two factorisations: equal to rounding, not bit for bit
    assert result["solvers"]["pardiso"].startswith("MKL PARDISO")
    threads = torch.get_num_threads()
    try:
        assert bench_road.main(["--rounds", "1", "--threads", "1", "--out", str(tmp_path / "road.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "road.json").read_text())["masks"] == 32
