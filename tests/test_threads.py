"""Several threads explaining with one model: the same maps as one at a time, the model as found."""

from __future__ import annotations

import copy
import threading

import numpy as np
import torch

from gradcam_tutorial import GradCAM, explain

CLASSES = [285, 967, 652, 665]


def test_threads_sharing_one_model_get_sequential_results_and_leave_it_as_found(effnet, grid):
    model, spec = effnet
    shared = copy.deepcopy(model).train()  # train mode: the worst case, batch norms would update
    x = spec.preprocess(grid[0])
    expected = {}
    for c in CLASSES:
        with GradCAM(shared, "_swish") as cam:
            expected[c] = cam.compute_heatmap(x, c)
    buffers = {name: buffer.clone() for name, buffer in shared.named_buffers()}
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
    assert all(module.training for module in shared.modules()), "train mode restored"
    for name, buffer in shared.named_buffers():
        assert torch.equal(buffer, buffers[name]), f"{name} changed"
