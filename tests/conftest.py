"""Shared fixtures: the real offline model, the demo grid and the mirror."""

from __future__ import annotations

import os
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
    torch.set_num_threads(min(2, os.cpu_count() or 1))


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
