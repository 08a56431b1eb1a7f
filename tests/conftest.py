"""Shared fixtures: the real offline model, the demo grid and the mirror."""

from __future__ import annotations

import gc
import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    # Tests read remote files from the mirror beside the checkout unless told otherwise.
    if "GRADCAM_MIRROR" not in os.environ and (MIRROR / "SHA256SUMS").exists():
        os.environ["GRADCAM_MIRROR"] = str(MIRROR)
    # Notebook kernels inherit this environment; with MPLBACKEND=Agg they would show no figures.
    os.environ.pop("MPLBACKEND", None)
    if _under_mutmut():
        # make mutate runs two one-thread workers; its fork server imports what the tests
        # import lazily, so that each mutant's forked run starts with them loaded.
        torch.set_num_threads(1)
        if "__mutmut_" in os.environ.get("MUTANT_UNDER_TEST", ""):
            _cap_memory(extra=4 << 30)
        for name in _IMPORTED_LAZILY:
            importlib.import_module(name)
    else:
        torch.set_num_threads(min(2, os.cpu_count() or 1))


# Imported inside functions of the package or of the tests; each import costs a mutant's run
# tenths of a second when the fork server has not done it.
_IMPORTED_LAZILY = (
    "cv2",
    "captum.attr",
    "efficientnet_lite_pytorch",
    "matplotlib.pyplot",
    "pytorch_grad_cam",
    "scipy.stats",
    "skimage.data",
    "skimage.metrics",
    "torchcam.methods",
    "torchvision.models",
    "tqdm",
)


def _cap_memory(extra: int) -> None:
    """Let a mutant's run grow by `extra` bytes: one that asks for 20 GB fails, not the machine."""
    import resource

    size = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, resource.RLIM_INFINITY))


def _under_mutmut() -> bool:
    return "mutmut" in sys.modules


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under make mutate, run a mutant's fast tests first: mutmut stops at the first failure."""
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return
    stats = Path("mutmut-stats.json")  # mutmut runs the tests inside mutants/
    if stats.exists():
        seconds = json.loads(stats.read_text())["duration_by_test"]
        # A test module's fixtures are built again each time its tests resume, so modules stay
        # together: the cheapest module (in the tests this mutant reaches) first, fastest test first.
        cost: dict[Path, float] = {}
        for item in items:
            cost[item.path] = cost.get(item.path, 0.0) + seconds.get(item.nodeid, 60.0)
        items.sort(key=lambda item: (cost[item.path], seconds.get(item.nodeid, 60.0)))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _under_mutmut():
        # Every mutant's run is a fork of the process that got here first (mutmut's fork server,
        # after collecting). Frozen, its objects are not rescanned by the garbage collections
        # pytest forces at the end of each run: 0.8 s per mutant before, 0.13 s after.
        gc.freeze()


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ.get("GRADCAM_MIRROR", MIRROR))
    if not (path / "SHA256SUMS").exists():
        pytest.fail(f"the offline mirror is missing at {path}; set GRADCAM_MIRROR")
    return path


@pytest.fixture(scope="session")
def effnet():
    from gradcam_tutorial import create_model

    return create_model("efficientnet_lite0")


@pytest.fixture(scope="session")
def grid():
    from gradcam_tutorial import demo_grid

    return demo_grid()


@pytest.fixture()
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """An empty download cache, so a test sees exactly what the mirror or the web provide."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRADCAM_CACHE", str(cache))
    return cache


# --- "left as found": one guard for every call that promises to leave a caller's model untouched ---


def _bits(tensor: torch.Tensor) -> tuple[str, torch.dtype, tuple[int, ...], tuple[int, ...], bytes]:
    """A tensor's device, dtype, shape, memory layout and raw bytes: equal exactly when it is the same
    bit for bit (``torch.equal`` would call two NaNs different and -0.0 equal to 0.0)."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return (
        str(tensor.device),
        tensor.dtype,
        tuple(tensor.shape),
        tensor.stride(),
        flat.view(torch.uint8).numpy().tobytes(),
    )


def model_snapshot(model: torch.nn.Module) -> dict[str, object]:
    """Everything a call could disturb in a caller's model, copied.

    The whole ``state_dict()`` (parameters and buffers: batch-norm running statistics and
    ``num_batches_tracked`` move when a pass runs in train mode), every module's train/eval flag,
    every parameter's ``requires_grad`` and ``.grad``, and every hook, torch's global ones included;
    plus whether autograd is on, which a call can leave switched off.
    """
    from gradcam_tutorial.state import hook_snapshot

    return {
        "state_dict": {name: _bits(value) for name, value in model.state_dict(keep_vars=True).items()},
        "training": {name: module.training for name, module in model.named_modules()},
        "requires_grad": {name: p.requires_grad for name, p in model.named_parameters()},
        "grad": {name: None if p.grad is None else _bits(p.grad) for name, p in model.named_parameters()},
        "hooks": hook_snapshot(model),
        "grad_enabled": torch.is_grad_enabled(),
    }


def assert_left_as_found(model: torch.nn.Module, before: dict[str, object]) -> None:
    """Fail naming each part of the model's state that differs from ``before``."""
    now = model_snapshot(model)
    for part, value in before.items():
        if isinstance(value, dict):
            changed = sorted(k for k in value.keys() | now[part].keys() if value.get(k) != now[part].get(k))
            assert not changed, f"{part} changed: {changed[:10]}"
        else:
            assert now[part] == value, f"{part} changed: {value} -> {now[part]}"


@contextmanager
def left_as_found(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Check, when the block ends without an error of its own, that ``model`` is exactly as it entered.

    Raising inside the block skips the check: a test that expects an error puts ``pytest.raises``
    inside the block, so the check still runs after the error.
    """
    before = model_snapshot(model)
    yield model
    assert_left_as_found(model, before)


def train_mode_with_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` in the state that shows most: train mode, with batch norms whose running statistics
    any pass in train mode would move."""
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(m.track_running_stats for m in norms), "the guard needs batch norms to watch"
    return model.train()
