"""GitHub issue 3: repeated Grad-CAM calls and constructions leave no hooks behind and do not leak.

The full run is ``make soak`` (500 calls, 50 constructions); this is the same code at a size that
fits the test suite.
"""

from __future__ import annotations

import pytest
import torch

from gradcam_tutorial.state import hook_snapshot

from soak import RSS_LIMIT_MB, soak


@pytest.mark.slow
def test_soak_small(effnet):
    model, spec = effnet
    result = soak(calls=60, constructions=10, model=model, layer=spec.target_layer)
    print(result.summary())
    assert result.calls == 60 and result.constructions == 10
    assert result.failed_on_purpose == 2  # the error path was exercised, and cleaned up too
    assert result.hook_problems == []
    assert result.growth_mb < RSS_LIMIT_MB
    assert result.ok


@pytest.mark.slow
def test_soak_notices_a_leaked_hook(effnet, monkeypatch):
    """The checker itself must catch a helper that forgets to remove its hook."""
    from gradcam_tutorial import cam as cam_module

    model, spec = effnet
    leaked = []
    real_compute = cam_module.GradCAM.compute

    def leaky_compute(self, *args, **kwargs):
        leaked.append(self.layer.register_forward_hook(lambda *_: None))
        return real_compute(self, *args, **kwargs)

    monkeypatch.setattr(cam_module.GradCAM, "compute", leaky_compute)
    try:
        result = soak(calls=3, constructions=1, model=model, layer=spec.target_layer, warmup=1)
    finally:
        for handle in leaked:
            handle.remove()
    assert not result.ok
    assert len(result.hook_problems) == 3 and spec.target_layer in result.hook_problems[0]


def test_hook_snapshot_sees_every_kind_of_hook():
    layer = torch.nn.Linear(2, 2)
    before = hook_snapshot(layer)
    handles = [
        layer.register_forward_hook(lambda *_: None),
        layer.register_forward_pre_hook(lambda *_: None),
        layer.register_full_backward_hook(lambda *_: None),
        layer.register_full_backward_pre_hook(lambda *_: None),
    ]
    during = hook_snapshot(layer)
    for handle in handles:
        handle.remove()
    assert [len(ids) for ids in during[""]] == [1, 1, 1, 1]
    assert hook_snapshot(layer) == before


@pytest.mark.parametrize("growth, ok", [(10.0, True), (RSS_LIMIT_MB, False)])
def test_rss_limit_is_strict(growth, ok):
    from soak import SoakResult

    assert SoakResult(1, 1, 0, 1.0, 100.0, 100.0 + growth, RSS_LIMIT_MB).ok is ok
