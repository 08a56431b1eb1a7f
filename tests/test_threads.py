"""Several threads explaining with one model: the same maps as one at a time, the model as found."""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest

from conftest import assert_left_as_found, model_snapshot, train_mode_with_batchnorm
from gradcam_tutorial import GradCAM, explain

CLASSES = [285, 967, 652, 665]


@pytest.mark.slow
def test_threads_sharing_one_model_get_sequential_results_and_leave_it_as_found(effnet, grid):
    model, spec = effnet
    shared = train_mode_with_batchnorm(copy.deepcopy(model))  # the worst case: batch norms would update
    x = spec.preprocess(grid[0])
    expected = {}
    for c in CLASSES:
        with GradCAM(shared, "_swish") as cam:
            expected[c] = cam.compute_heatmap(x, c)
    before = model_snapshot(shared)
    results: list[tuple[int, tuple]] = []
    errors: list[BaseException] = []

    def work(c: int) -> None:
        try:
            for _ in range(10):
                with GradCAM(shared, "_swish") as cam:
                    results.append((c, cam.compute_heatmap(x, c)))
                results.append((c, (explain(grid[0], shared, spec, [c]).small_heatmaps[0], c, None)))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=work, args=(c,)) for c in CLASSES]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(results) == 80
    for c, (heatmap, index, probability) in results:
        assert index == c
        np.testing.assert_allclose(heatmap, expected[c][0], atol=1e-6)
        if probability is not None:
            assert abs(probability - expected[c][2]) < 1e-6
    assert_left_as_found(shared, before)
